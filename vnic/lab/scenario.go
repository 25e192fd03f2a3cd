package lab

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Scenario is one lab: hosts with vnic NICs, the links between them and
// the steps to run. It maps 1:1 to a YAML file (the yaml tags name the
// keys), e.g.
//
//	name: tso-capture
//	title: "Len is far bigger than the MSS"
//	story: ...
//	hosts:
//	  - name: ginger
//	    nic: {name: eth0, addrs: [198.18.0.1/15], mtu: 1500}
//	  - name: basil
//	    nic: {name: eth0, addrs: [198.18.0.2/15], mtu: 1500}
//	    services: [discard]
//	links:
//	  - {kind: wire, a: ginger, b: basil}
//	steps:
//	  - name: GSO on
//	    traffic: {kind: send, from: ginger, to: basil, bytes: 10000}
//	    expect:
//	      - {kind: host-tx-above-mss, host: ginger}
type Scenario struct {
	// Name is what `vnic lab run NAME` takes: lower case, digits, '-'.
	Name string `yaml:"name"`
	// Title is the report's heading.
	Title string `yaml:"title"`
	// Story is the real-world story being reproduced, plain text.
	Story string `yaml:"story"`
	Hosts []Host `yaml:"hosts"`
	Links []Link `yaml:"links"`
	// Routers are gVisor routers (package vnic/vnic/router) whose
	// interfaces are wired to hosts' NICs.
	Routers []Router `yaml:"routers,omitempty"`
	Steps   []Step   `yaml:"steps"`
}

// Router is a gVisor netstack router (and firewall) with one interface
// per attached host: each interface is the far end of that host's NIC's
// wire. The router's ICMP errors (fragmentation needed, ...) are packets
// on those wires like any other.
//
//	routers:
//	  - name: router
//	    ifaces:
//	      - {name: eth0, host: web, addrs: [198.18.1.1/24], gro: buggy-2014}
//	      - {name: eth1, host: client, addrs: [198.18.2.1/24]}
//	    firewall:
//	      - {name: drop-jumbo, iface: eth0, drop_above: 1500, icmp: true}
type Router struct {
	Name   string        `yaml:"name"`
	Ifaces []RouterIface `yaml:"ifaces"`
	// Routes are static routes beyond the interfaces' prefixes.
	Routes []RouterRoute `yaml:"routes,omitempty"`
	// Firewall are the rules at start (a step's router change replaces
	// them).
	Firewall []FirewallRule `yaml:"firewall,omitempty"`
}

// GRO modes of a router interface (router.GROMode).
const (
	GROOff         = "off"
	GROBuggy2014   = "buggy-2014"
	GROFixed       = "fixed"
	GRODropsMerged = "drops-merged"
)

// RouterIface is a router interface wired to Host's NIC.
type RouterIface struct {
	// Name is the interface's name (default ethN).
	Name string `yaml:"name,omitempty"`
	// Host is the NIC at the other end of the wire: host.nic, or the
	// host when it has one NIC.
	Host string `yaml:"host"`
	// Addrs are the router's ADDR/PREFIX on this interface.
	Addrs []string `yaml:"addrs"`
	// MTU is the interface MTU (default 1500).
	MTU int `yaml:"mtu,omitempty"`
	// MaxReceive is the largest packet accepted from the wire (default:
	// the MTU); above the MTU it is a NIC behind a pass-through virtual
	// switch that receives unsegmented super-packets (story 4).
	MaxReceive int `yaml:"max_receive,omitempty"`
	// GRO is the receive path's GRO: "off" (default), "buggy-2014" (the
	// Debian 3.2.60 forwarding bug of story 3), "drops-merged" (gVisor's
	// forwarding dropping merged packets silently, google/gvisor#14011)
	// or "fixed".
	GRO string `yaml:"gro,omitempty"`
}

// RouterRoute is a static route: Dst leaves through interface Iface.
type RouterRoute struct {
	Dst   string `yaml:"dst"`
	Iface string `yaml:"iface"`
}

// FirewallRule is one rule of a router's firewall (router.Rule): it
// matches every packet crossing Iface in direction Dir and either drops
// what is above DropAbove bytes (answering fragmentation needed /
// packet too big if ICMP), or clamps the MSS of SYNs (ClampMSS, or
// ClampToPMTU: iptables TCPMSS --set-mss / --clamp-mss-to-pmtu).
type FirewallRule struct {
	Name  string `yaml:"name,omitempty"`
	Iface string `yaml:"iface"`
	// Dir is "in" (default) or "out".
	Dir         string `yaml:"dir,omitempty"`
	DropAbove   int    `yaml:"drop_above,omitempty"`
	ICMP        bool   `yaml:"icmp,omitempty"`
	ClampMSS    int    `yaml:"clamp_mss,omitempty"`
	ClampToPMTU bool   `yaml:"clamp_to_pmtu,omitempty"`
}

// RouterChange is a step's change to a router: the GRO mode of one
// interface (the lab's `ethtool -K IFACE gro off` on the router), and/or
// a new firewall rule set.
type RouterChange struct {
	Router string `yaml:"router"`
	// Iface and GRO: set that interface's GRO mode.
	Iface string `yaml:"iface,omitempty"`
	GRO   string `yaml:"gro,omitempty"`
	// Firewall, if not nil, replaces the rules (empty: no rules). The
	// router is rebuilt with them; its forwarding keeps no state.
	Firewall *[]FirewallRule `yaml:"firewall,omitempty"`
}

// ModelChange is a step's switch of a host's NIC model (the daemon's own
// knob: nic.NIC.SetModel).
type ModelChange struct {
	// Host is the NIC: host.nic, or the host when it has one NIC.
	Host  string `yaml:"host"`
	Model string `yaml:"model"`
}

// Host is a Linux network namespace with one vnic NIC (NIC) or several
// (NICs).
type Host struct {
	Name string `yaml:"name"`
	// NIC is the host's NIC when it has one (the form of older files).
	NIC NIC `yaml:"nic,omitempty"`
	// NICs are the host's NICs when it has several (eth0, eth1, ... by
	// default). Links and expectations name one as host.nic (web.eth1).
	NICs []NIC `yaml:"nics,omitempty"`
	// Forwarding makes the host a Linux router: the kernel forwards
	// between its NICs (net.ipv4.ip_forward=1,
	// net.ipv6.conf.all.forwarding=1), with its own GRO on each NIC.
	Forwarding bool `yaml:"forwarding,omitempty"`
	// Routes are routes added in the host: a prefix routed through the
	// host's first NIC (`ip route add PREFIX dev eth0`), e.g. the far
	// side of a router, or a whole `ip route add` argument list such as
	// "198.18.12.0/24 via 198.18.11.1".
	Routes []string `yaml:"routes,omitempty"`
	// Services are servers the lab starts inside the host's namespace:
	// "discard" (TCP port 9, reads and counts until EOF, then closes, as
	// traffic.Send expects).
	Services []string `yaml:"services,omitempty"`
}

// Nics returns the host's NICs (NIC, or NICs), each with its name
// filled in (ethN by default).
func (h *Host) Nics() []NIC {
	var out []NIC
	if len(h.NICs) > 0 {
		out = slices.Clone(h.NICs)
	} else {
		out = []NIC{h.NIC}
	}
	for i := range out {
		if out[i].Name == "" {
			out[i].Name = fmt.Sprintf("eth%d", i)
		}
	}
	return out
}

// NIC is a host's vnic NIC.
type NIC struct {
	// Name is the interface name inside the host (default "eth0").
	Name string `yaml:"name"`
	// Addrs are ADDR/PREFIX strings: 198.18.0.1/15, fd00::1/64.
	Addrs []string `yaml:"addrs"`
	// MTU is the interface MTU (default 1500).
	MTU int `yaml:"mtu,omitempty"`
	// HWMTU is the hardware MTU (default: the MTU); below the MTU it is
	// the forcedeth NIC that cuts TCP behind the kernel's back.
	HWMTU int `yaml:"hw_mtu,omitempty"`
	// Model is the NIC model: "standard" (default), "tso-passthrough"
	// (super-packets go on the wire unsegmented, as VMXNET3 between VMs),
	// "no-csum" (checksums the kernel left partial go on the wire
	// incomplete) or "rx-csum-trusting" (every received packet reported
	// checksum-verified without a check: corruption reaches the
	// application).
	Model string `yaml:"model,omitempty"`
	// Mode is "tun" (default: an IP interface) or "tap" (an Ethernet
	// interface with a MAC address; the kernel does ARP and neighbour
	// discovery, the pcap has Ethernet headers). Every NIC of a lab has
	// the same mode (one capture link type), and a router's interfaces
	// are IP links, so a lab with routers is tun.
	Mode string `yaml:"mode,omitempty"`
}

// Link kinds.
const (
	// LinkWire is a direct cable between two hosts' NICs.
	LinkWire = "wire"
	// LinkPeer joins a host's NIC to a gVisor peer host (with the echo,
	// discard, chargen and HTTP services) that only exists on this link.
	LinkPeer = "peer"
)

// Link is a cable.
type Link struct {
	// Kind is LinkWire or LinkPeer.
	Kind string `yaml:"kind"`
	// A is a host's NIC: host.nic, or just the host when it has one NIC;
	// B is another NIC (wire) or the peer's name (peer).
	A string `yaml:"a"`
	B string `yaml:"b"`
	// PeerAddrs are the peer's addresses (peer links; default: for each
	// of A's addresses the next one in its subnet).
	PeerAddrs []string `yaml:"peer_addrs,omitempty"`
	// Impair are the cable's impairments (both directions).
	Impair Impairments `yaml:"impair,omitempty"`
}

// Impairments are wire.Options' impairments.
type Impairments struct {
	Loss      float64       `yaml:"loss,omitempty"`
	Duplicate float64       `yaml:"duplicate,omitempty"`
	Corrupt   float64       `yaml:"corrupt,omitempty"`
	Reorder   float64       `yaml:"reorder,omitempty"`
	Delay     time.Duration `yaml:"delay,omitempty"`
	Jitter    time.Duration `yaml:"jitter,omitempty"`
	Seed      int64         `yaml:"seed,omitempty"`
}

// Step is one experiment: setup commands, traffic, and what the captures
// must show.
type Step struct {
	Name        string `yaml:"name"`
	Description string `yaml:"description"`
	// Setup runs before the traffic, in order.
	Setup []Cmd `yaml:"setup,omitempty"`
	// Router are changes to routers, after Setup.
	Router []RouterChange `yaml:"router,omitempty"`
	// Models are NIC model switches, after Setup.
	Models  []ModelChange `yaml:"models,omitempty"`
	Traffic Traffic       `yaml:"traffic"`
	Expect  []Expectation `yaml:"expect,omitempty"`
	// Explanation is what to see in the step, for the teacher.
	Explanation string `yaml:"explanation"`
}

// Cmd is a shell command run in a host's namespace (sh -c), e.g.
// "ethtool -K eth0 gso off tso off". It must succeed.
type Cmd struct {
	Host string `yaml:"host"`
	Run  string `yaml:"run"`
}

// Traffic kinds: the built-in generators of vnic/vnic/traffic, or a
// command.
const (
	// TrafficSend: traffic.Send, TCP to the discard service (port 9).
	TrafficSend = "send"
	// TrafficPing: traffic.Ping, ICMP echo of Size bytes, Count times.
	TrafficPing = "ping"
	// TrafficCommand: Command in From's namespace (sh -c); must exit 0.
	TrafficCommand = "command"
)

// Traffic is what a step sends.
type Traffic struct {
	Kind string `yaml:"kind"`
	// From is the sending host.
	From string `yaml:"from"`
	// To is a host (or peer) name, or an IP address.
	To string `yaml:"to,omitempty"`
	// IPv6 picks To's IPv6 address instead of its IPv4 one.
	IPv6 bool `yaml:"ipv6,omitempty"`
	// Bytes is how much send moves.
	Bytes int64 `yaml:"bytes,omitempty"`
	// Size and Count are ping's payload size and count (default 1).
	Size  int `yaml:"size,omitempty"`
	Count int `yaml:"count,omitempty"`
	// Command is the command of TrafficCommand.
	Command string `yaml:"command,omitempty"`
	// Duration bounds a send (traffic.Options.Duration): it stops after
	// this long even if Bytes have not gone; 0: no bound but Timeout.
	Duration time.Duration `yaml:"duration,omitempty"`
	// Timeout bounds a send's connect, each write without progress and
	// the final wait (traffic.Options.Timeout; 0: its default).
	Timeout time.Duration `yaml:"timeout,omitempty"`
}

// Expectation kinds. Host is whose NIC's capture points are meant
// (default: the traffic's sender).
const (
	// ExpectHostTXAboveMSS: the host's host-tx has TCP data segments
	// longer than the MSS (super-packets the wire never carried).
	ExpectHostTXAboveMSS = "host-tx-above-mss"
	// ExpectHostTXWithinMSS: no host-tx TCP segment is longer than the MSS.
	ExpectHostTXWithinMSS = "host-tx-within-mss"
	// ExpectHostTXPayloads: the host's host-tx TCP data segments have
	// exactly the payload lengths Sizes, in order.
	ExpectHostTXPayloads = "host-tx-payloads"
	// ExpectHostTXMax: the host's host-tx has TCP data segments, none
	// longer than Size bytes of payload (e.g. half the window the
	// receiver announced: the kernel's tcp_bound_to_half_wnd).
	ExpectHostTXMax = "host-tx-max"
	// ExpectHostRXPayloads: the host's host-rx TCP data segments (what
	// its tcpdump shows arriving) have exactly the payload lengths Sizes,
	// in order.
	ExpectHostRXPayloads = "host-rx-payloads"
	// ExpectWireMax: no packet on the host's wire (either direction) is
	// longer than Size bytes of IP (default: the NIC's hardware MTU).
	ExpectWireMax = "wire-max"
	// ExpectHostTXEqualsWire: the host's host-tx TCP data segments and
	// its outgoing wire ones are the same (sequence ranges).
	ExpectHostTXEqualsWire = "host-tx-equals-wire"
	// ExpectBytesArrive: every byte the traffic sent arrived (send), or
	// Count replies came back (ping; Count 0 means all).
	ExpectBytesArrive = "bytes-arrive"
	// ExpectNoReply: ping got no reply at all.
	ExpectNoReply = "no-reply"
	// ExpectDrop: the host's NIC dropped at least one packet (with the
	// drop reason Reason, if set) and counted it. The host's kernel
	// counts too: reason "kernel TcpInCsumErrors" (/proc/net/snmp) is a
	// segment its TCP dropped for a bad checksum. Host may also name a
	// router: reasons are its counters ("firewall drop-jumbo: dropped",
	// "forwarding: packet too big", "eth0: oversize dropped"). Counters
	// of events that are not losses (an ICMP sent, an MSS clamped) are
	// ExpectEvent's.
	ExpectDrop = "drop"
	// ExpectEvent: the host's (or router's) counter Reason counted at
	// least once an event that is not a loss: a router's "eth1: gro
	// merged forwarded whole", "eth1: frag-needed sent", a firewall
	// rule's "syn mss clamped".
	ExpectEvent = "event"
	// ExpectICMPFragNeeded: the host's wire brought it an ICMP
	// "fragmentation needed" (ICMPv6 "packet too big") naming MTU Size
	// (default 1500).
	ExpectICMPFragNeeded = "icmp-frag-needed"
	// ExpectStalls: a send did not complete: less than half of the bytes
	// arrived within the traffic's Duration (the receiver is ours), or
	// fewer than Bytes were sent.
	ExpectStalls = "stalls"
	// ExpectWireAbove: the host put at least one packet of more than Size
	// bytes of IP (default 1500) on its wire.
	ExpectWireAbove = "wire-above"
	// ExpectHostTXChecksumsPartial: the host's host-tx has TCP packets
	// whose checksum is partial (the pseudo-header sum: Wireshark's
	// "incorrect, maybe caused by TCP checksum offload").
	ExpectHostTXChecksumsPartial = "host-tx-checksums-partial"
	// ExpectWireChecksumsComplete: every TCP packet the host put on the
	// wire has a complete checksum (at least one).
	ExpectWireChecksumsComplete = "wire-checksums-complete"
	// ExpectWireChecksumsBad: every TCP packet the host put on the wire
	// has a checksum that does not verify (partial or bad; at least one).
	ExpectWireChecksumsBad = "wire-checksums-bad"
	// ExpectHostRXAboveMTU: the NIC handed its host TCP packets longer
	// than Size bytes of IP (default: the NIC's MTU) — GRO merged them;
	// it is what tcpdump on that interface shows (on a router: story 3's
	// clue).
	ExpectHostRXAboveMTU = "host-rx-above-mtu"
	// ExpectDataIntact: a send's receiving application (the lab's discard
	// service) read every byte, each one as sent (traffic.Pattern).
	ExpectDataIntact = "data-intact"
	// ExpectDataCorrupt: the receiving application read bytes that are
	// not the ones sent: corruption got past every checksum.
	ExpectDataCorrupt = "data-corrupt"
	// ExpectNoICMPFragNeeded: the host's wire brought it no ICMP
	// "fragmentation needed" or "packet too big" at all.
	ExpectNoICMPFragNeeded = "no-icmp-frag-needed"
)

// Expectation is one claim about a step.
type Expectation struct {
	Kind string `yaml:"kind"`
	Host string `yaml:"host,omitempty"`
	// Size is the limit of wire-max, or the MSS of the MSS claims
	// (default: the NIC MTU minus 52, or 72 for IPv6).
	Size int `yaml:"size,omitempty"`
	// Sizes are host-tx-payloads' lengths.
	Sizes []int `yaml:"sizes,omitempty"`
	// Count is bytes-arrive's number of ping replies.
	Count int `yaml:"count,omitempty"`
	// Reason is drop's drop reason (vnic stat's names).
	Reason string `yaml:"reason,omitempty"`
}

// nicID is a NIC's name in the lab and its capture: host.ifname.
func nicID(host, ifname string) string { return host + "." + ifname }

// nicName is the capture name (nicID) of the NIC a reference names, or
// the reference itself when it names none.
func (s *Scenario) nicName(ref string) string {
	h, n, err := s.nicRef(ref)
	if err != nil {
		return ref
	}
	return nicID(h.Name, n.Name)
}

// nicRef resolves a reference to a NIC — "host.nic", or "host" for a
// host with one NIC — to its host and NIC; an error says what is wrong.
func (s *Scenario) nicRef(ref string) (*Host, NIC, error) {
	hn, nn, dotted := strings.Cut(ref, ".")
	h := s.host(hn)
	if h == nil {
		return nil, NIC{}, fmt.Errorf("no host %q", hn)
	}
	nics := h.Nics()
	if !dotted {
		if len(nics) > 1 {
			return nil, NIC{}, fmt.Errorf("host %s has %d NICs: name one, e.g. %s.%s", hn, len(nics), hn, nics[0].Name)
		}
		return h, nics[0], nil
	}
	for _, n := range nics {
		if n.Name == nn {
			return h, n, nil
		}
	}
	var names []string
	for _, n := range nics {
		names = append(names, n.Name)
	}
	return nil, NIC{}, fmt.Errorf("host %s has no NIC %q (it has %s)", hn, nn, strings.Join(names, ", "))
}

// host returns the host named name.
func (s *Scenario) host(name string) *Host {
	for i := range s.Hosts {
		if s.Hosts[i].Name == name {
			return &s.Hosts[i]
		}
	}
	return nil
}

// Validate checks the scenario before anything is created.
func (s *Scenario) Validate() error {
	if s.Name == "" {
		return fmt.Errorf("lab: scenario without a name")
	}
	if err := s.validateNames(); err != nil {
		return err
	}
	peers := map[string]bool{}
	for _, l := range s.Links {
		if l.Kind == LinkPeer {
			peers[l.B] = true
		}
	}
	seen := map[string]bool{}
	for _, h := range s.Hosts {
		if h.Name == "" || seen[h.Name] {
			return fmt.Errorf("lab %s: host name %q empty or repeated", s.Name, h.Name)
		}
		seen[h.Name] = true
		if strings.Contains(h.Name, ".") {
			return fmt.Errorf("lab %s: host name %q: no '.' (host.nic names a host's NIC)", s.Name, h.Name)
		}
		if len(h.NICs) > 0 && (h.NIC.Name != "" || len(h.NIC.Addrs) > 0 || h.NIC.MTU != 0) {
			return fmt.Errorf("lab %s: host %s: give `nic` (one NIC) or `nics` (several), not both", s.Name, h.Name)
		}
		nicNames := map[string]bool{}
		for _, n := range h.Nics() {
			if nicNames[n.Name] {
				return fmt.Errorf("lab %s: host %s: NIC name %q repeated", s.Name, h.Name, n.Name)
			}
			nicNames[n.Name] = true
			for _, a := range n.Addrs {
				if _, err := netip.ParsePrefix(a); err != nil {
					return fmt.Errorf("lab %s: host %s: NIC %s: address %q: %v", s.Name, h.Name, n.Name, a, err)
				}
			}
		}
		for _, p := range h.Routes {
			if _, err := netip.ParsePrefix(strings.Fields(p + " ")[0]); err != nil {
				return fmt.Errorf("lab %s: host %s: route %q: %v", s.Name, h.Name, p, err)
			}
		}
		for _, sv := range h.Services {
			if sv != "discard" {
				return fmt.Errorf("lab %s: host %s: unknown service %q (have: discard)", s.Name, h.Name, sv)
			}
		}
	}
	if err := s.validateModes(); err != nil {
		return err
	}
	linked := map[string]bool{}
	link := func(what, ref string) error {
		h, n, err := s.nicRef(ref)
		if err != nil {
			return fmt.Errorf("lab %s: %s: %v", s.Name, what, err)
		}
		id := h.Name + "." + n.Name
		if linked[id] {
			return fmt.Errorf("lab %s: %s: NIC %s is already linked (one cable per NIC: give the host another NIC in `nics`)", s.Name, what, id)
		}
		linked[id] = true
		return nil
	}
	for _, l := range s.Links {
		what := fmt.Sprintf("link %s–%s", l.A, l.B)
		if err := link(what, l.A); err != nil {
			return err
		}
		switch l.Kind {
		case LinkWire:
			if err := link(what, l.B); err != nil {
				return err
			}
		case LinkPeer:
			if l.B == "" || seen[l.B] {
				return fmt.Errorf("lab %s: peer link from %s: the peer needs a name of its own", s.Name, l.A)
			}
		default:
			return fmt.Errorf("lab %s: link kind %q: use %q or %q", s.Name, l.Kind, LinkWire, LinkPeer)
		}
	}
	if err := s.validateRouters(seen, link); err != nil {
		return err
	}
	for i, st := range s.Steps {
		where := fmt.Sprintf("lab %s: step %d (%s)", s.Name, i+1, st.Name)
		if err := s.validateChanges(where, st); err != nil {
			return err
		}
		for _, c := range st.Setup {
			if s.host(c.Host) == nil {
				return fmt.Errorf("%s: setup on unknown host %q", where, c.Host)
			}
		}
		t := st.Traffic
		if s.host(t.From) == nil {
			return fmt.Errorf("%s: traffic from unknown host %q", where, t.From)
		}
		switch t.Kind {
		case TrafficSend, TrafficPing:
			if _, err := netip.ParseAddr(t.To); err != nil && s.host(t.To) == nil && !peers[t.To] {
				return fmt.Errorf("%s: traffic to %q: not a host, peer or address", where, t.To)
			}
		case TrafficCommand:
			if t.Command == "" {
				return fmt.Errorf("%s: command traffic without a command", where)
			}
		default:
			return fmt.Errorf("%s: traffic kind %q: use send, ping or command", where, t.Kind)
		}
		for _, e := range st.Expect {
			if !slices.Contains(expectKinds, e.Kind) {
				return fmt.Errorf("%s: expectation %q: use one of %v", where, e.Kind, expectKinds)
			}
			if e.Host != "" && s.router(e.Host) == nil {
				if _, _, err := s.nicRef(e.Host); err != nil && s.host(e.Host) == nil {
					return fmt.Errorf("%s: expectation %s: %v", where, e.Kind, err)
				}
			}
			if e.Kind == ExpectDrop && e.Reason != "" && isEvent(e.Reason) {
				return fmt.Errorf("%s: expectation drop with reason %q: that counter counts events, not lost packets; use kind %s", where, e.Reason, ExpectEvent)
			}
			if e.Kind == ExpectEvent && !isEvent(e.Reason) {
				return fmt.Errorf("%s: expectation event with reason %q: give an event counter (one ending in %s)", where, e.Reason, strings.Join(eventReasons, ", "))
			}
		}
	}
	return nil
}

var expectKinds = []string{ExpectHostTXAboveMSS, ExpectHostTXWithinMSS, ExpectHostTXPayloads, ExpectHostTXMax, ExpectHostRXPayloads, ExpectWireMax, ExpectHostTXEqualsWire,
	ExpectBytesArrive, ExpectNoReply, ExpectDrop, ExpectEvent, ExpectICMPFragNeeded, ExpectStalls, ExpectWireAbove,
	ExpectHostTXChecksumsPartial, ExpectWireChecksumsComplete, ExpectWireChecksumsBad, ExpectHostRXAboveMTU,
	ExpectDataIntact, ExpectDataCorrupt, ExpectNoICMPFragNeeded}

// router returns the router named name.
func (s *Scenario) router(name string) *Router {
	for i := range s.Routers {
		if s.Routers[i].Name == name {
			return &s.Routers[i]
		}
	}
	return nil
}

// ifaceName is router interface i's name.
func (rt *Router) ifaceName(i int) string {
	if n := rt.Ifaces[i].Name; n != "" {
		return n
	}
	return fmt.Sprintf("eth%d", i)
}

// iface returns the index of the interface called name, or -1.
func (rt *Router) iface(name string) int {
	for i := range rt.Ifaces {
		if rt.ifaceName(i) == name {
			return i
		}
	}
	return -1
}

func validGRO(m string) bool {
	return m == "" || m == GROOff || m == GROBuggy2014 || m == GROFixed || m == GRODropsMerged
}

func (rt *Router) validateFirewall(rules []FirewallRule) error {
	for _, f := range rules {
		if rt.iface(f.Iface) < 0 {
			return fmt.Errorf("router %s: firewall rule %q: no interface %q", rt.Name, f.Name, f.Iface)
		}
		if f.Dir != "" && f.Dir != "in" && f.Dir != "out" {
			return fmt.Errorf("router %s: firewall rule %q: dir %q: use in or out", rt.Name, f.Name, f.Dir)
		}
		acts := 0
		if f.DropAbove > 0 {
			acts++
		}
		if f.ClampMSS > 0 || f.ClampToPMTU {
			acts++
		}
		if acts != 1 {
			return fmt.Errorf("router %s: firewall rule %q: give one of drop_above or clamp_mss/clamp_to_pmtu", rt.Name, f.Name)
		}
	}
	return nil
}

// validateModes checks the NICs' modes: tun or tap, one for the whole lab,
// tun when there are routers.
func (s *Scenario) validateModes() error {
	mode := ""
	for _, h := range s.Hosts {
		for _, n := range h.Nics() {
			m := n.Mode
			if m == "" {
				m = "tun"
			}
			if m != "tun" && m != "tap" {
				return fmt.Errorf("lab %s: host %s: NIC %s: mode %q: use tun or tap", s.Name, h.Name, n.Name, n.Mode)
			}
			if mode != "" && m != mode {
				return fmt.Errorf("lab %s: host %s: NIC %s: mode %s, other NICs are %s: every NIC of a lab has the same mode (one capture link type)", s.Name, h.Name, n.Name, m, mode)
			}
			mode = m
		}
	}
	if mode == "tap" && len(s.Routers) > 0 {
		return fmt.Errorf("lab %s: mode tap NICs with routers: a router's interfaces are IP links; use mode tun, or make the router a host with forwarding: true", s.Name)
	}
	return nil
}

// tap reports whether the lab's NICs are TAP NICs (validateModes).
func (s *Scenario) tap() bool {
	for _, h := range s.Hosts {
		for _, n := range h.Nics() {
			return n.Mode == "tap"
		}
	}
	return false
}

// validateRouters checks the routers; link marks a NIC wired (and fails
// if it already is).
func (s *Scenario) validateRouters(seen map[string]bool, link func(what, ref string) error) error {
	names := map[string]bool{}
	for _, rt := range s.Routers {
		if rt.Name == "" || names[rt.Name] || seen[rt.Name] {
			return fmt.Errorf("lab %s: router name %q empty or taken", s.Name, rt.Name)
		}
		names[rt.Name] = true
		if len(rt.Ifaces) == 0 {
			return fmt.Errorf("lab %s: router %s without interfaces", s.Name, rt.Name)
		}
		inames := map[string]bool{}
		for i, f := range rt.Ifaces {
			n := rt.ifaceName(i)
			if inames[n] {
				return fmt.Errorf("lab %s: router %s: interface %s repeated", s.Name, rt.Name, n)
			}
			inames[n] = true
			if err := link(fmt.Sprintf("router %s: interface %s", rt.Name, n), f.Host); err != nil {
				return err
			}
			for _, a := range f.Addrs {
				if _, err := netip.ParsePrefix(a); err != nil {
					return fmt.Errorf("lab %s: router %s: interface %s: address %q: %v", s.Name, rt.Name, n, a, err)
				}
			}
			if !validGRO(f.GRO) {
				return fmt.Errorf("lab %s: router %s: interface %s: gro %q: use off, buggy-2014, drops-merged or fixed", s.Name, rt.Name, n, f.GRO)
			}
		}
		for _, r := range rt.Routes {
			if _, err := netip.ParsePrefix(r.Dst); err != nil || rt.iface(r.Iface) < 0 {
				return fmt.Errorf("lab %s: router %s: route %s via %q: bad prefix or interface", s.Name, rt.Name, r.Dst, r.Iface)
			}
		}
		if err := rt.validateFirewall(rt.Firewall); err != nil {
			return fmt.Errorf("lab %s: %w", s.Name, err)
		}
	}
	return nil
}

// validateChanges checks a step's router and model changes.
func (s *Scenario) validateChanges(where string, st Step) error {
	for _, c := range st.Router {
		rt := s.router(c.Router)
		if rt == nil {
			return fmt.Errorf("%s: router change on unknown router %q", where, c.Router)
		}
		if c.GRO != "" || c.Iface != "" {
			if rt.iface(c.Iface) < 0 || c.GRO == "" || !validGRO(c.GRO) {
				return fmt.Errorf("%s: router %s: gro %q on interface %q: need a known interface and off, buggy-2014, drops-merged or fixed", where, rt.Name, c.GRO, c.Iface)
			}
		}
		if c.Firewall != nil {
			if err := rt.validateFirewall(*c.Firewall); err != nil {
				return fmt.Errorf("%s: %w", where, err)
			}
		}
	}
	for _, m := range st.Models {
		if _, _, err := s.nicRef(m.Host); err != nil {
			return fmt.Errorf("%s: model change: %v", where, err)
		}
		if !slices.Contains(nicModels, m.Model) {
			return fmt.Errorf("%s: model %q: use one of %s", where, m.Model, strings.Join(nicModels, ", "))
		}
	}
	return nil
}

// nameRule is what a host or router name may be: it becomes part of a
// network namespace's name (lab-SCENARIO-HOST-xxxxxx, a file in
// /run/netns) and of the capture names (HOST.NIC@POINT), so no '.', '/',
// '@' or spaces.
var nameRule = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$`)

// checkName says what is wrong with a host or router name, or "".
func checkName(n string) string {
	if nameRule.MatchString(n) {
		return ""
	}
	return fmt.Sprintf("%q: use letters, digits, '-' and '_' (at most 32, no '.', '/', '@' or spaces): it names a network namespace and the capture points HOST.NIC@POINT", n)
}

// checkIfname says what is wrong with an interface name the kernel is
// given (dev_valid_name: at most 15 bytes, not . or .., no '/', ':' or
// spaces; and no '@', which separates a capture point), or "".
func checkIfname(n string) string {
	switch {
	case n == "":
		return ""
	case len(n) > 15:
		return fmt.Sprintf("%q: the kernel takes interface names of at most 15 characters (IFNAMSIZ), e.g. eth0", n)
	case n == "." || n == ".." || strings.ContainsAny(n, "/:@ \t\n"):
		return fmt.Sprintf("%q: the kernel refuses '/', ':' and spaces in interface names (and vnic '@'), e.g. eth0", n)
	}
	return ""
}

// checkHWMTU says what is wrong with a NIC's hardware MTU, or "".
func checkHWMTU(hw, mtu int) string {
	if hw == 0 {
		return ""
	}
	if mtu == 0 {
		mtu = 1500
	}
	switch {
	case hw > mtu:
		return fmt.Sprintf("hw_mtu %d is above the mtu %d: the hardware MTU is what the NIC can really send, at most the MTU (leave it out for a NIC that does its MTU)", hw, mtu)
	case hw < 576:
		return fmt.Sprintf("hw_mtu %d: a NIC's hardware MTU is at least 576 (the smallest packet IPv4 must carry)", hw)
	}
	return ""
}

// addrOwners lists every address the scenario gives out (hosts' NICs,
// peers, routers) with who has it, in order: owner describes the place
// ("hosts[1] basil", "routers[0] router eth1").
func (s *Scenario) addrOwners() (addrs []netip.Addr, owners []string) {
	add := func(a, owner string) {
		if p, err := netip.ParsePrefix(a); err == nil {
			addrs, owners = append(addrs, p.Addr()), append(owners, owner)
		}
	}
	for i, h := range s.Hosts {
		for _, n := range h.Nics() {
			for _, a := range n.Addrs {
				add(a, fmt.Sprintf("hosts[%d] %s.%s", i, h.Name, n.Name))
			}
		}
	}
	for i, l := range s.Links {
		for _, a := range l.PeerAddrs {
			add(a, fmt.Sprintf("links[%d] peer %s", i, l.B))
		}
	}
	for i, rt := range s.Routers {
		for j, f := range rt.Ifaces {
			for _, a := range f.Addrs {
				add(a, fmt.Sprintf("routers[%d] %s %s", i, rt.Name, rt.ifaceName(j)))
			}
		}
	}
	return addrs, owners
}

// dupAddr finds an address given out twice: the second owner's index and
// the first's, or -1.
func dupAddr(addrs []netip.Addr) (int, int) {
	first := map[netip.Addr]int{}
	for i, a := range addrs {
		if j, ok := first[a]; ok {
			return i, j
		}
		first[a] = i
	}
	return -1, -1
}

// validateNames checks names, hardware MTUs and addresses as the kernel
// and the lab would take them.
func (s *Scenario) validateNames() error {
	for _, h := range s.Hosts {
		if msg := checkName(h.Name); msg != "" {
			return fmt.Errorf("lab %s: host %s", s.Name, msg)
		}
		for _, n := range h.Nics() {
			if msg := checkIfname(n.Name); msg != "" {
				return fmt.Errorf("lab %s: host %s: nic name %s", s.Name, h.Name, msg)
			}
			if msg := checkHWMTU(n.HWMTU, n.MTU); msg != "" {
				return fmt.Errorf("lab %s: host %s: NIC %s: %s", s.Name, h.Name, n.Name, msg)
			}
		}
	}
	for _, rt := range s.Routers {
		if msg := checkName(rt.Name); msg != "" {
			return fmt.Errorf("lab %s: router %s", s.Name, msg)
		}
		for _, f := range rt.Ifaces {
			if msg := checkIfname(f.Name); msg != "" {
				return fmt.Errorf("lab %s: router %s: interface name %s", s.Name, rt.Name, msg)
			}
		}
	}
	addrs, owners := s.addrOwners()
	if i, j := dupAddr(addrs); i >= 0 {
		return fmt.Errorf("lab %s: address %s is given twice, to %s and to %s: every host needs its own", s.Name, addrs[i], owners[j], owners[i])
	}
	return nil
}
