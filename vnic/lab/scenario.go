package lab

import (
	"fmt"
	"net/netip"
	"slices"
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
	Steps []Step `yaml:"steps"`
}

// Host is a Linux network namespace with one vnic NIC.
type Host struct {
	Name string `yaml:"name"`
	NIC  NIC    `yaml:"nic"`
	// Services are servers the lab starts inside the host's namespace:
	// "discard" (TCP port 9, reads and counts until EOF, then closes, as
	// traffic.Send expects).
	Services []string `yaml:"services,omitempty"`
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
	// Model is the NIC model: "standard" (default); "tso-passthrough" and
	// "no-csum" are planned.
	Model string `yaml:"model,omitempty"`
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
	// Kind is LinkWire or LinkPeer (a router comes later).
	Kind string `yaml:"kind"`
	// A is a host; B is a host (wire) or the peer's name (peer).
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
	Setup   []Cmd         `yaml:"setup,omitempty"`
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
	// drop reason Reason, if set) and counted it.
	ExpectDrop = "drop"
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
		for _, a := range h.NIC.Addrs {
			if _, err := netip.ParsePrefix(a); err != nil {
				return fmt.Errorf("lab %s: host %s: address %q: %v", s.Name, h.Name, a, err)
			}
		}
		for _, sv := range h.Services {
			if sv != "discard" {
				return fmt.Errorf("lab %s: host %s: unknown service %q (have: discard)", s.Name, h.Name, sv)
			}
		}
	}
	linked := map[string]bool{}
	for _, l := range s.Links {
		if s.host(l.A) == nil {
			return fmt.Errorf("lab %s: link %s–%s: no host %q", s.Name, l.A, l.B, l.A)
		}
		if linked[l.A] {
			return fmt.Errorf("lab %s: host %s has one NIC, so one link", s.Name, l.A)
		}
		linked[l.A] = true
		switch l.Kind {
		case LinkWire:
			if s.host(l.B) == nil {
				return fmt.Errorf("lab %s: link %s–%s: no host %q", s.Name, l.A, l.B, l.B)
			}
			if linked[l.B] {
				return fmt.Errorf("lab %s: host %s has one NIC, so one link", s.Name, l.B)
			}
			linked[l.B] = true
		case LinkPeer:
			if l.B == "" || seen[l.B] {
				return fmt.Errorf("lab %s: peer link from %s: the peer needs a name of its own", s.Name, l.A)
			}
		default:
			return fmt.Errorf("lab %s: link kind %q: use %q or %q", s.Name, l.Kind, LinkWire, LinkPeer)
		}
	}
	for i, st := range s.Steps {
		where := fmt.Sprintf("lab %s: step %d (%s)", s.Name, i+1, st.Name)
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
			if e.Host != "" && s.host(e.Host) == nil {
				return fmt.Errorf("%s: expectation %s on unknown host %q", where, e.Kind, e.Host)
			}
		}
	}
	return nil
}

var expectKinds = []string{ExpectHostTXAboveMSS, ExpectHostTXWithinMSS, ExpectHostTXPayloads, ExpectWireMax, ExpectHostTXEqualsWire, ExpectBytesArrive, ExpectNoReply, ExpectDrop}
