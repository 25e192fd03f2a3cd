// Package virtio is the codec for struct virtio_net_hdr, the 10-byte header
// a TUN device opened with IFF_VNET_HDR puts in front of every frame it
// reads and expects in front of every frame written to it
// (include/uapi/linux/virtio_net.h). It is the one place in vnic that knows
// the header's layout; segment, coalesce and the daemon all use it.
//
// The kernel's byte order for the header on a TUN device is little-endian
// (TUNSETVNETBE is off, and virtio 1.0 is little-endian), so this codec is
// little-endian. gVisor's header.VirtioNetHeader decodes big-endian and must
// not be used for TUN frames.
package virtio

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// Sizes of the header variants.
const (
	// Size is sizeof(struct virtio_net_hdr).
	Size = 10
	// SizeMrg is sizeof(struct virtio_net_hdr_mrg_rxbuf): the header plus
	// num_buffers, used when TUNSETVNETHDRSZ is set to 12.
	SizeMrg = 12
	// SizeTunnel is sizeof(struct virtio_net_hdr_v1_hash_tunnel)
	// (TUN_VNET_TNL_SIZE): the 12-byte header, the hash report fields and
	// the UDP tunnel offsets. A TUN uses it when TUNSETVNETHDRSZ is at
	// least 24 and it has the UDP tunnel offloads (Linux 6.17+).
	SizeTunnel = 24
)

// Flags (virtio_net_hdr.flags).
const (
	// FlagNeedsCsum (VIRTIO_NET_HDR_F_NEEDS_CSUM): the L4 checksum at
	// CsumStart+CsumOffset holds only the pseudo-header sum; whoever
	// transmits must fold the bytes from CsumStart to the end into it.
	FlagNeedsCsum uint8 = 1
	// FlagDataValid (VIRTIO_NET_HDR_F_DATA_VALID): the checksum has been
	// verified (receive side: CHECKSUM_UNNECESSARY).
	FlagDataValid uint8 = 2
	// FlagRSCInfo (VIRTIO_NET_HDR_F_RSC_INFO): csum_start/csum_offset carry
	// coalescing counts instead of checksum offsets.
	FlagRSCInfo uint8 = 4
	// FlagUDPTunnelCsum (VIRTIO_NET_HDR_F_UDP_TUNNEL_CSUM): a UDP tunnel
	// super-packet whose outer UDP checksum is to be filled in per segment
	// (SKB_GSO_UDP_TUNNEL_CSUM); without it the outer checksum is 0.
	FlagUDPTunnelCsum uint8 = 8
)

// GSO types (virtio_net_hdr.gso_type).
const (
	GSONone  uint8 = 0 // VIRTIO_NET_HDR_GSO_NONE
	GSOTCPv4 uint8 = 1 // VIRTIO_NET_HDR_GSO_TCPV4
	GSOUDP   uint8 = 3 // VIRTIO_NET_HDR_GSO_UDP (UFO, IP fragmentation; obsolete)
	GSOTCPv6 uint8 = 4 // VIRTIO_NET_HDR_GSO_TCPV6
	GSOUDPL4 uint8 = 5 // VIRTIO_NET_HDR_GSO_UDP_L4 (USO)
	// GSOECN (VIRTIO_NET_HDR_GSO_ECN) is or-ed into a TCP gso type when the
	// super-packet carries CWR: SKB_GSO_TCP_ECN, CWR goes on the first
	// segment only.
	GSOECN uint8 = 0x80
	// GSOUDPTunnelIPv4 and GSOUDPTunnelIPv6
	// (VIRTIO_NET_HDR_GSO_UDP_TUNNEL_IPV4/_IPV6) are or-ed into the inner
	// gso type (TCPV4, TCPV6 or UDP_L4) of a super-packet carried in a UDP
	// tunnel (VXLAN, GENEVE) over IPv4 or IPv6; only in a HdrTunnel.
	GSOUDPTunnelIPv4 uint8 = 0x20
	GSOUDPTunnelIPv6 uint8 = 0x40
	// GSOUDPTunnel is both tunnel bits.
	GSOUDPTunnel = GSOUDPTunnelIPv4 | GSOUDPTunnelIPv6
)

// ErrShort is returned when a buffer is too short for a header.
var ErrShort = errors.New("virtio: buffer shorter than virtio_net_hdr")

// Hdr mirrors struct virtio_net_hdr.
type Hdr struct {
	Flags      uint8
	GSOType    uint8
	HdrLen     uint16 // length of all headers up to the payload; never trust the kernel's (see RecomputeHdrLen)
	GSOSize    uint16 // payload bytes per segment (MSS for TCP)
	CsumStart  uint16 // offset of the L4 header from the start of the IP packet
	CsumOffset uint16 // offset of the checksum field from CsumStart (16 TCP, 6 UDP)
}

// HdrMrg mirrors struct virtio_net_hdr_mrg_rxbuf.
type HdrMrg struct {
	Hdr
	NumBuffers uint16
}

// Decode reads a header from the first Size bytes of b.
func (h *Hdr) Decode(b []byte) error {
	if len(b) < Size {
		return fmt.Errorf("%w: have %d bytes, need %d", ErrShort, len(b), Size)
	}
	h.Flags = b[0]
	h.GSOType = b[1]
	h.HdrLen = binary.LittleEndian.Uint16(b[2:])
	h.GSOSize = binary.LittleEndian.Uint16(b[4:])
	h.CsumStart = binary.LittleEndian.Uint16(b[6:])
	h.CsumOffset = binary.LittleEndian.Uint16(b[8:])
	return nil
}

// Encode writes the header into the first Size bytes of b.
func (h *Hdr) Encode(b []byte) error {
	if len(b) < Size {
		return fmt.Errorf("%w: have %d bytes, need %d", ErrShort, len(b), Size)
	}
	b[0] = h.Flags
	b[1] = h.GSOType
	binary.LittleEndian.PutUint16(b[2:], h.HdrLen)
	binary.LittleEndian.PutUint16(b[4:], h.GSOSize)
	binary.LittleEndian.PutUint16(b[6:], h.CsumStart)
	binary.LittleEndian.PutUint16(b[8:], h.CsumOffset)
	return nil
}

// Decode reads a 12-byte mergeable-buffers header from b.
func (h *HdrMrg) Decode(b []byte) error {
	if len(b) < SizeMrg {
		return fmt.Errorf("%w: have %d bytes, need %d", ErrShort, len(b), SizeMrg)
	}
	if err := h.Hdr.Decode(b); err != nil {
		return err
	}
	h.NumBuffers = binary.LittleEndian.Uint16(b[10:])
	return nil
}

// Encode writes a 12-byte mergeable-buffers header into b.
func (h *HdrMrg) Encode(b []byte) error {
	if len(b) < SizeMrg {
		return fmt.Errorf("%w: have %d bytes, need %d", ErrShort, len(b), SizeMrg)
	}
	if err := h.Hdr.Encode(b); err != nil {
		return err
	}
	binary.LittleEndian.PutUint16(b[10:], h.NumBuffers)
	return nil
}

// HdrTunnel mirrors struct virtio_net_hdr_v1_hash_tunnel, the 24-byte
// header of a TUN with the UDP tunnel offloads: struct virtio_net_hdr_v1
// (Hdr and num_buffers), the hash report fields (hash_value,
// hash_report, padding; a TUN writes them as zero) and the offsets of a
// UDP tunnel super-packet's outer transport header and inner network
// header from the start of the packet (zero when GSOType has no tunnel
// bit). The inner transport header is at CsumStart.
type HdrTunnel struct {
	Hdr
	NumBuffers    uint16
	HashValue     uint32
	HashReport    uint16
	OuterTHOffset uint16 // outer_th_offset: the outer UDP header
	InnerNHOffset uint16 // inner_nh_offset: the inner IP header
}

// Decode reads a 24-byte tunnel header from b.
func (h *HdrTunnel) Decode(b []byte) error {
	if len(b) < SizeTunnel {
		return fmt.Errorf("%w: have %d bytes, need %d", ErrShort, len(b), SizeTunnel)
	}
	if err := h.Hdr.Decode(b); err != nil {
		return err
	}
	h.NumBuffers = binary.LittleEndian.Uint16(b[10:])
	h.HashValue = binary.LittleEndian.Uint32(b[12:])
	h.HashReport = binary.LittleEndian.Uint16(b[16:])
	h.OuterTHOffset = binary.LittleEndian.Uint16(b[20:])
	h.InnerNHOffset = binary.LittleEndian.Uint16(b[22:])
	return nil
}

// Encode writes a 24-byte tunnel header into b (padding zero).
func (h *HdrTunnel) Encode(b []byte) error {
	if len(b) < SizeTunnel {
		return fmt.Errorf("%w: have %d bytes, need %d", ErrShort, len(b), SizeTunnel)
	}
	if err := h.Hdr.Encode(b); err != nil {
		return err
	}
	binary.LittleEndian.PutUint16(b[10:], h.NumBuffers)
	binary.LittleEndian.PutUint32(b[12:], h.HashValue)
	binary.LittleEndian.PutUint16(b[16:], h.HashReport)
	b[18], b[19] = 0, 0
	binary.LittleEndian.PutUint16(b[20:], h.OuterTHOffset)
	binary.LittleEndian.PutUint16(b[22:], h.InnerNHOffset)
	return nil
}

// String formats the header like Hdr.String, with the tunnel offsets when
// the gso type has a tunnel bit.
func (h HdrTunnel) String() string {
	s := h.Hdr.String()
	if h.GSOType&GSOUDPTunnel != 0 {
		s += fmt.Sprintf(" outer_th=%d inner_nh=%d", h.OuterTHOffset, h.InnerNHOffset)
	}
	return s
}

// GSOBase returns the gso type without the ECN bit.
func (h *Hdr) GSOBase() uint8 { return h.GSOType &^ GSOECN }

// GSOName names a gso type as the pcap comments and logs show it
// ("tcpv4", "udp_l4|ecn", "tcpv4|tunnel4").
func GSOName(t uint8) string {
	var s string
	tunnel := t & GSOUDPTunnel
	if tunnel == GSOUDPTunnel {
		tunnel = 0 // both bits: no such header, shown as a number
	}
	t &^= tunnel
	switch t &^ GSOECN {
	case GSONone:
		s = "none"
	case GSOTCPv4:
		s = "tcpv4"
	case GSOTCPv6:
		s = "tcpv6"
	case GSOUDP:
		s = "udp"
	case GSOUDPL4:
		s = "udp_l4"
	default:
		s = fmt.Sprintf("0x%02x", t&^GSOECN)
	}
	if t&GSOECN != 0 {
		s += "|ecn"
	}
	switch tunnel {
	case GSOUDPTunnelIPv4:
		s += "|tunnel4"
	case GSOUDPTunnelIPv6:
		s += "|tunnel6"
	}
	return s
}

// String formats the header the way vnic's captures annotate packets:
// "gso=tcpv4 gso_size=1448 hdr_len=66 csum_start=20 csum_offset=16 needs_csum".
func (h Hdr) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "gso=%s gso_size=%d hdr_len=%d csum_start=%d csum_offset=%d",
		GSOName(h.GSOType), h.GSOSize, h.HdrLen, h.CsumStart, h.CsumOffset)
	if h.Flags&FlagNeedsCsum != 0 {
		b.WriteString(" needs_csum")
	}
	if h.Flags&FlagDataValid != 0 {
		b.WriteString(" data_valid")
	}
	if h.Flags&FlagRSCInfo != 0 {
		b.WriteString(" rsc_info")
	}
	if h.Flags&FlagUDPTunnelCsum != 0 {
		b.WriteString(" udp_tunnel_csum")
	}
	return b.String()
}

// ErrBadL4 is returned by L4HeaderLen when the L4 header at csum_start does
// not fit in the packet.
var ErrBadL4 = errors.New("virtio: L4 header at csum_start does not fit the packet")

// L4HeaderLen returns the length of the TCP or UDP header that starts at
// csumStart in pkt, for the given gso type: TCP reads the data offset, UDP
// is always 8. The kernel's own hdr_len is not trusted: on forwarding paths
// it is the length of the whole first packet (virtio_net_hdr_from_skb uses
// skb_headlen), so hdr_len must be recomputed from csum_start and the L4
// header.
func L4HeaderLen(pkt []byte, csumStart int, tcp bool) (int, error) {
	if csumStart < 0 || csumStart >= len(pkt) {
		return 0, fmt.Errorf("%w: csum_start %d, packet %d bytes", ErrBadL4, csumStart, len(pkt))
	}
	if !tcp {
		if csumStart+8 > len(pkt) {
			return 0, fmt.Errorf("%w: UDP header at %d needs 8 bytes, packet %d bytes", ErrBadL4, csumStart, len(pkt))
		}
		return 8, nil
	}
	if csumStart+20 > len(pkt) {
		return 0, fmt.Errorf("%w: TCP header at %d needs 20 bytes, packet %d bytes", ErrBadL4, csumStart, len(pkt))
	}
	n := int(pkt[csumStart+12]>>4) * 4
	if n < 20 || csumStart+n > len(pkt) {
		return 0, fmt.Errorf("%w: TCP data offset %d bytes at %d, packet %d bytes", ErrBadL4, n, csumStart, len(pkt))
	}
	return n, nil
}

// RecomputeHdrLen returns csum_start plus the L4 header length: the hdr_len
// a super-packet's header should carry.
func RecomputeHdrLen(pkt []byte, h *Hdr) (int, error) {
	tcp := true
	switch h.GSOBase() {
	case GSOUDPL4, GSOUDP:
		tcp = false
	case GSOTCPv4, GSOTCPv6:
	default:
		tcp = h.CsumOffset == 16
	}
	n, err := L4HeaderLen(pkt, int(h.CsumStart), tcp)
	if err != nil {
		return 0, err
	}
	return int(h.CsumStart) + n, nil
}
