package lab

import (
	"fmt"
	"slices"
	"strings"

	"vnic/vnic/view"
)

// counters classifies a step's counters ("<capture name>: <counter>",
// as runner.drops names them) into drops and events, each drop with the
// capture points where what it drops was last seen, and each lost packet
// counted once: a firewall's "icmp sent" is the same ICMP as its
// interface's "frag-needed sent", and TcpInErrs includes TcpInCsumErrors.
func (s *Scenario) counters(drops map[string]uint64, hwMTU map[string]int) []view.Counter {
	var out []view.Counter
	keys := make([]string, 0, len(drops))
	for k := range drops {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		n := drops[k]
		if n == 0 {
			continue
		}
		who, what, _ := strings.Cut(k, ": ")
		if strings.HasPrefix(who, "wire ") {
			out = append(out, s.wireCounter(strings.TrimPrefix(who, "wire "), what, n))
			continue
		}
		if rt := s.router(who); rt != nil {
			if c, ok := s.routerCounter(rt, what, n, drops); ok {
				out = append(out, c)
			}
			continue
		}
		host, _, _ := strings.Cut(who, ".")
		if c, ok := s.hostCounter(host, who, what, n, drops, hwMTU[who]); ok {
			out = append(out, c)
		}
	}
	return out
}

// hostCounter classifies a counter of host's NIC (capture name nic) or
// kernel.
func (s *Scenario) hostCounter(host, nic, what string, n uint64, all map[string]uint64, hw int) (view.Counter, bool) {
	tx := []string{nic + "@host-tx"}
	switch what {
	case "kernel TcpInCsumErrors":
		return view.Counter{Where: host + "'s kernel", Reason: "bad TCP checksum (TcpInCsumErrors)", Count: n,
			LastSeen: []string{nic + "@host-rx"}, Match: view.BadChecksum}, true
	case "kernel TcpInErrs":
		// InErrs counts the checksum errors too: only the rest is news.
		n -= min(n, all[nic+": kernel TcpInCsumErrors"])
		if n == 0 {
			return view.Counter{}, false
		}
		return view.Counter{Where: host + "'s kernel", Reason: "other TCP input errors (TcpInErrs)", Count: n, LastSeen: []string{nic + "@host-rx"}}, true
	case "exceeds_mtu":
		return view.Counter{Where: host + "'s NIC", Reason: fmt.Sprintf("above its hardware MTU %d (exceeds_mtu): nothing to segment", hw), Count: n,
			LastSeen: tx, Limit: hw, LimitName: "hardware MTU"}, true
	case "rx_exceeds_hw_mtu":
		return view.Counter{Where: host + "'s NIC", Reason: fmt.Sprintf("received a frame above its hardware MTU %d", hw), Count: n,
			LastSeen: append(s.upstream(nic), nic+"@wire"), Limit: hw, LimitName: "hardware MTU"}, true
	case "tun_write_refused", "tun_invalid", "tun_down", "tun_nomem":
		return view.Counter{Where: host + "'s kernel", Reason: "refused the NIC's write into the TUN (" + what + ")", Count: n,
			LastSeen: []string{nic + "@host-rx"}}, true
	}
	return view.Counter{Where: host + "'s NIC", Reason: "could not segment (" + what + ")", Count: n, LastSeen: tx}, true
}

// upstream are the capture points a packet arriving at the NIC nic (its
// capture name) was last seen at: the far NIC's wire, or the router
// interface's host-tx.
func (s *Scenario) upstream(nic string) []string {
	var pts []string
	for _, l := range s.Links {
		if l.Kind == LinkWire && s.nicName(l.A) == nic {
			pts = append(pts, s.nicName(l.B)+"@wire")
		}
		if l.Kind == LinkWire && s.nicName(l.B) == nic {
			pts = append(pts, s.nicName(l.A)+"@wire")
		}
	}
	for _, rt := range s.Routers {
		for i, f := range rt.Ifaces {
			if s.nicName(f.Host) == nic {
				pts = append(pts, rt.Name+"."+rt.ifaceName(i)+"@host-tx")
			}
		}
	}
	return pts
}

// routerPoints are every capture point of the router's interfaces where
// a packet it forwards was last seen (what arrived, after GRO).
func routerPoints(rt *Router) []string {
	var pts []string
	for i := range rt.Ifaces {
		pts = append(pts, rt.Name+"."+rt.ifaceName(i)+"@host-rx")
	}
	return pts
}

// routerCounter classifies a counter of router rt.
func (s *Scenario) routerCounter(rt *Router, what string, n uint64, all map[string]uint64) (view.Counter, bool) {
	r := rt.Name
	if iface, c, ok := strings.Cut(what, ": "); ok && rt.iface(iface) >= 0 {
		i := rt.iface(iface)
		switch c {
		case "gro merged dropped":
			return view.Counter{Where: r + " " + iface, Reason: "GRO merged packet bigger than the next link's MTU: dropped without a word (no ICMP)", Count: n,
				LastSeen: routerPoints(rt), Limit: s.egressMTU(rt), LimitName: "next link's MTU"}, true
		case "gro merged forwarded whole":
			return view.Counter{Where: r + " " + iface, Reason: "GRO merged packet handed to forwarding whole (the 2014 bug: it meets the MTU check)", Count: n, Event: true}, true
		case "frag-needed sent":
			return view.Counter{Where: r + " " + iface, Reason: "ICMP \"fragmentation needed\" sent back", Count: n, Event: true}, true
		case "packet-too-big sent":
			return view.Counter{Where: r + " " + iface, Reason: "ICMPv6 \"packet too big\" sent back", Count: n, Event: true}, true
		case "oversize dropped":
			host := rt.Ifaces[i].Host
			lim := rt.Ifaces[i].MaxReceive
			if lim == 0 {
				lim = mtuOr1500(rt.Ifaces[i].MTU)
			}
			return view.Counter{Where: r + "'s " + iface + " NIC", Reason: fmt.Sprintf("above the %d bytes it receives", lim), Count: n,
				LastSeen: []string{s.nicName(host) + "@wire"}, Limit: lim, LimitName: "receive limit"}, true
		}
		return view.Counter{Where: r + " " + iface, Reason: c, Count: n, LastSeen: routerPoints(rt)}, true
	}
	if rule, c, ok := strings.Cut(strings.TrimPrefix(what, "firewall "), ": "); ok && strings.HasPrefix(what, "firewall ") {
		switch c {
		case "dropped":
			lim := 0
			for _, f := range rt.Firewall {
				if f.Name == rule {
					lim = f.DropAbove
				}
			}
			return view.Counter{Where: r + " (firewall rule " + rule + ")", Reason: fmt.Sprintf("above %d bytes: dropped", lim), Count: n,
				LastSeen: routerPoints(rt), Limit: lim, LimitName: "the rule's limit"}, true
		case "icmp sent":
			return view.Counter{}, false // the interface's frag-needed / packet-too-big counts the same ICMPs
		case "syn mss clamped":
			return view.Counter{Where: r + " (firewall rule " + rule + ")", Reason: "MSS of a SYN clamped (the packet goes on)", Count: n, Event: true}, true
		}
		return view.Counter{Where: r + " (firewall rule " + rule + ")", Reason: c, Count: n, Event: true}, true
	}
	switch what {
	case "forwarding: packet too big":
		return view.Counter{Where: r + " (forwarding)", Reason: "too big for the next link, DF set: dropped, ICMP sent back", Count: n,
			LastSeen: routerPoints(rt), Limit: s.egressMTU(rt), LimitName: "next link's MTU"}, true
	case "forwarding: unroutable":
		return view.Counter{Where: r + " (forwarding)", Reason: "no route", Count: n, LastSeen: routerPoints(rt)}, true
	case "forwarding: ttl exhausted":
		return view.Counter{Where: r + " (forwarding)", Reason: "TTL exhausted", Count: n, LastSeen: routerPoints(rt)}, true
	}
	return view.Counter{Where: r, Reason: what, Count: n, LastSeen: routerPoints(rt)}, true
}

// egressMTU is the smallest MTU of the router's interfaces (what a
// forwarded packet meets).
func (s *Scenario) egressMTU(rt *Router) int {
	m := 0
	for _, f := range rt.Ifaces {
		if v := mtuOr1500(f.MTU); m == 0 || v < m {
			m = v
		}
	}
	return m
}

func mtuOr1500(m int) int {
	if m == 0 {
		return 1500
	}
	return m
}

// wireCounter classifies a wire.Wire counter of the cable a→b.
func (s *Scenario) wireCounter(ab, what string, n uint64) view.Counter {
	a, _, _ := strings.Cut(ab, "→")
	from := []string{}
	if h, n, err := s.nicRef(a); err == nil {
		from = append(from, nicID(h.Name, n.Name)+"@wire")
	}
	switch what {
	case "lost", "discarded":
		return view.Counter{Where: "the wire " + ab, Reason: what + " (an impairment of the lab's cable)", Count: n, LastSeen: from}
	}
	return view.Counter{Where: "the wire " + ab, Reason: what + " (an impairment of the lab's cable)", Count: n, Event: true}
}

// hops are the router interfaces between from and to: the one facing the
// sender (ingress), then the one facing the receiver.
func (s *Scenario) hops(from, to string) []view.Hop {
	var out []view.Hop
	for _, rt := range s.Routers {
		in, eg := -1, -1
		for i, f := range rt.Ifaces {
			h, n, err := s.nicRef(f.Host)
			if err != nil {
				continue
			}
			switch nicID(h.Name, n.Name) {
			case from:
				in = i
			case to:
				eg = i
			}
		}
		if in >= 0 && eg >= 0 {
			out = append(out, view.Hop{Ifname: rt.Name + "." + rt.ifaceName(in), Ingress: true},
				view.Hop{Ifname: rt.Name + "." + rt.ifaceName(eg), Ingress: false})
		}
	}
	return out
}

// eventReasons end the names of counters that count events, not losses:
// something happened to a packet that went on, or a packet was made.
var eventReasons = []string{"frag-needed sent", "packet-too-big sent", "gro merged forwarded whole", "icmp sent", "syn mss clamped", "corrupted", "duplicated"}

// isEvent reports whether the counter named reason counts events.
func isEvent(reason string) bool {
	for _, e := range eventReasons {
		if strings.HasSuffix(reason, e) {
			return true
		}
	}
	return false
}
