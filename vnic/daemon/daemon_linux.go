package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"vnic/vnic/capture"
	"vnic/vnic/ethtool"
	"vnic/vnic/nsutil"
	"vnic/vnic/peer"
)

// Errors Run returns for a machine that cannot host a vnic, to be tested
// with errors.Is; the messages say what to do.
var (
	ErrNotRoot = errors.New("vnic up needs root (or CAP_NET_ADMIN)")
	ErrNoTUN   = errors.New("no /dev/net/tun")
	ErrRunning = errors.New("a vnic daemon already serves this interface")
)

// Daemon is a running vnic: the TUN device, the gVisor peer behind it and
// the pipeline between them.
type Daemon struct {
	cfg     Config
	log     *slog.Logger
	st      *stats
	nic     nic
	peer    *peer.Peer
	pcap    *capture.Writer
	ctl     net.Listener
	created bool // we created cfg.Netns
	closers []func()
	done    chan error
	started time.Time
}

// nic is the NIC model behind the TUN: vnic's engine or wireguard-go's.
type nic interface {
	output(pkts []peer.Packet)
	txLoop() error
	setGRO(on bool)
	close() error
	grantedOffloads() string
	stats(*Stats)
}

// Start brings a vnic up: namespace, TUN device with offloads, addresses,
// the gVisor peer, capture and control socket, then the data path. Stop it
// with Close. Equivalent to: ip netns add NS; ip tuntap add NAME mode tun
// vnet_hdr; ip addr add ...; ip link set NAME up — plus the NIC.
func Start(ctx context.Context, cfg Config) (_ *Daemon, err error) {
	if err := cfg.Normalize(); err != nil {
		return nil, err
	}
	if err := preflight(); err != nil {
		return nil, err
	}
	d := &Daemon{cfg: cfg, log: cfg.Logger.With("dev", cfg.Name), st: newStats(), done: make(chan error, 1), started: time.Now()}
	defer func() {
		if err != nil {
			d.teardown()
		}
	}()
	if err := os.MkdirAll(RunDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating %s: %w", RunDir, err)
	}
	if err := d.takeControlSocket(); err != nil {
		return nil, err
	}
	if cfg.Netns != "" {
		if err := d.enterNetns(); err != nil {
			return nil, err
		}
	}

	// The device, created inside the namespace.
	if err := nsutil.Do(cfg.Netns, func() error {
		var err error
		d.nic, err = d.openNIC()
		return err
	}); err != nil {
		return nil, err
	}
	d.closers = append(d.closers, func() { _ = d.nic.close() })
	d.log.Info("TUN device created", "engine", cfg.Engine, "offloads", d.nic.grantedOffloads(), "netns", cfg.Netns)

	h, err := nsutil.Handle(cfg.Netns)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	if err := nsutil.ConfigureLink(h, cfg.Name, nsutil.LinkConfig{MTU: cfg.MTU, Addrs: cfg.Addrs, Up: true, TxQueueLen: 1000}); err != nil {
		return nil, err
	}
	// Up means usable: an IPv6 address is delivered locally some
	// milliseconds after the link came up.
	if err := nsutil.WaitLocal(h, cfg.Addrs, 5*time.Second); err != nil {
		return nil, err
	}

	if cfg.Pcap != "" {
		d.pcap, err = capture.Create(cfg.Pcap, capture.Options{Ifnames: []string{cfg.Name}, Snaplen: cfg.Snaplen, Logger: d.log})
		if err != nil {
			return nil, fmt.Errorf("--pcap %s: %w", cfg.Pcap, err)
		}
		d.setCapture(d.pcap.NIC(cfg.Name))
	}

	gso := uint32(peer.MaxGSOSize)
	if cfg.NoPeerGSO {
		gso = 0
	}
	d.peer, err = peer.New(peer.Options{
		Addrs:      cfg.peerPrefixes(),
		MTU:        uint32(cfg.MTU),
		GSOMaxSize: gso,
		Output:     d.nic.output,
		Logger:     d.log.With("host", "peer"),
		OnLinkOnly: true,
		// The peer host's NIC coalesces too, as a Linux receiver's would:
		// gVisor's per-packet receive path is the most expensive step of
		// an upload (profiled: 60% of the daemon's CPU at 1448 bytes a
		// packet), and GRO halves it.
		GRO: true,
	})
	if err != nil {
		return nil, fmt.Errorf("starting the gVisor peer: %w", err)
	}
	d.setPeer(d.peer)
	d.closers = append(d.closers, func() { _ = d.peer.Close() })

	if err := d.watchGRO(ctx); err != nil {
		d.log.Warn("cannot follow ethtool -K gro; GRO stays on", "err", err)
	}
	go d.serveControl()
	go func() { d.done <- d.nic.txLoop() }()
	d.log.Info("vnic up", "addrs", cfg.Addrs, "peer", cfg.Peer, "mtu", cfg.MTU, "hw_mtu", cfg.HWMTU, "pcap", cfg.Pcap, "control", cfg.Control)
	return d, nil
}

// Run is Start, then waiting until ctx is cancelled (SIGINT/SIGTERM in
// `vnic up`) or the data path fails, then Close.
func Run(ctx context.Context, cfg Config) error {
	d, err := Start(ctx, cfg)
	if err != nil {
		return err
	}
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-d.done:
		d.log.Error("data path stopped", "err", runErr)
	}
	return errors.Join(runErr, d.Close())
}

// Done is closed... receives the data path's error when it stops by
// itself (it does not when Close stops it).
func (d *Daemon) Done() <-chan error { return d.done }

// Close tears everything down: data path, peer, capture (flushed), TUN,
// control socket, and the namespace if this daemon created it.
func (d *Daemon) Close() error {
	d.teardown()
	return nil
}

func (d *Daemon) teardown() {
	// The TUN first: it unblocks the transmit loop. Then the peer (its
	// output goroutine writes into the TUN, which now fails harmlessly),
	// then the capture, which flushes what both recorded.
	for i := len(d.closers) - 1; i >= 0; i-- {
		d.closers[i]()
	}
	d.closers = nil
	if d.pcap != nil {
		if err := d.pcap.Close(); err != nil {
			d.log.Warn("closing the pcap", "err", err)
		}
		d.pcap = nil
	}
	if d.ctl != nil {
		_ = d.ctl.Close()
		_ = os.Remove(d.cfg.Control)
		d.ctl = nil
	}
	if d.created {
		if err := nsutil.Delete(d.cfg.Netns); err != nil {
			d.log.Warn("removing the namespace", "netns", d.cfg.Netns, "err", err)
		}
		_ = os.Remove(ownerPath(d.cfg.Netns))
		d.created = false
	}
}

// Stats returns a snapshot of every counter.
func (d *Daemon) Stats() Stats {
	s := d.st.snapshot()
	s.Name, s.Netns, s.Engine = d.cfg.Name, d.cfg.Netns, d.cfg.Engine
	d.nic.stats(&s)
	if d.peer != nil {
		s.Peer = d.peer.Stats()
	}
	if d.pcap != nil {
		c := d.pcap.Stats()
		s.Capture = &c
	}
	return s
}

// Config returns the normalized configuration.
func (d *Daemon) Config() Config { return d.cfg }

func preflight() error {
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		return fmt.Errorf("%w: load the TUN driver with `modprobe tun` (in a container, pass --device /dev/net/tun)", ErrNoTUN)
	}
	if os.Geteuid() != 0 && !hasCapNetAdmin() {
		return fmt.Errorf("%w: run it with sudo, or give the binary the capability: setcap cap_net_admin+ep $(which vnic)", ErrNotRoot)
	}
	return nil
}

// hasCapNetAdmin reads CapEff from /proc/self/status.
func hasCapNetAdmin() bool {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && caps&(1<<12) != 0 // CAP_NET_ADMIN = 12
		}
	}
	return false
}

// ownerPath marks a namespace this daemon created, with its PID, so that
// after a kill -9 the next `vnic up` knows the namespace is a leftover it
// may adopt and remove on exit.
func ownerPath(netns string) string { return filepath.Join(RunDir, netns+".netns-owner") }

func (d *Daemon) enterNetns() error {
	ns := d.cfg.Netns
	if nsutil.Exists(ns) {
		if pid, ok := readOwner(ns); ok && !processAlive(pid) {
			d.log.Info("adopting a namespace left by a daemon that died", "netns", ns, "pid", pid)
			d.created = true
		}
	} else {
		created, err := nsutil.Create(ns)
		if err != nil {
			return fmt.Errorf("creating network namespace %q: %w", ns, err)
		}
		d.created = created
	}
	if d.created {
		_ = os.WriteFile(ownerPath(ns), []byte(strconv.Itoa(os.Getpid())), 0o600)
	}
	return nil
}

func readOwner(ns string) (int, bool) {
	b, err := os.ReadFile(ownerPath(ns))
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid, err == nil
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// takeControlSocket listens on the control socket, removing a stale one
// (left by a daemon that was killed) and refusing to start when a live
// daemon answers there.
func (d *Daemon) takeControlSocket() error {
	path := d.cfg.Control
	if _, err := os.Stat(path); err == nil {
		c, err := net.DialTimeout("unix", path, time.Second)
		if err == nil {
			c.Close()
			return fmt.Errorf("%w: %s answers; stop that daemon first, or choose another --name", ErrRunning, path)
		}
		_ = os.Remove(path)
	}
	old := syscall.Umask(0o077) // root only: the socket is created 0600
	l, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return fmt.Errorf("control socket %s: %w", path, err)
	}
	d.ctl = l
	return nil
}

// serveControl answers every connection with the counters as JSON.
func (d *Daemon) serveControl() {
	for {
		c, err := d.ctl.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			_ = json.NewEncoder(c).Encode(d.Stats())
		}()
	}
}

// ReadStats asks a running daemon for its counters over its control
// socket: what `vnic stat` does.
func ReadStats(path string) (Stats, error) {
	var s Stats
	c, err := net.DialTimeout("unix", path, 2*time.Second)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
			return s, fmt.Errorf("no vnic daemon at %s: is `vnic up` running (with the same --name/--netns)?", path)
		}
		if errors.Is(err, os.ErrPermission) {
			return s, fmt.Errorf("%s: the control socket is root's; run vnic stat with sudo", path)
		}
		return s, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if err := json.NewDecoder(c).Decode(&s); err != nil {
		return s, fmt.Errorf("reading %s: %w", path, err)
	}
	return s, nil
}

// watchGRO follows the interface's generic-receive-offload feature, so that
// `ethtool -K NAME gro off` stops the NIC from coalescing what it hands the
// kernel, while it runs.
func (d *Daemon) watchGRO(ctx context.Context) error {
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	first := make(chan error, 1)
	var once sync.Once
	go func() {
		err := ethtool.Watch(wctx, d.cfg.Netns, d.cfg.Name, func(f map[string]bool) {
			on, ok := f["rx-gro"] // ethtool -K DEV gro on|off
			if ok {
				d.nic.setGRO(on)
				d.log.Info("following ethtool", "gro", on)
			}
			once.Do(func() { first <- nil })
		})
		once.Do(func() { first <- err })
		if err != nil && wctx.Err() == nil {
			d.log.Warn("stopped following ethtool -K gro", "err", err)
		}
	}()
	d.closers = append(d.closers, cancel)
	return <-first
}
