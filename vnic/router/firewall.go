package router

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
)

// Firewall is an ordered list of rules, each bound to one interface and
// direction, like iptables rules with -i/-o in the mangle/filter tables.
// The rules run in our code around gVisor, not in gVisor's iptables:
//
//   - In rules run in Router.Inject after the interface's GRO and before
//     gVisor sees the packet (netfilter too sees GRO's merged packets:
//     PREROUTING/FORWARD -i ethN);
//   - Out rules run on what gVisor sends on the interface, before
//     Iface.Output (FORWARD/POSTROUTING -o ethN).
//
// For each packet the rules of its interface and direction run in order;
// a rule that drops ends the walk. Each rule has its own counters
// (Stats.Firewall).
type Firewall struct {
	Rules []Rule
}

// Direction is the side of an interface a rule watches.
type Direction uint8

const (
	// In: packets arriving on the interface from its wire.
	In Direction = iota
	// Out: packets leaving through the interface onto its wire.
	Out
)

func (d Direction) String() string {
	if d == In {
		return "in"
	}
	return "out"
}

// Rule is one firewall rule.
type Rule struct {
	// Name names the rule in Stats; "" means a generated one.
	Name string
	// Iface is the index of the interface (in Options.Ifaces).
	Iface int
	// Dir is the direction.
	Dir Direction
	// Action is DropAbove or ClampMSS.
	Action Action
}

// Action is what a rule does: DropAbove or ClampMSS.
type Action interface{ action() }

// DropAbove drops IP packets longer than Size bytes, like
// `iptables -A FORWARD -m length --length Size+1:65535 -j DROP`, or a
// firewall whose NIC cannot carry them. With ICMP it answers each dropped
// packet with ICMP fragmentation-needed (IPv4) or packet-too-big (IPv6)
// naming Size as the MTU — "trying to tell the sender to fragment", which
// is all a 1500-byte firewall can do with a TSO super-packet that was never
// segmented (story 4). ICMP errors, and fragments past the first, are
// dropped without an answer (RFC 1122 §3.2.2, RFC 4443 §2.4).
type DropAbove struct {
	Size int
	ICMP bool
}

// ClampMSS rewrites the MSS option of TCP SYNs (SYN and SYN-ACK) that
// exceeds the limit and updates the TCP checksum incrementally, like
// iptables' TCPMSS target: MSS is `--set-mss MSS`; ToPMTU is
// `--clamp-mss-to-pmtu`, the rule's interface MTU minus 40 (IPv4) or 60
// (IPv6) bytes of headers. Like TCPMSS it only lowers the MSS; unlike it,
// it does not add an MSS option to a SYN that has none.
type ClampMSS struct {
	MSS    int
	ToPMTU bool
}

func (DropAbove) action() {}
func (ClampMSS) action()  {}

// RuleStats are one rule's counters.
type RuleStats struct {
	Name  string
	Iface int
	Dir   Direction
	// Matched counts the packets the rule acted on: dropped, or SYNs whose
	// MSS it looked at.
	Matched uint64
	// Dropped counts the packets DropAbove dropped.
	Dropped uint64
	// ICMPSent counts the ICMP errors DropAbove sent.
	ICMPSent uint64
	// Clamped counts the SYNs ClampMSS rewrote.
	Clamped uint64
}

type rule struct {
	Rule
	matched, dropped, icmpSent, clamped atomic.Uint64
}

func compileFirewall(fw *Firewall, nIfaces int) ([]*rule, error) {
	if fw == nil {
		return nil, nil
	}
	var out []*rule
	for i, r := range fw.Rules {
		if r.Name == "" {
			r.Name = fmt.Sprintf("rule%d", i)
		}
		if r.Iface < 0 || r.Iface >= nIfaces {
			return nil, fmt.Errorf("router: firewall rule %s: no interface %d", r.Name, r.Iface)
		}
		if r.Dir != In && r.Dir != Out {
			return nil, fmt.Errorf("router: firewall rule %s: bad direction %d", r.Name, r.Dir)
		}
		switch a := r.Action.(type) {
		case DropAbove:
			if a.Size < header.IPv4MinimumProcessableDatagramSize {
				return nil, fmt.Errorf("router: firewall rule %s: DropAbove.Size %d below %d", r.Name, a.Size, header.IPv4MinimumProcessableDatagramSize)
			}
		case ClampMSS:
			if !a.ToPMTU && (a.MSS <= 0 || a.MSS > 65535) {
				return nil, fmt.Errorf("router: firewall rule %s: ClampMSS needs MSS in 1..65535 or ToPMTU", r.Name)
			}
		case nil:
			return nil, errors.New("router: firewall rule " + r.Name + " has no Action")
		default:
			return nil, fmt.Errorf("router: firewall rule %s: unknown action %T", r.Name, a)
		}
		out = append(out, &rule{Rule: r})
	}
	return out, nil
}

// filter runs the rules of interface f and direction d on b. It returns
// the packet (copied into cow first if a rule rewrites a borrowed packet)
// and whether it goes on.
func (r *Router) filter(f *iface, d Direction, b []byte, borrowed bool, cow *[]byte) ([]byte, bool) {
	for _, ru := range r.fw {
		if ru.Iface != f.idx || ru.Dir != d {
			continue
		}
		switch a := ru.Action.(type) {
		case DropAbove:
			if len(b) <= a.Size {
				continue
			}
			ru.matched.Add(1)
			ru.dropped.Add(1)
			if a.ICMP && r.sendTooBig(b, a.Size) {
				ru.icmpSent.Add(1)
			}
			return b, false
		case ClampMSS:
			off, mss, ok := synMSS(b)
			if !ok {
				continue
			}
			ru.matched.Add(1)
			limit := a.MSS
			if a.ToPMTU {
				limit = int(f.mtu) - header.IPv4MinimumSize - header.TCPMinimumSize
				if b[0]>>4 == 6 {
					limit = int(f.mtu) - header.IPv6MinimumSize - header.TCPMinimumSize
				}
			}
			if int(mss) <= limit {
				continue
			}
			if borrowed {
				b = copyInto(cow, b)
				borrowed = false
			}
			binary.BigEndian.PutUint16(b[off:], uint16(limit))
			l4 := l4Offset(b)
			updateChecksum(b[l4+16:l4+18], mss, uint16(limit), (off-l4)%2 == 1)
			ru.clamped.Add(1)
		}
	}
	return b, true
}

// l4Offset is the offset of the L4 header in a packet synMSS accepted.
func l4Offset(b []byte) int {
	if b[0]>>4 == 4 {
		return int(header.IPv4(b).HeaderLength())
	}
	return header.IPv6MinimumSize
}

// synMSS finds the MSS option of a TCP SYN: the offset of its value and
// the value. IPv4 without fragmentation, IPv6 with TCP right after the
// fixed header.
func synMSS(b []byte) (int, uint16, bool) {
	var l4 []byte
	var off int
	switch {
	case len(b) >= header.IPv4MinimumSize && b[0]>>4 == 4:
		h := header.IPv4(b)
		hl, tl := int(h.HeaderLength()), int(h.TotalLength())
		if h.Protocol() != uint8(header.TCPProtocolNumber) || h.More() || h.FragmentOffset() != 0 || hl < header.IPv4MinimumSize || tl > len(b) || tl < hl {
			return 0, 0, false
		}
		off, l4 = hl, b[hl:tl]
	case len(b) >= header.IPv6MinimumSize && b[0]>>4 == 6:
		h := header.IPv6(b)
		pl := int(h.PayloadLength())
		if h.NextHeader() != uint8(header.TCPProtocolNumber) || header.IPv6MinimumSize+pl > len(b) {
			return 0, 0, false
		}
		off, l4 = header.IPv6MinimumSize, b[header.IPv6MinimumSize:header.IPv6MinimumSize+pl]
	default:
		return 0, 0, false
	}
	if len(l4) < header.TCPMinimumSize {
		return 0, 0, false
	}
	t := header.TCP(l4)
	if t.Flags()&header.TCPFlagSyn == 0 {
		return 0, 0, false
	}
	do := int(t.DataOffset())
	if do < header.TCPMinimumSize || do > len(l4) {
		return 0, 0, false
	}
	opts := l4[header.TCPMinimumSize:do]
	for i := 0; i < len(opts); {
		switch opts[i] {
		case header.TCPOptionEOL:
			return 0, 0, false
		case header.TCPOptionNOP:
			i++
			continue
		}
		if i+1 >= len(opts) || opts[i+1] < 2 || i+int(opts[i+1]) > len(opts) {
			return 0, 0, false
		}
		if opts[i] == header.TCPOptionMSS && opts[i+1] == 4 {
			return off + header.TCPMinimumSize + i + 2, binary.BigEndian.Uint16(opts[i+2:]), true
		}
		i += int(opts[i+1])
	}
	return 0, 0, false
}

// sendTooBig answers a packet the firewall dropped for its size with ICMP
// fragmentation-needed / packet-too-big naming mtu, sent from the router's
// address on the route back to the sender. It reports whether it sent one.
func (r *Router) sendTooBig(b []byte, mtu int) bool {
	var src, dst tcpip.Address
	var proto tcpip.NetworkProtocolNumber
	switch b[0] >> 4 {
	case 4:
		if len(b) < header.IPv4MinimumSize {
			return false
		}
		h := header.IPv4(b)
		if h.FragmentOffset() != 0 || isICMPError(b) {
			return false
		}
		src, proto = h.SourceAddress(), ipv4.ProtocolNumber
	case 6:
		if len(b) < header.IPv6MinimumSize || isICMPError(b) {
			return false
		}
		src, proto = header.IPv6(b).SourceAddress(), ipv6.ProtocolNumber
	default:
		return false
	}
	rt, err := r.s.FindRoute(0, tcpip.Address{}, src, proto, false)
	if err != nil {
		return false
	}
	nic, local := rt.NICID(), rt.LocalAddress()
	rt.Release()
	dst = src
	var pkt []byte
	if proto == ipv4.ProtocolNumber {
		pkt = fragNeeded(local, dst, b, mtu)
	} else {
		pkt = packetTooBig(local, dst, b, mtu)
	}
	return r.s.WriteRawPacket(nic, proto, buffer.MakeWithData(pkt)) == nil
}

// isICMPError reports whether b is an ICMP error message (never answered
// with another).
func isICMPError(b []byte) bool {
	if b[0]>>4 == 4 {
		h := header.IPv4(b)
		hl := int(h.HeaderLength())
		if h.Protocol() != uint8(header.ICMPv4ProtocolNumber) || len(b) <= hl {
			return false
		}
		t := header.ICMPv4Type(b[hl])
		return t != header.ICMPv4Echo && t != header.ICMPv4EchoReply && t != header.ICMPv4Timestamp && t != header.ICMPv4TimestampReply
	}
	h := header.IPv6(b)
	if h.NextHeader() != uint8(header.ICMPv6ProtocolNumber) || len(b) <= header.IPv6MinimumSize {
		return false
	}
	return header.ICMPv6Type(b[header.IPv6MinimumSize]).IsErrorType()
}

// fragNeeded builds ICMP destination-unreachable/fragmentation-needed
// (RFC 792, RFC 1191 §4) quoting as much of orig as fits in 576 bytes
// (RFC 1812 §4.3.2.3), with TOS 0xc0 as Linux's icmp_send uses.
func fragNeeded(src, dst tcpip.Address, orig []byte, mtu int) []byte {
	q := orig[:min(len(orig), header.IPv4MinimumProcessableDatagramSize-header.IPv4MinimumSize-header.ICMPv4MinimumSize)]
	n := header.IPv4MinimumSize + header.ICMPv4MinimumSize + len(q)
	pkt := make([]byte, n)
	ip := header.IPv4(pkt)
	ip.Encode(&header.IPv4Fields{
		TOS:         0xc0,
		TotalLength: uint16(n),
		TTL:         64,
		Protocol:    uint8(header.ICMPv4ProtocolNumber),
		SrcAddr:     src,
		DstAddr:     dst,
	})
	ip.SetChecksum(^ip.CalculateChecksum())
	ic := header.ICMPv4(pkt[header.IPv4MinimumSize:])
	ic.SetType(header.ICMPv4DstUnreachable)
	ic.SetCode(header.ICMPv4FragmentationNeeded)
	ic.SetMTU(uint16(mtu))
	copy(ic[header.ICMPv4MinimumSize:], q)
	ic.SetChecksum(0)
	ic.SetChecksum(^checksum.Checksum(ic, 0))
	return pkt
}

// packetTooBig builds ICMPv6 packet-too-big (RFC 4443 §3.2) quoting as
// much of orig as fits in the IPv6 minimum MTU.
func packetTooBig(src, dst tcpip.Address, orig []byte, mtu int) []byte {
	q := orig[:min(len(orig), header.IPv6MinimumMTU-header.IPv6MinimumSize-header.ICMPv6PacketTooBigMinimumSize)]
	l4 := header.ICMPv6PacketTooBigMinimumSize + len(q)
	pkt := make([]byte, header.IPv6MinimumSize+l4)
	ip := header.IPv6(pkt)
	ip.Encode(&header.IPv6Fields{
		PayloadLength:     uint16(l4),
		TransportProtocol: header.ICMPv6ProtocolNumber,
		HopLimit:          64,
		SrcAddr:           src,
		DstAddr:           dst,
	})
	ic := header.ICMPv6(pkt[header.IPv6MinimumSize:])
	ic.SetType(header.ICMPv6PacketTooBig)
	ic.SetCode(0)
	ic.SetMTU(uint32(mtu))
	copy(ic[header.ICMPv6PacketTooBigMinimumSize:], q)
	ic.SetChecksum(header.ICMPv6Checksum(header.ICMPv6ChecksumParams{
		Header: ic,
		Src:    src,
		Dst:    dst,
	}))
	return pkt
}
