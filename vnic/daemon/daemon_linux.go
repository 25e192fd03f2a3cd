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
	"syscall"
	"time"

	"github.com/gopacket/gopacket/layers"
	"golang.org/x/sys/unix"

	"vnic/vnic/afpacket"
	"vnic/vnic/capture"
	"vnic/vnic/nic"
	"vnic/vnic/nsutil"
	"vnic/vnic/peer"
	"vnic/vnic/vxlan"
)

// Errors Run returns for a machine that cannot host a vnic, to be tested
// with errors.Is; the messages say what to do.
var (
	ErrNotRoot = errors.New("vnic up needs root") // the error says what the process lacks
	ErrNoTUN   = errors.New("no /dev/net/tun")
	ErrRunning = errors.New("a vnic daemon already serves this interface")
)

// Daemon is a running vnic: the NIC in its namespace and the far end of
// its wire (the gVisor peer, or a second NIC in another namespace).
type Daemon struct {
	cfg     Config
	log     *slog.Logger
	nic     *nic.NIC // the NIC in cfg.Netns
	far     *nic.NIC // the far NIC of a netns: wire
	peer    *peer.Peer
	dev     *afpacket.Wire // a dev: wire
	vx      *vxlan.Wire    // a vxlan: wire
	pcap    *capture.Writer
	ctl     net.Listener
	netns   []*nsutil.Lease // the named namespaces this daemon uses
	closers []func()
	done    chan error
	started time.Time
}

// Start brings a vnic up: namespaces, the NIC (TUN device with offloads,
// addresses), the far end (the gVisor peer, or a second NIC), capture and
// control socket, then the data path. Stop it with Close.
func Start(ctx context.Context, cfg Config) (_ *Daemon, err error) {
	if err := cfg.Normalize(); err != nil {
		return nil, err
	}
	if err := preflight(cfg); err != nil {
		return nil, err
	}
	d := &Daemon{cfg: cfg, log: cfg.Logger.With("dev", cfg.Name), done: make(chan error, 2), started: time.Now()}
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
	far := cfg.FarNetns()
	for _, ns := range []string{cfg.Netns, far} {
		if ns != "" && !nsutil.IsPath(ns) {
			if err := d.enterNetns(ns); err != nil {
				return nil, err
			}
		}
	}

	names := []string{cfg.Name}
	if far != "" {
		names = []string{capName(cfg.Netns, "a", cfg.Name), capName(far, "b", cfg.Name)}
	}
	if cfg.Pcap != "" {
		co := capture.Options{Ifnames: names, Snaplen: cfg.Snaplen, Logger: d.log,
			PointFile: capture.PointPath(cfg.Pcap, far != "")}
		if cfg.Mode == ModeTAP {
			co.LinkType = layers.LinkTypeEthernet
		}
		d.pcap, err = capture.Create(cfg.Pcap, co)
		if err != nil {
			return nil, fmt.Errorf("--pcap %s: %w", cfg.Pcap, err)
		}
		d.closers = append(d.closers, func() {
			if err := d.pcap.Close(); err != nil {
				d.log.Warn("closing the pcap", "err", err)
			}
		})
	}
	// Every NIC is on the daemon's live tap (vnic capture, the Wireshark
	// extcap), recorded there only while someone watches.
	tap, terr := capture.ListenTap(capture.TapPath(strings.TrimSuffix(filepath.Base(cfg.Control), ".sock")),
		"vnic up "+cfg.Name+" netns "+cfg.Netns, d.log)
	if terr != nil {
		d.log.Warn("no live capture (vnic capture, the Wireshark extcap)", "err", terr)
	}
	d.closers = append(d.closers, func() { _ = tap.Close() })
	caps := make([]*capture.NIC, len(names))
	for i, name := range names {
		if caps[i] = d.pcap.NIC(name); caps[i] == nil {
			caps[i] = capture.NewNIC(name)
		}
		if cfg.Mode == ModeTAP {
			caps[i].SetLinkType(layers.LinkTypeEthernet) // the live tap's too
		}
		tap.Add(caps[i], name)
	}
	opt := cfg.nicOptions()
	opt.Capture = caps[0]
	if d.nic, err = nic.Open(ctx, opt); err != nil {
		return nil, withNetns(err, cfg.Netns)
	}
	d.closers = append(d.closers, d.closeNIC(d.nic))

	switch {
	case cfg.Dev() != "":
		// The interface lives in the daemon's own namespace.
		if d.dev, err = afpacket.Open(afpacket.Config{Dev: cfg.Dev(), MTU: cfg.MTU, Logger: d.log}); err != nil {
			return nil, err
		}
		d.closers = append(d.closers, func() { _ = d.dev.Close() })
		d.nic.Connect(d.dev)
		d.dev.Start(d.nic)
	case cfg.VXLAN() != nil:
		vc := *cfg.VXLAN()
		vc.Logger = d.log
		// The underlay socket lives in the daemon's own namespace.
		if d.vx, err = vxlan.Open(vc); err != nil {
			return nil, err
		}
		d.closers = append(d.closers, func() { _ = d.vx.Close() })
		d.nic.Connect(d.vx)
		d.vx.Start(d.nic)
	case far != "":
		fo := opt
		fo.Netns, fo.Addrs, fo.Capture = far, cfg.farPrefixes(), caps[1]
		fo.MAC = nil // its own address, derived from its namespace
		fo.Logger = cfg.Logger.With("end", "far")
		if d.far, err = nic.Open(ctx, fo); err != nil {
			return nil, withNetns(err, far)
		}
		d.closers = append(d.closers, d.closeNIC(d.far))
		d.nic.Connect(d.far)
		d.far.Connect(d.nic)
	default:
		gso := uint32(peer.MaxGSOSize)
		if cfg.NoPeerGSO {
			gso = 0
		}
		d.peer, err = peer.New(peer.Options{
			Addrs:      cfg.farPrefixes(),
			MTU:        uint32(cfg.MTU),
			GSOMaxSize: gso,
			// The peer's packets are checksummed by gVisor or by segment,
			// with nothing on the wire in between: GRO trusts them.
			Output:     d.nic.OutputChecked,
			Logger:     d.log.With("host", "peer"),
			OnLinkOnly: true,
			// The peer host's NIC coalesces too, as a Linux receiver's
			// would: gVisor's per-packet receive path is the most
			// expensive step of an upload (profiled: 60% of the daemon's
			// CPU at 1448 bytes a packet), and GRO halves it.
			GRO: true,
			MAC: peerMAC(cfg),
		})
		if err != nil {
			return nil, fmt.Errorf("starting the gVisor peer: %w", err)
		}
		d.closers = append(d.closers, func() { _ = d.peer.Close() })
		d.nic.Connect(d.peer)
	}

	go d.serveControl()
	for _, n := range []*nic.NIC{d.nic, d.far} {
		if n != nil {
			n.Start()
			go func() { d.done <- <-n.Done() }()
		}
	}
	d.log.Info("vnic up", "netns", cfg.Netns, "mode", cfg.Mode, "addrs", cfg.Addrs, "wire", cfg.Wire, "far", cfg.Peer, "mtu", cfg.MTU,
		"hw_mtu", cfg.HWMTU, "pcap", cfg.Pcap, "control", cfg.Control)
	return d, nil
}

// peerMAC is the gVisor peer's hardware address on a TAP NIC's wire
// (nil for a TUN's): derived like a NIC's, from the namespace and name.
func peerMAC(cfg Config) net.HardwareAddr {
	if cfg.Mode != ModeTAP {
		return nil
	}
	return nic.DefaultMAC(cfg.Netns, "peer\x00"+cfg.Name)
}

// capName is a NIC's name in the capture of a netns: wire: its
// namespace's name (or side, for a namespace given by path) and the
// interface name.
func capName(netns, side, name string) string {
	if netns == "" {
		return "host." + name
	}
	if nsutil.IsPath(netns) {
		return side + "." + name
	}
	return netns + "." + name
}

// withNetns names the namespace in an error that does not.
func withNetns(err error, ns string) error {
	if ns == "" || strings.Contains(err.Error(), ns) {
		return err
	}
	return fmt.Errorf("in namespace %s: %w", ns, err)
}

// closeNIC closes n and waits (briefly) for its transmit loop to stop.
func (d *Daemon) closeNIC(n *nic.NIC) func() {
	return func() { _ = n.Close() }
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

// Done receives the data path's error when it stops by itself (it also
// receives one after Close).
func (d *Daemon) Done() <-chan error { return d.done }

// Close tears everything down: data path, far end, capture (flushed),
// devices, control socket, and each named namespace vnic created that no
// other vnic daemon uses.
func (d *Daemon) Close() error {
	d.teardown()
	return nil
}

func (d *Daemon) teardown() {
	// In reverse: the peer (its output goroutine writes into the NIC) or
	// the far NIC, then the NIC (its device unblocks the transmit loop),
	// then the capture, which flushes what they recorded.
	for i := len(d.closers) - 1; i >= 0; i-- {
		d.closers[i]()
	}
	d.closers = nil
	if d.ctl != nil {
		_ = d.ctl.Close() // removes the socket, if still ours
		d.ctl = nil
	}
	for i := len(d.netns) - 1; i >= 0; i-- {
		if _, err := d.netns[i].Release(); err != nil {
			d.log.Warn("removing the namespace", "netns", d.netns[i].Name(), "err", err)
		}
	}
	d.netns = nil
}

// Stats returns a snapshot of every counter.
func (d *Daemon) Stats() Stats {
	s := Stats{Stats: d.nic.Stats(), Wire: d.cfg.Wire}
	if d.far != nil {
		f := d.far.Stats()
		s.Far = &f
	}
	if d.peer != nil {
		p := d.peer.Stats()
		s.Peer = &p
	}
	if d.dev != nil {
		w := d.dev.Stats()
		s.Dev = &w
	}
	if d.vx != nil {
		w := d.vx.Stats()
		s.VXLAN = &w
	}
	if d.pcap != nil {
		c := d.pcap.Stats()
		s.Capture = &c
	}
	return s
}

// Config returns the normalized configuration.
func (d *Daemon) Config() Config { return d.cfg }

// preflight checks that this machine and process can run cfg.
func preflight(cfg Config) error {
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		return fmt.Errorf("%w: load the TUN driver with `modprobe tun` (in a container, pass --device /dev/net/tun)", ErrNoTUN)
	}
	if os.Geteuid() == 0 {
		return nil
	}
	if missing := missingPrivileges(cfg); len(missing) > 0 {
		return fmt.Errorf("%w: run it as root, e.g. with sudo (this process lacks %s)", ErrNotRoot, strings.Join(missing, "; "))
	}
	return nil
}

// missingPrivileges lists what a process that is not root lacks to run
// cfg. Tried as nobody: with CAP_NET_ADMIN alone the control socket in
// /run/vnic (root's, 0700) cannot be made; a namespace needs CAP_SYS_ADMIN
// (setns; for a name also unshare and the mount under /run/netns, which
// must be writable); /dev/net/tun may be root's only. CAP_NET_ADMIN,
// CAP_SYS_ADMIN and CAP_DAC_OVERRIDE together work — and make the binary
// root for anyone who can run it, so the advice is sudo.
func missingPrivileges(cfg Config) []string {
	var missing, paths []string
	if !hasCap(unix.CAP_NET_ADMIN) {
		missing = append(missing, "CAP_NET_ADMIN")
	}
	netns, named := false, false
	for _, ns := range []string{cfg.Netns, cfg.FarNetns()} {
		netns = netns || ns != ""
		named = named || ns != "" && !nsutil.IsPath(ns)
	}
	if netns && !hasCap(unix.CAP_SYS_ADMIN) {
		missing = append(missing, "CAP_SYS_ADMIN (for --netns, --wire netns:B)")
	}
	writable := func(p string) bool {
		return unix.Faccessat(unix.AT_FDCWD, p, unix.W_OK, unix.AT_EACCESS) == nil
	}
	need := []string{"/dev/net/tun", RunDir}
	if named {
		need = append(need, nsutil.RunDir)
	}
	for _, p := range need {
		q := p
		if _, err := os.Stat(p); err != nil {
			q = filepath.Dir(p) // vnic makes it
		}
		if !writable(q) {
			paths = append(paths, p)
		}
	}
	if len(paths) > 0 {
		missing = append(missing, "write access to "+strings.Join(paths, ", "))
	}
	return missing
}

// hasCap reports whether the process has capability c in its effective
// set (CapEff in /proc/self/status).
func hasCap(c int) bool {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && caps&(1<<c) != 0
		}
	}
	return false
}

// enterNetns takes the named namespace ns: creates it if missing, or
// joins one vnic created (adopting it if the daemons that used it died).
// The last vnic daemon to leave a namespace vnic created removes it; one
// vnic did not create (ip netns add, or a name deleted and made anew by
// someone else) stays. See nsutil.Use.
func (d *Daemon) enterNetns(ns string) error {
	l, err := nsutil.Use(ns, "vnic up --name "+d.cfg.Name)
	if err != nil {
		return fmt.Errorf("network namespace %q: %w", ns, err)
	}
	d.netns = append(d.netns, l)
	switch r := l.Record(); {
	case l.Adopted():
		d.log.Info("adopting a namespace left by a daemon that died", "netns", r.Name, "pid", r.PID, "by", r.By)
	case !l.Owned():
		d.log.Info("using a namespace vnic did not create: it stays on exit", "netns", ns)
	}
	return nil
}

// takeControlSocket listens on the control socket, replacing a stale one
// (left by a daemon of ours that was killed), refusing to start when a
// live daemon answers there, and touching nothing else at the path (see
// listenControl).
func (d *Daemon) takeControlSocket() error {
	l, err := listenControl(d.cfg.Control)
	if err != nil {
		return err
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
