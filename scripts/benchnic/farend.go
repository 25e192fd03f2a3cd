package main

// The far-end suite (-farend, `make bench-farend`, part of `make bench`):
// the wires that leave the process, against the kernel doing the same,
// with iperf3 between two namespaces, in one run, rounds interleaved:
//
//   - vnic VXLAN wire: two "machines" uA and uB joined by a veth underlay
//     (198.19.0.0/24, MTU 1550, kernel default offloads), a TAP vnic in nA
//     whose daemon runs in uA with --wire vxlan:198.19.0.2 and one in nB
//     whose daemon runs in uB with --wire vxlan:198.19.0.1;
//   - kernel VXLAN: the same underlay, a Linux vxlan device created in uA
//     (its UDP socket stays there) and moved into nA, and one from uB in
//     nB: the kernel's own VXLAN path, what containerlab uses;
//   - vnic dev: wire: a TAP vnic in nA whose daemon runs in D with --wire
//     dev:v1, v1's veth peer v2 in nB with GRO on (a receiving NIC's
//     default; a veth's is off): the NIC on an existing interface;
//   - veth: a veth pair between nA and nB, the kernel alone.
//
// Cells: one stream nA → nB and four. CPU per GB: the system's busy time
// (/proc/stat: iperf3, kernel and daemons together, the figure comparable
// with the kernel paths) and the daemons' (both ends of the VXLAN wire).
// The ratio that matters: vnic VXLAN wire ≥ 0.8 × kernel VXLAN.

import (
	"context"
	"fmt"
	"math"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"vnic/vnic/daemon"
	"vnic/vnic/ethtool"
	"vnic/vnic/nsutil"
)

const (
	farA      = "198.18.0.1/24"
	farB      = "198.18.0.2/24"
	underA    = "198.19.0.1"
	underB    = "198.19.0.2"
	underMTU  = 1550
	farVNI    = "42"
	farIfname = "vnic0"
)

// namedNetns creates namespace <prefix><pid>-<tag>.
func (e *env) namedNetns(tag string) (string, error) {
	ns := fmt.Sprintf("%s%d-%s", nsPrefix, os.Getpid(), tag)
	removeNetns(ns)
	if _, err := nsutil.Create(ns); err != nil {
		return "", err
	}
	e.cleanups.add(func() { removeNetns(ns) })
	return ns, nil
}

// veth joins a in nsA and b in nsB with a veth pair of MTU mtu, up,
// addresses (if any) added.
//
// Equivalent to: ip -n A link add a mtu M type veth peer name b netns B;
// ip -n A addr add ...; ip -n A link set a up; (the same for b)
func veth(nsA, a, addrA, nsB, b, addrB string, mtu int) error {
	hA, err := nsutil.Handle(nsA)
	if err != nil {
		return err
	}
	defer hA.Close()
	hB, err := nsutil.Handle(nsB)
	if err != nil {
		return err
	}
	defer hB.Close()
	fdB, err := netns.GetFromName(nsB)
	if err != nil {
		return err
	}
	defer fdB.Close()
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: a, MTU: mtu, TxQLen: 1000}, PeerName: b, PeerMTU: uint32(mtu), PeerNamespace: netlink.NsFd(int(fdB))}
	if err := hA.LinkAdd(v); err != nil {
		return fmt.Errorf("ip link add %s type veth peer %s netns %s: %w", a, b, nsB, err)
	}
	for _, x := range []struct {
		h          *netlink.Handle
		name, addr string
	}{{hA, a, addrA}, {hB, b, addrB}} {
		c := nsutil.LinkConfig{Up: true}
		if x.addr != "" {
			c.Addrs = []netip.Prefix{netip.MustParsePrefix(x.addr)}
		}
		if err := nsutil.ConfigureLink(x.h, x.name, c); err != nil {
			return err
		}
	}
	return nil
}

// startDaemonIn starts a child daemon whose own namespace is in (ip netns
// exec) with its NIC in the existing namespace nic (by path), and waits
// until its control socket answers.
func (e *env) startDaemonIn(ctx context.Context, tag, in, nicNS string, extra ...string) (*child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	ip, err := exec.LookPath("ip")
	if err != nil {
		return nil, err
	}
	control := filepath.Join(e.tmp, tag+".sock")
	argv := append([]string{ip, "netns", "exec", in, exe, "-netns", nsutil.Path(nicNS), "-control", control}, extra...)
	c, err := startChild("daemon "+tag, argv, []string{childEnv + "=daemon"}, filepath.Join(e.tmp, tag+".log"), nil)
	if err != nil {
		return nil, err
	}
	e.cleanups.add(c.stop)
	for deadline := time.Now().Add(30 * time.Second); ; {
		if _, err := daemon.ReadStats(control); err == nil {
			return c, nil
		}
		if c.exited() {
			return nil, fmt.Errorf("daemon %s exited: %v\n%s", tag, c.err, c.tail())
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("daemon %s: no answer on %s after 30s\n%s", tag, control, c.tail())
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// underlay makes the namespaces of one VXLAN path: uA and uB joined by
// the underlay veth, and the NICs' namespaces nA and nB.
func (e *env) underlay(tag string) (uA, uB, nA, nB string, err error) {
	for _, p := range []*string{&uA, &uB, &nA, &nB} {
		suffix := map[*string]string{&uA: "ua", &uB: "ub", &nA: "na", &nB: "nb"}[p]
		if *p, err = e.namedNetns(tag + suffix); err != nil {
			return
		}
	}
	err = veth(uA, "und-a", underA+"/24", uB, "und-b", underB+"/24", underMTU)
	return
}

// vnicVXLANPath is two TAP vnics joined by VXLAN wires over the underlay.
func (e *env) vnicVXLANPath(ctx context.Context) (*path, error) {
	uA, uB, nA, nB, err := e.underlay("vx")
	if err != nil {
		return nil, err
	}
	a, err := e.startDaemonIn(ctx, "vxa", uA, nA, "-mode", "tap", "-addr", farA, "-mtu", "1500", "-wire", "vxlan:"+underB+",vni="+farVNI)
	if err != nil {
		return nil, err
	}
	b, err := e.startDaemonIn(ctx, "vxb", uB, nB, "-mode", "tap", "-addr", farB, "-mtu", "1500", "-wire", "vxlan:"+underA+",vni="+farVNI)
	if err != nil {
		return nil, err
	}
	p := &path{name: "vnic VXLAN wire", daemon: a, also: []*child{b}}
	return p, e.iperf3(ctx, p, "vx", nA, nB, netip.MustParsePrefix(farB).Addr().String())
}

// kernelVXLANPath is the same topology with two Linux vxlan devices.
func (e *env) kernelVXLANPath(ctx context.Context) (*path, error) {
	uA, uB, nA, nB, err := e.underlay("kx")
	if err != nil {
		return nil, err
	}
	for _, x := range []struct{ u, n, local, remote, addr string }{{uA, nA, underA, underB, farA}, {uB, nB, underB, underA, farB}} {
		// Created in the underlay namespace (its socket stays there),
		// then moved into the NIC's.
		if out, err := exec.Command("ip", "-n", x.u, "link", "add", "vx0", "mtu", "1500", "type", "vxlan", "id", farVNI,
			"remote", x.remote, "local", x.local, "dstport", "4789").CombinedOutput(); err != nil {
			return nil, fmt.Errorf("ip -n %s link add vx0 type vxlan: %v: %s", x.u, err, out)
		}
		if out, err := exec.Command("ip", "-n", x.u, "link", "set", "vx0", "netns", x.n).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("ip -n %s link set vx0 netns %s: %v: %s", x.u, x.n, err, out)
		}
		h, err := nsutil.Handle(x.n)
		if err != nil {
			return nil, err
		}
		err = nsutil.ConfigureLink(h, "vx0", nsutil.LinkConfig{Addrs: []netip.Prefix{netip.MustParsePrefix(x.addr)}, Up: true})
		h.Close()
		if err != nil {
			return nil, err
		}
	}
	p := &path{name: "kernel VXLAN"}
	return p, e.iperf3(ctx, p, "kx", nA, nB, netip.MustParsePrefix(farB).Addr().String())
}

// devPath is a TAP vnic on v1, whose veth peer is in nB.
func (e *env) devPath(ctx context.Context) (*path, error) {
	d, err := e.namedNetns("dvd")
	if err != nil {
		return nil, err
	}
	nA, err := e.namedNetns("dva")
	if err != nil {
		return nil, err
	}
	nB, err := e.namedNetns("dvb")
	if err != nil {
		return nil, err
	}
	if err := veth(d, "v1", "", nB, "v2", farB, 1500); err != nil {
		return nil, err
	}
	// The receiving end is a NIC with GRO, as a real one has (a veth has
	// GRO off by default): the wire carries wire-size frames.
	if err := ethtool.SetFeatures(nB, "v2", map[string]bool{"rx-gro": true}); err != nil {
		return nil, err
	}
	c, err := e.startDaemonIn(ctx, "dv", d, nA, "-mode", "tap", "-addr", farA, "-wire", "dev:v1")
	if err != nil {
		return nil, err
	}
	p := &path{name: "vnic dev: wire", daemon: c}
	return p, e.iperf3(ctx, p, "dv", nA, nB, netip.MustParsePrefix(farB).Addr().String())
}

// wireSizeVethPath is a veth pair nA ⇄ nB whose sender has TSO and GSO
// off: the kernel carrying wire-size frames, the reference for the dev:
// wire (which puts wire-size frames on its interface), beside the plain
// veth's 64 KiB super-packets.
func (e *env) wireSizeVethPath(ctx context.Context) (*path, error) {
	nA, err := e.namedNetns("wsa")
	if err != nil {
		return nil, err
	}
	nB, err := e.namedNetns("wsb")
	if err != nil {
		return nil, err
	}
	if err := veth(nA, "w1", farA, nB, "w2", farB, 1500); err != nil {
		return nil, err
	}
	if err := ethtool.SetFeatures(nA, "w1", map[string]bool{"tso": false, "gso": false}); err != nil {
		return nil, err
	}
	if err := ethtool.SetFeatures(nB, "w2", map[string]bool{"rx-gro": true}); err != nil {
		return nil, err
	}
	p := &path{name: "veth, wire-size"}
	return p, e.iperf3(ctx, p, "ws", nA, nB, netip.MustParsePrefix(farB).Addr().String())
}

// farendSuite runs the far ends against the kernel's and prints the table.
func farendSuite(ctx context.Context, e *env, o benchOptions) error {
	started := time.Now()
	progress := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "[%5.1fs] %s\n", time.Since(started).Seconds(), fmt.Sprintf(format, args...))
	}
	progress("starting the vnic VXLAN wire, the kernel's VXLAN, the vnic dev: wire and a veth pair")
	vx, err := e.vnicVXLANPath(ctx)
	if err != nil {
		return err
	}
	kx, err := e.kernelVXLANPath(ctx)
	if err != nil {
		return err
	}
	dv, err := e.devPath(ctx)
	if err != nil {
		return err
	}
	veth, err := e.vethPath(ctx, "iperf3")
	if err != nil {
		return err
	}
	ws, err := e.wireSizeVethPath(ctx)
	if err != nil {
		return err
	}
	paths := []*path{vx, kx, dv, veth, ws}
	streams := []int{1, 4}
	var cells []*cell
	find := func(p *path, n int) *cell {
		for _, c := range cells {
			if c.path == p && c.streams == n {
				return c
			}
		}
		return nil
	}
	for _, p := range paths {
		for _, n := range streams {
			cells = append(cells, &cell{path: p, dir: send, streams: n, dur: o.dur})
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
			progress("run %d/%d %-16s ×%d: %6.2f Gbit/s", r+1, o.runs, c.path.name, c.streams, s.gbps)
		}
	}
	bgAfter := backgroundLoad(ctx)

	var b strings.Builder
	fmt.Fprintf(&b, "far-end benchmark (scripts/benchnic -farend), %s\n", time.Now().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "machine: %s\n", machine())
	fmt.Fprintf(&b, "method: iperf3 nA → nB (198.18.0.1 → 198.18.0.2), TCP, inner MTU 1500, %d runs of %v per cell, rounds interleaved; total %v\n",
		o.runs, o.dur, time.Since(started).Round(time.Second))
	fmt.Fprintf(&b, "  VXLAN paths: underlay uA ⇄ uB, a veth pair of MTU %d with the kernel's default offloads; VNI %s, UDP 4789\n", underMTU, farVNI)
	fmt.Fprintf(&b, "  vnic VXLAN wire: TAP vnics in nA and nB, daemons in uA and uB (--wire vxlan:); kernel VXLAN: vxlan devices made in uA/uB, moved into nA/nB\n")
	fmt.Fprintf(&b, "  vnic dev: wire: a TAP vnic in nA on v1 (daemon in D), v1's veth peer v2 in nB (GRO on, as a NIC's); veth: a veth pair nA ⇄ nB;\n")
	fmt.Fprintf(&b, "  veth, wire-size: the same with TSO and GSO off on the sender (GRO on at the receiver): the kernel moving wire-size frames\n")
	fmt.Fprintf(&b, "  CPU s/GB: system = all cores' busy time (/proc/stat) per GB received; daemons = both daemons' utime+stime per GB\n")
	fmt.Fprintf(&b, "background load, 1 s with no traffic of ours: %.2f cores busy before, %.2f after\n\n", bgBefore, bgAfter)
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "path\tstreams\tGbit/s median\tmin–max\tsystem CPU s/GB\tdaemons CPU s/GB\t\n")
	for _, c := range cells {
		lo, hi := c.spread()
		dcpu := "—"
		if c.path.daemon != nil {
			dcpu = fmt.Sprintf("%.3f", c.perGB(func(s sample) float64 { return s.daemonCPU }))
		}
		fmt.Fprintf(tw, "%s\t%d\t%.2f\t%.2f–%.2f\t%.3f\t%s\t\n", c.path.name, c.streams, c.median(), lo, hi,
			c.perGB(func(s sample) float64 { return s.sysCPU }), dcpu)
	}
	tw.Flush()
	fmt.Fprintf(&b, "\nratios of medians, same run (✓ target met, ✗ not met)\n")
	tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "streams\tvnic VXLAN / kernel VXLAN (≥ 0.80)\tsystem CPU/GB vnic / kernel VXLAN\tdev: wire / veth\tdev: wire / veth, wire-size\tsystem CPU/GB dev: / veth, wire-size\t\n")
	met, total := 0, 0
	sys := func(c *cell) float64 { return c.perGB(func(s sample) float64 { return s.sysCPU }) }
	for _, n := range streams {
		r := find(vx, n).median() / find(kx, n).median()
		mark := "✗"
		total++
		if r >= 0.8 {
			met++
			mark = "✓"
		}
		if math.IsNaN(r) {
			mark = "—"
		}
		fmt.Fprintf(tw, "%d\t%.2f %s\t%.2f\t%.2f\t%.2f\t%.2f\t\n", n, r, mark, sys(find(vx, n))/sys(find(kx, n)),
			find(dv, n).median()/find(veth, n).median(), find(dv, n).median()/find(ws, n).median(), sys(find(dv, n))/sys(find(ws, n)))
	}
	tw.Flush()
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
