// Package pkttest builds IPv4/IPv6 TCP and UDP packets for tests: complete
// packets as they cross a wire, and partial-checksum or GSO super-packets as
// the kernel hands them to a TUN device with IFF_VNET_HDR. It is an encoder
// independent of segment and coalesce (it writes every field by hand, from
// the RFC layouts), so tests that compare their output against it compare
// two implementations, not one with itself.
package pkttest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"

	"vnic/vnic/virtio"
)

// IP protocol numbers and IPv6 extension header types.
const (
	ProtoTCP    = 6
	ProtoUDP    = 17
	ExtHopByHop = 0
	ExtRouting  = 43
	ExtFragment = 44
	ExtDestOpts = 60
)

// TCP flags.
const (
	FIN = 0x01
	SYN = 0x02
	RST = 0x04
	PSH = 0x08
	ACK = 0x10
	URG = 0x20
	ECE = 0x40
	CWR = 0x80
)

// Default addresses: the benchmark range 198.18.0.0/15 and fd00::/8.
var (
	DefaultSrc4 = netip.MustParseAddr("198.18.0.1")
	DefaultDst4 = netip.MustParseAddr("198.18.0.2")
	DefaultSrc6 = netip.MustParseAddr("fd00::1")
	DefaultDst6 = netip.MustParseAddr("fd00::2")
)

// ExtHdr is one IPv6 extension header. Data is everything after the
// next-header byte and the length byte (for a fragment header: 6 bytes,
// offset/flags and identification). For hop-by-hop, routing and destination
// options, 2+len(Data) must be a multiple of 8.
type ExtHdr struct {
	Type uint8
	Data []byte
}

// Packet describes one IP packet. Zero values pick sensible defaults: TCP,
// IPv4, addresses from DefaultSrc4/DefaultDst4 (or the v6 ones), ports
// 40000 → 9, TTL/hop limit 64, window 65535.
type Packet struct {
	V6       bool
	Proto    uint8 // ProtoTCP (default) or ProtoUDP
	Src, Dst netip.Addr

	SrcPort, DstPort uint16

	TTL       uint8
	TOS       uint8 // IPv4 TOS or IPv6 traffic class
	ID        uint16
	DF        bool
	MF        bool
	FragOff   uint16 // IPv4 fragment offset in 8-byte units
	IPOptions []byte // IPv4 options; padded with zeros (EOL) to a multiple of 4
	FlowLabel uint32
	ExtHdrs   []ExtHdr

	Seq, Ack   uint32
	Flags      uint8
	Window     uint16
	Urgent     uint16
	TCPOptions []byte // padded with zeros (EOL) to a multiple of 4

	Payload []byte

	// BadL4Checksum flips the L4 checksum after computing it.
	BadL4Checksum bool
}

func (p *Packet) defaults() {
	if p.Proto == 0 {
		p.Proto = ProtoTCP
	}
	if !p.Src.IsValid() {
		p.Src = DefaultSrc4
		if p.V6 {
			p.Src = DefaultSrc6
		}
	}
	if !p.Dst.IsValid() {
		p.Dst = DefaultDst4
		if p.V6 {
			p.Dst = DefaultDst6
		}
	}
	if p.SrcPort == 0 {
		p.SrcPort = 40000
	}
	if p.DstPort == 0 {
		p.DstPort = 9
	}
	if p.TTL == 0 {
		p.TTL = 64
	}
	if p.Window == 0 {
		p.Window = 65535
	}
}

func pad4(b []byte) []byte {
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// layout builds the packet with the L4 checksum field zero and returns it
// with the offset of the L4 header.
func (p *Packet) layout() ([]byte, int) {
	p.defaults()
	var l4hdr int
	var tcpOpts []byte
	if p.Proto == ProtoTCP {
		tcpOpts = pad4(append([]byte(nil), p.TCPOptions...))
		l4hdr = 20 + len(tcpOpts)
	} else {
		l4hdr = 8
	}
	l4len := l4hdr + len(p.Payload)
	var b []byte
	var l4 int
	if !p.V6 {
		opts := pad4(append([]byte(nil), p.IPOptions...))
		ihl := 20 + len(opts)
		b = make([]byte, ihl+l4len)
		b[0] = 0x40 | byte(ihl/4)
		b[1] = p.TOS
		binary.BigEndian.PutUint16(b[2:], uint16(ihl+l4len))
		binary.BigEndian.PutUint16(b[4:], p.ID)
		frag := p.FragOff & 0x1fff
		if p.DF {
			frag |= 0x4000
		}
		if p.MF {
			frag |= 0x2000
		}
		binary.BigEndian.PutUint16(b[6:], frag)
		b[8] = p.TTL
		b[9] = p.Proto
		s, d := p.Src.As4(), p.Dst.As4()
		copy(b[12:], s[:])
		copy(b[16:], d[:])
		copy(b[20:], opts)
		binary.BigEndian.PutUint16(b[10:], ^checksum.Checksum(b[:ihl], 0))
		l4 = ihl
	} else {
		ext := 0
		for _, e := range p.ExtHdrs {
			ext += 2 + len(e.Data)
		}
		b = make([]byte, 40+ext+l4len)
		binary.BigEndian.PutUint32(b[0:], 6<<28|uint32(p.TOS)<<20|p.FlowLabel&0xfffff)
		binary.BigEndian.PutUint16(b[4:], uint16(ext+l4len))
		b[7] = p.TTL
		s, d := p.Src.As16(), p.Dst.As16()
		copy(b[8:], s[:])
		copy(b[24:], d[:])
		next := 6
		off := 40
		for _, e := range p.ExtHdrs {
			b[next] = e.Type
			next = off
			if e.Type == ExtFragment {
				b[off+1] = 0
			} else {
				b[off+1] = byte((2+len(e.Data))/8 - 1)
			}
			copy(b[off+2:], e.Data)
			off += 2 + len(e.Data)
		}
		b[next] = p.Proto
		l4 = off
	}
	t := b[l4:]
	binary.BigEndian.PutUint16(t[0:], p.SrcPort)
	binary.BigEndian.PutUint16(t[2:], p.DstPort)
	if p.Proto == ProtoTCP {
		binary.BigEndian.PutUint32(t[4:], p.Seq)
		binary.BigEndian.PutUint32(t[8:], p.Ack)
		t[12] = byte(l4hdr/4) << 4
		t[13] = p.Flags
		binary.BigEndian.PutUint16(t[14:], p.Window)
		binary.BigEndian.PutUint16(t[18:], p.Urgent)
		copy(t[20:], tcpOpts)
	} else {
		binary.BigEndian.PutUint16(t[4:], uint16(l4len))
	}
	copy(t[l4hdr:], p.Payload)
	return b, l4
}

// pseudo returns the folded, uncomplemented pseudo-header sum for an L4
// segment of l4len bytes.
func (p *Packet) pseudo(l4len int) uint16 {
	var buf [40]byte
	var n int
	if p.V6 {
		s, d := p.Src.As16(), p.Dst.As16()
		copy(buf[0:], s[:])
		copy(buf[16:], d[:])
		binary.BigEndian.PutUint32(buf[32:], uint32(l4len))
		buf[39] = p.Proto
		n = 40
	} else {
		s, d := p.Src.As4(), p.Dst.As4()
		copy(buf[0:], s[:])
		copy(buf[4:], d[:])
		buf[9] = p.Proto
		binary.BigEndian.PutUint16(buf[10:], uint16(l4len))
		n = 12
	}
	return checksum.Checksum(buf[:n], 0)
}

func (p *Packet) csumOffset() int {
	if p.Proto == ProtoTCP {
		return 16
	}
	return 6
}

// Build returns the packet with every checksum complete: a packet as it
// crosses the wire.
func (p *Packet) Build() []byte {
	b, l4 := p.layout()
	sum := ^checksum.Checksum(b[l4:], p.pseudo(len(b)-l4))
	if p.Proto == ProtoUDP && sum == 0 {
		sum = 0xffff
	}
	if p.BadL4Checksum {
		sum ^= 0x5a5a
	}
	binary.BigEndian.PutUint16(b[l4+p.csumOffset():], sum)
	return b
}

// BuildPartial returns the packet as the kernel hands it to a NIC with
// transmit checksum offload: the L4 checksum field holds only the
// pseudo-header sum, and the virtio header says NEEDS_CSUM with csum_start
// and csum_offset set.
func (p *Packet) BuildPartial() ([]byte, virtio.Hdr) {
	b, l4 := p.layout()
	binary.BigEndian.PutUint16(b[l4+p.csumOffset():], p.pseudo(len(b)-l4))
	l4hdr := 8
	if p.Proto == ProtoTCP {
		l4hdr = int(b[l4+12]>>4) * 4
	}
	return b, virtio.Hdr{
		Flags:      virtio.FlagNeedsCsum,
		HdrLen:     uint16(l4 + l4hdr),
		CsumStart:  uint16(l4),
		CsumOffset: uint16(p.csumOffset()),
	}
}

// BuildGSO returns a super-packet as the kernel hands it to a NIC with
// TSO/USO: BuildPartial plus gso_type (TCPV4, TCPV6 or UDP_L4) and gso_size.
// ecn or-s VIRTIO_NET_HDR_GSO_ECN into the type.
func (p *Packet) BuildGSO(gsoSize int, ecn bool) ([]byte, virtio.Hdr) {
	b, h := p.BuildPartial()
	switch {
	case p.Proto == ProtoUDP:
		h.GSOType = virtio.GSOUDPL4
	case p.V6:
		h.GSOType = virtio.GSOTCPv6
	default:
		h.GSOType = virtio.GSOTCPv4
	}
	if ecn {
		h.GSOType |= virtio.GSOECN
	}
	h.GSOSize = uint16(gsoSize)
	return b, h
}

// Payload returns n deterministic bytes that differ with seed and with
// position, so a misplaced byte is visible.
func Payload(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7+i>>8) ^ seed
	}
	return b
}

// ErrChecksum reports a checksum that does not verify.
var ErrChecksum = errors.New("pkttest: bad checksum")

// Verify checks the IPv4 header checksum (for IPv4) and the TCP or UDP
// checksum of a complete packet. It walks IPv6 extension headers (hop-by-hop,
// routing, destination options, fragment) to find the L4 header.
func Verify(pkt []byte) error {
	if len(pkt) < 1 {
		return fmt.Errorf("pkttest: empty packet")
	}
	var src, dst []byte
	var proto uint8
	var l4 int
	switch pkt[0] >> 4 {
	case 4:
		if len(pkt) < 20 {
			return fmt.Errorf("pkttest: IPv4 packet of %d bytes", len(pkt))
		}
		ihl := int(pkt[0]&0xf) * 4
		if ihl < 20 || len(pkt) < ihl {
			return fmt.Errorf("pkttest: IPv4 ihl %d, packet %d bytes", ihl, len(pkt))
		}
		if c := checksum.Checksum(pkt[:ihl], 0); c != 0xffff {
			return fmt.Errorf("%w: IPv4 header sums to %#04x", ErrChecksum, c)
		}
		if tl := int(binary.BigEndian.Uint16(pkt[2:])); tl != len(pkt) {
			return fmt.Errorf("pkttest: IPv4 total length %d, packet %d bytes", tl, len(pkt))
		}
		src, dst, proto, l4 = pkt[12:16], pkt[16:20], pkt[9], ihl
	case 6:
		if len(pkt) < 40 {
			return fmt.Errorf("pkttest: IPv6 packet of %d bytes", len(pkt))
		}
		if pl := int(binary.BigEndian.Uint16(pkt[4:])); pl+40 != len(pkt) {
			return fmt.Errorf("pkttest: IPv6 payload length %d, packet %d bytes", pl, len(pkt))
		}
		src, dst = pkt[8:24], pkt[24:40]
		proto, l4 = pkt[6], 40
		for proto == ExtHopByHop || proto == ExtRouting || proto == ExtDestOpts || proto == ExtFragment {
			if l4+8 > len(pkt) {
				return fmt.Errorf("pkttest: IPv6 extension header past the end")
			}
			n := (int(pkt[l4+1]) + 1) * 8
			if proto == ExtFragment {
				n = 8
			}
			proto = pkt[l4]
			l4 += n
		}
	default:
		return fmt.Errorf("pkttest: IP version %d", pkt[0]>>4)
	}
	if proto != ProtoTCP && proto != ProtoUDP {
		return nil
	}
	var ph []byte
	ph = append(ph, src...)
	ph = append(ph, dst...)
	l4len := len(pkt) - l4
	if len(src) == 4 {
		ph = append(ph, 0, proto, byte(l4len>>8), byte(l4len))
	} else {
		ph = append(ph, byte(l4len>>24), byte(l4len>>16), byte(l4len>>8), byte(l4len), 0, 0, 0, proto)
	}
	if c := checksum.Checksum(pkt[l4:], checksum.Checksum(ph, 0)); c != 0xffff {
		return fmt.Errorf("%w: L4 (proto %d) sums to %#04x", ErrChecksum, proto, c)
	}
	return nil
}
