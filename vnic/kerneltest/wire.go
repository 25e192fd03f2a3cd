package kerneltest

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"vnic/vnic/virtio"
)

// IP protocol numbers and IPv6 extension headers that layout walks.
const (
	protoTCP    = 6
	protoUDP    = 17
	extHopByHop = 0
	extRouting  = 43
	extFragment = 44
	extDestOpts = 60
)

// layout locates the headers of an IP packet: the offset of the L4 header,
// its protocol, and the offset of the L4 payload (-1 when the L4 header
// does not parse). ok is false when the IP header itself does not parse.
type layout struct {
	v       byte
	l4      int
	proto   byte
	payload int
}

func parse(pkt []byte) (layout, bool) {
	var l layout
	if len(pkt) < 1 {
		return l, false
	}
	l.v = pkt[0] >> 4
	switch l.v {
	case 4:
		if len(pkt) < 20 {
			return l, false
		}
		l.l4 = int(pkt[0]&0xf) * 4
		l.proto = pkt[9]
		if l.l4 < 20 || l.l4 > len(pkt) {
			return l, false
		}
	case 6:
		if len(pkt) < 40 {
			return l, false
		}
		l.proto, l.l4 = pkt[6], 40
		for l.proto == extHopByHop || l.proto == extRouting || l.proto == extDestOpts || l.proto == extFragment {
			if l.l4+8 > len(pkt) {
				return l, false
			}
			n := (int(pkt[l.l4+1]) + 1) * 8
			if l.proto == extFragment {
				n = 8
			}
			l.proto = pkt[l.l4]
			l.l4 += n
		}
		if l.l4 > len(pkt) {
			return l, false
		}
	default:
		return l, false
	}
	l.payload = -1
	switch l.proto {
	case protoTCP:
		if l.l4+20 <= len(pkt) {
			if n := int(pkt[l.l4+12]>>4) * 4; n >= 20 && l.l4+n <= len(pkt) {
				l.payload = l.l4 + n
			}
		}
	case protoUDP:
		if l.l4+8 <= len(pkt) {
			l.payload = l.l4 + 8
		}
	}
	return l, true
}

// PayloadLen returns the number of TCP or UDP payload bytes in an IP
// packet, or -1 when the packet is not TCP or UDP or does not parse.
// Segmentation and coalescing both conserve it: the oracles use it to know
// when everything has come out.
func PayloadLen(pkt []byte) int {
	l, ok := parse(pkt)
	if !ok || l.payload < 0 {
		return -1
	}
	return len(pkt) - l.payload
}

// AfterForwarding returns a copy of an IP packet as a router forwards it:
// IPv4 TTL or IPv6 hop limit one lower, the IPv4 header checksum adjusted
// the way ip_decrease_ttl adjusts it (incrementally, so a header checksum
// that was wrong stays wrong: the kernel would have dropped that packet
// before forwarding it, and the engine under test must see it wrong too).
// The kernel oracles forward, so this is what a pure-Go engine's input
// must go through before its output can be compared with the kernel's.
// Packets that are not IPv4 or IPv6 are copied unchanged.
func AfterForwarding(pkt []byte) []byte {
	b := bytes.Clone(pkt)
	switch {
	case len(b) >= 20 && b[0]>>4 == 4:
		b[8]--
		// ip_decrease_ttl: check += htons(0x0100), end-around carry.
		c := uint32(binary.BigEndian.Uint16(b[10:])) + 0x0100
		if c >= 0xffff {
			c++
		}
		binary.BigEndian.PutUint16(b[10:], uint16(c))
	case len(b) >= 40 && b[0]>>4 == 6:
		b[7]--
	}
	return b
}

// sum16 is the folded ones' complement sum of b (RFC 1071), uncomplemented.
func sum16(b []byte) uint16 {
	var s uint32
	for len(b) >= 2 {
		s += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint32(b[0]) << 8
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return uint16(s)
}

// FieldAt names the header field that byte off of an IP packet belongs to,
// for diff messages: "IPv4 TTL", "TCP checksum", "TCP option byte 3",
// "payload byte 1207", "past the end".
func FieldAt(pkt []byte, off int) string {
	if off < 0 || off >= len(pkt) {
		return "past the end"
	}
	l, ok := parse(pkt)
	if !ok {
		return fmt.Sprintf("byte %d (IP header does not parse)", off)
	}
	if off < l.l4 {
		if l.v == 4 {
			switch {
			case off == 0:
				return "IPv4 version/IHL"
			case off == 1:
				return "IPv4 TOS/ECN"
			case off < 4:
				return "IPv4 total length"
			case off < 6:
				return "IPv4 ID"
			case off < 8:
				return "IPv4 flags/fragment offset"
			case off == 8:
				return "IPv4 TTL"
			case off == 9:
				return "IPv4 protocol"
			case off < 12:
				return "IPv4 header checksum"
			case off < 16:
				return "IPv4 source"
			case off < 20:
				return "IPv4 destination"
			default:
				return fmt.Sprintf("IPv4 option byte %d", off-20)
			}
		}
		switch {
		case off < 4:
			return "IPv6 version/traffic class/flow label"
		case off < 6:
			return "IPv6 payload length"
		case off == 6:
			return "IPv6 next header"
		case off == 7:
			return "IPv6 hop limit"
		case off < 24:
			return "IPv6 source"
		case off < 40:
			return "IPv6 destination"
		default:
			return fmt.Sprintf("IPv6 extension header byte %d", off-40)
		}
	}
	r := off - l.l4
	switch l.proto {
	case protoTCP:
		if l.payload < 0 || off < l.payload {
			names := [20]string{"source port", "source port", "destination port", "destination port",
				"sequence number", "sequence number", "sequence number", "sequence number",
				"acknowledgment number", "acknowledgment number", "acknowledgment number", "acknowledgment number",
				"data offset", "flags", "window", "window", "checksum", "checksum", "urgent pointer", "urgent pointer"}
			if r < 20 {
				return "TCP " + names[r]
			}
			return fmt.Sprintf("TCP option byte %d", r-20)
		}
	case protoUDP:
		if off < l.payload {
			return "UDP " + [8]string{"source port", "source port", "destination port", "destination port",
				"length", "length", "checksum", "checksum"}[r]
		}
	default:
		return fmt.Sprintf("L4 (protocol %d) byte %d", l.proto, r)
	}
	return fmt.Sprintf("payload byte %d", off-l.payload)
}

// DiffPackets compares two IP packets byte for byte and returns "" when
// they are equal, or a one-line description of the first difference:
// "byte 8 (IPv4 TTL): kernel 0x3f, ours 0x40 (lengths 1040, 1040)".
func DiffPackets(kernel, ours []byte) string {
	n := min(len(kernel), len(ours))
	for i := 0; i < n; i++ {
		if kernel[i] != ours[i] {
			return fmt.Sprintf("byte %d (%s): kernel %#02x, ours %#02x (lengths %d, %d)",
				i, FieldAt(kernel, i), kernel[i], ours[i], len(kernel), len(ours))
		}
	}
	if len(kernel) != len(ours) {
		return fmt.Sprintf("lengths differ: kernel %d bytes, ours %d (equal up to byte %d)", len(kernel), len(ours), n)
	}
	return ""
}

// CompleteChecksum returns a copy of pkt with the checksum that a
// NEEDS_CSUM header leaves to the NIC filled in: the ones' complement sum
// of pkt[csum_start:] (whose checksum field holds the pseudo-header sum),
// complemented, stored at csum_start+csum_offset, 0 sent as 0xffff — what
// skb_checksum_help does. Without NEEDS_CSUM, or with offsets outside the
// packet, the copy is unchanged.
func CompleteChecksum(h virtio.Hdr, pkt []byte) []byte {
	b := bytes.Clone(pkt)
	start, field := int(h.CsumStart), int(h.CsumStart)+int(h.CsumOffset)
	if h.Flags&virtio.FlagNeedsCsum == 0 || field+2 > len(b) {
		return b
	}
	c := ^sum16(b[start:])
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(b[field:], c)
	return b
}
