package main

// The NIC↔NIC rows: two namespaces joined by a direct vnic wire (two vnic
// NICs, our engine, A's transmit side calling B's receive side and back,
// as vnic/lab wires two hosts without impairments), or through the gVisor
// router (vnic/router, as vnic/lab's routers). The NICs, the wire and the
// router live in a child process — this program re-executed in "wire"
// mode — so that their CPU is measured apart from the traffic
// applications, which run in this process (vnic/traffic in A, a Go
// discard/chargen server in B). The child serves both NICs' counters as
// JSON on a unix socket.
//
// Also here: the "scale" child (N direct-wire pairs brought up at once)
// and the ping latency measurement.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"

	"vnic/vnic/nic"
	"vnic/vnic/nsutil"
	"vnic/vnic/router"
	"vnic/vnic/traffic"
)

// Addresses of the NIC↔NIC rows (198.18.0.0/15 only).
const (
	directA = "198.18.1.1/24"
	directB = "198.18.1.2/24"
	routerA = "198.18.2.1/24"   // A's NIC
	routerB = "198.18.3.1/24"   // B's NIC
	rtIfA   = "198.18.2.254/24" // the router's interface towards A
	rtIfB   = "198.18.3.254/24" // … towards B
	scaleA  = "198.18.4.1/24"   // each scale pair (own namespaces)
	scaleB  = "198.18.4.2/24"
)

// wireStats is what the wire child serves: both NICs' counters.
type wireStats struct {
	A nic.Stats `json:"a"`
	B nic.Stats `json:"b"`
}

func readWireStats(ctl string) (wireStats, error) {
	var s wireStats
	c, err := net.DialTimeout("unix", ctl, 2*time.Second)
	if err != nil {
		return s, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	err = json.NewDecoder(c).Decode(&s)
	return s, err
}

func childLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// addRoute adds `ip route add dst dev dev` in ns.
func addRoute(ns, dev, dst string) error {
	h, err := nsutil.Handle(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	l, err := h.LinkByName(dev)
	if err != nil {
		return err
	}
	p := netip.MustParsePrefix(dst)
	return h.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Dst: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}, Scope: netlink.SCOPE_LINK})
}

// childWire builds two NICs in existing namespaces -nsa and -nsb, joined
// by a direct wire (-topo direct) or the gVisor router (-topo router),
// serves their stats on -ctl and runs until SIGTERM.
func childWire(args []string) int {
	fs := flag.NewFlagSet("wire", flag.ContinueOnError)
	topo := fs.String("topo", "direct", "")
	nsA := fs.String("nsa", "", "")
	nsB := fs.String("nsb", "", "")
	ctl := fs.String("ctl", "", "")
	gro := fs.String("router-gro", "off", "")
	prof := fs.String("cpuprofile", "", "")
	n := fs.Int("n", 64, "")
	prefix := fs.String("prefix", "", "")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *topo == "scale" {
		return childScale(ctx, *n, *prefix)
	}
	log := childLogger()
	engine := nic.EngineVNIC
	if *topo == "direct-wg" {
		// The reference: the same direct wire with wireguard-go's
		// tun package splitting and coalescing in both NICs.
		*topo, engine = "direct", nic.EngineWireGuard
	}
	addrA, addrB := directA, directB
	if *topo == "router" {
		addrA, addrB = routerA, routerB
	}
	a, err := nic.Open(ctx, nic.Options{Netns: *nsA, Addrs: []netip.Prefix{netip.MustParsePrefix(addrA)}, Engine: engine, Logger: log})
	if err != nil {
		fmt.Fprintln(os.Stderr, "wire: NIC A:", err)
		return 1
	}
	defer a.Close()
	b, err := nic.Open(ctx, nic.Options{Netns: *nsB, Addrs: []netip.Prefix{netip.MustParsePrefix(addrB)}, Engine: engine, Logger: log})
	if err != nil {
		fmt.Fprintln(os.Stderr, "wire: NIC B:", err)
		return 1
	}
	defer b.Close()
	switch *topo {
	case "direct":
		a.Connect(b)
		b.Connect(a)
	case "router":
		mode := router.GROOff
		switch *gro {
		case "fixed":
			mode = router.GROFixed
		case "off":
		default:
			fmt.Fprintln(os.Stderr, "wire: -router-gro off|fixed")
			return 2
		}
		rt, err := router.New(router.Options{Ifaces: []router.Iface{
			{Name: "eth0", Addrs: []netip.Prefix{netip.MustParsePrefix(rtIfA)}, GRO: mode, Output: a.Output},
			{Name: "eth1", Addrs: []netip.Prefix{netip.MustParsePrefix(rtIfB)}, GRO: mode, Output: b.Output},
		}, Logger: log})
		if err != nil {
			fmt.Fprintln(os.Stderr, "wire: router:", err)
			return 1
		}
		defer rt.Close()
		a.Connect(nic.InjectFunc(func(p [][]byte) { rt.Inject(0, p) }))
		b.Connect(nic.InjectFunc(func(p [][]byte) { rt.Inject(1, p) }))
		if err := errors.Join(addRoute(*nsA, a.Name(), "198.18.3.0/24"), addRoute(*nsB, b.Name(), "198.18.2.0/24")); err != nil {
			fmt.Fprintln(os.Stderr, "wire: routes:", err)
			return 1
		}
	default:
		fmt.Fprintln(os.Stderr, "wire: -topo direct|direct-wg|router|scale")
		return 2
	}
	stopProfile, err := startCPUProfile(*prof)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer stopProfile()
	a.Start()
	b.Start()
	os.Remove(*ctl)
	ln, err := net.Listen("unix", *ctl)
	if err != nil {
		fmt.Fprintln(os.Stderr, "wire: control socket:", err)
		return 1
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			json.NewEncoder(c).Encode(wireStats{A: a.Stats(), B: b.Stats()})
			c.Close()
		}
	}()
	<-ctx.Done()
	return 0
}

// startWire starts a wire child (topo direct or router) in two fresh
// namespaces and waits until it answers.
func (e *env) startWire(ctx context.Context, tag, topo, gro, cpuprofile string) (c *child, nsA, nsB, ctl string, err error) {
	nsA = fmt.Sprintf("%s%d-%sa", nsPrefix, os.Getpid(), tag)
	nsB = fmt.Sprintf("%s%d-%sb", nsPrefix, os.Getpid(), tag)
	for _, ns := range []string{nsA, nsB} {
		removeNetns(ns)
		if _, err := nsutil.Create(ns); err != nil {
			return nil, "", "", "", err
		}
		e.cleanups.add(func() { removeNetns(ns) })
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, "", "", "", err
	}
	ctl = filepath.Join(e.tmp, tag+".sock")
	argv := []string{exe, "-topo", topo, "-nsa", nsA, "-nsb", nsB, "-ctl", ctl, "-router-gro", gro}
	if cpuprofile != "" {
		argv = append(argv, "-cpuprofile", cpuprofile)
	}
	c, err = startChild("wire "+tag, argv, []string{childEnv + "=wire"}, filepath.Join(e.tmp, tag+".log"), nil)
	if err != nil {
		return nil, "", "", "", err
	}
	e.cleanups.add(c.stop)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := readWireStats(ctl); err == nil {
			return c, nsA, nsB, ctl, nil
		}
		if c.exited() {
			return nil, "", "", "", fmt.Errorf("wire %s exited: %v\n%s", tag, c.err, c.tail())
		}
		if time.Now().After(deadline) {
			return nil, "", "", "", fmt.Errorf("wire %s: no answer on %s after 30s\n%s", tag, ctl, c.tail())
		}
		select {
		case <-ctx.Done():
			return nil, "", "", "", ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// wirePath is a NIC↔NIC path: a wire child, vnic/traffic in A against a
// Go discard/chargen server in B (this process).
func (e *env) wirePath(ctx context.Context, name, tag, topo, gro string) (*path, error) {
	c, nsA, nsB, ctl, err := e.startWire(ctx, tag, topo, gro, "")
	if err != nil {
		return nil, err
	}
	addrB := directB
	if topo == "router" {
		addrB = routerB
	}
	server := netip.MustParsePrefix(addrB).Addr().String()
	stop, err := goServer(nsB, server)
	if err != nil {
		return nil, err
	}
	e.cleanups.add(stop)
	p := goTransfer(name, nsA, server)
	p.daemon = c
	p.ns, p.pingAddr = nsA, server
	p.wirePkts = func() (uint64, error) {
		s, err := readWireStats(ctl)
		return s.A.WireOut.Packets + s.A.WireIn.Packets, err
	}
	return p, nil
}

// goTransfer is a path driven by vnic/traffic in nsA against goServer on
// server (discard :9 for send, chargen :19 for recv).
func goTransfer(name, nsA, server string) *path {
	p := &path{name: name}
	p.transfer = func(ctx context.Context, d direction, streams int, dur time.Duration) (int64, time.Duration, error) {
		o := traffic.Options{Netns: nsA, Duration: dur, Streams: streams, Addr: net.JoinHostPort(server, "9")}
		var r traffic.Result
		var err error
		if d == send {
			r, err = traffic.Send(ctx, o)
		} else {
			o.Addr = net.JoinHostPort(server, "19")
			r, err = traffic.Receive(ctx, o)
		}
		return r.Bytes, r.Elapsed, err
	}
	return p
}

// ---------------------------------------------------------------------
// Scale: N direct-wire pairs, each in its own two namespaces, in one
// child process.

// scaleResult is the scale child's report (one JSON line on stdout).
type scaleResult struct {
	Want, Up, Pinged   int
	UpSeconds          float64
	DownSeconds        float64
	RSSBefore, RSSIdle int64 // bytes
	HeapBefore         uint64
	HeapIdle           uint64
	Goroutines         int
	IdleCPU            float64 // seconds of this process over IdleSeconds with all pairs up
	IdleSeconds        float64
	Err                string
}

func scaleNames(prefix string, i int) (string, string) {
	return fmt.Sprintf("%s%da", prefix, i), fmt.Sprintf("%s%db", prefix, i)
}

func rss() int64 {
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				k, _ := strconv.ParseInt(f[0], 10, 64)
				return k * 1024
			}
		}
	}
	return 0
}

func heap() uint64 {
	runtime.GC()
	debug.FreeOSMemory()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

func childScale(ctx context.Context, n int, prefix string) int {
	log := childLogger()
	res := scaleResult{Want: n}
	res.HeapBefore = heap()
	res.RSSBefore = rss()
	type pair struct {
		a, b *nic.NIC
	}
	var pairs []pair
	var names []string
	defer func() {
		t := time.Now()
		for _, p := range pairs {
			p.a.Close()
			p.b.Close()
		}
		for _, ns := range names {
			if err := nsutil.Delete(ns); err != nil {
				fmt.Fprintln(os.Stderr, "scale: deleting", ns, err)
			}
		}
		res.DownSeconds = time.Since(t).Seconds()
		j, _ := json.Marshal(res)
		fmt.Println(string(j))
	}()
	t0 := time.Now()
	// Bring-up budget: stop adding pairs after 60 s (2 cores).
	for i := range n {
		if ctx.Err() != nil || time.Since(t0) > 60*time.Second {
			res.Err = fmt.Sprintf("stopped after %d pairs (%v)", i, time.Since(t0).Round(time.Millisecond))
			break
		}
		nsA, nsB := scaleNames(prefix, i)
		var err error
		for _, ns := range []string{nsA, nsB} {
			if _, err = nsutil.Create(ns); err != nil {
				break
			}
			names = append(names, ns)
		}
		var a, b *nic.NIC
		if err == nil {
			a, err = nic.Open(ctx, nic.Options{Netns: nsA, Addrs: []netip.Prefix{netip.MustParsePrefix(scaleA)}, Logger: log})
		}
		if err == nil {
			b, err = nic.Open(ctx, nic.Options{Netns: nsB, Addrs: []netip.Prefix{netip.MustParsePrefix(scaleB)}, Logger: log})
			if err != nil {
				a.Close()
			}
		}
		if err != nil {
			res.Err = fmt.Sprintf("pair %d: %v", i, err)
			break
		}
		a.Connect(b)
		b.Connect(a)
		a.Start()
		b.Start()
		pairs = append(pairs, pair{a, b})
	}
	res.Up = len(pairs)
	res.UpSeconds = time.Since(t0).Seconds()
	// Idle for a while: what N idle pairs cost.
	c0, _ := procCPU(os.Getpid())
	t1 := time.Now()
	select {
	case <-ctx.Done():
	case <-time.After(3 * time.Second):
	}
	c1, _ := procCPU(os.Getpid())
	res.IdleCPU, res.IdleSeconds = c1-c0, time.Since(t1).Seconds()
	res.HeapIdle = heap()
	res.RSSIdle = rss()
	res.Goroutines = runtime.NumGoroutine()
	dst := netip.MustParsePrefix(scaleB).Addr().String()
	for i := range pairs {
		nsA, _ := scaleNames(prefix, i)
		if got, err := traffic.Ping(ctx, nsA, dst, 56, 1); err == nil && got == 1 {
			res.Pinged++
		}
	}
	return 0
}

// scaleRun runs the scale child and returns its report.
func (e *env) scaleRun(ctx context.Context, n int) (scaleResult, error) {
	var res scaleResult
	prefix := fmt.Sprintf("%s%d-s", nsPrefix, os.Getpid())
	for i := range n {
		a, b := scaleNames(prefix, i)
		e.cleanups.add(func() { removeNetns(a); removeNetns(b) })
	}
	exe, err := os.Executable()
	if err != nil {
		return res, err
	}
	var out strings.Builder
	c, err := startChild("scale", []string{exe, "-topo", "scale", "-n", strconv.Itoa(n), "-prefix", prefix},
		[]string{childEnv + "=wire"}, filepath.Join(e.tmp, "scale.log"), &out)
	if err != nil {
		return res, err
	}
	e.cleanups.add(c.stop)
	select {
	case <-c.done:
	case <-ctx.Done():
		c.stop()
		return res, ctx.Err()
	case <-time.After(150 * time.Second):
		c.stop()
		return res, fmt.Errorf("scale child did not finish in 150s\n%s", c.tail())
	}
	line := strings.TrimSpace(out.String())
	if i := strings.LastIndexByte(line, '\n'); i >= 0 {
		line = line[i+1:]
	}
	if err := json.Unmarshal([]byte(line), &res); err != nil {
		return res, fmt.Errorf("scale child: %v (exit %v)\n%s", err, c.err, c.tail())
	}
	return res, nil
}

// ---------------------------------------------------------------------
// Latency: the system ping, 20 echo requests 50 ms apart, idle and
// during a one-stream bulk transfer (vnic/traffic Send) on the same path.

type latency struct {
	name           string
	idle, loaded   []float64 // RTTs in ms
	lostI, lostL   int
	loadGbps       float64
	idleErr, ldErr error
}

func pingRTTs(ctx context.Context, ns, addr string, count int) (rtts []float64, lost int, err error) {
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", ns, "ping", "-n", "-c", strconv.Itoa(count), "-i", "0.05", "-W", "1", addr)
	out, err := cmd.Output()
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		_, v, ok := strings.Cut(sc.Text(), "time=")
		if !ok {
			continue
		}
		v, _, _ = strings.Cut(v, " ")
		if f, perr := strconv.ParseFloat(v, 64); perr == nil {
			rtts = append(rtts, f)
		}
	}
	lost = count - len(rtts)
	if len(rtts) > 0 {
		err = nil // ping exits 1 when some were lost
	}
	return rtts, lost, err
}

func medianOf(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	w := append([]float64(nil), v...)
	sort.Float64s(w)
	if len(w)%2 == 1 {
		return w[len(w)/2]
	}
	return (w[len(w)/2-1] + w[len(w)/2]) / 2
}

func measureLatency(ctx context.Context, p *path) latency {
	l := latency{name: p.name}
	const count = 20
	l.idle, l.lostI, l.idleErr = pingRTTs(ctx, p.ns, p.pingAddr, count)
	// The load: the path's own one-stream transfer, A → B.
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		n  int64
		el time.Duration
	}
	done := make(chan result, 1)
	go func() {
		n, el, _ := p.transfer(lctx, send, 1, 3*time.Second)
		done <- result{n, el}
	}()
	select {
	case <-ctx.Done():
	case <-time.After(600 * time.Millisecond):
	}
	l.loaded, l.lostL, l.ldErr = pingRTTs(ctx, p.ns, p.pingAddr, count)
	r := <-done
	if r.el > 0 {
		l.loadGbps = float64(r.n) * 8 / r.el.Seconds() / 1e9
	}
	return l
}
