// Package drop names every reason a vnic NIC drops a packet, once, for
// the whole data path: segment's checks of a frame the host handed the
// NIC, the NIC's own model, the kernel refusing a frame written into the
// TUN device. The data path counts drops in a Counts array on its own
// goroutine (an array index, no map, no allocation) and adds the array to
// the shared Counters once per batch; `vnic stat` prints them by place and
// name.
package drop

import (
	"fmt"
	"sync/atomic"
)

// Reason is why a packet was dropped. The zero value is None.
type Reason uint8

// Reasons. The comment names the kernel check each mirrors, or says it is
// the NIC's own; String gives the stable snake_case name `vnic stat` and
// its JSON use.
const (
	// None: not dropped.
	None Reason = iota

	// Frames the host handed the NIC that segment refuses, the way
	// __virtio_net_hdr_to_skb and the GSO callbacks refuse them (see the
	// segment package's Err* sentinels for each kernel function).

	// GSOType: a gso_type the NIC cannot segment.
	GSOType
	// GSOSizeZero: a GSO type with gso_size 0.
	GSOSizeZero
	// GSOByFrags: gso_size 0xffff (GSO_BY_FRAGS), which a virtio header
	// may not carry.
	GSOByFrags
	// HdrLen: hdr_len larger than the frame.
	HdrLen
	// CsumOffsets: csum_start/csum_offset outside the packet or not at the
	// L4 header.
	CsumOffsets
	// USONeedsCsum: UDP_L4 without NEEDS_CSUM.
	USONeedsCsum
	// IPVersion: neither IPv4 nor IPv6, or the wrong one for the gso type.
	IPVersion
	// IPHeader: a truncated or invalid IP header.
	IPHeader
	// IPLength: the IP length field disagrees with the frame.
	IPLength
	// L4Proto: the L4 protocol is not the one the gso type segments.
	L4Proto
	// IPv6ExtHdr: an IPv6 extension header segmentation does not walk.
	IPv6ExtHdr
	// L4Header: a truncated TCP/UDP header.
	L4Header
	// GSOShort: a GSO frame whose payload after the real TCP header fits
	// in gso_size (tcp_gso_segment's -EINVAL).
	GSOShort
	// USOSegments: more than UDP_MAX_SEGMENTS datagrams.
	USOSegments
	// ExceedsMTU: the NIC model's hardware MTU cannot carry the packet.
	ExceedsMTU
	// TooManySegments, BufferSmall: the caller's buffers (a bug of ours,
	// never expected).
	TooManySegments
	BufferSmall

	// The NIC's own.

	// ShortFrame: a frame read from the TUN shorter than its virtio
	// header.
	ShortFrame
	// RXExceedsHWMTU: a wire packet larger than the NIC's hardware MTU (a
	// NIC cannot receive what its hardware cannot hold).
	RXExceedsHWMTU
	// RXBadChecksum: a wire packet whose TCP/UDP checksum failed the
	// NIC's receive checksum verification.
	RXBadChecksum
	// Internal: a buffer layout mistake of vnic's own; counted, never a
	// crash.
	Internal

	// The kernel refusing a frame written into the TUN (tun_get_user).

	// TUNInvalid (EINVAL): a bad virtio header or packet.
	TUNInvalid
	// TUNDown (EIO): the interface is down.
	TUNDown
	// TUNNoMem (ENOMEM, ENOBUFS): no memory for the skb.
	TUNNoMem

	// The far ends that leave the process: a VXLAN tunnel (package
	// vxlan) and a Linux interface through AF_PACKET (package afpacket).

	// EtherShort: an Ethernet frame shorter than its 14-byte header
	// (eth_type_trans needs it whole).
	EtherShort
	// VXLANShort: a datagram on the VXLAN port shorter than the 8-byte
	// VXLAN header (vxlan_rcv: pskb_may_pull(VXLAN_HLEN)).
	VXLANShort
	// VXLANFlags: the VXLAN header's I flag (a valid VNI) is not set
	// (vxlan_rcv: "invalid vxlan flags").
	VXLANFlags
	// VXLANReserved: a reserved bit of the VXLAN header is set. RFC 7348
	// says to ignore them; Linux's vxlan_rcv drops the packet ("unprocessed
	// flags") unless an extension (GBP, GPE) claims them, and vnic behaves
	// like the device it interoperates with.
	VXLANReserved
	// VXLANVNI: a VNI other than the wire's (vxlan_rcv finds no device).
	VXLANVNI
	// VXLANSource: a datagram from an address other than the wire's
	// REMOTE: vnic's point-to-point wire takes frames from its far end
	// only.
	VXLANSource
	// Truncated: a datagram or frame larger than the receive buffer
	// (MSG_TRUNC).
	Truncated
	// SocketOverflow: datagrams or frames the kernel dropped because the
	// socket's receive queue was full (SO_RXQ_OVFL, PACKET_STATISTICS).
	SocketOverflow
	// SendNoBufs: the kernel had no buffer for a send (ENOBUFS, ENOMEM:
	// a full device queue with PACKET_QDISC_BYPASS, or memory pressure).
	SendNoBufs
	// SendTooBig: the kernel refused a send as too big for the interface
	// or path (EMSGSIZE).
	SendTooBig
	// SendUnreachable: no route or neighbour for the destination
	// (ENETUNREACH, EHOSTUNREACH, EHOSTDOWN, ECONNREFUSED), or the
	// interface is down (ENETDOWN, ENXIO).
	SendUnreachable
	// SendError: any other error of a send.
	SendError

	// NumReasons is the number of reasons, for arrays indexed by Reason.
	NumReasons
)

var names = [NumReasons]string{
	None:            "none",
	GSOType:         "gso_type",
	GSOSizeZero:     "gso_size_zero",
	GSOByFrags:      "gso_by_frags",
	HdrLen:          "hdr_len",
	CsumOffsets:     "csum_offsets",
	USONeedsCsum:    "uso_needs_csum",
	IPVersion:       "ip_version",
	IPHeader:        "ip_header",
	IPLength:        "ip_length",
	L4Proto:         "l4_proto",
	IPv6ExtHdr:      "ipv6_exthdr",
	L4Header:        "l4_header",
	GSOShort:        "gso_short",
	USOSegments:     "uso_segments",
	ExceedsMTU:      "exceeds_mtu",
	TooManySegments: "too_many_segments",
	BufferSmall:     "buffer_small",
	ShortFrame:      "short_frame",
	RXExceedsHWMTU:  "rx_exceeds_hw_mtu",
	RXBadChecksum:   "rx_bad_checksum",
	Internal:        "internal",
	TUNInvalid:      "tun_invalid",
	TUNDown:         "tun_down",
	TUNNoMem:        "tun_nomem",
	EtherShort:      "ether_short",
	VXLANShort:      "vxlan_short",
	VXLANFlags:      "vxlan_flags",
	VXLANReserved:   "vxlan_reserved",
	VXLANVNI:        "vxlan_vni",
	VXLANSource:     "vxlan_source",
	Truncated:       "truncated",
	SocketOverflow:  "socket_overflow",
	SendNoBufs:      "send_nobufs",
	SendTooBig:      "send_too_big",
	SendUnreachable: "send_unreachable",
	SendError:       "send_error",
}

// String is the reason's stable snake_case name.
func (r Reason) String() string {
	if r < NumReasons {
		return names[r]
	}
	return fmt.Sprintf("reason_%d", uint8(r))
}

// Parse returns the reason named s (String's inverse).
func Parse(s string) (Reason, bool) {
	for r, n := range names {
		if n == s {
			return Reason(r), true
		}
	}
	return None, false
}

// Entry is one drop counter for reports: where, why, how many (the shape
// `vnic stat --json` prints).
type Entry struct {
	Place   string `json:"place"`
	Reason  string `json:"reason"`
	Packets uint64 `json:"packets"`
}

// Entries appends an Entry at place for every reason with a non-zero
// count.
func (c *Counts) Entries(place string, to []Entry) []Entry {
	c.Each(func(r Reason, n uint64) { to = append(to, Entry{Place: place, Reason: r.String(), Packets: n}) })
	return to
}

// Counts are drops by reason, owned by one goroutine.
type Counts [NumReasons]uint64

// Add counts one drop.
func (c *Counts) Add(r Reason) {
	if r < NumReasons {
		c[r]++
	} else {
		c[Internal]++
	}
}

// Total is the number of drops counted.
func (c *Counts) Total() uint64 {
	var n uint64
	for _, v := range c {
		n += v
	}
	return n
}

// Each calls f for every reason with a non-zero count, in Reason order.
func (c *Counts) Each(f func(r Reason, n uint64)) {
	for r, v := range c {
		if v != 0 {
			f(Reason(r), v)
		}
	}
}

// Counters are drops by reason shared between goroutines: the data path
// adds its Counts once per batch (Flush), readers Load a snapshot.
type Counters [NumReasons]atomic.Uint64

// Add counts one drop directly (for rare paths; the hot path uses Counts
// and Flush).
func (c *Counters) Add(r Reason) {
	if r >= NumReasons {
		r = Internal
	}
	c[r].Add(1)
}

// Flush adds local to the counters and zeroes it.
func (c *Counters) Flush(local *Counts) {
	for r, v := range local {
		if v != 0 {
			c[r].Add(v)
			local[r] = 0
		}
	}
}

// Load returns a snapshot.
func (c *Counters) Load() Counts {
	var s Counts
	for r := range c {
		s[r] = c[r].Load()
	}
	return s
}
