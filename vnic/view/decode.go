package view

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"

	"vnic/vnic/capture"
	"vnic/vnic/packet"
	"vnic/vnic/virtio"
)

// IP protocol numbers the views know.
const (
	ProtoICMP   = 1
	ProtoTCP    = 6
	ProtoUDP    = 17
	ProtoICMPv6 = 58
)

// TCP flags, as in the TCP header's flags byte.
const (
	FlagFIN = 0x01
	FlagSYN = 0x02
	FlagRST = 0x04
	FlagPSH = 0x08
	FlagACK = 0x10
	FlagURG = 0x20
	FlagECE = 0x40
	FlagCWR = 0x80
)

// Csum is the state of a packet's L4 (TCP, UDP, ICMP) checksum, computed
// from the captured bytes.
type Csum uint8

// Checksum states.
const (
	// CsumUnknown: not checked (not TCP/UDP/ICMP, a non-first fragment, a
	// fragmented datagram, or the capture was cut by the snaplen).
	CsumUnknown Csum = iota
	// CsumComplete: the checksum verifies.
	CsumComplete
	// CsumPartial: the field holds only the pseudo-header sum, as the
	// kernel leaves it for a NIC with checksum offload
	// (CHECKSUM_PARTIAL, virtio NEEDS_CSUM). Normal at host-tx (and at
	// host-rx after GRO); wrong on the wire (docs/stories.md, story 5).
	CsumPartial
	// CsumBad: neither complete nor partial.
	CsumBad
	// CsumNone: an IPv4 UDP datagram without a checksum (field 0).
	CsumNone
)

// String returns "unknown", "complete", "partial", "bad" or "none".
func (c Csum) String() string {
	switch c {
	case CsumComplete:
		return "complete"
	case CsumPartial:
		return "partial"
	case CsumBad:
		return "bad"
	case CsumNone:
		return "none"
	}
	return "unknown"
}

// ICMP describes an ICMP or ICMPv6 message.
type ICMP struct {
	V6         bool
	Type, Code uint8
	// MTU is the next-hop MTU of an IPv4 "fragmentation needed" or the MTU
	// of an ICMPv6 "packet too big"; 0 otherwise.
	MTU int
	// Error is true for error messages (unreachable, packet too big, time
	// exceeded, parameter problem), which quote the packet that caused
	// them.
	Error bool
	// Text is tcpdump-like: "frag needed, mtu 1500", "packet too big, mtu
	// 1280", "time exceeded in-transit", "echo request id 7 seq 1".
	Text string
	// Quote is the packet an error message quotes (its IP header and the
	// first bytes of its payload), decoded; nil if absent or undecodable.
	// Its Len and IPLen are the quoted packet's original total length.
	Quote *Packet
	// ID and Seq of an echo request or reply.
	ID, Seq uint16
}

// Origin is a capture.Origin read back from a wire packet's comment.
type Origin = capture.Origin

// Packet is one capture record decoded for the views. Fields that do not
// apply are zero. A Packet with Valid false could not be decoded as an IP
// packet (Err says why); its capture fields (Point … Comment) and whatever
// was parsed before the problem are still set.
type Packet struct {
	// Index is the position of the record in the slice given to Decode.
	Index int

	// From the capture record.
	Point   capture.Point
	Ifname  string
	TS      time.Time
	Dir     capture.Dir
	Len     int    // original packet length
	Cap     int    // captured bytes (less than Len when cut by the snaplen)
	Comment string // the raw comment

	Valid bool
	Err   string // why the packet is not Valid

	// IP.
	Version  int // 4 or 6
	Src, Dst netip.Addr
	Proto    uint8 // upper-layer protocol (after IPv6 extension headers)
	IPLen    int   // IPv4 total length, or 40 + IPv6 payload length
	HdrLen   int   // IP header length, including IPv6 extension headers
	TTL      uint8 // TTL or hop limit
	ID       uint32
	DF       bool
	MF       bool
	FragOff  int  // fragment offset in bytes
	Frag     bool // a fragment (MF set or offset > 0, or an IPv6 fragment header)
	IPCsumOK bool // IPv4 header checksum verifies (always true for IPv6)

	// TCP and UDP.
	SrcPort, DstPort uint16
	Flags            uint8  // TCP flags
	Seq, Ack         uint32 // raw TCP sequence and acknowledgment numbers
	// RelSeq and RelEnd are the sequence range [RelSeq, RelEnd) relative
	// to the first sequence number Decode saw in this flow and direction
	// (tcpdump's relative numbering); RelAck is relative to the reverse
	// direction's. RelEnd counts SYN and FIN.
	RelSeq, RelEnd, RelAck uint32
	Window                 uint16
	L4HdrLen               int
	Payload                int // TCP or UDP payload bytes (IP payload for other protocols)
	UDPLen                 int // UDP length field
	Csum                   Csum

	ICMP *ICMP

	// From the comment (see capture's package doc for the formats).
	Num     uint64      // host-tx or host-rx number ("host-tx #17")
	VNet    *virtio.Hdr // the virtio_net_hdr of a host-side packet
	Merged  int         // host-rx: "merged N wire packets"
	Origin  Origin      // wire: "segment i/n of host-tx #k" or "merged into host-rx #m (i/n)"
	Note    string      // whatever the comment says beyond what is parsed ("dropped: ttl exceeded")
	Dropped string      // the reason of a "dropped: REASON" note
}

// Super reports whether the packet is a GSO/GRO super-packet: a host-side
// packet whose virtio header has a gso type.
func (p *Packet) Super() bool { return p.VNet != nil && p.VNet.GSOType != virtio.GSONone }

// IsTCP reports whether the packet is a decoded TCP segment (not a
// non-first fragment).
func (p *Packet) IsTCP() bool { return p.Valid && p.Proto == ProtoTCP && p.L4HdrLen > 0 }

// FlagString returns the TCP flags as tcpdump prints them: "S", "S.",
// "P.", "F.", "R", "." …; "none" for no flags.
func FlagString(f uint8) string {
	var b [8]byte
	n := 0
	for _, x := range [...]struct {
		bit uint8
		c   byte
	}{{FlagFIN, 'F'}, {FlagSYN, 'S'}, {FlagRST, 'R'}, {FlagPSH, 'P'}, {FlagACK, '.'}, {FlagURG, 'U'}, {FlagECE, 'E'}, {FlagCWR, 'W'}} {
		if f&x.bit != 0 {
			b[n] = x.c
			n++
		}
	}
	if n == 0 {
		return "none"
	}
	return string(b[:n])
}

// flowKey identifies a TCP flow in one direction.
type flowKey struct {
	src, dst     netip.Addr
	sport, dport uint16
}

func (p *Packet) flow() flowKey { return flowKey{p.Src, p.Dst, p.SrcPort, p.DstPort} }

func (k flowKey) reverse() flowKey { return flowKey{k.dst, k.src, k.dport, k.sport} }

// Decode decodes every record; it never fails and never panics: a record
// that is not an IP packet gives a Packet with Valid false. TCP sequence
// numbers are made relative per flow and direction, from the first
// segment of the flow in recs (at any capture point), as tcpdump does, so
// that the same bytes have the same numbers at host-tx, on the wire and at
// host-rx.
func Decode(recs []capture.Record) []Packet {
	pkts := make([]Packet, len(recs))
	for i := range recs {
		r := &recs[i]
		p := &pkts[i]
		p.Index = i
		p.Point, p.Ifname, p.TS, p.Dir, p.Len, p.Cap, p.Comment = r.Point, r.Ifname, r.TS, r.Dir, r.Len, len(r.Data), r.Comment
		parseComment(p, r.Comment)
		decodeIP(p, r.Data, 0)
		if p.Valid && p.VNet != nil && p.VNet.Flags&virtio.FlagNeedsCsum != 0 && p.Csum == CsumBad {
			// Not expected (NEEDS_CSUM means a pseudo-header sum), but say
			// what the header promised rather than "bad".
			p.Note = strings.TrimPrefix(p.Note+"; needs_csum but the field is not the pseudo-header sum", "; ")
		}
	}
	relativize(pkts)
	return pkts
}

// relativize fills RelSeq, RelEnd and RelAck (and those of quoted
// packets in ICMP errors).
func relativize(pkts []Packet) {
	base := map[flowKey]uint32{}
	for i := range pkts {
		p := &pkts[i]
		if p.IsTCP() {
			if _, ok := base[p.flow()]; !ok {
				base[p.flow()] = p.Seq
			}
		}
	}
	rel := func(p *Packet) {
		if !p.IsTCP() {
			return
		}
		b, ok := base[p.flow()]
		if !ok {
			b = p.Seq
		}
		p.RelSeq = p.Seq - b
		n := uint32(p.Payload)
		if p.Flags&FlagSYN != 0 {
			n++
		}
		if p.Flags&FlagFIN != 0 {
			n++
		}
		p.RelEnd = p.RelSeq + n
		if rb, ok := base[p.flow().reverse()]; ok {
			p.RelAck = p.Ack - rb
		} else {
			p.RelAck = p.Ack
		}
	}
	for i := range pkts {
		rel(&pkts[i])
		if m := pkts[i].ICMP; m != nil && m.Quote != nil && m.Quote.Proto == ProtoTCP && m.Quote.SrcPort != 0 {
			// A quote holds only the first 8 bytes of TCP: the sequence
			// number, not the data length.
			q := m.Quote
			if b, ok := base[q.flow()]; ok {
				q.RelSeq = q.Seq - b
			} else {
				q.RelSeq = 0
			}
			q.RelEnd = q.RelSeq
			if q.L4HdrLen > 0 {
				q.RelEnd = q.RelSeq + uint32(q.Payload)
			}
		}
	}
}

func fail(p *Packet, format string, args ...any) {
	p.Valid = false
	p.Err = fmt.Sprintf(format, args...)
}

// decodeIP decodes the IP packet b into p. depth > 0 decodes a packet
// quoted in an ICMP error: it may be cut short, and its lengths come from
// its own header.
func decodeIP(p *Packet, b []byte, depth int) {
	// The IP header and extension headers: the one slow-path parser.
	ip, err := packet.Parse(b)
	if err != nil {
		fail(p, "%s", strings.TrimPrefix(err.Error(), packet.ErrMalformed.Error()+": "))
		return
	}
	p.Version, p.HdrLen, p.IPLen, p.TTL, p.Proto = ip.Version, ip.L4, ip.IPLen, ip.TTL, ip.Proto
	p.Src, p.Dst, p.ID = ip.Src, ip.Dst, ip.ID
	p.DF, p.MF, p.FragOff, p.Frag = ip.DF, ip.MF, ip.FragOff, ip.Frag
	p.IPCsumOK = ip.Version == 6 || checksum.Checksum(b[:ip.L4], 0) == 0xffff
	if p.IPLen < p.HdrLen {
		fail(p, "IP length %d below the %d bytes of IP headers", p.IPLen, p.HdrLen)
		return
	}
	l4 := b[p.HdrLen:min(p.IPLen, len(b))] // the L4 header and payload that were captured
	l4full := p.IPLen <= len(b)
	p.Valid = true
	if depth == 0 && p.Len > 0 && p.IPLen > p.Len {
		p.Note = joinNote(p.Note, fmt.Sprintf("IP length %d > packet %d", p.IPLen, p.Len))
	}
	p.Payload = p.IPLen - p.HdrLen
	if p.FragOff > 0 {
		return // no L4 header in a non-first fragment
	}
	whole := l4full && !p.Frag && depth == 0
	switch p.Proto {
	case ProtoTCP:
		if len(l4) < 20 {
			if depth == 0 {
				fail(p, "TCP header cut short: %d bytes", len(l4))
				return
			}
			if len(l4) >= 8 { // an ICMP quote: ports and sequence number
				p.SrcPort = binary.BigEndian.Uint16(l4[0:])
				p.DstPort = binary.BigEndian.Uint16(l4[2:])
				p.Seq = binary.BigEndian.Uint32(l4[4:])
			}
			return
		}
		p.SrcPort = binary.BigEndian.Uint16(l4[0:])
		p.DstPort = binary.BigEndian.Uint16(l4[2:])
		p.Seq = binary.BigEndian.Uint32(l4[4:])
		p.Ack = binary.BigEndian.Uint32(l4[8:])
		doff := int(l4[12]>>4) * 4
		p.Flags = l4[13]
		p.Window = binary.BigEndian.Uint16(l4[14:])
		if doff < 20 || doff > len(l4) && depth == 0 {
			fail(p, "TCP data offset %d, segment %d bytes", doff, len(l4))
			return
		}
		p.L4HdrLen = doff
		p.Payload = p.IPLen - p.HdrLen - doff
		if p.Payload < 0 {
			p.Payload = 0
		}
		if whole {
			p.Csum = l4Csum(p, b, l4, 16)
		}
	case ProtoUDP:
		if len(l4) < 8 {
			if depth == 0 {
				fail(p, "UDP header cut short: %d bytes", len(l4))
			}
			return
		}
		p.SrcPort = binary.BigEndian.Uint16(l4[0:])
		p.DstPort = binary.BigEndian.Uint16(l4[2:])
		p.UDPLen = int(binary.BigEndian.Uint16(l4[4:]))
		p.L4HdrLen = 8
		p.Payload = max(p.IPLen-p.HdrLen-8, 0)
		if whole {
			if p.Version == 4 && binary.BigEndian.Uint16(l4[6:]) == 0 {
				p.Csum = CsumNone
			} else {
				p.Csum = l4Csum(p, b, l4, 6)
			}
		}
	case ProtoICMP, ProtoICMPv6:
		if len(l4) < 8 {
			if depth == 0 && !p.Frag {
				fail(p, "ICMP header cut short: %d bytes", len(l4))
			}
			return
		}
		p.L4HdrLen = 8
		p.Payload = max(p.IPLen-p.HdrLen-8, 0)
		if whole {
			var sum uint16
			if p.Proto == ProtoICMPv6 {
				sum = checksum.Checksum(l4, pseudoSum(p, len(l4)))
			} else {
				sum = checksum.Checksum(l4, 0)
			}
			if sum == 0xffff {
				p.Csum = CsumComplete
			} else {
				p.Csum = CsumBad
			}
		}
		if depth == 0 {
			decodeICMP(p, l4)
		}
	}
}

func joinNote(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

// pseudoSum is the folded, uncomplemented pseudo-header sum of p for an
// L4 segment of l4len bytes.
func pseudoSum(p *Packet, l4len int) uint16 {
	var buf [40]byte
	if p.Version == 6 {
		s, d := p.Src.As16(), p.Dst.As16()
		copy(buf[0:], s[:])
		copy(buf[16:], d[:])
		binary.BigEndian.PutUint32(buf[32:], uint32(l4len))
		buf[39] = p.Proto
		return checksum.Checksum(buf[:40], 0)
	}
	s, d := p.Src.As4(), p.Dst.As4()
	copy(buf[0:], s[:])
	copy(buf[4:], d[:])
	buf[9] = p.Proto
	binary.BigEndian.PutUint16(buf[10:], uint16(l4len))
	return checksum.Checksum(buf[:12], 0)
}

// l4Csum checks the TCP or UDP checksum at csumOff in l4 (the whole L4
// segment).
func l4Csum(p *Packet, _ []byte, l4 []byte, csumOff int) Csum {
	ph := pseudoSum(p, len(l4))
	if checksum.Checksum(l4, ph) == 0xffff {
		return CsumComplete
	}
	// CHECKSUM_PARTIAL: the field holds the pseudo-header sum (the kernel
	// stores it uncomplemented: tcp_v4_send_check, __tcp_v6_send_check).
	if binary.BigEndian.Uint16(l4[csumOff:]) == ph {
		return CsumPartial
	}
	return CsumBad
}

// decodeICMP fills p.ICMP from the ICMP message l4 (at least 8 bytes).
func decodeICMP(p *Packet, l4 []byte) {
	m := &ICMP{V6: p.Proto == ProtoICMPv6, Type: l4[0], Code: l4[1]}
	p.ICMP = m
	rest := binary.BigEndian.Uint32(l4[4:])
	if m.V6 {
		switch m.Type {
		case 1:
			m.Error = true
			m.Text = "unreachable " + pick(int(m.Code), "no route", "admin prohibited", "beyond scope", "address", "port", "source policy", "reject route")
		case 2:
			m.Error = true
			m.MTU = int(rest)
			m.Text = fmt.Sprintf("packet too big, mtu %d", m.MTU)
		case 3:
			m.Error = true
			m.Text = "time exceeded " + pick(int(m.Code), "in-transit", "reassembly")
		case 4:
			m.Error = true
			m.Text = fmt.Sprintf("parameter problem code %d", m.Code)
		case 133, 134, 135, 136:
			m.Text = "neighbor discovery: " + pick(int(m.Type)-133, "router solicitation", "router advertisement", "neighbor solicitation", "neighbor advertisement")
		case 143:
			m.Text = "multicast listener report v2"
		case 128, 129:
			m.ID, m.Seq = uint16(rest>>16), uint16(rest)
			m.Text = fmt.Sprintf("echo %s id %d seq %d", pick(int(m.Type)-128, "request", "reply"), m.ID, m.Seq)
		default:
			m.Text = fmt.Sprintf("icmp6 type %d code %d", m.Type, m.Code)
		}
	} else {
		switch m.Type {
		case 0, 8:
			m.ID, m.Seq = uint16(rest>>16), uint16(rest)
			kind := "reply"
			if m.Type == 8 {
				kind = "request"
			}
			m.Text = fmt.Sprintf("echo %s id %d seq %d", kind, m.ID, m.Seq)
		case 3:
			m.Error = true
			if m.Code == 4 {
				m.MTU = int(rest & 0xffff)
				m.Text = fmt.Sprintf("frag needed, mtu %d", m.MTU)
			} else {
				m.Text = "unreachable " + pick(int(m.Code), "net", "host", "protocol", "port", "frag needed", "source route failed")
			}
		case 11:
			m.Error = true
			m.Text = "time exceeded " + pick(int(m.Code), "in-transit", "reassembly")
		case 12:
			m.Error = true
			m.Text = "parameter problem"
		default:
			m.Text = fmt.Sprintf("icmp type %d code %d", m.Type, m.Code)
		}
	}
	if m.Error && len(l4) > 8 {
		q := &Packet{Index: -1}
		decodeIP(q, l4[8:], 1)
		if q.Valid {
			q.Len = q.IPLen
			m.Quote = q
		}
	}
}

// pick returns names[i], or "code i" out of range.
func pick(i int, names ...string) string {
	if i >= 0 && i < len(names) {
		return names[i]
	}
	return fmt.Sprintf("code %d", i)
}
