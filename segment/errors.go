package segment

import (
	"errors"
	"fmt"

	"vnic/vnic/drop"
)

// DropError is the type of the sentinel errors below. Segment wraps one of
// them with the numbers that explain the failure; errors.Is against the
// sentinel matches, and Reason returns the drop.Reason it is counted as.
type DropError struct {
	reason drop.Reason
	text   string
}

func (e *DropError) Error() string { return "segment: " + e.text }

// Reason is the drop reason the error is counted as (its String is the
// stable short name, e.g. "gso_size_zero").
func (e *DropError) Reason() drop.Reason { return e.reason }

// Sentinel errors. The comment names the kernel check each one mirrors, or
// says it is vnic's own.
var (
	// ErrGSOType: a gso_type the NIC cannot segment: not TCPV4, TCPV6,
	// UDP_L4 or UDP (the ECN bit aside), ECN or-ed into UDP_L4, or any bit
	// mainline 6.18 does not know in a 10-byte header (UDP tunnel
	// 0x20/0x40, AccECN 0x10): __virtio_net_hdr_to_skb returns -EINVAL.
	// Also legacy UFO (VIRTIO_NET_HDR_GSO_UDP) with more than gso_size
	// bytes after the IP header: the kernel accepts that frame and
	// IP-fragments the datagram (udp4_ufo_fragment, udp6_ufo_fragment
	// with a keyed-hash fragment ID), which vnic does not do; a UFO frame
	// that fits in gso_size is not GSO and is sent as one packet.
	ErrGSOType = &DropError{drop.GSOType, "unsupported gso_type"}
	// ErrGSOSizeZero: a GSO type with gso_size 0 (__virtio_net_hdr_to_skb).
	ErrGSOSizeZero = &DropError{drop.GSOSizeZero, "gso_size 0 with a GSO type"}
	// ErrGSOByFrags: a GSO type with gso_size 0xffff, GSO_BY_FRAGS
	// (__virtio_net_hdr_to_skb refuses it before deciding whether the
	// frame is too small to be GSO).
	ErrGSOByFrags = &DropError{drop.GSOByFrags, "gso_size GSO_BY_FRAGS (0xffff)"}
	// ErrHdrLen: hdr_len larger than what follows the first 10 bytes of
	// the virtio header, the packet (plus 2 behind a 12-byte header, see
	// Options.VnetHdrSize), whatever the gso type: tun_get_user
	// (__tun_vnet_hdr_get) fails the write with -EINVAL. With NEEDS_CSUM
	// the kernel first raises hdr_len to csum_start + csum_offset + 2;
	// when that is what runs past, the error is ErrCsum.
	ErrHdrLen = &DropError{drop.HdrLen, "hdr_len larger than the frame"}
	// ErrCsum: csum_start/csum_offset outside the packet, before the end of
	// the minimal IP header, with the wrong csum_offset for the protocol,
	// or not where parsing the IP header puts the L4 header
	// (__virtio_net_hdr_to_skb, skb_partial_csum_set, and the
	// skb_checksum_start != skb_transport_header check in tcp_gso_segment
	// and __udp_gso_segment).
	ErrCsum = &DropError{drop.CsumOffsets, "bad csum_start/csum_offset"}
	// ErrNeedsCsum: UDP_L4 without NEEDS_CSUM (__virtio_net_hdr_to_skb).
	ErrNeedsCsum = &DropError{drop.USONeedsCsum, "UDP_L4 without NEEDS_CSUM"}
	// ErrIPVersion: IP version neither 4 nor 6 (tun drops it), or the wrong
	// one for a TCP gso type (tcp4/tcp6_gso_segment return -EINVAL).
	ErrIPVersion = &DropError{drop.IPVersion, "bad IP version"}
	// ErrIPHeader: an IP header the receiving stack drops: truncated, IPv4
	// ihl < 5 or a header checksum that does not verify (ip_rcv_core),
	// IPv4 options ip_options_compile refuses or a source route
	// (ip_rcv_options), IPv6 hop-by-hop options ip6_parse_tlv refuses.
	ErrIPHeader = &DropError{drop.IPHeader, "bad IP header"}
	// ErrIPLength: an IPv4 total length above the packet or below the
	// header, an IPv6 payload length above the packet (ip_rcv_core,
	// ip6_rcv_core drop it), or one below the packet that cuts a partial
	// checksum's field off (pskb_trim_rcsum). A length merely below the
	// packet is not an error: the packet is trimmed to it, as ip_rcv
	// trims it, after the virtio layer measured the untrimmed frame.
	ErrIPLength = &DropError{drop.IPLength, "IP length disagrees with the packet"}
	// ErrL4Proto: the IP protocol after the extension headers is not the
	// one the gso type segments (the offload callback for it rejects the
	// gso type, or there is none: -EPROTONOSUPPORT).
	ErrL4Proto = &DropError{drop.L4Proto, "L4 protocol does not match gso_type"}
	// ErrIPv6ExtHdr: an IPv6 extension header ipv6_gso_pull_exthdrs does
	// not walk (a fragment header in particular) or one that is truncated:
	// ipv6_gso_segment finds no offload for it (-EPROTONOSUPPORT).
	ErrIPv6ExtHdr = &DropError{drop.IPv6ExtHdr, "IPv6 extension header stops segmentation"}
	// ErrL4Header: a truncated TCP/UDP header or a TCP data offset < 5.
	ErrL4Header = &DropError{drop.L4Header, "bad L4 header"}
	// ErrGSOShort: the virtio layer took the frame as GSO (it measures the
	// payload after a 20-byte TCP header, in the frame before ip_rcv trims
	// it to its IP length) but tcp_gso_segment (or __udp_gso_segment)
	// finds the payload after the real header (with options) no larger
	// than gso_size, and returns -EINVAL: the kernel drops the frame.
	ErrGSOShort = &DropError{drop.GSOShort, "GSO payload not larger than gso_size"}
	// ErrUSOSegments: more than UDP_MAX_SEGMENTS datagrams
	// (__virtio_net_hdr_to_skb).
	ErrUSOSegments = &DropError{drop.USOSegments, "more than UDP_MAX_SEGMENTS datagrams"}
	// ErrL2Header: a frame shorter than its Ethernet header
	// (Options.L2Len): eth_type_trans cannot pull it.
	ErrL2Header = &DropError{drop.EtherShort, "frame shorter than its Ethernet header"}
	// ErrTooBig (vnic's NIC model): a packet that is not TCP-segmented is
	// larger than Options.MaxPacket, a USO datagram would be, or MaxPacket
	// leaves no room for payload after the headers.
	ErrTooBig = &DropError{drop.ExceedsMTU, "packet exceeds the hardware MTU"}
	// ErrTooManySegments (caller's buffers, reported by Cut and Segment,
	// never NewPlan): more segments than len(out) or len(sizes). A caller
	// that asks Plan.Segments first never gets it.
	ErrTooManySegments = &DropError{drop.TooManySegments, "more segments than output buffers"}
	// ErrBufferTooSmall (caller's buffers, reported by Cut and Segment,
	// never NewPlan): a negative offset, or an output buffer that cannot
	// hold offset plus its packet (offset + Plan.MaxSize always does).
	ErrBufferTooSmall = &DropError{drop.BufferSmall, "output buffer too small"}
)

// Reason maps an error returned by Segment to the drop reason the NIC
// counts it as: drop.None for nil, drop.Internal for an error not from
// this package. No allocation.
func Reason(err error) drop.Reason {
	if err == nil {
		return drop.None
	}
	var de *DropError
	if errors.As(err, &de) {
		return de.reason
	}
	return drop.Internal
}

// errf wraps sentinel with a formatted explanation. Only the error path
// allocates.
func errf(sentinel *DropError, format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{sentinel}, args...)...)
}
