package segment

import (
	"encoding/binary"
	"fmt"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"

	"vnic/vnic/virtio"
)

// Options configure the NIC's segmentation.
type Options struct {
	// MaxPacket caps the IP length of each wire packet: the NIC's hardware
	// MTU (e.g. 1500 on a forcedeth NIC whose interface MTU says 9000). 0
	// (or negative) means no cap beyond gso_size. TSO cuts at
	// min(gso_size, MaxPacket - headers); a USO datagram or an unsegmented
	// packet that does not fit is refused with ErrTooBig (the NIC drops it).
	MaxPacket int

	// FixedID keeps the IPv4 ID of the super-packet on every segment
	// instead of incrementing it: SKB_GSO_TCP_FIXEDID. The virtio header
	// cannot express it, and in 6.18 only GRO sets it (tcp4_gro_complete,
	// when the merged packets all carried the same ID), so a frame read
	// from a TUN device is always segmented with incrementing IDs. Set it
	// only when re-segmenting a super-packet vnic's own GRO built from
	// fixed-ID packets. Like inet_gso_segment in 6.18 it is honoured
	// whatever the DF bit says.
	FixedID bool

	// AccECN keeps CWR on every segment instead of only the first:
	// SKB_GSO_TCP_ACCECN, under which CWR is part of the AccECN ACE
	// counter rather than a one-shot signal. Mainline 6.18's virtio header
	// has no bit for it (VIRTIO_NET_HDR_GSO_ACCECN, 0x10, is a proposal and
	// is rejected as ErrGSOType); tcp_gro_complete sets it when a merged
	// packet carried CWR, so set it when re-segmenting such a packet.
	// Without it CWR is cleared after the first segment whether or not the
	// virtio ECN bit (SKB_GSO_TCP_ECN) is set: in 6.18 that bit only tells
	// hardware it must handle CWR, tcp_gso_segment ignores it.
	AccECN bool

	// PartialChecksum leaves the TCP/UDP checksum of every packet cut
	// from a NEEDS_CSUM frame partial, the way such a frame carries it
	// (the field holds the folded pseudo-header sum with the packet's own
	// L4 length, uncomplemented; the L4 header starts at csum_start),
	// instead of completing it: for a consumer that completes it only if
	// someone looks at it (vnic's direct wire, where GRO merges the
	// packets again and hands the kernel CHECKSUM_PARTIAL). A frame
	// without NEEDS_CSUM is segmented as without the option. The IPv4
	// header checksum is always computed.
	PartialChecksum bool

	// VnetHdrSize is the size of the virtio header the frame was read
	// with: 10 (struct virtio_net_hdr; 0 means 10) or 12 (struct
	// virtio_net_hdr_mrg_rxbuf). tun_get_user measures hdr_len against
	// everything after the first 10 bytes, so behind a 12-byte header
	// hdr_len may run 2 bytes past the packet.
	VnetHdrSize int

	// L2Len is the length of the Ethernet header in front of the IP
	// packet: 14, or 18 (22) behind one (two) VLAN tags; 0, the default,
	// for the IP packets of a TUN device. It is for the frames of a TAP
	// device, where csum_start and hdr_len count from the start of the
	// frame (tun_get_user hands the whole frame to virtio_net_hdr_to_skb
	// before eth_type_trans), and the kernel's GSO copies the MAC header
	// into every segment (skb_segment). The header's last two bytes must
	// be the EtherType of the packet's IP version (ip_rcv / ipv6_rcv get
	// the frame by it); every wire packet Cut writes starts with a copy
	// of the header. Options.MaxPacket still caps the IP packet.
	L2Len int
}

// vnetHdrSlack is how far hdr_len may reach past the packet.
func (o *Options) vnetHdrSlack() int {
	if o.VnetHdrSize > virtio.Size {
		return o.VnetHdrSize - virtio.Size
	}
	return 0
}

// Header sizes, protocol numbers and TCP flags used below.
const (
	ipv4MinHeader = 20
	ipv6Header    = 40
	tcpMinHeader  = 20
	udpHeader     = 8

	protoTCP = 6
	protoUDP = 17

	// IPv6 extension headers ipv6_gso_pull_exthdrs walks (they are the
	// ones registered with INET6_PROTO_GSO_EXTHDR in exthdrs_offload.c),
	// and the fragment header, which it does not.
	extHopByHop = 0
	extRouting  = 43
	extFragment = 44
	extDestOpts = 60

	tcpCsumOffset = 16
	udpCsumOffset = 6

	tcpFIN = 0x01
	tcpPSH = 0x08
	tcpCWR = 0x80

	// udpMaxSegments is UDP_MAX_SEGMENTS (include/linux/udp.h), 1 << 7
	// since it was raised from 64.
	udpMaxSegments = 128

	// gsoByFrags is GSO_BY_FRAGS: a gso_size that tells the kernel's GSO
	// to cut along the skb's fragments (SCTP); a virtio header may not
	// carry it.
	gsoByFrags = 0xffff
)

// Plan is one frame checked and measured, ready to cut: NewPlan does
// every check Segment does and keeps the offsets it parsed, so a caller
// can ask how many wire packets the frame makes (Segments) and how big the
// largest is (MaxSize) before it finds buffers for them, then Cut. Segment
// is NewPlan followed by Cut.
//
// A Plan refers to the frame's bytes (it does not copy them): pkt must not
// change between NewPlan and Cut. Cut only reads it, so one Plan may be cut
// any number of times. The zero Plan cuts nothing. Plan is a small value
// type; NewPlan and Cut do not allocate on success.
type Plan struct {
	pkt  []byte
	kind planKind
	nseg int // wire packets Cut writes
	max  int // the largest of them

	// planSingle: copied, checksum completed unless partial.
	needsCsum             bool
	csumStart, csumOffset int

	// planTSO, planUSO.
	v6      bool
	l4      int // offset of the L4 header
	hdrLen  int // IP + L4 headers
	mss     int
	base    uint16 // the L4 pseudo-header sum without the length
	fixedID bool
	accECN  bool
	partial bool // Options.PartialChecksum, for a NEEDS_CSUM frame

	// A UDP tunnel super-packet (NewTunnelPlan): the fields above
	// describe the inner packet; outer holds the headers in front of it
	// (outer IP, UDP, the tunnel header, the inner Ethernet header), copied
	// in front of every inner segment and fixed up (tunnel.go).
	outer     []byte
	outerTH   int    // offset of the outer UDP header
	outerV6   bool   // outer IPv6
	outerCsum bool   // SKB_GSO_UDP_TUNNEL_CSUM: fill in the outer UDP checksum
	outerBase uint16 // the outer pseudo-header sum without the length

	// l2 is the Ethernet header (Options.L2Len) copied in front of every
	// wire packet; the fields above describe the IP packet behind it.
	l2 []byte
}

// planKind is how Cut makes the frame's wire packets.
type planKind uint8

const (
	planNone   planKind = iota // the zero Plan
	planSingle                 // one packet, as it is (skb_checksum_help)
	planTSO                    // tcp_gso_segment
	planUSO                    // __udp_gso_segment
	planUFO                    // legacy UFO (only while checking: never cut)
)

// Segments returns how many wire packets Cut writes: at least 1 for a
// Plan NewPlan returned, 0 for the zero Plan.
func (p *Plan) Segments() int { return p.nseg }

// MaxSize returns the size in bytes of the largest packet Cut writes (the
// first one; a segmented frame's last one may be shorter): a buffer of
// offset + MaxSize bytes holds any of them.
func (p *Plan) MaxSize() int { return len(p.l2) + len(p.outer) + p.max }

// WireBytes returns the bytes of all the packets Cut writes: the headers
// once per segment, the payload once.
func (p *Plan) WireBytes() int {
	n := len(p.pkt) + p.nseg*len(p.l2)
	if p.kind == planTSO || p.kind == planUSO {
		n += (p.nseg - 1) * p.hdrLen
	}
	return n
}

// TSO reports whether Cut segments the frame as TCP (tcp_gso_segment),
// and if so the length of the headers copied into every segment (the
// Ethernet header with Options.L2Len, IP, TCP) and the payload bytes per
// segment (the last may carry less).
func (p *Plan) TSO() (ok bool, hdrLen, mss int) {
	if p.kind != planTSO {
		return false, 0, 0
	}
	return true, len(p.l2) + p.hdrLen, p.mss
}

// Segment splits one packet pkt (an IPv4 or IPv6 packet, no virtio header,
// up to 64 KiB) as described by hdr into wire packets, writing packet i into
// out[i][offset:] and its length into sizes[i]. It returns the number of
// packets written. No allocation. It is NewPlan followed by Cut; a caller
// that sizes or batches its buffers per frame asks the Plan first.
//
// pkt is only read. hdr.HdrLen is ignored: the kernel's is not trustworthy
// (on forwarding paths it is the whole first packet), so the header length
// is recomputed from csum_start and the L4 header. On error nothing useful
// has been written and the error wraps one of the Err sentinels; Reason
// names it.
func Segment(hdr virtio.Hdr, pkt []byte, out [][]byte, sizes []int, offset int, opt Options) (int, error) {
	if offset < 0 {
		return 0, errf(ErrBufferTooSmall, "negative offset %d", offset)
	}
	p, err := NewPlan(hdr, pkt, opt)
	if err != nil {
		return 0, err
	}
	return p.Cut(out, sizes, offset)
}

// NewPlan checks the frame (hdr, then pkt: an IPv4 or IPv6 packet, no
// virtio header) the way the kernel does when a TUN device receives it
// (tun_get_user, __virtio_net_hdr_to_skb), when its stack takes the packet
// in (ip_rcv_core, ip6_rcv_core: the IP header checked, a frame longer
// than the IP length trimmed to it) and when its software GSO segments it,
// and measures what Cut will make of it. On error the error wraps one of
// the Err sentinels (never ErrTooManySegments or ErrBufferTooSmall, which
// only Cut reports); Reason names it. pkt is only read, and is referred to
// by the Plan.
func NewPlan(hdr virtio.Hdr, pkt []byte, opt Options) (Plan, error) {
	if opt.L2Len != 0 {
		return newL2Plan(hdr, pkt, opt)
	}
	return newPlan(hdr, pkt, opt, 0)
}

// newPlan is NewPlan for the IP packet pkt of a frame whose l2-byte
// Ethernet header went in front of it (0 for a TUN frame). The virtio
// layer measures two things from the start of the frame, not of the IP
// packet: the minimal network header in front of csum_start, and where it
// assumes the payload of a GSO frame without NEEDS_CSUM starts (nh_min_len
// + thlen, __virtio_net_hdr_to_skb); every other offset has been moved to
// the IP packet by the caller.
func newPlan(hdr virtio.Hdr, pkt []byte, opt Options, l2 int) (Plan, error) {
	n := len(pkt)
	needsCsum := hdr.Flags&virtio.FlagNeedsCsum != 0
	gsoSize := int(hdr.GSOSize)
	csumStart, csumOffset := int(hdr.CsumStart), int(hdr.CsumOffset)

	// tun_get_user → __tun_vnet_hdr_get: hdr_len, raised to csum_start +
	// csum_offset + 2 with NEEDS_CSUM, may not exceed what follows the 10
	// bytes of struct virtio_net_hdr, whatever the gso type: the packet,
	// plus the rest of a longer header.
	room := n + opt.vnetHdrSlack()
	if int(hdr.HdrLen) > room {
		return Plan{}, errf(ErrHdrLen, "hdr_len %d, %d-byte packet", hdr.HdrLen, n)
	}
	if needsCsum && csumStart+csumOffset+2 > room {
		return Plan{}, errf(ErrCsum, "csum_start %d + csum_offset %d + 2 past the %d-byte packet", csumStart, csumOffset, n)
	}

	// The virtio header, checked the way __virtio_net_hdr_to_skb checks it.
	gso := hdr.GSOType != virtio.GSONone
	var kind planKind
	nhMin := ipv4MinHeader // the minimal network header before csum_start
	thlen := 0             // the minimal L4 header the virtio layer assumes
	if gso {
		switch hdr.GSOType &^ virtio.GSOECN {
		case virtio.GSOTCPv4:
			kind, thlen = planTSO, tcpMinHeader
		case virtio.GSOTCPv6:
			kind, thlen, nhMin = planTSO, tcpMinHeader, ipv6Header
		case virtio.GSOUDPL4:
			kind, thlen = planUSO, udpHeader
		case virtio.GSOUDP:
			kind, thlen = planUFO, udpHeader
		default:
			return Plan{}, errf(ErrGSOType, "gso_type %#02x (%s)", hdr.GSOType, virtio.GSOName(hdr.GSOType))
		}
		if gsoSize == 0 {
			return Plan{}, errf(ErrGSOSizeZero, "gso_type %s", virtio.GSOName(hdr.GSOType))
		}
	}
	pOff := 0 // where the virtio layer thinks the payload starts
	if needsCsum {
		need := csumStart + max(thlen, csumOffset+2)
		if need > n {
			return Plan{}, errf(ErrCsum, "csum_start %d + max(L4 header %d, csum_offset %d + 2) = %d, past the %d-byte packet",
				csumStart, thlen, csumOffset, need, n)
		}
		if l2+csumStart < nhMin {
			return Plan{}, errf(ErrCsum, "csum_start %d inside the minimal %d-byte IP header", l2+csumStart, nhMin)
		}
		pOff = csumStart + thlen
	} else if gso {
		pOff = nhMin + thlen - l2
		if pOff > n {
			return Plan{}, errf(ErrL4Header, "%d-byte packet, shorter than %d bytes of IP and L4 header", n, pOff)
		}
	}
	if gso {
		switch kind {
		case planUFO:
			// UFO counts the UDP header in gso_size.
			pOff -= thlen
		case planUSO:
			if !needsCsum {
				return Plan{}, errf(ErrNeedsCsum, "gso_type %s, flags %#02x", virtio.GSOName(hdr.GSOType), hdr.Flags)
			}
			if csumOffset != udpCsumOffset {
				return Plan{}, errf(ErrCsum, "csum_offset %d for UDP, want %d", csumOffset, udpCsumOffset)
			}
			if n-pOff > gsoSize*udpMaxSegments {
				return Plan{}, errf(ErrUSOSegments, "%d payload bytes at gso_size %d is more than %d datagrams",
					n-pOff, gsoSize, udpMaxSegments)
			}
			if hdr.GSOType&virtio.GSOECN != 0 {
				return Plan{}, errf(ErrGSOType, "gso_type %#02x: the ECN bit on UDP_L4", hdr.GSOType)
			}
		case planTSO:
			if needsCsum && csumOffset != tcpCsumOffset {
				return Plan{}, errf(ErrCsum, "csum_offset %d for TCP, want %d", csumOffset, tcpCsumOffset)
			}
		}
		if gsoSize == gsoByFrags {
			return Plan{}, errf(ErrGSOByFrags, "gso_type %s", virtio.GSOName(hdr.GSOType))
		}
		// "Too small packets are not really GSO ones": a frame whose
		// payload, measured after the minimal L4 header (UFO: after the
		// minimal IP header), fits in gso_size goes out as one packet,
		// only its checksum completed.
		if n-pOff <= gsoSize {
			gso = false
		}
	}

	// The IP header, checked the way tun (the version) and the stack
	// check it; m is the packet's length after ip_rcv trimmed it.
	m, v6, err := ipRcv(pkt, gso && kind == planTSO)
	if err != nil {
		return Plan{}, err
	}
	if m < n {
		// pskb_trim_rcsum keeps a partial checksum's field inside.
		if needsCsum && csumStart+csumOffset+2 > m {
			return Plan{}, errf(ErrIPLength, "IP length %d cuts off the checksum field at %d + %d", m, csumStart, csumOffset)
		}
		pkt, n = pkt[:m], m
	}

	if !gso {
		if opt.MaxPacket > 0 && n > opt.MaxPacket {
			return Plan{}, errf(ErrTooBig, "%d-byte packet, not segmented, exceeds MaxPacket %d", n, opt.MaxPacket)
		}
		return Plan{
			pkt: pkt, kind: planSingle, nseg: 1, max: n,
			needsCsum: needsCsum && !opt.PartialChecksum,
			csumStart: csumStart, csumOffset: csumOffset,
		}, nil
	}
	if kind == planUFO {
		return Plan{}, errf(ErrGSOType, "gso_type %s: UFO of %d bytes after the IP header at gso_size %d would be IP-fragmented, which vnic does not do",
			virtio.GSOName(hdr.GSOType), n-pOff, gsoSize)
	}

	tcp := kind == planTSO
	if tcp && v6 != (hdr.GSOType&^virtio.GSOECN == virtio.GSOTCPv6) {
		ver := 4
		if v6 {
			ver = 6
		}
		return Plan{}, errf(ErrIPVersion, "gso_type %s on an IPv%d packet", virtio.GSOName(hdr.GSOType), ver)
	}
	l4, proto, err := findL4(pkt, v6)
	if err != nil {
		return Plan{}, err
	}
	wantProto := uint8(protoUDP)
	if tcp {
		wantProto = protoTCP
	}
	if proto != wantProto {
		return Plan{}, errf(ErrL4Proto, "IP protocol %d at offset %d, gso_type %s wants %d",
			proto, l4, virtio.GSOName(hdr.GSOType), wantProto)
	}
	if needsCsum && l4 != csumStart {
		return Plan{}, errf(ErrCsum, "csum_start %d, but the IP header puts the L4 header at %d", csumStart, l4)
	}
	l4len, err := virtio.L4HeaderLen(pkt, l4, tcp)
	if err != nil {
		return Plan{}, fmt.Errorf("%w: %w", ErrL4Header, err)
	}
	hdrLen := l4 + l4len
	payload := n - hdrLen
	if payload <= gsoSize {
		// tcp_gso_segment: "if (unlikely(skb->len <= mss)) goto out" with
		// segs = -EINVAL (__udp_gso_segment likewise): the virtio layer
		// measured after a 20-byte TCP header, and before ip_rcv trimmed
		// the frame to its IP length.
		return Plan{}, errf(ErrGSOShort, "%d payload bytes after %d bytes of headers, gso_size %d", payload, hdrLen, gsoSize)
	}

	mss := gsoSize
	if opt.MaxPacket > 0 {
		room := opt.MaxPacket - hdrLen
		if room <= 0 {
			return Plan{}, errf(ErrTooBig, "MaxPacket %d leaves no payload after %d bytes of headers", opt.MaxPacket, hdrLen)
		}
		if tcp {
			mss = min(mss, room)
		} else if mss > room {
			return Plan{}, errf(ErrTooBig, "USO datagram of %d bytes (gso_size %d) exceeds MaxPacket %d",
				hdrLen+mss, gsoSize, opt.MaxPacket)
		}
	}
	p := Plan{
		pkt: pkt, kind: kind, v6: v6, l4: l4, hdrLen: hdrLen, mss: mss,
		nseg:    (payload + mss - 1) / mss,
		max:     hdrLen + min(mss, payload),
		fixedID: opt.FixedID,
		partial: opt.PartialChecksum && needsCsum,
	}
	if tcp {
		p.accECN = opt.AccECN
		// The kernel does not recompute the pseudo-header: it takes the
		// sum the sender left in the checksum field and swaps the
		// super-packet's L4 length for each segment's (tcp_gso_segment's
		// delta). Without NEEDS_CSUM, tcp4/tcp6_gso_segment first write
		// that sum from the addresses (__tcp_v4_send_check).
		if needsCsum {
			p.base = checksum.Combine(binary.BigEndian.Uint16(pkt[l4+tcpCsumOffset:]), ^uint16(n-l4))
		} else {
			p.base = pseudoNoLength(pkt, v6, protoTCP)
		}
	} else {
		// __udp_gso_segment does the same with the UDP length field (not
		// the buffer length): csum16_sub(uh->check, uh->len).
		p.base = checksum.Combine(binary.BigEndian.Uint16(pkt[l4+udpCsumOffset:]), ^binary.BigEndian.Uint16(pkt[l4+4:]))
	}
	return p, nil
}

// Cut writes the Plan's wire packets: packet i into out[i][offset:] and
// its length into sizes[i]; it returns how many it wrote (Segments). It
// fails only for the caller's buffers: ErrTooManySegments when out or
// sizes has fewer than Segments entries, ErrBufferTooSmall when offset is
// negative or a buffer cannot hold offset plus its packet (MaxSize
// bytes always suffice); nothing is written then. No allocation.
func (p *Plan) Cut(out [][]byte, sizes []int, offset int) (int, error) {
	if offset < 0 {
		return 0, errf(ErrBufferTooSmall, "negative offset %d", offset)
	}
	if p.nseg > len(out) || p.nseg > len(sizes) {
		return 0, errf(ErrTooManySegments, "%d packets of up to %d bytes, %d output buffers and %d sizes",
			p.nseg, p.MaxSize(), len(out), len(sizes))
	}
	// An Ethernet header goes first, then a tunnel's outer headers, then
	// the (inner) IP packets.
	l2Off := offset
	offset += len(p.l2)
	outerOff := offset
	offset += len(p.outer)
	for i := 0; i < p.nseg; i++ {
		size := p.max
		if i == p.nseg-1 && p.kind != planSingle {
			size = len(p.pkt) - (p.nseg-1)*p.mss
		}
		if len(out[i]) < offset+size {
			return 0, errf(ErrBufferTooSmall, "buffer %d has %d bytes, need offset %d + %d", i, len(out[i]), offset, size)
		}
	}
	switch p.kind {
	case planSingle:
		o := out[0][offset : offset+len(p.pkt)]
		copy(o, p.pkt)
		if p.needsCsum {
			CompleteChecksum(o, p.csumStart, p.csumOffset)
		}
		sizes[0] = len(p.pkt)
	case planTSO:
		p.tso(out, sizes, offset)
	case planUSO:
		p.uso(out, sizes, offset)
	}
	if len(p.outer) > 0 {
		p.encapsulate(out, sizes, outerOff)
	}
	if len(p.l2) > 0 {
		for i := 0; i < p.nseg; i++ {
			copy(out[i][l2Off:], p.l2)
			sizes[i] += len(p.l2)
		}
	}
	return p.nseg, nil
}

// newL2Plan is NewPlan for a frame that starts with an Ethernet header
// (Options.L2Len): the virtio header's offsets count from the frame's
// start, so they are checked against the whole frame, then the IP packet
// behind the header is planned as a TUN frame would be.
func newL2Plan(hdr virtio.Hdr, frame []byte, opt Options) (Plan, error) {
	l2 := opt.L2Len
	if l2 < 14 || len(frame) < l2 {
		return Plan{}, errf(ErrL2Header, "%d-byte frame, %d-byte Ethernet header", len(frame), l2)
	}
	if int(hdr.HdrLen) > len(frame)+opt.vnetHdrSlack() {
		return Plan{}, errf(ErrHdrLen, "hdr_len %d, %d-byte frame", hdr.HdrLen, len(frame))
	}
	h := hdr
	h.HdrLen = uint16(max(int(hdr.HdrLen)-l2, 0))
	if h.Flags&virtio.FlagNeedsCsum != 0 {
		if int(h.CsumStart) < l2 {
			return Plan{}, errf(ErrCsum, "csum_start %d inside the %d-byte Ethernet header", h.CsumStart, l2)
		}
		h.CsumStart -= uint16(l2)
	}
	pkt := frame[l2:]
	switch et := binary.BigEndian.Uint16(frame[l2-2:]); {
	case et == etherTypeIPv4 && len(pkt) > 0 && pkt[0]>>4 == 4:
	case et == etherTypeIPv6 && len(pkt) > 0 && pkt[0]>>4 == 6:
	default:
		return Plan{}, errf(ErrIPVersion, "EtherType %#04x with IP version %d behind it", et, ipVersionOf(pkt))
	}
	o := opt
	o.L2Len = 0
	p, err := newPlan(h, pkt, o, l2)
	if err != nil {
		return Plan{}, err
	}
	p.l2 = frame[:l2]
	return p, nil
}

// EtherTypes of IPv4 and IPv6.
const (
	etherTypeIPv4 = 0x0800
	etherTypeIPv6 = 0x86dd
)

func ipVersionOf(pkt []byte) int {
	if len(pkt) == 0 {
		return 0
	}
	return int(pkt[0] >> 4)
}

// CompletePartial completes, in place, a TCP/UDP checksum that
// Options.PartialChecksum left partial in a packet cut from a NEEDS_CSUM
// frame (csumStart is the frame's csum_start, csumOffset 16 for TCP, 6
// for UDP), to the bytes Segment writes without the option: the folded
// complement of the sum from csumStart, a 0 sent as 0xffff for UDP
// (__udp_gso_segment's CSUM_MANGLED_0) but not for TCP (tcp_gso_segment).
func CompletePartial(pkt []byte, csumStart, csumOffset int) {
	if csumStart < 0 || csumOffset < 0 || csumStart+csumOffset+2 > len(pkt) {
		return
	}
	c := ^checksum.Checksum(pkt[csumStart:], 0)
	if c == 0 && csumOffset == udpCsumOffset {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(pkt[csumStart+csumOffset:], c)
}

// CompleteChecksum completes a partial checksum in place, like
// skb_checksum_help: the field at csumStart+csumOffset holds the
// pseudo-header sum (a CHECKSUM_PARTIAL packet, virtio NEEDS_CSUM); the
// bytes from csumStart to the end are summed and the folded complement is
// stored, 0 as 0xffff (CSUM_MANGLED_0) whatever the protocol. Out-of-range
// offsets leave pkt unchanged. No allocation.
func CompleteChecksum(pkt []byte, csumStart, csumOffset int) {
	if csumStart < 0 || csumOffset < 0 || csumStart+csumOffset+2 > len(pkt) {
		return
	}
	c := ^checksum.Checksum(pkt[csumStart:], 0)
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(pkt[csumStart+csumOffset:], c)
}

// ipRcv checks an IP packet the way tun_get_user (the version) and the
// stack receiving it check it, and returns its length after
// pskb_trim_rcsum: the IP length, when the frame is longer.
//
//   - ip_rcv_core: ihl at least 5 and within the packet, the header
//     checksum, a total length neither above the packet nor below ihl (0
//     on a TCP GSO frame is BIG TCP's "the skb's length", iph_totlen);
//     then ip_rcv_options → ip_options_compile (checkIPv4Options).
//   - ip6_rcv_core: a payload length not above the packet (0 with a
//     hop-by-hop header is a jumbogram's: the frame's length stands);
//     then ipv6_parse_hopopts (checkHopByHop).
func ipRcv(pkt []byte, tso bool) (m int, v6 bool, err error) {
	n := len(pkt)
	if n == 0 {
		return 0, false, errf(ErrIPHeader, "empty packet")
	}
	switch pkt[0] >> 4 {
	case 4:
		if n < ipv4MinHeader {
			return 0, false, errf(ErrIPHeader, "IPv4 packet of %d bytes", n)
		}
		ihl := int(pkt[0]&0xf) * 4
		if ihl < ipv4MinHeader || ihl > n {
			return 0, false, errf(ErrIPHeader, "IPv4 header length %d, packet %d bytes", ihl, n)
		}
		if checksum.Checksum(pkt[:ihl], 0) != 0xffff {
			return 0, false, errf(ErrIPHeader, "IPv4 header checksum %#04x does not verify", binary.BigEndian.Uint16(pkt[10:]))
		}
		tl := int(binary.BigEndian.Uint16(pkt[2:]))
		if tl == 0 && tso {
			tl = n
		}
		if tl > n || tl < ihl {
			return 0, false, errf(ErrIPLength, "IPv4 total length %d, header %d, packet %d bytes", tl, ihl, n)
		}
		if ihl > ipv4MinHeader {
			if err := checkIPv4Options(pkt[ipv4MinHeader:ihl]); err != nil {
				return 0, false, err
			}
		}
		return tl, false, nil
	case 6:
		if n < ipv6Header {
			return 0, true, errf(ErrIPHeader, "IPv6 packet of %d bytes", n)
		}
		m := n
		pl := int(binary.BigEndian.Uint16(pkt[4:]))
		if pl != 0 || pkt[6] != extHopByHop {
			if pl+ipv6Header > n {
				return 0, true, errf(ErrIPLength, "IPv6 payload length %d, packet %d bytes", pl, n)
			}
			m = pl + ipv6Header
		}
		if pkt[6] == extHopByHop {
			if err := checkHopByHop(pkt[:m]); err != nil {
				return 0, true, err
			}
		}
		return m, true, nil
	default:
		return 0, false, errf(ErrIPVersion, "IP version %d", pkt[0]>>4)
	}
}

// IPv4 options ip_options_compile looks into.
const (
	optEOL   = 0
	optNOP   = 1
	optRR    = 7
	optTS    = 68
	optLSRR  = 131
	optCIPSO = 134
	optSSRR  = 137
	optRA    = 148
)

// checkIPv4Options refuses the IPv4 options ip_options_compile refuses on
// receive (an option running past the header or shorter than 2 bytes,
// record route or timestamp with a bad pointer or an overflowing
// counter, a router alert shorter than 4 bytes, a repeated option) and
// those the receiving stack then drops: a source route (forwarding with
// accept_source_route 0, the default, ip_rcv_options) and CIPSO (no DOI
// is configured, cipso_v4_validate). Other options pass untouched. The
// changes a forwarding router makes (recording its address or a
// timestamp, zeroing bytes after an end-of-list) are not a NIC's and are
// not made.
func checkIPv4Options(o []byte) error {
	var rr, ts bool
	for i := 0; i < len(o); {
		switch o[i] {
		case optEOL:
			return nil
		case optNOP:
			i++
			continue
		}
		l := len(o) - i
		if l < 2 {
			return errf(ErrIPHeader, "IPv4 option %d at %d truncated", o[i], i)
		}
		ol := int(o[i+1])
		if ol < 2 || ol > l {
			return errf(ErrIPHeader, "IPv4 option %d at %d: length %d, %d bytes left", o[i], i, ol, l)
		}
		opt := o[i : i+ol]
		bad := false
		switch o[i] {
		case optLSRR, optSSRR:
			return errf(ErrIPHeader, "IPv4 source route option %d: not forwarded (accept_source_route 0)", o[i])
		case optCIPSO:
			return errf(ErrIPHeader, "IPv4 CIPSO option: no DOI configured")
		case optRR:
			bad = rr || ol < 3 || opt[2] < 4 || int(opt[2]) <= ol && int(opt[2])+3 > ol
			rr = true
		case optTS:
			bad = ts || ol < 4 || opt[2] < 5
			if !bad {
				ptr, flags := int(opt[2]), opt[3]
				switch {
				case ptr <= ol:
					bad = ptr+3 > ol || (flags&0xf == 1 || flags&0xf == 3) && ptr+7 > ol
				case flags&0xf != 3:
					bad = flags>>4 == 15 // the overflow counter would wrap
				}
			}
			ts = true
		case optRA:
			bad = ol < 4
		}
		if bad {
			return errf(ErrIPHeader, "IPv4 option %d at %d malformed (ip_options_compile)", o[i], i)
		}
		i += ol
	}
	return nil
}

// IPv6 hop-by-hop options ip6_parse_tlv looks into.
const (
	tlvPad1        = 0
	tlvPadN        = 1
	tlvCALIPSO     = 7
	tlvRouterAlert = 5
	tlvIOAM        = 0x31
	tlvJumbo       = 0xc2
	// maxHopByHopOpts is max_hbh_opts_cnt's default
	// (IP6_DEFAULT_MAX_HBH_OPTS_CNT).
	maxHopByHopOpts = 8
)

// checkHopByHop refuses the hop-by-hop header ipv6_parse_hopopts refuses
// (ip6_parse_tlv): one that runs past the packet, options that run past
// the header, more than 7 bytes of padding in a row or PadN with non-zero
// bytes, more than 8 options, a router alert whose length is not 2, a
// jumbo payload (meaningless below 64 KiB), a CALIPSO option (no DOI
// configured), a misaligned IOAM option, and any unknown option whose
// type says to discard the packet (the two high bits not 00). pkt starts
// with the IPv6 header; its next header is hop-by-hop.
func checkHopByHop(pkt []byte) error {
	if len(pkt) < ipv6Header+8 {
		return errf(ErrIPv6ExtHdr, "hop-by-hop header truncated, packet %d bytes", len(pkt))
	}
	end := ipv6Header + (int(pkt[ipv6Header+1])+1)*8
	if end > len(pkt) {
		return errf(ErrIPv6ExtHdr, "hop-by-hop header of %d bytes, packet %d bytes", end-ipv6Header, len(pkt))
	}
	pad, count := 0, 0
	for off := ipv6Header + 2; off < end; {
		t := pkt[off]
		if t == tlvPad1 {
			if pad++; pad > 7 {
				return errf(ErrIPHeader, "hop-by-hop: more than 7 bytes of padding at %d", off)
			}
			off++
			continue
		}
		if end-off < 2 {
			return errf(ErrIPHeader, "hop-by-hop option %#02x at %d truncated", t, off)
		}
		ol := int(pkt[off+1]) + 2
		if ol > end-off {
			return errf(ErrIPHeader, "hop-by-hop option %#02x at %d: %d bytes, %d left", t, off, ol, end-off)
		}
		if t == tlvPadN {
			if pad += ol; pad > 7 {
				return errf(ErrIPHeader, "hop-by-hop: more than 7 bytes of padding at %d", off)
			}
			for _, b := range pkt[off+2 : off+ol] {
				if b != 0 {
					return errf(ErrIPHeader, "hop-by-hop: PadN at %d not zero", off)
				}
			}
			off += ol
			continue
		}
		if count++; count > maxHopByHopOpts {
			return errf(ErrIPHeader, "hop-by-hop: more than %d options", maxHopByHopOpts)
		}
		bad := false
		switch t {
		case tlvRouterAlert:
			bad = ol != 4
		case tlvJumbo, tlvCALIPSO:
			bad = true
		case tlvIOAM:
			bad = off&3 != 0
		default:
			bad = t>>6 != 0
		}
		if bad {
			return errf(ErrIPHeader, "hop-by-hop option %#02x at %d refused (ip6_parse_tlv)", t, off)
		}
		pad = 0
		off += ol
	}
	return nil
}

// findL4 returns the offset of the L4 header and the protocol found there,
// walking IPv6 extension headers like ipv6_gso_pull_exthdrs: hop-by-hop,
// routing and destination options (in any order and number) are skipped
// and later copied into every segment; a fragment header, or a truncated
// header, stops the walk, and ipv6_gso_segment has no offload for what it
// stopped at. checkIP must have accepted pkt.
func findL4(pkt []byte, v6 bool) (int, uint8, error) {
	if !v6 {
		return int(pkt[0]&0xf) * 4, pkt[9], nil
	}
	n := len(pkt)
	next, off := pkt[6], ipv6Header
	for {
		switch next {
		case extHopByHop, extRouting, extDestOpts:
			if off+8 > n {
				return 0, 0, errf(ErrIPv6ExtHdr, "extension header %d at %d truncated, packet %d bytes", next, off, n)
			}
			l := (int(pkt[off+1]) + 1) * 8
			if off+l > n {
				return 0, 0, errf(ErrIPv6ExtHdr, "extension header %d at %d is %d bytes, packet %d bytes", next, off, l, n)
			}
			next = pkt[off]
			off += l
		case extFragment:
			return 0, 0, errf(ErrIPv6ExtHdr, "fragment header at %d in a GSO packet", off)
		default:
			return off, next, nil
		}
	}
}

// pseudoNoLength is the pseudo-header sum without the length: addresses
// and protocol.
func pseudoNoLength(pkt []byte, v6 bool, proto uint16) uint16 {
	if v6 {
		return checksum.Checksum(pkt[8:40], proto)
	}
	return checksum.Checksum(pkt[12:20], proto)
}

// ip writes the per-segment IP fields into the copied header o: IPv6
// payload length; IPv4 total length, ID and header checksum
// (inet_gso_segment's ip_send_check over the whole header, options
// included).
func (s *Plan) ip(o []byte, i, size int, id uint16) {
	if s.v6 {
		binary.BigEndian.PutUint16(o[4:6], uint16(size-ipv6Header))
		return
	}
	binary.BigEndian.PutUint16(o[2:4], uint16(size))
	if !s.fixedID {
		binary.BigEndian.PutUint16(o[4:6], id+uint16(i))
	}
	o[10], o[11] = 0, 0
	ihl := int(o[0]&0xf) * 4
	binary.BigEndian.PutUint16(o[10:12], ^checksum.Checksum(o[:ihl], 0))
}

// tso emits TCP segments (tcp_gso_segment).
func (s *Plan) tso(out [][]byte, sizes []int, offset int) {
	pkt, hdrLen, l4, base := s.pkt, s.hdrLen, s.l4, s.base
	var id uint16
	if !s.v6 {
		id = binary.BigEndian.Uint16(pkt[4:6])
	}
	seq := binary.BigEndian.Uint32(pkt[l4+4 : l4+8])
	flags := pkt[l4+13]
	data := pkt[hdrLen:]
	for i := 0; i < s.nseg; i++ {
		chunk := data[:min(s.mss, len(data))]
		data = data[len(chunk):]
		size := hdrLen + len(chunk)
		o := out[i][offset : offset+size]
		copy(o[:hdrLen], pkt[:hdrLen])
		copy(o[hdrLen:], chunk)
		s.ip(o, i, size, id)

		th := o[l4:hdrLen]
		binary.BigEndian.PutUint32(th[4:8], seq+uint32(i*s.mss))
		f := flags
		if i != s.nseg-1 {
			f &^= tcpFIN | tcpPSH
		}
		if i != 0 && !s.accECN {
			f &^= tcpCWR
		}
		th[13] = f
		pseudo := checksum.Combine(base, uint16(size-l4))
		sizes[i] = size
		if s.partial {
			binary.BigEndian.PutUint16(th[16:18], pseudo)
			continue
		}
		th[16], th[17] = 0, 0
		sum := checksum.Checksum(th, pseudo)
		binary.BigEndian.PutUint16(th[16:18], ^checksum.Combine(sum, checksum.Checksum(chunk, 0)))
	}
}

// uso emits UDP datagrams (__udp_gso_segment).
func (s *Plan) uso(out [][]byte, sizes []int, offset int) {
	pkt, hdrLen, l4, base := s.pkt, s.hdrLen, s.l4, s.base
	var id uint16
	if !s.v6 {
		id = binary.BigEndian.Uint16(pkt[4:6])
	}
	data := pkt[hdrLen:]
	for i := 0; i < s.nseg; i++ {
		chunk := data[:min(s.mss, len(data))]
		data = data[len(chunk):]
		size := hdrLen + len(chunk)
		o := out[i][offset : offset+size]
		copy(o[:hdrLen], pkt[:hdrLen])
		copy(o[hdrLen:], chunk)
		s.ip(o, i, size, id)

		uh := o[l4:hdrLen]
		ulen := uint16(size - l4)
		binary.BigEndian.PutUint16(uh[4:6], ulen)
		sizes[i] = size
		if s.partial {
			binary.BigEndian.PutUint16(uh[6:8], checksum.Combine(base, ulen))
			continue
		}
		uh[6], uh[7] = 0, 0
		sum := checksum.Checksum(uh, checksum.Combine(base, ulen))
		c := ^checksum.Combine(sum, checksum.Checksum(chunk, 0))
		if c == 0 {
			c = 0xffff // CSUM_MANGLED_0
		}
		binary.BigEndian.PutUint16(uh[6:8], c)
	}
}
