package coalesce

// PassReason says why a packet was handed on by itself, never held for
// merging. Most name the kernel check that makes dev_gro_receive treat the
// skb as GRO_NORMAL.
type PassReason uint8

// Pass reasons.
const (
	// PassDisabled: GRO is off (Options.Disabled, `ethtool -K dev gro off`).
	PassDisabled PassReason = iota
	// PassNotIP: IP version neither 4 nor 6 (no packet_offload for it).
	PassNotIP
	// PassTruncated: the IP, extension or L4 header does not fit in the
	// packet (skb_gro_header fails).
	PassTruncated
	// PassNotTCPUDP: an L4 protocol with no GRO handler here (ICMP, SCTP,
	// tunnels such as IPIP or GRE, IPv6 no-next-header).
	PassNotTCPUDP
	// PassUDPOff: UDP while Options.UDP is false (udp_gro_receive without
	// NETIF_F_GRO_UDP_FWD or a UDP_GRO socket).
	PassUDPOff
	// PassIPv4Options: IPv4 header length other than 20 (inet_gro_receive:
	// *(u8 *)iph != 0x45).
	PassIPv4Options
	// PassFragment: an IPv4 fragment (ip_is_fragment).
	PassFragment
	// PassBadIPChecksum: the IPv4 header checksum does not verify
	// (ip_fast_csum).
	PassBadIPChecksum
	// PassIPv6ExtHdr: an IPv6 extension header GRO does not walk
	// (ipv6_gro_pull_exthdrs stops at anything but routing and destination
	// options): hop-by-hop, fragment, ESP, AH.
	PassIPv6ExtHdr
	// PassBadL4Checksum: the TCP or UDP checksum does not verify
	// (skb_gro_checksum_validate).
	PassBadL4Checksum
	// PassBadTCPHeader: TCP data offset below 5 (tcp_gro_pull_header).
	PassBadTCPHeader
	// PassUDPZeroChecksum: UDP checksum 0 (udp_gro_receive_segment requires
	// a checksum, "for symmetry with GSO").
	PassUDPZeroChecksum
	// PassUDPLength: UDP length field 8 or less, or not matching the packet
	// (udp_gro_receive_segment: "padded or malicious").
	PassUDPLength
	// PassIPLength: the IP length field disagrees with the packet
	// (inet_gro_receive / ipv6_gro_receive set flush); the IPv4 reserved
	// fragment bit also lands here. Such a packet still ends a held packet
	// of its flow.
	PassIPLength
	// PassNoPayload: a TCP segment without payload (pure or duplicate ACK):
	// tcp_gro_receive's "len < mss" with mss 1.
	PassNoPayload
	// PassTCPFlags: URG, PSH, RST, SYN or FIN on a segment that merged with
	// nothing.
	PassTCPFlags
	// PassNoRoom: the packet's buffer has no room to grow by one more
	// segment, so it cannot be a merge head (vnic's own rule: merging is in
	// place).
	PassNoRoom
	// PassNotIPEtherType: an Ethernet frame (Options.L2Len) that does not
	// carry IPv4 or IPv6 right behind its header: ARP, a VLAN tag (this
	// kernel has no 8021q, hence no vlan_gro_receive), anything
	// dev_gro_receive finds no packet_offload for.
	PassNotIPEtherType
	numPassReasons
)

var passNames = [numPassReasons]string{
	PassDisabled:        "disabled",
	PassNotIP:           "not_ip",
	PassNotIPEtherType:  "not_ip_ethertype",
	PassTruncated:       "truncated",
	PassNotTCPUDP:       "not_tcp_udp",
	PassUDPOff:          "udp_gro_off",
	PassIPv4Options:     "ipv4_options",
	PassFragment:        "fragment",
	PassBadIPChecksum:   "bad_ip_checksum",
	PassIPv6ExtHdr:      "ipv6_ext_header",
	PassBadL4Checksum:   "bad_l4_checksum",
	PassBadTCPHeader:    "bad_tcp_header",
	PassUDPZeroChecksum: "udp_zero_checksum",
	PassUDPLength:       "udp_length",
	PassIPLength:        "ip_length",
	PassNoPayload:       "no_payload",
	PassTCPFlags:        "tcp_flags",
	PassNoRoom:          "no_room",
}

// String returns the stable short name used by `vnic stat`.
func (r PassReason) String() string {
	if r < numPassReasons {
		return passNames[r]
	}
	return "unknown"
}

// FlushReason says why a held packet was completed (napi_gro_complete):
// either what ended it, or what the next segment of its flow differed in.
type FlushReason uint8

// Flush reasons.
const (
	// FlushBatchEnd: the batch (NAPI poll) ended (napi_gro_flush).
	FlushBatchEnd FlushReason = iota
	// FlushEvicted: a new flow needed the slot and this was the oldest held
	// packet (gro_flush_oldest, MAX_GRO_SKBS).
	FlushEvicted
	// FlushTCPFlags: the next segment's flags, data offset or window
	// differed (other than FIN and PSH).
	FlushTCPFlags
	// FlushCWR: the next segment of the flow carried CWR (which never
	// merges; it is held on its own instead).
	FlushCWR
	// FlushAck: the next segment's acknowledgment number differed.
	FlushAck
	// FlushTCPOptions: the next segment's TCP option bytes differed.
	FlushTCPOptions
	// FlushIPHeader: TTL/hop limit, TOS/traffic class or DF differed
	// (inet_gro_flush, ipv6_gro_flush).
	FlushIPHeader
	// FlushIPID: the IPv4 ID neither incremented by one per segment nor
	// stayed fixed (inet_gro_flush).
	FlushIPID
	// FlushSeq: the next segment was not contiguous.
	FlushSeq
	// FlushBigger: the next segment carried more payload than gso_size
	// (tcp_gro_receive "(len - 1) >= mss", udp "ulen > uh2->len"); a pure
	// ACK of the flow lands here too.
	FlushBigger
	// FlushShort: a segment shorter than gso_size was merged and ended the
	// packet.
	FlushShort
	// FlushPSH, FlushFIN, FlushURG, FlushRST, FlushSYN: a merged segment
	// carried the flag, which ends the packet (URG, RST and SYN can only
	// merge when the head carried them too).
	FlushPSH
	FlushFIN
	FlushURG
	FlushRST
	FlushSYN
	// FlushMaxSize: merging would exceed Options.MaxSize (skb_gro_receive
	// -E2BIG).
	FlushMaxSize
	// FlushIPLength: the next packet of the flow was flagged by the IP
	// layer (length mismatch) and could not merge.
	FlushIPLength
	// FlushNoRoom: the head's buffer had no room for the next segment.
	FlushNoRoom
	// FlushUDPCount: the UDP packet reached UDP_GRO_CNT_MAX (64) segments.
	FlushUDPCount
	numFlushReasons
)

var flushNames = [numFlushReasons]string{
	FlushBatchEnd:   "batch_end",
	FlushEvicted:    "evicted",
	FlushTCPFlags:   "tcp_flags",
	FlushCWR:        "cwr",
	FlushAck:        "ack",
	FlushTCPOptions: "tcp_options",
	FlushIPHeader:   "ip_header",
	FlushIPID:       "ip_id",
	FlushSeq:        "seq",
	FlushBigger:     "bigger",
	FlushShort:      "short",
	FlushPSH:        "psh",
	FlushFIN:        "fin",
	FlushURG:        "urg",
	FlushRST:        "rst",
	FlushSYN:        "syn",
	FlushMaxSize:    "max_size",
	FlushIPLength:   "ip_length",
	FlushNoRoom:     "no_room",
	FlushUDPCount:   "udp_count",
}

// String returns the stable short name used by `vnic stat`.
func (r FlushReason) String() string {
	if r < numFlushReasons {
		return flushNames[r]
	}
	return "unknown"
}

// Stats are the engine's running counters since New.
type Stats struct {
	// PacketsIn counts packets handed to Coalesce.
	PacketsIn uint64
	// PacketsOut counts frames handed on: super-packets plus single packets.
	PacketsOut uint64
	// SuperPackets counts merged packets (two or more segments) handed on.
	SuperPackets uint64
	// SegmentsMerged counts the packets that went into super-packets,
	// heads included (so SegmentsMerged/SuperPackets is the mean segments
	// per super-packet).
	SegmentsMerged uint64
	// Passed counts packets handed on alone without being held, by reason.
	Passed [numPassReasons]uint64
	// Flushed counts held packets completed (merged or not), by reason.
	Flushed [numFlushReasons]uint64
	// Unmerged counts held runs handed on as their original packets because
	// a TUN cannot carry them (Options.TUNEgress); counted per packet.
	Unmerged uint64
}

// Each calls fn with every counter's stable name and value, in a fixed
// order: the form `vnic stat` prints.
func (s *Stats) Each(fn func(name string, v uint64)) {
	fn("packets_in", s.PacketsIn)
	fn("packets_out", s.PacketsOut)
	fn("super_packets", s.SuperPackets)
	fn("segments_merged", s.SegmentsMerged)
	fn("unmerged_tun_egress", s.Unmerged)
	for i := PassReason(0); i < numPassReasons; i++ {
		fn("pass_"+i.String(), s.Passed[i])
	}
	for i := FlushReason(0); i < numFlushReasons; i++ {
		fn("flush_"+i.String(), s.Flushed[i])
	}
}
