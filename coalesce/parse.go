package coalesce

import (
	"encoding/binary"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
)

const (
	protoTCP      = 6
	protoUDP      = 17
	nextRouting   = 43
	nextDestOpts  = 60
	nextHopByHop  = 0
	nextFragment  = 44
	ipv4HeaderLen = 20
	ipv6HeaderLen = 40
	tcpHeaderLen  = 20
	udpHeaderLen  = 8
)

// TCP flag bits in byte 13 of the TCP header.
const (
	flagFIN = 0x01
	flagSYN = 0x02
	flagRST = 0x04
	flagPSH = 0x08
	flagURG = 0x20
	flagCWR = 0x80
)

// packet is one parsed wire packet: offsets into the IP packet, as
// inet_gro_receive/ipv6_gro_receive and tcp_gro_pull_header leave them.
type packet struct {
	b       []byte // the IP packet, bufs[i][offset:]
	v6, udp bool
	l4      int // offset of the L4 header
	thlen   int // L4 header length
	payload int // L4 payload length, skb_gro_len after the L4 pull
	// flush is NAPI_GRO_CB(skb)->flush set by the IP layer (a length field
	// that disagrees with the packet, the IPv4 reserved bit): the packet is
	// looked up, so it ends a held packet of its flow, but it is never
	// merged or held.
	flush bool
	hash  uint64
}

// parse mirrors the receive half of inet_gro_receive / ipv6_gro_receive
// and the transport gro_receive up to the flow lookup. It returns ok false
// with the reason when the kernel hands the packet on as GRO_NORMAL without
// comparing it with any held packet.
func (e *Engine) parse(b []byte, p *packet) (PassReason, bool) {
	p.b = b
	if len(b) < 1 {
		return PassTruncated, false
	}
	var proto uint8
	switch b[0] >> 4 {
	case 4:
		if len(b) < ipv4HeaderLen {
			return PassTruncated, false
		}
		proto = b[9]
		if proto != protoTCP && proto != protoUDP {
			return PassNotTCPUDP, false
		}
		if b[0] != 0x45 {
			return PassIPv4Options, false
		}
		frag := binary.BigEndian.Uint16(b[6:])
		if frag&0x3fff != 0 {
			return PassFragment, false
		}
		if checksum.Checksum(b[:ipv4HeaderLen], 0) != 0xffff {
			return PassBadIPChecksum, false
		}
		// flush = (u16)((ntohl(*(__be32 *)iph) ^ skb_gro_len(skb)) |
		// (ntohl(*(__be32 *)&iph->id) & ~IP_DF)): total length against the
		// packet, and the fragment field without DF (MF and the offset are
		// caught above, so the reserved bit).
		p.flush = int(binary.BigEndian.Uint16(b[2:])) != len(b) || frag&0x8000 != 0
		p.v6 = false
		p.l4 = ipv4HeaderLen
	case 6:
		if len(b) < ipv6HeaderLen {
			return PassTruncated, false
		}
		p.flush = int(binary.BigEndian.Uint16(b[4:]))+ipv6HeaderLen != len(b)
		p.v6 = true
		proto = b[6]
		off := ipv6HeaderLen
		// ipv6_gro_pull_exthdrs: only headers registered with
		// INET6_PROTO_GSO_EXTHDR are walked: routing, destination options
		// and (6.18: hbh_offload, seen merging on the kernel oracle)
		// hop-by-hop.
		for proto == nextRouting || proto == nextDestOpts || proto == nextHopByHop {
			if off+2 > len(b) {
				return PassTruncated, false
			}
			n := (int(b[off+1]) + 1) * 8
			if off+n > len(b) {
				return PassTruncated, false
			}
			proto = b[off]
			off += n
		}
		switch proto {
		case protoTCP, protoUDP:
		case nextFragment, 50, 51: // ESP, AH
			return PassIPv6ExtHdr, false
		default:
			return PassNotTCPUDP, false
		}
		p.l4 = off
	default:
		return PassNotIP, false
	}
	p.udp = proto == protoUDP
	if p.udp {
		// udp4_gro_receive / udp6_gro_receive: the UDP header must be
		// there; the checksum is validated (unless the IP layer already
		// set flush) before udp_gro_receive looks at whether UDP GRO
		// applies at all — which only matters when the result is
		// reported (MarkValid).
		if p.l4+udpHeaderLen > len(b) {
			return PassTruncated, false
		}
		p.thlen = udpHeaderLen
		if !e.opt.UDP && !e.opt.MarkValid {
			return PassUDPOff, false
		}
		if !p.flush {
			// skb_gro_checksum_validate_zero_check: a checksum of 0 is
			// not validated, and counts as verified all the same.
			if binary.BigEndian.Uint16(b[p.l4+6:]) != 0 && !e.l4ChecksumOK(b, p, proto) {
				return PassBadL4Checksum, false
			}
			e.valid[e.cur] = true
		}
		if !e.opt.UDP {
			return PassUDPOff, false
		}
		// udp_gro_receive_segment.
		if binary.BigEndian.Uint16(b[p.l4+6:]) == 0 {
			return PassUDPZeroChecksum, false
		}
		ulen := int(binary.BigEndian.Uint16(b[p.l4+4:]))
		if ulen <= udpHeaderLen || ulen != len(b)-p.l4 {
			return PassUDPLength, false
		}
	} else {
		// tcp4_gro_receive / tcp6_gro_receive: "Don't bother verifying
		// checksum if we're going to flush anyway"; then
		// tcp_gro_pull_header.
		if !p.flush {
			if !e.l4ChecksumOK(b, p, proto) {
				return PassBadL4Checksum, false
			}
			e.valid[e.cur] = true
		}
		if p.l4+tcpHeaderLen > len(b) {
			return PassTruncated, false
		}
		p.thlen = int(b[p.l4+12]>>4) * 4
		if p.thlen < tcpHeaderLen {
			return PassBadTCPHeader, false
		}
		if p.l4+p.thlen > len(b) {
			return PassTruncated, false
		}
	}
	p.payload = len(b) - p.l4 - p.thlen
	p.hash = flowHash(b, p.v6, p.l4)
	return 0, true
}

// l4ChecksumOK is skb_gro_checksum_validate: the TCP or UDP checksum
// over the whole L4 segment (skb_gro_len) verifies, or the caller vouches
// for it (Options.TrustChecksums, an skb that arrived
// CHECKSUM_UNNECESSARY).
func (e *Engine) l4ChecksumOK(b []byte, p *packet, proto uint8) bool {
	if e.opt.TrustChecksums {
		return true
	}
	l4len := len(b) - p.l4
	return checksum.Checksum(b[p.l4:], pseudoSum(b, p.v6, proto, l4len)) == 0xffff
}

// pseudoSum returns the folded, uncomplemented pseudo-header sum for an L4
// segment of l4len bytes: csum_tcpudp_nofold / csum_ipv6_magic before the
// final complement.
func pseudoSum(b []byte, v6 bool, proto uint8, l4len int) uint16 {
	var s uint16
	if v6 {
		s = checksum.Checksum(b[8:40], 0)
		s = checksum.Combine(s, uint16(l4len>>16))
	} else {
		s = checksum.Checksum(b[12:20], 0)
	}
	s = checksum.Combine(s, uint16(proto))
	return checksum.Combine(s, uint16(l4len))
}

// flowHash mixes addresses, IPv6 flow label and ports; it only narrows the
// search, sameFlow decides.
func flowHash(b []byte, v6 bool, l4 int) uint64 {
	const k = 0x9e3779b97f4a7c15
	h := uint64(binary.LittleEndian.Uint32(b[l4:])) * k
	if v6 {
		h ^= binary.LittleEndian.Uint64(b[8:])
		h = (h ^ binary.LittleEndian.Uint64(b[16:])) * k
		h ^= binary.LittleEndian.Uint64(b[24:])
		h = (h ^ binary.LittleEndian.Uint64(b[32:])) * k
		h ^= uint64(binary.BigEndian.Uint32(b[0:]) & 0x000fffff)
	} else {
		h ^= binary.LittleEndian.Uint64(b[12:])
	}
	h *= k
	return h ^ h>>31
}

// sameFlow is the flow match of inet_gro_receive/ipv6_gro_receive plus the
// port match of tcp_gro_lookup / udp_gro_receive_segment, between a held
// packet h and the new packet p.
func sameFlow(f *flow, h []byte, p *packet) bool {
	if f.hash != p.hash || f.v6 != p.v6 || f.udp != p.udp || f.l4 != p.l4 {
		return false
	}
	b := p.b
	if binary.LittleEndian.Uint32(h[f.l4:]) != binary.LittleEndian.Uint32(b[p.l4:]) {
		return false
	}
	if !p.v6 {
		// Protocol is covered by f.udp == p.udp.
		return binary.LittleEndian.Uint64(h[12:]) == binary.LittleEndian.Uint64(b[12:])
	}
	// All fields must match except length and traffic class; the flow
	// label is part of the flow. Extension headers must be byte-identical.
	if (binary.BigEndian.Uint32(h)^binary.BigEndian.Uint32(b))&0xf00fffff != 0 || h[6] != b[6] {
		return false
	}
	return string(h[8:p.l4]) == string(b[8:p.l4])
}
