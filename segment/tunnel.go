package segment

import (
	"encoding/binary"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"

	"vnic/vnic/virtio"
)

// NewTunnelPlan is NewPlan for a frame read with the 24-byte header of a
// TUN device that has the UDP tunnel offloads (virtio.HdrTunnel, Linux
// 6.17+): a TCP or UDP super-packet inside a UDP tunnel (VXLAN, GENEVE),
// cut the way skb_udp_tunnel_segment cuts it (net/ipv4/udp_offload.c):
//
//   - the inner packet, at inner_nh_offset, is segmented as NewPlan
//     segments a plain one (tcp_gso_segment, __udp_gso_segment, the inner
//     IPv4 ID incrementing), its checksums completed;
//   - every segment gets a copy of the outer headers (outer IP, UDP, the
//     tunnel header, the inner Ethernet header), the outer IPv4 total
//     length, ID (incrementing per segment) and header checksum or the
//     IPv6 payload length, and the outer UDP length rewritten;
//   - with VIRTIO_NET_HDR_F_UDP_TUNNEL_CSUM (SKB_GSO_UDP_TUNNEL_CSUM) the
//     outer UDP checksum is computed per segment, from the pseudo-header
//     sum the sender left in the field (with the super-packet's length
//     swapped for the segment's), 0 sent as 0xffff; without it the field
//     is copied as it is (0).
//
// A header without a tunnel bit is handed to NewPlan. The offsets are
// checked as virtio_net_hdr_tnl_to_skb checks them, except that the outer
// transport header may start right after the outer IP header: the kernel
// also demands room for an Ethernet header in front (ETH_HLEN), which a
// TUN frame does not have, so a TUN refuses on write the tunnel frames it
// hands out on read. Options.PartialChecksum is ignored (checksums are
// completed); Options.MaxPacket caps the outer packets.
func NewTunnelPlan(hdr virtio.HdrTunnel, pkt []byte, opt Options) (Plan, error) {
	tunnel := hdr.GSOType & virtio.GSOUDPTunnel
	if tunnel == 0 {
		return NewPlan(hdr.Hdr, pkt, opt)
	}
	n := len(pkt)
	if int(hdr.HdrLen) > n+opt.vnetHdrSlack() {
		return Plan{}, errf(ErrHdrLen, "hdr_len %d, %d-byte packet", hdr.HdrLen, n)
	}
	if tunnel == virtio.GSOUDPTunnel {
		return Plan{}, errf(ErrGSOType, "gso_type %#02x: both UDP tunnel bits", hdr.GSOType)
	}
	inner := hdr.GSOType &^ (virtio.GSOECN | virtio.GSOUDPTunnel)
	switch inner {
	case virtio.GSOTCPv4, virtio.GSOTCPv6, virtio.GSOUDPL4:
	default:
		return Plan{}, errf(ErrGSOType, "gso_type %#02x: a UDP tunnel carries TCPV4, TCPV6 or UDP_L4 (%s)", hdr.GSOType, virtio.GSOName(hdr.GSOType))
	}
	if hdr.Flags&virtio.FlagNeedsCsum == 0 {
		return Plan{}, errf(ErrNeedsCsum, "UDP tunnel gso_type %s, flags %#02x", virtio.GSOName(hdr.GSOType), hdr.Flags)
	}
	outerV6 := tunnel == virtio.GSOUDPTunnelIPv6
	outerMin, innerMin := ipv4MinHeader, ipv4MinHeader
	if outerV6 {
		outerMin = ipv6Header
	}
	if inner == virtio.GSOTCPv6 {
		innerMin = ipv6Header
	}
	outerTH, innerNH, innerTH := int(hdr.OuterTHOffset), int(hdr.InnerNHOffset), int(hdr.CsumStart)
	if outerTH < outerMin || innerNH < outerTH+udpHeader || innerTH < innerNH+innerMin {
		return Plan{}, errf(ErrCsum, "UDP tunnel offsets outer_th %d, inner_nh %d, csum_start %d: want outer_th >= %d, inner_nh >= outer_th + 8, csum_start >= inner_nh + %d",
			outerTH, innerNH, innerTH, outerMin, innerMin)
	}
	if innerNH > n {
		return Plan{}, errf(ErrL4Header, "inner IP header at %d, packet %d bytes", innerNH, n)
	}
	// The outer IP header: the family the tunnel bit says, its length
	// the packet's.
	switch {
	case outerV6 && pkt[0]>>4 != 6, !outerV6 && pkt[0]>>4 != 4:
		return Plan{}, errf(ErrIPVersion, "IP version %d, gso_type %s", pkt[0]>>4, virtio.GSOName(hdr.GSOType))
	case !outerV6 && int(pkt[0]&0xf)*4 > outerTH:
		return Plan{}, errf(ErrIPHeader, "outer IPv4 header of %d bytes, outer_th %d", int(pkt[0]&0xf)*4, outerTH)
	case !outerV6 && int(binary.BigEndian.Uint16(pkt[2:])) != n,
		outerV6 && int(binary.BigEndian.Uint16(pkt[4:]))+ipv6Header != n:
		return Plan{}, errf(ErrIPLength, "outer IP length disagrees with the %d-byte packet", n)
	}

	ih := virtio.Hdr{
		Flags:      virtio.FlagNeedsCsum,
		GSOType:    hdr.GSOType &^ virtio.GSOUDPTunnel,
		GSOSize:    hdr.GSOSize,
		CsumStart:  uint16(innerTH - innerNH),
		CsumOffset: hdr.CsumOffset,
	}
	iopt := opt
	iopt.PartialChecksum, iopt.VnetHdrSize = false, 0
	if opt.MaxPacket > 0 {
		if iopt.MaxPacket = opt.MaxPacket - innerNH; iopt.MaxPacket <= 0 {
			return Plan{}, errf(ErrTooBig, "MaxPacket %d leaves no room after %d bytes of outer headers", opt.MaxPacket, innerNH)
		}
	}
	p, err := NewPlan(ih, pkt[innerNH:], iopt)
	if err != nil {
		return Plan{}, err
	}
	p.outer = pkt[:innerNH]
	p.outerTH, p.outerV6 = outerTH, outerV6
	p.outerCsum = hdr.Flags&virtio.FlagUDPTunnelCsum != 0
	if p.outerCsum {
		// __skb_udp_tunnel_segment: partial = uh->check - htonl(skb->len).
		ulen := uint32(n - outerTH)
		p.outerBase = checksum.Combine(binary.BigEndian.Uint16(pkt[outerTH+udpCsumOffset:]),
			checksum.Combine(^uint16(ulen>>16), ^uint16(ulen)))
	}
	return p, nil
}

// encapsulate writes the outer headers in front of the inner segments Cut
// wrote at offset + len(p.outer) and fixes them up per segment.
func (p *Plan) encapsulate(out [][]byte, sizes []int, offset int) {
	var id uint16
	if !p.outerV6 {
		id = binary.BigEndian.Uint16(p.outer[4:])
	}
	for i := 0; i < p.nseg; i++ {
		size := len(p.outer) + sizes[i]
		o := out[i][offset : offset+size]
		copy(o, p.outer)
		if p.outerV6 {
			binary.BigEndian.PutUint16(o[4:], uint16(size-ipv6Header))
		} else {
			binary.BigEndian.PutUint16(o[2:], uint16(size))
			binary.BigEndian.PutUint16(o[4:], id+uint16(i))
			ihl := int(o[0]&0xf) * 4
			o[10], o[11] = 0, 0
			binary.BigEndian.PutUint16(o[10:], ^checksum.Checksum(o[:ihl], 0))
		}
		uh := o[p.outerTH:]
		ulen := uint32(len(uh))
		binary.BigEndian.PutUint16(uh[4:], uint16(ulen))
		if p.outerCsum {
			pseudo := checksum.Combine(p.outerBase, checksum.Combine(uint16(ulen>>16), uint16(ulen)))
			uh[6], uh[7] = 0, 0
			c := ^checksum.Checksum(uh, pseudo)
			if c == 0 {
				c = 0xffff // CSUM_MANGLED_0
			}
			binary.BigEndian.PutUint16(uh[6:], c)
		}
		sizes[i] = size
	}
}
