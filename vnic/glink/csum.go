package glink

import (
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// checksumsOK verifies a wire packet's checksums the way a NIC with receive
// checksum offload does before it reports CHECKSUM_UNNECESSARY: the IPv4
// header checksum, and the TCP, UDP, ICMPv4 or ICMPv6 checksum when the L4
// header follows the fixed IP header directly (IPv4 first fragment or
// unfragmented; IPv6 without extension headers). Anything else is not
// checked here and passes; gVisor then trusts it (see Options.GRO). The
// packet's lengths have been checked by Endpoint.check.
func checksumsOK(b []byte) bool {
	var l4 []byte
	var proto uint8
	var src, dst tcpip.Address
	switch b[0] >> 4 {
	case 4:
		h := header.IPv4(b)
		hl := int(h.HeaderLength())
		if hl < header.IPv4MinimumSize || int(h.TotalLength()) < hl {
			return true // malformed: gVisor counts it
		}
		if checksum.Checksum(b[:hl], 0) != 0xffff {
			return false
		}
		if h.FragmentOffset() != 0 || h.More() {
			return true
		}
		l4, proto = b[hl:h.TotalLength()], h.Protocol()
		src, dst = h.SourceAddress(), h.DestinationAddress()
	case 6:
		h := header.IPv6(b)
		l4, proto = b[header.IPv6MinimumSize:header.IPv6MinimumSize+int(h.PayloadLength())], h.NextHeader()
		src, dst = h.SourceAddress(), h.DestinationAddress()
	default:
		return true
	}
	var initial uint16
	switch tcpip.TransportProtocolNumber(proto) {
	case header.TCPProtocolNumber:
		if len(l4) < header.TCPMinimumSize {
			return true
		}
	case header.UDPProtocolNumber:
		if len(l4) < header.UDPMinimumSize {
			return true
		}
		if b[0]>>4 == 4 && header.UDP(l4).Checksum() == 0 {
			return true // no checksum (IPv4 only)
		}
	case header.ICMPv4ProtocolNumber:
		if b[0]>>4 != 4 {
			return true
		}
		return checksum.Checksum(l4, 0) == 0xffff
	case header.ICMPv6ProtocolNumber:
		if b[0]>>4 != 6 {
			return true
		}
	default:
		return true
	}
	initial = header.PseudoHeaderChecksum(tcpip.TransportProtocolNumber(proto), src, dst, uint16(len(l4)))
	return checksum.Checksum(l4, initial) == 0xffff
}
