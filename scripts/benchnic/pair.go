package main

// The pair suite (-pair, `make bench-pair`): `vnic up --netns A --wire
// netns:B`, two vnic NICs joined by a direct wire, against the physical
// floor of this design and the other references, all with iperf3 between
// two namespaces, in one run, rounds interleaved:
//
//   - null relay, 2 queues: the same with multi-queue TUNs
//     (IFF_MULTI_QUEUE) and a relay per queue: does a reader per queue
//     beat the single-queue floor on this machine?
//   - null relay: two TUN devices with IFF_VNET_HDR and the same offloads
//     (CSUM|TSO4|TSO6|TSO_ECN|USO4|USO6), a relay that copies every frame
//     (virtio header + super-packet) from one to the other unchanged, one
//     goroutine per direction, no segmentation, no GRO. Any TUN-based NIC
//     pays at least its syscalls and copies: the floor.
//   - vnic pair: the daemon as `vnic up` runs it (daemon.Run, a child).
//   - wireguard-go pair: the same with --engine wireguard.
//   - veth: a veth pair (the kernel alone).
//
// Cells: one stream A→B, four streams A→B, one stream each way at once
// (--bidir, the sum). Then ping under a one-stream load, idle CPU of each
// child, and the ratios against the targets.

import (
	"context"
	"flag"
	"fmt"
	"math"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"vnic/vnic/nic"
	"vnic/vnic/nsutil"
	"vnic/vnic/tundev"
)

const (
	pairA = "198.18.0.1/15"
	pairB = "198.18.0.2/15"
)

// childRelay is the null relay (BENCHNIC_CHILD=relay): TUNs in -nsa and
// -nsb, frames copied unchanged both ways until SIGTERM. It creates
// -ready once both devices are up.
func childRelay(args []string) int {
	fs := flag.NewFlagSet("relay", flag.ContinueOnError)
	nsA := fs.String("nsa", "", "")
	nsB := fs.String("nsb", "", "")
	ready := fs.String("ready", "", "")
	batch := fs.Int("batch", 64, "")
	queues := fs.Int("queues", 1, "")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	// open returns the device's queues (one unless -queues).
	open := func(ns, addr string) ([]*tundev.Device, error) {
		var qs []*tundev.Device
		if err := nsutil.Do(ns, func() error {
			d, err := tundev.Open(tundev.Config{Name: "vnic0", Offloads: tundev.All, MultiQueue: *queues > 1})
			if err != nil {
				return err
			}
			qs = append(qs, d)
			for len(qs) < *queues {
				q, err := d.OpenQueue()
				if err != nil {
					return err
				}
				qs = append(qs, q)
			}
			return nil
		}); err != nil {
			return nil, err
		}
		h, err := nsutil.Handle(ns)
		if err != nil {
			return nil, err
		}
		defer h.Close()
		return qs, nsutil.ConfigureLink(h, "vnic0", nsutil.LinkConfig{MTU: 1500, TxQueueLen: nic.DefaultTxQueueLen, Up: true,
			Addrs: []netip.Prefix{netip.MustParsePrefix(addr)}})
	}
	a, err := open(*nsA, pairA)
	if err != nil {
		fmt.Fprintln(os.Stderr, "relay: A:", err)
		return 1
	}
	b, err := open(*nsB, pairB)
	if err != nil {
		fmt.Fprintln(os.Stderr, "relay: B:", err)
		return 1
	}
	relay := func(from, to *tundev.Device) {
		bufs := make([][]byte, *batch)
		for i := range bufs {
			bufs[i] = make([]byte, tundev.MaxFrame)
		}
		sizes := make([]int, len(bufs))
		out := make([][]byte, len(bufs))
		for {
			n, err := from.Read(bufs, sizes, 0)
			if err != nil {
				return
			}
			for i := range n {
				out[i] = bufs[i][:sizes[i]]
			}
			_, _ = to.Write(out[:n], 0)
		}
	}
	for i := range a {
		go relay(a[i], b[i])
		go relay(b[i], a[i])
	}
	if err := os.WriteFile(*ready, nil, 0o600); err != nil {
		fmt.Fprintln(os.Stderr, "relay:", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	for i := range a {
		a[i].Close()
		b[i].Close()
	}
	return 0
}

// twoNetns creates namespaces <prefix><pid>-<tag>a and ...b.
func (e *env) twoNetns(tag string) (nsA, nsB string, err error) {
	nsA = fmt.Sprintf("%s%d-%sa", nsPrefix, os.Getpid(), tag)
	nsB = fmt.Sprintf("%s%d-%sb", nsPrefix, os.Getpid(), tag)
	for _, ns := range []string{nsA, nsB} {
		removeNetns(ns)
		if _, err := nsutil.Create(ns); err != nil {
			return "", "", err
		}
		e.cleanups.add(func() { removeNetns(ns) })
	}
	return nsA, nsB, nil
}

// relayPath starts the null relay (with queues TUN queues per device)
// and an iperf3 server behind it.
func (e *env) relayPath(ctx context.Context, name, tag string, queues int) (*path, error) {
	nsA, nsB, err := e.twoNetns(tag)
	if err != nil {
		return nil, err
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	ready := filepath.Join(e.tmp, tag+".ready")
	c, err := startChild(name, []string{exe, "-nsa", nsA, "-nsb", nsB, "-ready", ready, "-queues", fmt.Sprint(queues)},
		[]string{childEnv + "=relay"}, filepath.Join(e.tmp, tag+".log"), nil)
	if err != nil {
		return nil, err
	}
	e.cleanups.add(c.stop)
	for deadline := time.Now().Add(30 * time.Second); ; {
		if _, err := os.Stat(ready); err == nil {
			break
		}
		if c.exited() || time.Now().After(deadline) {
			return nil, fmt.Errorf("null relay did not start: %v\n%s", c.err, c.tail())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return e.pairIperf3(ctx, name, tag, c, nsA, nsB)
}

// vnicPairPath starts `vnic up --netns A --wire netns:B` (a child daemon)
// with engine and an iperf3 server behind it.
func (e *env) vnicPairPath(ctx context.Context, name, tag string, engine nic.Engine) (*path, error) {
	nsB := fmt.Sprintf("%s%d-%sb", nsPrefix, os.Getpid(), tag)
	removeNetns(nsB)
	e.cleanups.add(func() { removeNetns(nsB) })
	c, nsA, err := e.startDaemon(ctx, tag+"a", string(engine), "", 0, "", "-wire", "netns:"+nsB)
	if err != nil {
		return nil, err
	}
	return e.pairIperf3(ctx, name, tag, c, nsA, nsB)
}

// pairIperf3 is the path between A and B of a pair-like child (its CPU
// the daemon column), iperf3 from A to B's pairB.
func (e *env) pairIperf3(ctx context.Context, name, tag string, c *child, nsA, nsB string) (*path, error) {
	server := netip.MustParsePrefix(pairB).Addr().String()
	p := &path{name: name, daemon: c, ns: nsA, pingAddr: server}
	if err := e.iperf3(ctx, p, tag, nsA, nsB, server); err != nil {
		return nil, err
	}
	return p, nil
}

// pairSuite runs the pair against its references and prints the table.
func pairSuite(ctx context.Context, e *env, o benchOptions) error {
	started := time.Now()
	progress := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "[%5.1fs] %s\n", time.Since(started).Seconds(), fmt.Sprintf(format, args...))
	}
	progress("starting the null relay, the vnic pair, the wireguard-go pair and the veth pair")
	relay, err := e.relayPath(ctx, "null relay", "nr", 1)
	if err != nil {
		return err
	}
	relayMQ, err := e.relayPath(ctx, "null relay, 2 queues", "nq", 2)
	if err != nil {
		return err
	}
	pair, err := e.vnicPairPath(ctx, "vnic pair", "vp", nic.EngineVNIC)
	if err != nil {
		return err
	}
	pairWG, err := e.vnicPairPath(ctx, "wireguard-go pair", "wp", nic.EngineWireGuard)
	if err != nil {
		return err
	}
	veth, err := e.vethPath(ctx, "iperf3")
	if err != nil {
		return err
	}
	paths := []*path{relay, relayMQ, pair, pairWG, veth}
	type shape struct {
		d       direction
		streams int
		label   string
	}
	shapes := []shape{{send, 1, "1 stream"}, {send, 4, "4 streams"}, {both, 1, "--bidir"}}
	var cells []*cell
	find := func(p *path, sh shape) *cell {
		for _, c := range cells {
			if c.path == p && c.dir == sh.d && c.streams == sh.streams {
				return c
			}
		}
		return nil
	}
	for _, p := range paths {
		for _, sh := range shapes {
			cells = append(cells, &cell{path: p, dir: sh.d, streams: sh.streams, dur: o.dur})
		}
	}
	bgBefore := backgroundLoad(ctx)
	progress("background load before: %.2f cores busy", bgBefore)
	for _, p := range paths {
		if _, err := p.measure(ctx, send, 1, time.Second); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
	}
	for r := range o.runs {
		for _, c := range cells {
			s, err := c.path.measure(ctx, c.dir, c.streams, c.dur)
			if err != nil {
				return err
			}
			c.samples = append(c.samples, s)
			progress("run %d/%d %-18s %-9v ×%d: %6.2f Gbit/s", r+1, o.runs, c.path.name, c.dir, c.streams, s.gbps)
		}
	}
	var lats []latency
	for _, p := range paths {
		l := measureLatency(ctx, p)
		progress("latency %-18s idle median %.3f ms, under load %.3f ms (load %.2f Gbit/s)", p.name, medianOf(l.idle), medianOf(l.loaded), l.loadGbps)
		lats = append(lats, l)
	}
	progress("idle CPU: 5 s with no traffic")
	kids := []*path{relay, relayMQ, pair, pairWG}
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
	idleSecs := time.Since(t0).Seconds()
	idle := make([]float64, len(kids))
	for i, p := range kids {
		c1, err := procCPU(p.daemon.pid())
		if err != nil {
			c1 = math.NaN()
		}
		idle[i] = c1 - c0[i]
	}
	bgAfter := backgroundLoad(ctx)

	var b strings.Builder
	fmt.Fprintf(&b, "vnic pair benchmark (scripts/benchnic -pair), %s\n", time.Now().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "machine: %s\n", machine())
	fmt.Fprintf(&b, "method: iperf3 between two namespaces A → B (198.18.0.1 → 198.18.0.2; veth 198.19.0.x), TCP, MTU 1500, %d runs of %v per cell, rounds interleaved; total %v\n",
		o.runs, o.dur, time.Since(started).Round(time.Second))
	fmt.Fprintf(&b, "  null relay: two TUNs (IFF_VNET_HDR, csum|tso4|tso6|tso_ecn|uso4|uso6), frames copied unchanged, one goroutine per direction: the floor of any TUN NIC\n")
	fmt.Fprintf(&b, "  vnic pair: vnic up --netns A --wire netns:B (a child, daemon.Run); wireguard-go pair: the same with --engine wireguard\n")
	fmt.Fprintf(&b, "  --bidir: one stream each way at once, Gbit/s of both; daemon CPU = the child's utime+stime per GB moved\n")
	fmt.Fprintf(&b, "background load, 1 s with no traffic of ours: %.2f cores busy before, %.2f after\n\n", bgBefore, bgAfter)
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "path\tcell\tGbit/s median\tmin–max\tdaemon CPU s/GB\tsystem CPU s/GB\t\n")
	for _, c := range cells {
		lo, hi := c.spread()
		dcpu := "—"
		if c.path.daemon != nil {
			dcpu = fmt.Sprintf("%.3f", c.perGB(func(s sample) float64 { return s.daemonCPU }))
		}
		label := ""
		for _, sh := range shapes {
			if sh.d == c.dir && sh.streams == c.streams {
				label = sh.label
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%.2f\t%.2f–%.2f\t%s\t%.3f\t\n", c.path.name, label, c.median(), lo, hi, dcpu,
			c.perGB(func(s sample) float64 { return s.sysCPU }))
	}
	tw.Flush()

	fmt.Fprintf(&b, "\nratios of medians, same run (✓ target met, ✗ not met)\n")
	tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "cell\tpair / null relay (≥ 0.95)\tpair / wireguard-go pair (≥ 1.15)\tpair / veth\tpair CPU/GB / wireguard-go's\t2-queue relay / 1-queue\t\n")
	met, total := 0, 0
	mark := func(v, target float64, le bool) string {
		if math.IsNaN(v) {
			return "—"
		}
		total++
		if le && v <= target || !le && v >= target {
			met++
			return fmt.Sprintf("%.2f ✓", v)
		}
		return fmt.Sprintf("%.2f ✗", v)
	}
	gb := func(c *cell) float64 { return c.perGB(func(s sample) float64 { return s.daemonCPU }) }
	for _, sh := range shapes {
		pc := find(pair, sh)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.2f\t%.2f\t%.2f\t\n", sh.label, mark(pc.median()/find(relay, sh).median(), 0.95, false),
			mark(pc.median()/find(pairWG, sh).median(), 1.15, false), pc.median()/find(veth, sh).median(), gb(pc)/gb(find(pairWG, sh)),
			find(relayMQ, sh).median()/find(relay, sh).median())
	}
	tw.Flush()
	var relayLoaded, pairLoaded float64
	latencyTable(&b, lats, "a one-stream iperf3 A → B")
	for _, l := range lats {
		switch l.name {
		case relay.name:
			relayLoaded = medianOf(l.loaded)
		case pair.name:
			pairLoaded = medianOf(l.loaded)
		}
	}
	fmt.Fprintf(&b, "pair loaded RTT / null relay's (≤ 1.20): %s\n", mark(pairLoaded/relayLoaded, 1.2, true))
	fmt.Fprintf(&b, "\nidle CPU over %.1f s with no traffic:", idleSecs)
	idleOK := true
	for i, p := range kids {
		fmt.Fprintf(&b, " %s %.2f s;", p.name, idle[i])
		if p == pair && !(idle[i] <= 0.01) {
			idleOK = false
		}
	}
	total++
	if idleOK {
		met++
		fmt.Fprintf(&b, " pair ≤ 0.01 s ✓\n")
	} else {
		fmt.Fprintf(&b, " pair ≤ 0.01 s ✗\n")
	}
	fmt.Fprintf(&b, "targets met: %d of %d\n", met, total)
	fmt.Print(b.String())
	if o.outPath != "" {
		if err := os.MkdirAll(filepath.Dir(o.outPath), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(o.outPath, []byte(b.String()), 0o644); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "benchnic: wrote %s\n", o.outPath)
	}
	return nil
}
