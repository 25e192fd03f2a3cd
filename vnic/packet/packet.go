// Package packet is the one place that knows IPv4, IPv6 (with its
// extension headers), TCP and UDP header layouts for vnic's slow paths:
// the NIC models, the views, the tests. Parse reads a packet once into a
// struct of offsets (like Tailscale's packet.Parsed); malformed input is an
// error, never a panic. The named constants are shared with segment and
// coalesce, whose hot paths keep their own specialised parsing.
//
//	IPv4 (RFC 791)                          IPv6 (RFC 8200)
//	 0      4      8             16      31   0      4          12         31
//	+------+------+-------------+---------+  +------+----------+-----------+
//	|ver 4 | IHL  |     TOS     | tot len |  |ver 6 | class    | flow label|
//	+------+------+-------------+---------+  +------+----------+-----------+
//	|      ID     |flags| frag offset     |  | payload length  |next| hops |
//	+-------------+---------------+-------+  +-----------------+----+------+
//	| TTL | proto |  header checksum      |  |   source (16 bytes)         |
//	| source (4)  | destination (4)       |  |   destination (16 bytes)    |
//	| options (IHL*4 - 20 bytes)          |  | extension headers ...       |
package packet

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
)

// Header sizes.
const (
	IPv4MinHeader = 20
	IPv6Header    = 40
	TCPMinHeader  = 20
	TCPMaxHeader  = 60
	UDPHeader     = 8
)

// IP protocol numbers (also IPv6 next-header values).
const (
	ProtoICMP   = 1
	ProtoTCP    = 6
	ProtoUDP    = 17
	ProtoICMPv6 = 58

	// IPv6 extension headers.
	ExtHopByHop = 0
	ExtRouting  = 43
	ExtFragment = 44
	ExtESP      = 50
	ExtAH       = 51
	ExtNoNext   = 59
	ExtDestOpts = 60
)

// Checksum field offsets from the start of the L4 header (virtio
// csum_offset).
const (
	TCPCsumOffset = 16
	UDPCsumOffset = 6
)

// TCP flags (the 14th byte of the TCP header).
const (
	TCPFlagFIN = 0x01
	TCPFlagSYN = 0x02
	TCPFlagRST = 0x04
	TCPFlagPSH = 0x08
	TCPFlagACK = 0x10
	TCPFlagURG = 0x20
	TCPFlagECE = 0x40
	TCPFlagCWR = 0x80
)

// ErrMalformed is wrapped by every Parse error.
var ErrMalformed = errors.New("packet: malformed")

// Parsed is a packet read once: offsets and the fields the slow paths
// need. Fields that do not apply are zero.
type Parsed struct {
	// Version is 4 or 6.
	Version int
	// Src and Dst are the IP addresses.
	Src, Dst netip.Addr
	// IPLen is the length the IP header claims: the IPv4 total length, or
	// 40 + the IPv6 payload length.
	IPLen int
	// L4 is the offset of the upper-layer header: the IPv4 header length,
	// or 40 plus the extension headers (hop-by-hop, routing, destination
	// options, AH and the fragment header; the walk stops at ESP or
	// anything that is not an extension header).
	L4 int
	// Proto is the upper-layer protocol at L4 (the last next header for
	// IPv6).
	Proto uint8
	// TTL is the TTL or hop limit.
	TTL uint8
	// ID is the IPv4 identification, or the IPv6 fragment header's
	// (0 for an IPv6 packet without one).
	ID uint32
	// DF, MF and FragOff (in bytes) are the IPv4 fragment fields.
	DF, MF  bool
	FragOff int
	// Frag: an IPv4 fragment (MF or an offset), or an IPv6 fragment
	// header before the upper layer.
	Frag bool
	// L4Len is the TCP header length (data offset × 4) or 8 for UDP, when
	// the header is there (0 otherwise, and for other protocols).
	L4Len int
	// TCPFlags is the TCP flags byte (0 for other protocols).
	TCPFlags uint8
	// SrcPort and DstPort are the TCP/UDP ports.
	SrcPort, DstPort uint16
}

// Payload is the offset of the L4 payload (L4 + L4Len).
func (p *Parsed) Payload() int { return p.L4 + p.L4Len }

// TCP reports whether the packet is TCP with a complete header.
func (p *Parsed) TCP() bool { return p.Proto == ProtoTCP && p.L4Len >= TCPMinHeader }

// UDP reports whether the packet is UDP with a complete header.
func (p *Parsed) UDP() bool { return p.Proto == ProtoUDP && p.L4Len == UDPHeader }

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
}

// Parse reads b, an IP packet starting at its IP header. It does not
// check the IP length against len(b) (IPLen tells the caller) nor any
// checksum. A truncated L4 header is not an error: L4Len stays 0.
func Parse(b []byte) (Parsed, error) {
	var p Parsed
	if len(b) < 1 {
		return p, malformed("empty packet")
	}
	switch b[0] >> 4 {
	case 4:
		if len(b) < IPv4MinHeader {
			return p, malformed("%d bytes, shorter than an IPv4 header", len(b))
		}
		ihl := int(b[0]&0x0f) * 4
		if ihl < IPv4MinHeader || ihl > len(b) {
			return p, malformed("IPv4 header length %d in a %d-byte packet", ihl, len(b))
		}
		p.Version, p.L4, p.Proto, p.TTL = 4, ihl, b[9], b[8]
		p.IPLen = int(binary.BigEndian.Uint16(b[2:]))
		p.ID = uint32(binary.BigEndian.Uint16(b[4:]))
		frag := binary.BigEndian.Uint16(b[6:])
		p.DF, p.MF, p.FragOff = frag&0x4000 != 0, frag&0x2000 != 0, int(frag&0x1fff)*8
		p.Frag = p.MF || p.FragOff != 0
		p.Src = netip.AddrFrom4([4]byte(b[12:16]))
		p.Dst = netip.AddrFrom4([4]byte(b[16:20]))
		if p.FragOff != 0 {
			return p, nil // no L4 header in a non-first fragment
		}
	case 6:
		if len(b) < IPv6Header {
			return p, malformed("%d bytes, shorter than an IPv6 header", len(b))
		}
		p.Version, p.TTL = 6, b[7]
		p.IPLen = IPv6Header + int(binary.BigEndian.Uint16(b[4:]))
		p.Src = netip.AddrFrom16([16]byte(b[8:24]))
		p.Dst = netip.AddrFrom16([16]byte(b[24:40]))
		nh, off := b[6], IPv6Header
	walk:
		for {
			switch nh {
			case ExtHopByHop, ExtRouting, ExtDestOpts, ExtAH:
				if off+2 > len(b) {
					return p, malformed("IPv6 extension header %d truncated at %d", nh, off)
				}
				n := (int(b[off+1]) + 1) * 8
				if nh == ExtAH {
					n = (int(b[off+1]) + 2) * 4
				}
				if off+n > len(b) {
					return p, malformed("IPv6 extension header %d of %d bytes at %d in a %d-byte packet", nh, n, off, len(b))
				}
				nh, off = b[off], off+n
			case ExtFragment:
				if off+8 > len(b) {
					return p, malformed("IPv6 fragment header truncated at %d", off)
				}
				fo := binary.BigEndian.Uint16(b[off+2:])
				p.Frag, p.FragOff, p.MF = true, int(fo&^7), fo&1 != 0
				p.ID = binary.BigEndian.Uint32(b[off+4:])
				nh, off = b[off], off+8
			default:
				break walk
			}
		}
		p.Proto, p.L4 = nh, off
		if p.FragOff != 0 {
			return p, nil // no L4 header in a non-first fragment
		}
	default:
		return p, malformed("IP version %d", b[0]>>4)
	}
	switch p.Proto {
	case ProtoTCP:
		if p.L4+TCPMinHeader <= len(b) {
			l := int(b[p.L4+12]>>4) * 4
			if l >= TCPMinHeader && p.L4+l <= len(b) {
				p.L4Len = l
			}
			p.TCPFlags = b[p.L4+13]
			p.SrcPort = binary.BigEndian.Uint16(b[p.L4:])
			p.DstPort = binary.BigEndian.Uint16(b[p.L4+2:])
		}
	case ProtoUDP:
		if p.L4+UDPHeader <= len(b) {
			p.L4Len = UDPHeader
			p.SrcPort = binary.BigEndian.Uint16(b[p.L4:])
			p.DstPort = binary.BigEndian.Uint16(b[p.L4+2:])
		}
	}
	return p, nil
}

// PseudoSum is the folded, uncomplemented TCP/UDP pseudo-header sum of the
// IPv4 or IPv6 packet b for protocol proto and an L4 length of l4len bytes
// (csum_tcpudp_nofold / csum_ipv6_magic before the final complement): what
// a CHECKSUM_PARTIAL packet carries in its checksum field. It returns 0
// for a packet that is neither.
func PseudoSum(b []byte, proto uint8, l4len int) uint16 {
	var s uint16
	switch {
	case len(b) >= IPv4MinHeader && b[0]>>4 == 4:
		s = checksum.Checksum(b[12:20], 0)
	case len(b) >= IPv6Header && b[0]>>4 == 6:
		s = checksum.Checksum(b[8:40], 0)
		s = checksum.Combine(s, uint16(l4len>>16))
	default:
		return 0
	}
	s = checksum.Combine(s, uint16(proto))
	return checksum.Combine(s, uint16(l4len))
}
