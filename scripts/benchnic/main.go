// Command benchnic measures TCP throughput through the whole NIC — kernel
// TCP in a namespace, the TUN with offloads, the daemon's engine, the gVisor
// peer — against its references, in one run, back to back (root only):
//
//   - vnic:      our engine (segment/coalesce), host → peer discard (port 9)
//     and peer chargen (port 19) → host;
//   - wireguard: the same with daemon.Config{Engine: "wireguard"}
//     (wireguard-go's own GSO split and GRO);
//   - veth:      a plain veth pair between two namespaces, offloads on
//     (kernel defaults: TSO/GSO on), with iperf3 when installed, else
//     vnic/traffic against a small Go discard/chargen server;
//   - vnic+pcap: our engine recording host-tx, wire and host-rx to a
//     pcapng file (single stream only, to keep the run short);
//   - direct wire: two namespaces, a vnic NIC (our engine) in each, joined
//     by a direct wire (daemon.OpenNIC + Connect, as vnic/lab does): the
//     headline path; vnic/traffic in A against a Go discard/chargen server
//     in B;
//   - direct wire, wireguard-go: the same direct wire with wireguard-go's
//     tun package in both NICs (NICConfig.Engine "wireguard"): the
//     reference engine for the headline ratio;
//   - via router: the same two NICs with the gVisor router (vnic/router)
//     between them (-router-gro sets its GRO).
//
// The NIC↔NIC rows run -wire-time each (default 10 s); their NICs, wire and
// router live in a child process ("wire" mode, see wire.go) whose CPU is
// the daemon column, and which serves both NICs' counters on a unix socket.
// Every daemon row also reports the packets per second on the host NIC's
// wire (out + in, from the daemon's counters).
//
// After the throughput rounds: ping round-trip times (system ping, 20 × 50
// ms) idle and during a one-stream transfer, for veth, vnic→peer, the
// direct wire and the router; each child's CPU over 5 s with no traffic;
// and the scale test (-scale N, default 64): N direct-wire pairs, each in
// its own two namespaces, brought up at once in one child process, with
// the time to bring them up, RSS and Go heap per idle pair, one ping
// through each, and the teardown. Then the ratios against the targets
// (direct ≥ 1.5 × the wireguard-go direct wire and ≥ 0.70 × veth, its
// daemon CPU per GB ≤ wireguard-go's, router and peer paths ≥ 0.5 × direct,
// capture on ≥ 0.8 × off), each marked met or not.
//
// Each cell (path × direction × streams) is measured -runs times for -time
// each; the rounds are interleaved (vnic, wireguard, veth, vnic, …) so that
// drift of the machine hits every path alike; the capture runs come last
// (their file writeback would otherwise disturb the others).
//
// Who pays for what: each daemon runs as a child process — this program
// re-executed in daemon mode, which calls daemon.Run exactly as `vnic up`
// does — so its CPU time (utime+stime of /proc/<pid>/stat, all its threads,
// including the kernel work its TUN reads and writes do) is the daemon's
// alone; the TCP sender/receiver (vnic/traffic) runs in this process and is
// not counted there. "system CPU" is the busy time of all cores from
// /proc/stat over the run: sender, receiver, kernel and daemon together, the
// one figure comparable with the veth reference, which has no daemon.
//
// The table goes to stdout and to -out (bench/daemon.txt). Every namespace
// this program creates is removed at the end, also on error or Ctrl-C;
// children are stopped by PID (SIGTERM, then SIGKILL after 10 s).
//
// With -profile DIR it only profiles: a child daemon (our engine, and the
// wireguard one) runs with a CPU profile during one Send and one Receive
// of -time each, written to DIR/{vnic,wireguard}-{send,recv}.pprof, and
// likewise the NIC↔NIC children (DIR/wire-{direct,direct-wg,router}-*.pprof);
// -profile-only picks some of them. Read them with `go tool pprof -top FILE`.
//
// Usage: sudo go run ./scripts/benchnic [-runs 3] [-time 10s] [-wire-time 10s] [-scale 64] [-out bench/daemon.txt]
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"vnic/vnic/daemon"
	"vnic/vnic/nic"
	"vnic/vnic/nsutil"
	"vnic/vnic/traffic"
)

// childEnv switches the re-executed program into daemon mode.
const childEnv = "BENCHNIC_CHILD"

// nsPrefix starts every namespace this program creates, followed by its
// PID, so that a later run can remove what a killed one left behind.
const nsPrefix = "vnic-bn-"

const (
	peerDiscard = "198.18.0.2:9"
	peerChargen = "198.18.0.2:19"
	vethA       = "198.19.0.1/24"
	vethB       = "198.19.0.2/24"
	iperfPort   = "5201"
)

func init() {
	// Children get Pdeathsig (SIGTERM when we die); Linux ties it to the
	// thread that forked them, so they are all started from the main
	// goroutine, kept on the main thread for the whole run.
	runtime.LockOSThread()
}

func main() {
	switch os.Getenv(childEnv) {
	case "daemon":
		os.Exit(childDaemon(os.Args[1:]))
	case "wire":
		os.Exit(childWire(os.Args[1:]))
	case "relay":
		os.Exit(childRelay(os.Args[1:]))
	}
	os.Exit(run())
}

// childDaemon is `vnic up` for one engine: daemon.Run until SIGTERM.
func childDaemon(args []string) int {
	fs := flag.NewFlagSet("daemon", flag.ContinueOnError)
	var cfg daemon.Config
	fs.StringVar(&cfg.Netns, "netns", "", "")
	engine := fs.String("engine", string(daemon.EngineVNIC), "")
	fs.StringVar(&cfg.Wire, "wire", "", "")
	fs.StringVar(&cfg.Pcap, "pcap", "", "")
	fs.IntVar(&cfg.Snaplen, "snaplen", 0, "")
	prof := fs.String("cpuprofile", "", "")
	mode := fs.String("mode", "", "")
	addrs := fs.String("addr", "", "")
	fs.IntVar(&cfg.MTU, "mtu", 0, "")
	fs.StringVar(&cfg.Control, "control", "", "")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg.Engine = nic.Engine(*engine)
	cfg.Mode = nic.Mode(*mode)
	for _, a := range strings.Split(*addrs, ",") {
		if a != "" {
			cfg.Addrs = append(cfg.Addrs, netip.MustParsePrefix(a))
		}
	}
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	stopProfile, err := startCPUProfile(*prof)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer stopProfile()
	if err := daemon.Run(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "daemon:", err)
		return 1
	}
	return 0
}

// ---------------------------------------------------------------------
// Cleanup: everything created is registered here and undone in reverse
// order, once, whatever happens.

type cleanups struct {
	mu  sync.Mutex
	fns []func()
}

func (c *cleanups) add(f func()) {
	c.mu.Lock()
	c.fns = append(c.fns, f)
	c.mu.Unlock()
}

func (c *cleanups) run() {
	c.mu.Lock()
	fns := c.fns
	c.fns = nil
	c.mu.Unlock()
	for i := len(fns) - 1; i >= 0; i-- {
		fns[i]()
	}
}

// removeNetns deletes a namespace of ours if it is still there.
func removeNetns(name string) {
	if nsutil.Exists(name) {
		if err := nsutil.Delete(name); err != nil {
			fmt.Fprintf(os.Stderr, "benchnic: removing netns %s: %v\n", name, err)
		}
	}
	// What a killed daemon leaves in /run/vnic.
	os.Remove(nsutil.RecordPath(name))
	os.Remove(daemon.ControlPath(name, "vnic0"))
}

// removeLeftovers deletes namespaces of earlier runs whose process is gone.
func removeLeftovers() {
	ents, _ := os.ReadDir(nsutil.RunDir)
	for _, e := range ents {
		rest, ok := strings.CutPrefix(e.Name(), nsPrefix)
		if !ok {
			continue
		}
		pidStr, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			fmt.Fprintf(os.Stderr, "benchnic: removing leftover netns %s (pid %d is gone)\n", e.Name(), pid)
			removeNetns(e.Name())
		}
	}
}

// ---------------------------------------------------------------------
// Child processes, stopped by PID.

type child struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
	log  string
}

// startChild starts argv with its output in logPath (and its stdout also
// into out, if not nil), in its own process group (a terminal's Ctrl-C
// reaches us, and we stop it), with SIGTERM should we die.
func startChild(name string, argv, env []string, logPath string, out io.Writer) (*child, error) {
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = lf, lf
	if out != nil {
		cmd.Stdout = io.MultiWriter(lf, out)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, done: make(chan struct{}), log: logPath}
	go func() {
		c.err = cmd.Wait()
		lf.Close()
		close(c.done)
	}()
	return c, nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the child's PID, waits up to 10 s, then SIGKILL.
func (c *child) stop() {
	if c.exited() {
		return
	}
	syscall.Kill(c.pid(), syscall.SIGTERM)
	select {
	case <-c.done:
		return
	case <-time.After(10 * time.Second):
	}
	fmt.Fprintf(os.Stderr, "benchnic: %s (pid %d) ignored SIGTERM for 10s; SIGKILL\n", c.name, c.pid())
	syscall.Kill(c.pid(), syscall.SIGKILL)
	select {
	case <-c.done:
	case <-time.After(5 * time.Second):
	}
}

func (c *child) tail() string {
	b, _ := os.ReadFile(c.log)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return strings.TrimSpace(string(b))
}

// ---------------------------------------------------------------------
// CPU accounting.

const clkTck = 100 // USER_HZ: the unit of /proc/*/stat and /proc/stat

// procCPU returns utime+stime of a process (all its threads) in seconds.
func procCPU(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no ')'", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: short", pid)
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64) // field 14
	st, err2 := strconv.ParseUint(f[12], 10, 64) // field 15
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return float64(ut+st) / clkTck, nil
}

// systemBusy returns, from /proc/stat in seconds over all cores, the busy
// time (user, nice, system, irq, softirq, steal) and the part of it that
// tasks were charged for (user, nice, system: irq and softirq time is not
// charged to any task).
func systemBusy() (busy, tasks float64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return math.NaN(), math.NaN()
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return math.NaN(), math.NaN()
	}
	v := func(i int) float64 {
		x, _ := strconv.ParseUint(f[i], 10, 64)
		return float64(x) / clkTck
	}
	tasks = v(1) + v(2) + v(3)
	return tasks + v(6) + v(7) + v(8), tasks
}

// backgroundLoad measures how many cores are busy for one second while
// nothing of ours moves data: other processes on the machine.
func backgroundLoad(ctx context.Context) float64 {
	b0, _ := systemBusy()
	t0 := time.Now()
	select {
	case <-ctx.Done():
	case <-time.After(time.Second):
	}
	b1, _ := systemBusy()
	return (b1 - b0) / time.Since(t0).Seconds()
}

// selfCPU is this process's CPU time (the traffic generator).
func selfCPU() float64 {
	c, err := procCPU(os.Getpid())
	if err != nil {
		return math.NaN()
	}
	return c
}

// ---------------------------------------------------------------------
// Paths under test.

type direction int

const (
	send direction = iota // host → peer
	recv                  // peer → host
	both                  // both at once (iperf3 --bidir): the sum
)

func (d direction) String() string {
	switch d {
	case send:
		return "host→peer"
	case recv:
		return "peer→host"
	}
	return "both ways"
}

// sample is one measurement.
type sample struct {
	gbps      float64
	bytes     int64
	elapsed   time.Duration
	daemonCPU float64 // seconds; NaN when the path has no daemon
	appCPU    float64 // seconds: the traffic generator (sender and receiver applications)
	sysCPU    float64 // seconds, all cores
	others    float64 // cores kept busy by tasks not ours, on average
	pps       float64 // packets on the host NIC's wire (out + in) per second; NaN when unknown
}

// path is one thing to measure.
type path struct {
	name string
	// transfer moves data for dur in direction d over streams streams.
	transfer func(ctx context.Context, d direction, streams int, dur time.Duration) (bytes int64, elapsed time.Duration, err error)
	// daemon is the daemon's process, nil for none; also are more
	// daemons whose CPU counts with it (the two ends of a VXLAN wire).
	daemon *child
	also   []*child
	// appCPU is the cumulative CPU time of the applications at both ends
	// (default: this process's, where vnic/traffic runs).
	appCPU func() float64
	note   string
	// wirePkts returns the packets on the host NIC's wire so far (out +
	// in), nil for no wire.
	wirePkts func() (uint64, error)
	// ns, pingAddr: for the latency runs, ping pingAddr from ns during a
	// one-stream transfer ("" ns: not measured).
	ns, pingAddr string
}

func (p *path) measure(ctx context.Context, d direction, streams int, dur time.Duration) (sample, error) {
	s := sample{daemonCPU: math.NaN(), pps: math.NaN()}
	var c0 float64
	var w0 uint64
	var werr error
	if p.wirePkts != nil {
		w0, werr = p.wirePkts()
	}
	if p.daemon != nil {
		for _, d := range append([]*child{p.daemon}, p.also...) {
			if d.exited() {
				return s, fmt.Errorf("%s: the daemon exited: %v\n%s", p.name, d.err, d.tail())
			}
			c, err := procCPU(d.pid())
			if err != nil {
				return s, err
			}
			c0 += c
		}
	}
	app := p.appCPU
	if app == nil {
		app = selfCPU
	}
	a0 := app()
	sys0, tasks0 := systemBusy()
	t0 := time.Now()
	n, el, err := p.transfer(ctx, d, streams, dur)
	wall := time.Since(t0)
	sys1, tasks1 := systemBusy()
	s.sysCPU = sys1 - sys0
	s.appCPU = app() - a0
	ours := s.appCPU
	if p.daemon != nil {
		var c1 float64
		var cerr error
		for _, d := range append([]*child{p.daemon}, p.also...) {
			c, err := procCPU(d.pid())
			c1 += c
			cerr = errors.Join(cerr, err)
		}
		if cerr == nil {
			s.daemonCPU = c1 - c0
			ours += s.daemonCPU
		}
	}
	s.others = math.Max(0, (tasks1-tasks0)-ours) / wall.Seconds()
	if err != nil {
		return s, fmt.Errorf("%s %v ×%d: %w", p.name, d, streams, err)
	}
	s.bytes, s.elapsed = n, el
	if p.wirePkts != nil && werr == nil {
		if w1, err := p.wirePkts(); err == nil {
			s.pps = float64(w1-w0) / wall.Seconds()
		}
	}
	if el > 0 {
		s.gbps = float64(n) * 8 / el.Seconds() / 1e9
	}
	return s, nil
}

// env is the run's shared state.
type env struct {
	tmp      string
	cleanups *cleanups
}

// startDaemon starts a child daemon in a new namespace and waits until its
// control socket answers.
func (e *env) startDaemon(ctx context.Context, tag, engine, pcap string, snaplen int, cpuprofile string, extra ...string) (*child, string, error) {
	ns := fmt.Sprintf("%s%d-%s", nsPrefix, os.Getpid(), tag)
	removeNetns(ns)
	exe, err := os.Executable()
	if err != nil {
		return nil, "", err
	}
	argv := []string{exe, "-netns", ns, "-engine", engine}
	if pcap != "" {
		argv = append(argv, "-pcap", pcap, "-snaplen", strconv.Itoa(snaplen))
	}
	if cpuprofile != "" {
		argv = append(argv, "-cpuprofile", cpuprofile)
	}
	argv = append(argv, extra...)
	c, err := startChild("daemon "+tag, argv, []string{childEnv + "=daemon"}, filepath.Join(e.tmp, tag+".log"), nil)
	if err != nil {
		return nil, "", err
	}
	e.cleanups.add(func() { removeNetns(ns) })
	e.cleanups.add(c.stop)
	control := daemon.ControlPath(ns, "vnic0")
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := daemon.ReadStats(control); err == nil {
			return c, ns, nil
		}
		if c.exited() {
			return nil, "", fmt.Errorf("daemon %s exited: %v\n%s", tag, c.err, c.tail())
		}
		if time.Now().After(deadline) {
			return nil, "", fmt.Errorf("daemon %s: no answer on %s after 30s\n%s", tag, control, c.tail())
		}
		select {
		case <-ctx.Done():
			return nil, "", ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// daemonPath is a path through a child daemon, driven by vnic/traffic.
func (e *env) daemonPath(ctx context.Context, name, tag, engine, pcap string, snaplen int) (*path, error) {
	c, ns, err := e.startDaemon(ctx, tag, engine, pcap, snaplen, "")
	if err != nil {
		return nil, err
	}
	control := daemon.ControlPath(ns, "vnic0")
	p := &path{name: name, daemon: c, ns: ns, pingAddr: "198.18.0.2"}
	p.wirePkts = func() (uint64, error) {
		s, err := daemon.ReadStats(control)
		return s.WireOut.Packets + s.WireIn.Packets, err
	}
	p.transfer = func(ctx context.Context, d direction, streams int, dur time.Duration) (int64, time.Duration, error) {
		o := traffic.Options{Netns: ns, Duration: dur, Streams: streams}
		if d == send {
			before, err := daemon.ReadStats(control)
			if err != nil {
				return 0, 0, err
			}
			o.Addr = peerDiscard
			r, err := traffic.Send(ctx, o)
			if err != nil {
				return 0, 0, err
			}
			after, err := daemon.ReadStats(control)
			if err != nil {
				return 0, 0, err
			}
			// The discard service must have counted every byte Send
			// reports (Send waits for it to close).
			if got := int64(after.Peer.Discarded - before.Peer.Discarded); got != r.Bytes {
				return 0, 0, fmt.Errorf("sent %d bytes but the peer discarded %d", r.Bytes, got)
			}
			return r.Bytes, r.Elapsed, nil
		}
		o.Addr = peerChargen
		r, err := traffic.Receive(ctx, o)
		return r.Bytes, r.Elapsed, err
	}
	return p, nil
}

// vethPair creates namespaces A and B joined by a veth pair (kernel
// default offloads: TSO/GSO on), 198.19.0.1/24 in A and 198.19.0.2/24 in B.
func (e *env) vethPair() (nsA, nsB string, err error) {
	nsA = fmt.Sprintf("%s%d-va", nsPrefix, os.Getpid())
	nsB = fmt.Sprintf("%s%d-vb", nsPrefix, os.Getpid())
	for _, ns := range []string{nsA, nsB} {
		removeNetns(ns)
		if _, err := nsutil.Create(ns); err != nil {
			return "", "", err
		}
		e.cleanups.add(func() { removeNetns(ns) })
	}
	hA, err := nsutil.Handle(nsA)
	if err != nil {
		return "", "", err
	}
	defer hA.Close()
	hB, err := nsutil.Handle(nsB)
	if err != nil {
		return "", "", err
	}
	defer hB.Close()
	fdB, err := netns.GetFromName(nsB)
	if err != nil {
		return "", "", err
	}
	defer fdB.Close()
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "bn-a", MTU: 1500, TxQLen: 1000}, PeerName: "bn-b", PeerNamespace: netlink.NsFd(int(fdB))}
	if err := hA.LinkAdd(v); err != nil {
		return "", "", fmt.Errorf("ip link add bn-a type veth peer bn-b netns %s: %w", nsB, err)
	}
	if err := nsutil.ConfigureLink(hA, "bn-a", nsutil.LinkConfig{Addrs: []netip.Prefix{netip.MustParsePrefix(vethA)}, Up: true}); err != nil {
		return "", "", err
	}
	if err := nsutil.ConfigureLink(hB, "bn-b", nsutil.LinkConfig{Addrs: []netip.Prefix{netip.MustParsePrefix(vethB)}, Up: true}); err != nil {
		return "", "", err
	}
	return nsA, nsB, nil
}

// vethPath is the reference: iperf3 over the veth pair when installed,
// else vnic/traffic against a Go discard/chargen server in B.
func (e *env) vethPath(ctx context.Context, tool string) (*path, error) {
	nsA, nsB, err := e.vethPair()
	if err != nil {
		return nil, err
	}
	server := netip.MustParsePrefix(vethB).Addr().String()
	if tool == "auto" {
		tool = "go"
		if _, err := exec.LookPath("iperf3"); err == nil {
			tool = "iperf3"
		}
	}
	p := &path{name: "veth (" + tool + ")"}
	defer func() { p.ns, p.pingAddr = nsA, server }()
	switch tool {
	case "iperf3":
		if err := e.iperf3(ctx, p, "veth", nsA, nsB, server); err != nil {
			return nil, err
		}
	case "go":
		stop, err := goServer(nsB, server)
		if err != nil {
			return nil, err
		}
		e.cleanups.add(stop)
		p.note = "vnic/traffic in A against a Go discard/chargen server in B (this process)"
		p.transfer = goTransfer(p.name, nsA, server).transfer
	default:
		return nil, fmt.Errorf("-veth-tool %q: auto, iperf3 or go", tool)
	}
	return p, nil
}

// iperf3 makes p an iperf3 path: a server (a child, -p iperfPort) on
// server in nsB, and for each transfer a client in nsA (-R for recv,
// --bidir for both); its bytes are what the receiver(s) got. appCPU is
// the server's and the finished clients' CPU.
func (e *env) iperf3(ctx context.Context, p *path, tag, nsA, nsB, server string) error {
	ip, err := exec.LookPath("ip")
	if err != nil {
		return fmt.Errorf("iperf3 needs `ip netns exec`: %w", err)
	}
	if _, err := exec.LookPath("iperf3"); err != nil {
		return fmt.Errorf("iperf3 not installed (make deps): %w", err)
	}
	srv, err := startChild("iperf3 server "+tag, []string{ip, "netns", "exec", nsB, "iperf3", "-s", "-B", server, "-p", iperfPort},
		nil, filepath.Join(e.tmp, "iperf3-server-"+tag+".log"), nil)
	if err != nil {
		return err
	}
	e.cleanups.add(srv.stop)
	// Ready when its socket listens (its stdout is block-buffered
	// into a file, so "Server listening" comes too late to wait for).
	for deadline := time.Now().Add(10 * time.Second); !listening(nsB, iperfPort); {
		if srv.exited() {
			return fmt.Errorf("iperf3 server exited: %v\n%s", srv.err, srv.tail())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("iperf3 server not listening after 10s\n%s", srv.tail())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	p.note = "iperf3 " + iperfVersion() + " client in A, server (pid " + strconv.Itoa(srv.pid()) + ") in B"
	var clientCPU float64 // of the finished clients
	p.appCPU = func() float64 {
		c, err := procCPU(srv.pid())
		if err != nil {
			return math.NaN()
		}
		return c + clientCPU
	}
	p.transfer = func(ctx context.Context, d direction, streams int, dur time.Duration) (int64, time.Duration, error) {
		secs := max(1, int(math.Round(dur.Seconds())))
		argv := []string{ip, "netns", "exec", nsA, "iperf3", "-c", server, "-p", iperfPort, "-t", strconv.Itoa(secs), "-P", strconv.Itoa(streams), "-J"}
		switch d {
		case recv:
			argv = append(argv, "-R")
		case both:
			argv = append(argv, "--bidir")
		}
		var out bytes.Buffer
		c, err := startChild("iperf3 client", argv, nil, filepath.Join(e.tmp, "iperf3-client-"+tag+".log"), &out)
		if err != nil {
			return 0, 0, err
		}
		defer c.stop()
		select {
		case <-c.done:
			if ps := c.cmd.ProcessState; ps != nil {
				clientCPU += (ps.UserTime() + ps.SystemTime()).Seconds()
			}
		case <-ctx.Done():
			return 0, 0, ctx.Err()
		case <-time.After(time.Duration(secs)*time.Second + 30*time.Second):
			return 0, 0, errors.New("iperf3 client did not finish in time")
		}
		type sum struct {
			Bytes   int64   `json:"bytes"`
			Seconds float64 `json:"seconds"`
		}
		var j struct {
			Error string `json:"error"`
			End   struct {
				SumReceived      sum `json:"sum_received"`
				SumReceivedBidir sum `json:"sum_received_bidir_reverse"`
			} `json:"end"`
		}
		if err := json.Unmarshal(out.Bytes(), &j); err != nil {
			return 0, 0, fmt.Errorf("iperf3 -J output: %v (exit %v)\n%s", err, c.err, c.tail())
		}
		if j.Error != "" || c.err != nil {
			return 0, 0, fmt.Errorf("iperf3: %s (exit %v)", j.Error, c.err)
		}
		sr := j.End.SumReceived
		return sr.Bytes + j.End.SumReceivedBidir.Bytes, time.Duration(sr.Seconds * float64(time.Second)), nil
	}
	return nil
}

func iperfVersion() string {
	out, err := exec.Command("iperf3", "--version").Output()
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(out))
	if len(f) >= 2 {
		return f[1]
	}
	return "?"
}

// listening reports whether a TCP socket listens on port inside ns
// (/proc/thread-self/net/tcp as that namespace sees it).
func listening(ns, port string) bool {
	p, _ := strconv.Atoi(port)
	want := fmt.Sprintf(":%04X ", p)
	found := false
	nsutil.Do(ns, func() error {
		b, err := os.ReadFile("/proc/thread-self/net/tcp")
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) > 3 && strings.HasSuffix(f[1]+" ", want) && f[3] == "0A" { // TCP_LISTEN
				found = true
			}
		}
		return err
	})
	return found
}

// goServer runs TCP discard (9) and chargen (19) on addr inside ns, in
// this process; stop closes everything.
func goServer(ns, addr string) (stop func(), err error) {
	var lns []net.Listener
	err = nsutil.Do(ns, func() error {
		for _, port := range []string{"9", "19"} {
			ln, err := net.Listen("tcp", net.JoinHostPort(addr, port))
			if err != nil {
				return err
			}
			lns = append(lns, ln)
		}
		return nil
	})
	if err != nil {
		for _, ln := range lns {
			ln.Close()
		}
		return nil, err
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	chargen := bytes.Repeat([]byte("0123456789abcdefghijklmnopqrstuvwxyz\r\n"), 3450) // ~128 KiB
	for i, ln := range lns {
		wg.Go(func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				mu.Lock()
				conns[c] = true
				mu.Unlock()
				wg.Go(func() {
					defer func() {
						c.Close()
						mu.Lock()
						delete(conns, c)
						mu.Unlock()
					}()
					if i == 0 {
						io.Copy(io.Discard, c)
						return
					}
					go io.Copy(io.Discard, c)
					for {
						if _, err := c.Write(chargen); err != nil {
							return
						}
					}
				})
			}
		})
	}
	return func() {
		for _, ln := range lns {
			ln.Close()
		}
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	}, nil
}

// ---------------------------------------------------------------------
// The run.

type cell struct {
	path    *path
	dir     direction
	streams int
	dur     time.Duration
	samples []sample
}

// ppsMedian is the median of the samples' wire packet rates (NaN: none).
func (c *cell) ppsMedian() float64 {
	var v []float64
	for _, s := range c.samples {
		if !math.IsNaN(s.pps) {
			v = append(v, s.pps)
		}
	}
	return medianOf(v)
}

func (c *cell) median() float64 {
	v := make([]float64, len(c.samples))
	for i, s := range c.samples {
		v[i] = s.gbps
	}
	sort.Float64s(v)
	if len(v) == 0 {
		return math.NaN()
	}
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

func (c *cell) spread() (lo, hi float64) {
	lo, hi = math.Inf(1), math.Inf(-1)
	for _, s := range c.samples {
		lo, hi = math.Min(lo, s.gbps), math.Max(hi, s.gbps)
	}
	return
}

// perGB returns CPU seconds per 10⁹ bytes moved, over all samples.
func (c *cell) perGB(cpu func(sample) float64) float64 {
	var secs float64
	var n int64
	for _, s := range c.samples {
		secs += cpu(s)
		n += s.bytes
	}
	if n == 0 {
		return math.NaN()
	}
	return secs / (float64(n) / 1e9)
}

// pcapSnaplen is -pcap-snaplen: the second capture row's
// daemon.Config.Snaplen (the first records whole packets).
var pcapSnaplen int

// pcapRowName names a capture row by its snap length.
func pcapRowName(snaplen int) string {
	if snaplen > 0 {
		return fmt.Sprintf("vnic+pcap s%d", snaplen)
	}
	return "vnic+pcap"
}

// pcapSnaplenText says what a capture row records of each packet.
func pcapSnaplenText(snaplen int) string {
	if snaplen > 0 {
		return fmt.Sprintf("snaplen %d: the first %d bytes of each packet", snaplen, snaplen)
	}
	return "snaplen 0: whole packets"
}

func run() int {
	runs := flag.Int("runs", 3, "measurements of each path, direction and stream count")
	dur := flag.Duration("time", 10*time.Second, "length of each measurement (vnic, wireguard, veth and capture rows)")
	out := flag.String("out", "bench/daemon.txt", "write the table here too (\"\" for stdout only)")
	vethTool := flag.String("veth-tool", "auto", "veth reference: iperf3, go (vnic/traffic against a Go server) or auto (iperf3 if installed)")
	noPcap := flag.Bool("no-pcap", false, "skip the capture-on runs")
	flag.IntVar(&pcapSnaplen, "pcap-snaplen", 128, "a second capture row recording this many bytes of each packet (daemon.Config.Snaplen, vnic up --snaplen; 128 keeps every IP and TCP header); 0 = only the whole-packet row")
	wireTime := flag.Duration("wire-time", 10*time.Second, "length of each measurement of the NIC↔NIC rows (direct wire, router)")
	routerGRO := flag.String("router-gro", "fixed", "the gVisor router's GRO on both interfaces: fixed (a Linux router's default: GRO on, merged packets forwarded whole with GSO) or off")
	scaleN := flag.Int("scale", 64, "direct-wire pairs to bring up at once in the scale test (0: skip)")
	noLatency := flag.Bool("no-latency", false, "skip the ping latency and idle CPU measurements")
	farend := flag.Bool("farend", false, "run the far-end suite instead: the vnic VXLAN wire against the kernel's VXLAN over the same veth underlay, and the dev: wire against a veth pair, with iperf3 (-time 8s, -out bench/farend.txt by default)")
	pair := flag.Bool("pair", false, "run the pair suite instead: vnic up --wire netns:B against the null TUN relay, the wireguard-go pair and veth, with iperf3 (-time 8s, -out bench/pair.txt by default)")
	profile := flag.String("profile", "", "instead of the benchmark: CPU-profile the daemon (both engines) during one Send and one Receive of -time each, into this directory")
	flag.StringVar(&profileOnly, "profile-only", "", "with -profile: only these paths, comma-separated (direct, direct-wg, router, vnic, wireguard)")
	flag.Parse()
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "benchnic: needs root (namespaces, TUN): sudo go run ./scripts/benchnic")
		return 1
	}
	if *runs < 1 || *dur < time.Second || *wireTime < time.Second {
		fmt.Fprintln(os.Stderr, "benchnic: -runs ≥ 1 and -time ≥ 1s")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()

	removeLeftovers()
	tmp, err := os.MkdirTemp("", "benchnic-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchnic:", err)
		return 1
	}
	e := &env{tmp: tmp, cleanups: &cleanups{}}
	e.cleanups.add(func() { os.RemoveAll(tmp) })
	defer e.cleanups.run()

	switch {
	case *farend:
		o := benchOptions{runs: *runs, dur: *dur, outPath: *out}
		if !isSet("time") {
			o.dur = 8 * time.Second
		}
		if !isSet("out") {
			o.outPath = "bench/farend.txt"
		}
		err = farendSuite(ctx, e, o)
	case *pair:
		o := benchOptions{runs: *runs, dur: *dur, outPath: *out}
		if !isSet("time") {
			o.dur = 8 * time.Second
		}
		if !isSet("out") {
			o.outPath = "bench/pair.txt"
		}
		err = pairSuite(ctx, e, o)
	case *profile != "":
		err = profileRun(ctx, e, *profile, *dur, *routerGRO)
	default:
		err = bench(ctx, e, benchOptions{runs: *runs, dur: *dur, wireDur: *wireTime, outPath: *out, vethTool: *vethTool,
			withPcap: !*noPcap, routerGRO: *routerGRO, scale: *scaleN, latency: !*noLatency})
	}
	if err != nil {
		if ctx.Err() != nil {
			fmt.Fprintln(os.Stderr, "benchnic: interrupted; cleaning up")
			return 130
		}
		fmt.Fprintln(os.Stderr, "benchnic:", err)
		return 1
	}
	return 0
}

type benchOptions struct {
	runs              int
	dur, wireDur      time.Duration
	outPath, vethTool string
	withPcap          bool
	routerGRO         string
	scale             int
	latency           bool
}

func bench(ctx context.Context, e *env, o benchOptions) error {
	runs, dur, outPath, vethTool, withPcap := o.runs, o.dur, o.outPath, o.vethTool, o.withPcap
	started := time.Now()
	progress := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "[%5.1fs] %s\n", time.Since(started).Seconds(), fmt.Sprintf(format, args...))
	}
	progress("starting the daemons, the NIC↔NIC children and the veth pair")
	direct, err := e.wirePath(ctx, "direct wire", "dw", "direct", o.routerGRO)
	if err != nil {
		return err
	}
	directWG, err := e.wirePath(ctx, "direct wire, wireguard-go", "dwg", "direct-wg", o.routerGRO)
	if err != nil {
		return err
	}
	viaRouter, err := e.wirePath(ctx, "via router", "rt", "router", o.routerGRO)
	if err != nil {
		return err
	}
	ours, err := e.daemonPath(ctx, "vnic", "vnic", string(daemon.EngineVNIC), "", 0)
	if err != nil {
		return err
	}
	wg, err := e.daemonPath(ctx, "wireguard", "wg", string(daemon.EngineWireGuard), "", 0)
	if err != nil {
		return err
	}
	veth, err := e.vethPath(ctx, vethTool)
	if err != nil {
		return err
	}
	// Capture rows: whole packets, and with -pcap-snaplen the headers only.
	type captureRow struct {
		p       *path
		tag     string
		snaplen int
		file    string
		stats   string
		bytes   int64
	}
	var caps []*captureRow
	if withPcap {
		for _, snap := range []int{0, pcapSnaplen} {
			if snap == 0 && len(caps) > 0 {
				continue
			}
			r := &captureRow{tag: fmt.Sprintf("pcap%d", snap), snaplen: snap, file: filepath.Join(e.tmp, fmt.Sprintf("bench-s%d.pcapng", snap))}
			if r.p, err = e.daemonPath(ctx, pcapRowName(snap), r.tag, string(daemon.EngineVNIC), r.file, snap); err != nil {
				return err
			}
			caps = append(caps, r)
		}
	}
	isCapture := func(p *path) bool {
		for _, r := range caps {
			if r.p == p {
				return true
			}
		}
		return false
	}

	bgBefore := backgroundLoad(ctx)
	progress("background load before: %.2f cores busy", bgBefore)

	dirs := []direction{send, recv}
	streamsList := []int{1, 4}
	var cells []*cell
	find := func(p *path, d direction, n int) *cell {
		for _, c := range cells {
			if c.path == p && c.dir == d && c.streams == n {
				return c
			}
		}
		return nil
	}
	for _, p := range []*path{direct, directWG, viaRouter, ours, wg, veth} {
		cd := dur
		if p == direct || p == directWG || p == viaRouter {
			cd = o.wireDur
		}
		for _, d := range dirs {
			for _, n := range streamsList {
				cells = append(cells, &cell{path: p, dir: d, streams: n, dur: cd})
			}
		}
	}
	for _, r := range caps {
		for _, d := range dirs {
			cells = append(cells, &cell{path: r.p, dir: d, streams: 1, dur: dur})
		}
	}

	// Warm-up: one short transfer each way through every path.
	warm := []*path{direct, directWG, viaRouter, ours, wg, veth}
	for _, r := range caps {
		warm = append(warm, r.p)
	}
	for _, p := range warm {
		if p == nil {
			continue
		}
		for _, d := range dirs {
			if _, err := p.measure(ctx, d, 1, time.Second); err != nil {
				return fmt.Errorf("warm-up: %w", err)
			}
		}
	}

	measure := func(c *cell, r int) error {
		s, err := c.path.measure(ctx, c.dir, c.streams, c.dur)
		if err != nil {
			return err
		}
		c.samples = append(c.samples, s)
		progress("run %d/%d %-12s %v ×%d: %6.2f Gbit/s", r+1, runs, c.path.name, c.dir, c.streams, s.gbps)
		return nil
	}
	for r := range runs {
		for _, c := range cells {
			if !isCapture(c.path) {
				if err := measure(c, r); err != nil {
					return err
				}
			}
		}
	}
	// Latency and idle CPU, before the capture runs (their writeback).
	var lats []latency
	type idleCPU struct {
		name string
		cpu  float64
	}
	var idles []idleCPU
	var idleSecs float64
	if o.latency {
		for _, p := range []*path{veth, ours, direct, viaRouter} {
			l := measureLatency(ctx, p)
			progress("latency %-14s idle median %.3f ms (%d lost), under load %.3f ms (%d lost, load %.2f Gbit/s)",
				p.name, medianOf(l.idle), l.lostI, medianOf(l.loaded), l.lostL, l.loadGbps)
			lats = append(lats, l)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		progress("idle CPU: 5 s with no traffic")
		kids := []*path{ours, wg, direct, directWG, viaRouter}
		c0 := make([]float64, len(kids))
		for i, p := range kids {
			c0[i], _ = procCPU(p.daemon.pid())
		}
		t0 := time.Now()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Second):
		}
		idleSecs = time.Since(t0).Seconds()
		for i, p := range kids {
			c1, err := procCPU(p.daemon.pid())
			if err != nil {
				c1 = math.NaN()
			}
			idles = append(idles, idleCPU{p.name, c1 - c0[i]})
		}
	}

	for _, cr := range caps {
		for r := range runs {
			for _, c := range cells {
				if c.path == cr.p {
					if err := measure(c, r); err != nil {
						return err
					}
					// Write the run's file out now, outside the timed
					// window, so that its writeback does not slow the
					// next run down.
					syscall.Sync()
				}
			}
		}
		if st, err := daemon.ReadStats(daemon.ControlPath(fmt.Sprintf("%s%d-%s", nsPrefix, os.Getpid(), cr.tag), "vnic0")); err == nil && st.Capture != nil {
			cr.stats = fmt.Sprintf("%d packets written (%.1f GB), %d dropped by the capture queue", st.Capture.Written, float64(st.Capture.Bytes)/1e9, st.Capture.Dropped)
		}
		if fi, err := os.Stat(cr.file); err == nil {
			cr.bytes = fi.Size()
		}
		os.Remove(cr.file) // before the next row writes its own
	}

	var scale scaleResult
	var scaleErr error
	if o.scale > 0 {
		progress("scale: %d direct-wire pairs at once", o.scale)
		scale, scaleErr = e.scaleRun(ctx, o.scale)
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}

	bgAfter := backgroundLoad(ctx)
	if ctx.Err() != nil {
		return ctx.Err()
	}

	// The table.
	var b strings.Builder
	fmt.Fprintf(&b, "vnic daemon benchmark (scripts/benchnic), %s\n", time.Now().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "machine: %s\n", machine())
	fmt.Fprintf(&b, "method: TCP, MTU 1500, %d runs per cell (%v each; direct wire and router rows %v), rounds interleaved (direct, direct wireguard-go, router, vnic, wireguard, veth), capture runs last; total %v\n",
		runs, dur, o.wireDur, time.Since(started).Round(time.Second))
	fmt.Fprintf(&b, "  direct wire: two namespaces A, B, a vnic NIC (our engine) in each, A's wire straight into B's receive side and back (vnic/lab's wire without impairments);\n")
	fmt.Fprintf(&b, "  direct wire, wireguard-go: the same wire with wireguard-go's tun package in both NICs (its gsoSplit on read, its GRO on write): the reference engine;\n")
	fmt.Fprintf(&b, "  via router: the same with the gVisor router (vnic/router, GRO %s) between them, A 198.18.2.0/24, B 198.18.3.0/24;\n", o.routerGRO)
	fmt.Fprintf(&b, "    both in one child process (this program re-executed), its CPU in the daemon column; vnic/traffic in A against a Go discard/chargen server in B (this process);\n")
	fmt.Fprintf(&b, "    host→peer = A→B (discard :9), peer→host = B→A (chargen :19)\n")
	fmt.Fprintf(&b, "  vnic, wireguard: vnic/traffic Send to the gVisor peer's discard :9 / Receive from its chargen :19, in this process;\n")
	fmt.Fprintf(&b, "  the daemon is a child process (daemon.Run, as `vnic up`), its CPU = utime+stime of /proc/<pid>/stat\n")
	fmt.Fprintf(&b, "  veth: %s\n", veth.note)
	fmt.Fprintf(&b, "  app CPU = the sending and receiving applications (vnic/traffic and Go server: this process; veth: the iperf3 client and server)\n")
	fmt.Fprintf(&b, "  system CPU = busy time of all %d cores (/proc/stat) over the transfer: applications + kernel + daemon (+ others)\n", runtime.NumCPU())
	fmt.Fprintf(&b, "  others = cores kept busy by tasks not ours during the transfer (task time in /proc/stat minus daemon and app CPU)\n")
	fmt.Fprintf(&b, "  wire Mpps = packets on the host NIC's wire (A's for the NIC↔NIC rows), out + in (data and ACKs), per second: the daemon's counters\n")
	fmt.Fprintf(&b, "background load, 1 s with no traffic of ours: %.2f cores busy before the runs, %.2f after\n", bgBefore, bgAfter)
	if bgBefore > 0.2 || bgAfter > 0.2 {
		fmt.Fprintf(&b, "WARNING: the machine was not idle (see also the others column): the figures are lower and noisier than on a quiet machine\n")
	}
	fmt.Fprintf(&b, "\n")
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "path\tdirection\tstreams\tGbit/s median\tmin–max\twire Mpps\tdaemon CPU s/GB\tapp CPU s/GB\tsystem CPU s/GB\tothers (cores)\t\n")
	for _, c := range cells {
		lo, hi := c.spread()
		dcpu := "—"
		if c.path.daemon != nil {
			dcpu = fmt.Sprintf("%.3f", c.perGB(func(s sample) float64 { return s.daemonCPU }))
		}
		pps := "—"
		if v := c.ppsMedian(); !math.IsNaN(v) {
			pps = fmt.Sprintf("%.3f", v/1e6)
		}
		var others float64
		for _, s := range c.samples {
			others += s.others / float64(len(c.samples))
		}
		fmt.Fprintf(tw, "%s\t%v\t%d\t%.2f\t%.2f–%.2f\t%s\t%s\t%.3f\t%.3f\t%.2f\t\n", c.path.name, c.dir, c.streams, c.median(), lo, hi, pps, dcpu,
			c.perGB(func(s sample) float64 { return s.appCPU }), c.perGB(func(s sample) float64 { return s.sysCPU }), others)
	}
	tw.Flush()

	// Targets.
	fmt.Fprintf(&b, "\nratios of medians (✓ target met, ✗ not met)\n")
	tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	capHead := "capture on / off (≥ 0.80)"
	if len(caps) > 1 {
		capHead += fmt.Sprintf(": whole / s%d", pcapSnaplen)
	}
	fmt.Fprintf(tw, "direction\tstreams\tdirect / wireguard-go direct (≥ 1.5)\tdirect / veth (≥ 0.70)\tdirect CPU/GB / wireguard-go's (≤ 1.00)\trouter / direct (≥ 0.50)\tvnic→peer / direct (≥ 0.50)\t%s\tvnic / wireguard (peer)\t\n", capHead)
	met, total := 0, 0
	mark := func(v, target float64) string {
		if math.IsNaN(v) {
			return "—"
		}
		total++
		if v >= target {
			met++
			return fmt.Sprintf("%.2f ✓", v)
		}
		return fmt.Sprintf("%.2f ✗", v)
	}
	markLE := func(v, target float64) string {
		if math.IsNaN(v) {
			return "—"
		}
		total++
		if v <= target {
			met++
			return fmt.Sprintf("%.2f ✓", v)
		}
		return fmt.Sprintf("%.2f ✗", v)
	}
	daemonGB := func(c *cell) float64 { return c.perGB(func(s sample) float64 { return s.daemonCPU }) }
	for _, d := range dirs {
		for _, n := range streamsList {
			dw := find(direct, d, n).median()
			o := find(ours, d, n).median()
			capRatio := "—"
			for i, r := range caps {
				if c := find(r.p, d, n); c != nil {
					if i == 0 {
						capRatio = ""
					} else {
						capRatio += " / "
					}
					capRatio += mark(c.median()/o, 0.8)
				}
			}
			fmt.Fprintf(tw, "%v\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%.2f\t\n", d, n,
				mark(dw/find(directWG, d, n).median(), 1.5), mark(dw/find(veth, d, n).median(), 0.7),
				markLE(daemonGB(find(direct, d, n))/daemonGB(find(directWG, d, n)), 1),
				mark(find(viaRouter, d, n).median()/dw, 0.5), mark(o/dw, 0.5), capRatio, o/find(wg, d, n).median())
		}
	}
	tw.Flush()
	fmt.Fprintf(&b, "targets met: %d of %d\n", met, total)
	for _, r := range caps {
		fmt.Fprintf(&b, "capture (%s): %s; file %.1f GB at the end (deleted afterwards)\n", pcapSnaplenText(r.snaplen), r.stats, float64(r.bytes)/1e9)
	}

	if len(lats) > 0 {
		latencyTable(&b, lats, "a 1-stream transfer on the same path")
		fmt.Fprintf(&b, "\nidle: CPU of each child over %.1f s with no traffic:", idleSecs)
		for _, i := range idles {
			fmt.Fprintf(&b, " %s %.2f s (%.1f %% of a core);", i.name, i.cpu, 100*i.cpu/idleSecs)
		}
		fmt.Fprintf(&b, "\n")
	}
	if o.scale > 0 {
		fmt.Fprintf(&b, "\nscale: %d direct-wire pairs (each two namespaces, two vnic NICs, our engine, a direct wire) in one child process\n", o.scale)
		if scaleErr != nil {
			fmt.Fprintf(&b, "  FAILED: %v\n", scaleErr)
		} else {
			r := scale
			per := func(x, y float64) float64 { return (y - x) / math.Max(1, float64(r.Up)) }
			fmt.Fprintf(&b, "  up: %d of %d in %.2f s (%.0f ms per pair: 2 netns + 2 TUN + config); %d of %d answered one ping each\n",
				r.Up, r.Want, r.UpSeconds, 1000*r.UpSeconds/math.Max(1, float64(r.Up)), r.Pinged, r.Up)
			fmt.Fprintf(&b, "  memory per idle pair: RSS %.0f KiB (%.1f → %.1f MiB), Go heap in use %.0f KiB (%.1f → %.1f MiB); %d goroutines\n",
				per(float64(r.RSSBefore), float64(r.RSSIdle))/1024, float64(r.RSSBefore)/(1<<20), float64(r.RSSIdle)/(1<<20),
				per(float64(r.HeapBefore), float64(r.HeapIdle))/1024, float64(r.HeapBefore)/(1<<20), float64(r.HeapIdle)/(1<<20), r.Goroutines)
			fmt.Fprintf(&b, "  idle CPU with all up: %.2f s over %.1f s; teardown %.2f s\n", r.IdleCPU, r.IdleSeconds, r.DownSeconds)
			if r.Err != "" {
				fmt.Fprintf(&b, "  note: %s\n", r.Err)
			}
		}
	}
	fmt.Print(b.String())
	if outPath != "" {
		if err := os.MkdirAll(filepath.Dir(outPath), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(outPath, []byte(b.String()), 0o644); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "benchnic: wrote %s\n", outPath)
	}
	return nil
}

// machine describes the host: cores, CPU model, kernel, Go.
// latencyTable writes the ping round-trip times of lats, idle and under
// load (what the load was).
func latencyTable(b *strings.Builder, lats []latency, load string) {
	fmt.Fprintf(b, "\nround-trip latency: ping -c 20 -i 0.05 (ICMP), median (min–max) ms; under load = during %s\n", load)
	tw := tabwriter.NewWriter(b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "path\tidle RTT ms\tlost\tloaded RTT ms\tlost\tload Gbit/s\t\n")
	rng := func(v []float64) string {
		if len(v) == 0 {
			return "—"
		}
		return fmt.Sprintf("%.3f (%.3f–%.3f)", medianOf(v), slices.Min(v), slices.Max(v))
	}
	for _, l := range lats {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d\t%.2f\t\n", l.name, rng(l.idle), l.lostI, rng(l.loaded), l.lostL, l.loadGbps)
	}
	tw.Flush()
}

// isSet reports whether the flag name was given on the command line.
func isSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

func machine() string {
	model := "?"
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	kernel := "?"
	var u syscall.Utsname
	if syscall.Uname(&u) == nil {
		var sb strings.Builder
		for _, c := range u.Release {
			if c == 0 {
				break
			}
			sb.WriteByte(byte(c))
		}
		kernel = sb.String()
	}
	return fmt.Sprintf("nproc %d, %s, kernel %s, %s", runtime.NumCPU(), model, kernel, runtime.Version())
}

// profileRun CPU-profiles a child daemon of each engine during one Send
// and one Receive.
func profileRun(ctx context.Context, e *env, dir string, dur time.Duration, routerGRO string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	// The NIC↔NIC children: direct wire and router, A→B and B→A.
	for _, topo := range []string{"direct", "direct-wg", "router"} {
		if !profileWants(topo) {
			continue
		}
		for _, d := range []direction{send, recv} {
			name := fmt.Sprintf("wire-%s-%s", topo, map[direction]string{send: "send", recv: "recv"}[d])
			prof := filepath.Join(dir, name+".pprof")
			tag := fmt.Sprintf("p%s%d", map[string]string{"direct": "d", "direct-wg": "w", "router": "r"}[topo], d)
			c, nsA, nsB, ctl, err := e.startWire(ctx, tag, topo, routerGRO, prof)
			if err != nil {
				return err
			}
			server := netip.MustParsePrefix(directB).Addr().String()
			if topo == "router" {
				server = netip.MustParsePrefix(routerB).Addr().String()
			}
			stopSrv, err := goServer(nsB, server)
			if err != nil {
				return err
			}
			s0, _ := readWireStats(ctl)
			c0, _ := procCPU(c.pid())
			n, el, err := goTransfer(name, nsA, server).transfer(ctx, d, 1, dur)
			c1, _ := procCPU(c.pid())
			s1, serr := readWireStats(ctl)
			stopSrv()
			c.stop() // writes the profile
			removeNetns(nsA)
			removeNetns(nsB)
			if err != nil {
				return err
			}
			fmt.Printf("%-20s %d bytes in %v: %.2f Gbit/s; child CPU %.2f s = %.3f s/GB -> %s\n", name, n, el.Round(time.Millisecond),
				float64(n)*8/el.Seconds()/1e9, c1-c0, (c1-c0)/(float64(n)/1e9), prof)
			if serr == nil {
				fmt.Println("  NIC A:")
				printStatsDelta(daemon.Stats{Stats: s0.A}, daemon.Stats{Stats: s1.A})
				fmt.Println("  NIC B:")
				printStatsDelta(daemon.Stats{Stats: s0.B}, daemon.Stats{Stats: s1.B})
			}
		}
	}
	for _, engine := range []string{string(daemon.EngineVNIC), string(daemon.EngineWireGuard)} {
		if !profileWants(engine) {
			continue
		}
		for _, d := range []direction{send, recv} {
			name := fmt.Sprintf("%s-%s", engine, map[direction]string{send: "send", recv: "recv"}[d])
			prof := filepath.Join(dir, name+".pprof")
			tag := "prof-" + name
			c, ns, err := e.startDaemon(ctx, tag, engine, "", 0, prof)
			if err != nil {
				return err
			}
			o := traffic.Options{Netns: ns, Duration: dur, Addr: peerDiscard}
			var r traffic.Result
			control := daemon.ControlPath(ns, "vnic0")
			s0, err := daemon.ReadStats(control)
			if err != nil {
				return err
			}
			c0, _ := procCPU(c.pid())
			if d == send {
				r, err = traffic.Send(ctx, o)
			} else {
				o.Addr = peerChargen
				r, err = traffic.Receive(ctx, o)
			}
			c1, _ := procCPU(c.pid())
			s1, serr := daemon.ReadStats(control)
			c.stop() // writes the profile
			removeNetns(ns)
			if err != nil {
				return err
			}
			fmt.Printf("%-16s %v; daemon CPU %.2f s = %.3f s/GB -> %s\n", name, r, c1-c0, (c1-c0)/(float64(r.Bytes)/1e9), prof)
			if serr == nil {
				printStatsDelta(s0, s1)
			}
		}
	}
	return nil
}

// profileOnly is -profile-only: the paths -profile runs (all if empty).
var profileOnly string

func profileWants(name string) bool {
	return profileOnly == "" || slices.Contains(strings.Split(profileOnly, ","), name)
}

// printStatsDelta prints what explains a profile: the daemon's and the
// peer's counters over the run.
func printStatsDelta(a, b daemon.Stats) {
	d := func(x, y uint64) uint64 { return y - x }
	fmt.Printf("    host_tx %d frames (%d super), wire_out %d, wire_in %d, host_rx %d frames (%d merged, avg %.0f B)\n",
		d(a.HostTX.Packets, b.HostTX.Packets), d(a.HostTXSuper, b.HostTXSuper), d(a.WireOut.Packets, b.WireOut.Packets),
		d(a.WireIn.Packets, b.WireIn.Packets), d(a.HostRX.Packets, b.HostRX.Packets), d(a.HostRXMerged, b.HostRXMerged),
		float64(d(a.HostRX.Bytes, b.HostRX.Bytes))/math.Max(1, float64(d(a.HostRX.Packets, b.HostRX.Packets))))
	if a.Peer != nil && b.Peer != nil {
		fmt.Printf("    peer: in %d, out %d (%d super, %d batches), tcp retransmits %d, timeouts %d, peer drops %+v\n",
			d(a.Peer.In.Packets, b.Peer.In.Packets), d(a.Peer.Out.Packets, b.Peer.Out.Packets), d(a.Peer.OutSuper, b.Peer.OutSuper),
			d(a.Peer.OutBatches, b.Peer.OutBatches), d(a.Peer.Stack.TCPRetransmits, b.Peer.Stack.TCPRetransmits),
			d(a.Peer.Stack.TCPTimeouts, b.Peer.Stack.TCPTimeouts), b.Peer.Drops)
	}
	fmt.Printf("    nic drops %v\n", b.Drops)
	if b.Coalesce != nil {
		j, _ := json.Marshal(b.Coalesce)
		fmt.Printf("    coalesce %s\n", j)
	}
}

// startCPUProfile writes a CPU profile of this process to path until the
// returned stop is called; with path "" it does nothing.
func startCPUProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}
