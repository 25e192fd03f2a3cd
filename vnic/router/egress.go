package router

import (
	"encoding/binary"
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
)

// ownPacket looks at a packet the router's stack sends on f. Forwarded
// packets never carry one of the router's addresses as their source; the
// router's own do: its ICMP errors and echo replies are counted by type,
// an ICMPv6 packet-too-big gets its MTU (see fixPTB), and its TCP/UDP
// packets get their checksums completed (the links claim TX checksum
// offload so that gVisor leaves forwarded packets alone).
func (r *Router) ownPacket(f *iface, b []byte) {
	var src netip.Addr
	var proto uint8
	var l4 []byte
	switch {
	case len(b) >= header.IPv4MinimumSize && b[0]>>4 == 4:
		h := header.IPv4(b)
		hl := int(h.HeaderLength())
		tl := int(h.TotalLength())
		if hl < header.IPv4MinimumSize || tl < hl || tl > len(b) || h.FragmentOffset() != 0 {
			return
		}
		src = netip.AddrFrom4(h.SourceAddress().As4())
		proto, l4 = h.Protocol(), b[hl:tl]
	case len(b) >= header.IPv6MinimumSize && b[0]>>4 == 6:
		h := header.IPv6(b)
		pl := int(h.PayloadLength())
		if header.IPv6MinimumSize+pl > len(b) {
			return
		}
		src = netip.AddrFrom16(h.SourceAddress().As16())
		proto, l4 = h.NextHeader(), b[header.IPv6MinimumSize:header.IPv6MinimumSize+pl]
	default:
		return
	}
	if !r.isOwn(src) {
		return
	}
	switch tcpip.TransportProtocolNumber(proto) {
	case header.ICMPv4ProtocolNumber:
		if b[0]>>4 == 4 && len(l4) >= header.ICMPv4MinimumSize {
			f.cnt.countICMPv4(header.ICMPv4(l4))
		}
	case header.ICMPv6ProtocolNumber:
		if b[0]>>4 == 6 && len(l4) >= header.ICMPv6MinimumSize {
			ic := header.ICMPv6(l4)
			if ic.Type() == header.ICMPv6PacketTooBig && !r.gvOnly {
				r.fixPTB(f, b, ic)
			}
			f.cnt.countICMPv6(ic)
		}
	case header.TCPProtocolNumber, header.UDPProtocolNumber:
		completeL4(b, l4, proto)
	}
}

// fixPTB corrects gVisor's ICMPv6 packet-too-big: its returnError builds
// the message with the MTU field 0 (icmpReasonPacketTooBig carries no MTU),
// where RFC 4443 §3.2 wants the next-hop MTU. The next hop is the one
// towards the quoted packet's destination; its MTU goes in, and the
// checksum is updated.
func (r *Router) fixPTB(f *iface, b []byte, ic header.ICMPv6) {
	if len(ic) < header.ICMPv6PacketTooBigMinimumSize+header.IPv6MinimumSize || ic.MTU() != 0 {
		return
	}
	quoted := header.IPv6(ic[header.ICMPv6PacketTooBigMinimumSize:])
	rt, err := r.s.FindRoute(0, tcpip.Address{}, quoted.DestinationAddress(), ipv6.ProtocolNumber, false)
	if err != nil {
		return
	}
	// rt.MTU() is the network MTU (link MTU minus the IPv6 header); the
	// message names the link MTU.
	mtu := r.ifs[rt.NICID()-1].mtu
	rt.Release()
	binary.BigEndian.PutUint32(ic[4:], mtu)
	// The field was 0: adding the new words is enough.
	c := ^binary.BigEndian.Uint16(ic[2:])
	c = checksum.Combine(c, uint16(mtu>>16))
	c = checksum.Combine(c, uint16(mtu))
	binary.BigEndian.PutUint16(ic[2:], ^c)
	f.cnt.ptbFixed.Add(1)
}

// completeL4 computes the TCP or UDP checksum of one of the router's own
// packets from scratch.
func completeL4(b, l4 []byte, proto uint8) {
	var off int
	switch tcpip.TransportProtocolNumber(proto) {
	case header.TCPProtocolNumber:
		if len(l4) < header.TCPMinimumSize {
			return
		}
		off = 16
	default:
		if len(l4) < header.UDPMinimumSize {
			return
		}
		off = 6
	}
	var src, dst tcpip.Address
	if b[0]>>4 == 4 {
		src, dst = header.IPv4(b).SourceAddress(), header.IPv4(b).DestinationAddress()
	} else {
		src, dst = header.IPv6(b).SourceAddress(), header.IPv6(b).DestinationAddress()
	}
	l4[off], l4[off+1] = 0, 0
	sum := header.PseudoHeaderChecksum(tcpip.TransportProtocolNumber(proto), src, dst, uint16(len(l4)))
	c := ^checksum.Checksum(l4, sum)
	if c == 0 && off == 6 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(l4[off:], c)
}
