package lab

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"vnic/vnic/capture"
	"vnic/vnic/nic"
	"vnic/vnic/nsutil"
	"vnic/vnic/router"
)

// labRouter is a scenario's router: a vnic/vnic/router.Router whose
// interfaces are wired to hosts' NICs. A firewall change rebuilds the
// router (forwarding keeps no state); the NICs' wires follow cur.
type labRouter struct {
	cfg  Router
	nics []*nic.NIC     // by interface
	caps []*capture.NIC // by interface: what tcpdump on it shows
	log  func(msg string, args ...any)

	mu  sync.Mutex // serialises changes
	cur atomic.Pointer[router.Router]
	gro []router.GROMode
	fw  []FirewallRule
	acc map[string]uint64 // counters of routers replaced by a rebuild
}

func groMode(s string) router.GROMode {
	switch s {
	case GROBuggy2014:
		return router.GROBuggy2014
	case GROFixed:
		return router.GROFixed
	case GRODropsMerged:
		return router.GRODropsMerged
	}
	return router.GROOff
}

// newLabRouter builds the router and wires it to the hosts' NICs (before
// the NICs start).
func (r *runner) newLabRouter(cfg Router) (*labRouter, error) {
	lr := &labRouter{cfg: cfg, fw: cfg.Firewall, acc: map[string]uint64{}, log: r.log.Info}
	for i, f := range cfg.Ifaces {
		lr.nics = append(lr.nics, r.nicOf(f.Host))
		name := cfg.ifaceName(i)
		lr.caps = append(lr.caps, r.tap.Add(r.pcap.NIC(cfg.Name+"."+name), cfg.Name+"'s "+name))
		lr.gro = append(lr.gro, groMode(f.GRO))
		idx := i
		r.nicOf(f.Host).Connect(nic.InjectFunc(func(pkts [][]byte) {
			if rt := lr.cur.Load(); rt != nil {
				rt.Inject(idx, pkts)
			}
		}))
	}
	rt, err := lr.build()
	if err != nil {
		return nil, err
	}
	lr.cur.Store(rt)
	return lr, nil
}

func (lr *labRouter) build() (*router.Router, error) {
	c := lr.cfg
	opt := router.Options{}
	for i, f := range c.Ifaces {
		var addrs []netip.Prefix
		for _, a := range f.Addrs {
			addrs = append(addrs, netip.MustParsePrefix(a)) // Validate checked them
		}
		n := lr.nics[i]
		opt.Ifaces = append(opt.Ifaces, router.Iface{Name: c.ifaceName(i), Addrs: addrs, MTU: uint32(f.MTU),
			MaxReceive: uint32(f.MaxReceive), GRO: lr.gro[i], Output: n.Output, Capture: lr.caps[i]})
	}
	for _, rt := range c.Routes {
		opt.Routes = append(opt.Routes, router.Route{Dst: netip.MustParsePrefix(rt.Dst), Iface: c.iface(rt.Iface)})
	}
	if len(lr.fw) > 0 {
		fw := &router.Firewall{}
		for _, f := range lr.fw {
			rule := router.Rule{Name: f.Name, Iface: c.iface(f.Iface)}
			if f.Dir == "out" {
				rule.Dir = router.Out
			}
			if f.DropAbove > 0 {
				rule.Action = router.DropAbove{Size: f.DropAbove, ICMP: f.ICMP}
			} else {
				rule.Action = router.ClampMSS{MSS: f.ClampMSS, ToPMTU: f.ClampToPMTU}
			}
			fw.Rules = append(fw.Rules, rule)
		}
		opt.Firewall = fw
	}
	rt, err := router.New(opt)
	if err != nil {
		return nil, fmt.Errorf("lab: router %s: %w", c.Name, err)
	}
	return rt, nil
}

// apply makes a step's change and returns what to print for it.
func (lr *labRouter) apply(ch RouterChange) ([]string, error) {
	lr.mu.Lock()
	defer lr.mu.Unlock()
	var out []string
	if ch.GRO != "" {
		i := lr.cfg.iface(ch.Iface)
		m := groMode(ch.GRO)
		if err := lr.cur.Load().SetGRO(i, m); err != nil {
			return nil, err
		}
		lr.gro[i] = m
		onoff := "on"
		if m == router.GROOff {
			onoff = "off"
		}
		out = append(out, fmt.Sprintf("[router %s]# ethtool -K %s gro %s    (the lab's router: GRO %s on %s)", lr.cfg.Name, ch.Iface, onoff, m, ch.Iface))
	}
	if ch.Firewall != nil {
		lr.fw = *ch.Firewall
		old := lr.cur.Load()
		_ = old.Close()
		for k, v := range routerCounters(old.Stats()) {
			lr.acc[k] += v
		}
		rt, err := lr.build()
		if err != nil {
			return nil, err
		}
		lr.cur.Store(rt)
		out = append(out, fmt.Sprintf("[router %s]# iptables -F; %s", lr.cfg.Name, lr.iptables()))
	}
	return out, nil
}

// iptables renders the firewall rules as the iptables commands they stand for.
func (lr *labRouter) iptables() string {
	if len(lr.fw) == 0 {
		return "(no rules)"
	}
	var cmds []string
	for _, f := range lr.fw {
		flag := "-i"
		if f.Dir == "out" {
			flag = "-o"
		}
		switch {
		case f.DropAbove > 0:
			act := "-j DROP"
			if f.ICMP {
				act = "-j REJECT --reject-with icmp-frag-needed"
			}
			cmds = append(cmds, fmt.Sprintf("iptables -A FORWARD %s %s -m length --length %d:65535 %s", flag, f.Iface, f.DropAbove+1, act))
		case f.ClampToPMTU:
			cmds = append(cmds, fmt.Sprintf("iptables -t mangle -A FORWARD %s %s -p tcp --tcp-flags SYN,RST SYN -j TCPMSS --clamp-mss-to-pmtu", flag, f.Iface))
		default:
			cmds = append(cmds, fmt.Sprintf("iptables -t mangle -A FORWARD %s %s -p tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss %d", flag, f.Iface, f.ClampMSS))
		}
	}
	return strings.Join(cmds, "; ")
}

func (lr *labRouter) close() {
	if rt := lr.cur.Load(); rt != nil {
		_ = rt.Close()
	}
}

// counters are the router's counters so far, over rebuilds.
func (lr *labRouter) counters() map[string]uint64 {
	lr.mu.Lock()
	defer lr.mu.Unlock()
	m := routerCounters(lr.cur.Load().Stats())
	for k, v := range lr.acc {
		m[k] += v
	}
	return m
}

// routerCounters flattens the counters that explain lost packets and the
// router's ICMP: "<iface>: <what>", "forwarding: <what>", "firewall <rule>:
// <what>".
func routerCounters(st router.Stats) map[string]uint64 {
	m := map[string]uint64{}
	put := func(k string, v uint64) {
		if v > 0 {
			m[k] += v
		}
	}
	for _, f := range st.Ifaces {
		put(f.Name+": gro merged forwarded whole", f.GROStats.ForwardedWhole)
		put(f.Name+": gro merged dropped", f.GROStats.DroppedMerged)
		put(f.Name+": frag-needed sent", f.ICMP.FragNeeded)
		put(f.Name+": packet-too-big sent", f.ICMP.PacketTooBig)
		put(f.Name+": oversize dropped", f.Drops.Oversize)
	}
	put("forwarding: packet too big", st.Forwarding.PacketTooBig)
	put("forwarding: unroutable", st.Forwarding.Unrouteable)
	put("forwarding: ttl exhausted", st.Forwarding.ExhaustedTTL)
	for _, f := range st.Firewall {
		put("firewall "+f.Name+": dropped", f.Dropped)
		put("firewall "+f.Name+": icmp sent", f.ICMPSent)
		put("firewall "+f.Name+": syn mss clamped", f.Clamped)
	}
	return m
}

// kernelCounters reads the TCP counters of the kernel in namespace ns that
// explain lost segments (/proc/net/snmp: Tcp InCsumErrors, InErrs).
func kernelCounters(ns string) map[string]uint64 {
	m := map[string]uint64{}
	_ = nsutil.Do(ns, func() error {
		b, err := os.ReadFile("/proc/thread-self/net/snmp")
		if err != nil {
			return err
		}
		var names []string
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) == 0 || f[0] != "Tcp:" {
				continue
			}
			if names == nil {
				names = f[1:]
				continue
			}
			for i, v := range f[1:] {
				if i < len(names) && (names[i] == "InCsumErrors" || names[i] == "InErrs") {
					n, _ := strconv.ParseUint(v, 10, 64)
					m["kernel Tcp"+names[i]] = n
				}
			}
		}
		return nil
	})
	return m
}

// setupRouters creates the scenario's routers (after the NICs, before they
// start) and the hosts' routes.
func (r *runner) setupRouters(ctx context.Context) error {
	for _, h := range r.s.Hosts {
		for _, p := range h.Routes {
			args := p
			if !strings.Contains(strings.TrimSpace(p), " ") {
				args = fmt.Sprintf("%s dev %s", p, h.Nics()[0].Name)
			}
			// Arguments to ip, not a shell command line (r.ip).
			if _, err := r.ip(ctx, h.Name, append([]string{"route", "add"}, strings.Fields(args)...)...); err != nil {
				return fmt.Errorf("lab: host %s: %w", h.Name, err)
			}
		}
	}
	for _, c := range r.s.Routers {
		lr, err := r.newLabRouter(c)
		if err != nil {
			return err
		}
		r.routers[c.Name] = lr
		r.info[c.Name] = nicInfo{ifname: c.Name}
		r.onClose(lr.close)
	}
	return nil
}
