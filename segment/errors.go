package segment

import (
	"errors"
	"fmt"
)

// DropError is the type of the sentinel errors below. Segment wraps one of
// them with the numbers that explain the failure; errors.Is against the
// sentinel matches, and Reason returns its short name.
type DropError struct {
	reason string
	text   string
}

func (e *DropError) Error() string { return "segment: " + e.text }

// Reason is the stable short name of the drop reason, e.g. "gso_size_zero".
func (e *DropError) Reason() string { return e.reason }

// Sentinel errors. The comment names the kernel check each one mirrors, or
// says it is vnic's own.
var (
	// ErrGSOType: a gso_type the NIC cannot segment: not TCPV4, TCPV6 or
	// UDP_L4 (the ECN bit aside), ECN or-ed into UDP_L4, UFO
	// (VIRTIO_NET_HDR_GSO_UDP, IP fragmentation: not supported here), or any
	// bit mainline 6.18 does not know (UDP tunnel 0x20/0x40, AccECN 0x10).
	// Kernel: __virtio_net_hdr_to_skb returns -EINVAL.
	ErrGSOType = &DropError{"gso_type", "unsupported gso_type"}
	// ErrGSOSizeZero: a GSO type with gso_size 0 (__virtio_net_hdr_to_skb).
	ErrGSOSizeZero = &DropError{"gso_size_zero", "gso_size 0 with a GSO type"}
	// ErrCsum: csum_start/csum_offset outside the packet, before the end of
	// the minimal IP header, with the wrong csum_offset for the protocol,
	// or not where parsing the IP header puts the L4 header
	// (__virtio_net_hdr_to_skb, skb_partial_csum_set, and the
	// skb_checksum_start != skb_transport_header check in tcp_gso_segment
	// and __udp_gso_segment).
	ErrCsum = &DropError{"csum_offsets", "bad csum_start/csum_offset"}
	// ErrNeedsCsum: UDP_L4 without NEEDS_CSUM (__virtio_net_hdr_to_skb).
	ErrNeedsCsum = &DropError{"uso_needs_csum", "UDP_L4 without NEEDS_CSUM"}
	// ErrIPVersion: IP version neither 4 nor 6 (tun drops it), or the wrong
	// one for a TCP gso type (tcp4/tcp6_gso_segment return -EINVAL).
	ErrIPVersion = &DropError{"ip_version", "bad IP version"}
	// ErrIPHeader: an IP header that is truncated or invalid (IPv4 ihl < 5).
	ErrIPHeader = &DropError{"ip_header", "bad IP header"}
	// ErrIPLength: the IPv4 total length or IPv6 payload length disagrees
	// with the buffer. (The kernel's ip_rcv trims a buffer longer than the
	// IP length; a NIC is handed exact frames, so vnic refuses both ways.)
	ErrIPLength = &DropError{"ip_length", "IP length disagrees with the packet"}
	// ErrL4Proto: the IP protocol after the extension headers is not the
	// one the gso type segments (the offload callback for it rejects the
	// gso type, or there is none: -EPROTONOSUPPORT).
	ErrL4Proto = &DropError{"l4_proto", "L4 protocol does not match gso_type"}
	// ErrIPv6ExtHdr: an IPv6 extension header ipv6_gso_pull_exthdrs does
	// not walk (a fragment header in particular) or one that is truncated:
	// ipv6_gso_segment finds no offload for it (-EPROTONOSUPPORT).
	ErrIPv6ExtHdr = &DropError{"ipv6_exthdr", "IPv6 extension header stops segmentation"}
	// ErrL4Header: a truncated TCP/UDP header or a TCP data offset < 5.
	ErrL4Header = &DropError{"l4_header", "bad L4 header"}
	// ErrGSOShort: the virtio layer took the frame as GSO (it measures the
	// payload after a 20-byte TCP header) but tcp_gso_segment finds the
	// payload after the real header (with options) no larger than
	// gso_size, and returns -EINVAL: the kernel drops the frame.
	ErrGSOShort = &DropError{"gso_short", "GSO payload not larger than gso_size"}
	// ErrUSOSegments: more than UDP_MAX_SEGMENTS datagrams
	// (__virtio_net_hdr_to_skb).
	ErrUSOSegments = &DropError{"uso_segments", "more than UDP_MAX_SEGMENTS datagrams"}
	// ErrTooBig (vnic's NIC model): a packet that is not TCP-segmented is
	// larger than Options.MaxPacket, a USO datagram would be, or MaxPacket
	// leaves no room for payload after the headers.
	ErrTooBig = &DropError{"exceeds_mtu", "packet exceeds the hardware MTU"}
	// ErrTooManySegments (caller's buffers): more segments than len(out) or
	// len(sizes).
	ErrTooManySegments = &DropError{"too_many_segments", "more segments than output buffers"}
	// ErrBufferTooSmall (caller's buffers): an output buffer cannot hold
	// offset plus its packet.
	ErrBufferTooSmall = &DropError{"buffer_small", "output buffer too small"}
)

// Reason maps an error returned by Segment to its stable short drop-reason
// name ("gso_type", "csum_offsets", ...): the key the daemon counts drops
// by. nil gives "" and an error not from this package gives "other".
func Reason(err error) string {
	if err == nil {
		return ""
	}
	var de *DropError
	if errors.As(err, &de) {
		return de.reason
	}
	return "other"
}

// Reasons lists every name Reason can return for a Segment error, for
// pre-registering counters.
func Reasons() []string {
	return []string{
		ErrGSOType.reason, ErrGSOSizeZero.reason, ErrCsum.reason, ErrNeedsCsum.reason,
		ErrIPVersion.reason, ErrIPHeader.reason, ErrIPLength.reason, ErrL4Proto.reason,
		ErrIPv6ExtHdr.reason, ErrL4Header.reason, ErrGSOShort.reason, ErrUSOSegments.reason,
		ErrTooBig.reason, ErrTooManySegments.reason, ErrBufferTooSmall.reason,
	}
}

// errf wraps sentinel with a formatted explanation. Only the error path
// allocates.
func errf(sentinel *DropError, format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{sentinel}, args...)...)
}
