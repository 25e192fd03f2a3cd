package peer

import (
	"sync/atomic"

	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"vnic/vnic/glink"
)

// Stats is a snapshot of the peer's counters. All counters only grow.
type Stats struct {
	// In counts the packets Inject accepted and delivered to the stack.
	In Counter `json:"in"`
	// Out counts the packets handed to Output; a super-packet counts once,
	// with its full length.
	Out Counter `json:"out"`
	// OutSuper counts the Output packets that were super-packets
	// (Hdr.GSOType != GSONone).
	OutSuper uint64 `json:"out_super"`
	// OutBatches counts the calls to Output.
	OutBatches uint64 `json:"out_batches"`
	// Drops counts packets dropped by the peer's link, by reason.
	Drops Drops `json:"drops"`
	// Discarded counts the bytes swallowed by the discard services (TCP
	// and UDP port 9).
	Discarded uint64 `json:"discarded"`
	// DiscardedDatagrams counts the UDP datagrams the UDP discard service
	// read (their bytes are in Discarded).
	DiscardedDatagrams uint64 `json:"discarded_datagrams"`
	// Stack holds gVisor's own counters that explain lost or refused
	// traffic.
	Stack StackStats `json:"stack"`
}

// Counter is a packet and byte count.
type Counter = glink.Counter

// Drops counts packets the peer's link dropped, by reason (see
// glink.Drops).
type Drops = glink.Drops

// StackStats is a selection of gVisor's tcpip.Stats.
type StackStats struct {
	IPMalformed        uint64 `json:"ip_malformed"`         // IP.MalformedPacketsReceived
	IPInvalidDst       uint64 `json:"ip_invalid_dst"`       // IP.InvalidDestinationAddressesReceived
	IPOutgoingErrors   uint64 `json:"ip_outgoing_errors"`   // IP.OutgoingPacketErrors
	TCPChecksumErrors  uint64 `json:"tcp_checksum_errors"`  // TCP.ChecksumErrors
	TCPInvalidSegments uint64 `json:"tcp_invalid_segments"` // TCP.InvalidSegmentsReceived
	TCPSegmentsSent    uint64 `json:"tcp_segments_sent"`    // TCP.SegmentsSent
	TCPRetransmits     uint64 `json:"tcp_retransmits"`      // TCP.Retransmits
	TCPTimeouts        uint64 `json:"tcp_timeouts"`         // TCP.Timeouts (RTO expiries)
	TCPFastRetransmit  uint64 `json:"tcp_fast_retransmit"`  // TCP.FastRetransmit
	TCPSACKRecovery    uint64 `json:"tcp_sack_recovery"`    // TCP.SACKRecovery (RACK/SACK loss recovery entered)
	TCPTLPRecovery     uint64 `json:"tcp_tlp_recovery"`     // TCP.TLPRecovery (tail loss probes that recovered)
	TCPSpurious        uint64 `json:"tcp_spurious"`         // TCP.SpuriousRecovery + SpuriousRTORecovery (recoveries undone by DSACK)
	TCPDSACKAcked      uint64 `json:"tcp_d_sack_acked"`     // TCP.SegmentsAckedWithDSACK (the receiver said: already had it)
	TCPResetsSent      uint64 `json:"tcp_resets_sent"`      // TCP.ResetsSent
	TCPFailedConnects  uint64 `json:"tcp_failed_connects"`  // TCP.FailedConnectionAttempts
	TCPListenDrops     uint64 `json:"tcp_listen_drops"`     // TCP.ListenOverflowSynDrop + ListenOverflowAckDrop
	UDPChecksumErrors  uint64 `json:"udp_checksum_errors"`  // UDP.ChecksumErrors
	UDPUnknownPort     uint64 `json:"udp_unknown_port"`     // UDP.UnknownPortErrors
	UDPRcvBufErrors    uint64 `json:"udp_rcv_buf_errors"`   // UDP.ReceiveBufferErrors
	UDPMalformed       uint64 `json:"udp_malformed"`        // UDP.MalformedPacketsReceived
	ICMPEchoReplies    uint64 `json:"icmp_echo_replies"`    // ICMP.V4+V6.PacketsSent.EchoReply
	Dropped            uint64 `json:"dropped"`              // DroppedPackets (stack-wide)
}

// StackError is one of StackStats' counters, named.
type StackError struct {
	Name  string `json:"name"`
	Value uint64 `json:"value"`
}

// List returns the non-zero counters that explain lost or refused
// traffic, by their JSON names (ICMPEchoReplies, not an error, is left
// out).
func (s StackStats) List() []StackError {
	var out []StackError
	for _, e := range []StackError{{"ip_malformed", s.IPMalformed}, {"ip_invalid_dst", s.IPInvalidDst},
		{"ip_outgoing_errors", s.IPOutgoingErrors}, {"tcp_checksum_errors", s.TCPChecksumErrors},
		{"tcp_invalid_segments", s.TCPInvalidSegments}, {"tcp_retransmits", s.TCPRetransmits},
		{"tcp_timeouts", s.TCPTimeouts}, {"tcp_spurious", s.TCPSpurious}, {"tcp_resets_sent", s.TCPResetsSent},
		{"tcp_failed_connects", s.TCPFailedConnects}, {"tcp_listen_drops", s.TCPListenDrops},
		{"udp_checksum_errors", s.UDPChecksumErrors}, {"udp_unknown_port", s.UDPUnknownPort},
		{"udp_rcv_buf_errors", s.UDPRcvBufErrors}, {"udp_malformed", s.UDPMalformed}, {"dropped", s.Dropped}} {
		if e.Value != 0 {
			out = append(out, e)
		}
	}
	return out
}

// DropList is the peer link's drops by name.
func (s *Stats) DropList() []glink.Drop { return s.Drops.List() }

func stackStats(s *stack.Stack) StackStats {
	st := s.Stats()
	return StackStats{
		IPMalformed:        st.IP.MalformedPacketsReceived.Value(),
		IPInvalidDst:       st.IP.InvalidDestinationAddressesReceived.Value(),
		IPOutgoingErrors:   st.IP.OutgoingPacketErrors.Value(),
		TCPChecksumErrors:  st.TCP.ChecksumErrors.Value(),
		TCPInvalidSegments: st.TCP.InvalidSegmentsReceived.Value(),
		TCPSegmentsSent:    st.TCP.SegmentsSent.Value(),
		TCPRetransmits:     st.TCP.Retransmits.Value(),
		TCPTimeouts:        st.TCP.Timeouts.Value(),
		TCPFastRetransmit:  st.TCP.FastRetransmit.Value(),
		TCPSACKRecovery:    st.TCP.SACKRecovery.Value(),
		TCPTLPRecovery:     st.TCP.TLPRecovery.Value(),
		TCPSpurious:        st.TCP.SpuriousRecovery.Value() + st.TCP.SpuriousRTORecovery.Value(),
		TCPDSACKAcked:      st.TCP.SegmentsAckedWithDSACK.Value(),
		TCPResetsSent:      st.TCP.ResetsSent.Value(),
		TCPFailedConnects:  st.TCP.FailedConnectionAttempts.Value(),
		TCPListenDrops:     st.TCP.ListenOverflowSynDrop.Value() + st.TCP.ListenOverflowAckDrop.Value(),
		UDPChecksumErrors:  st.UDP.ChecksumErrors.Value(),
		UDPUnknownPort:     st.UDP.UnknownPortErrors.Value(),
		UDPRcvBufErrors:    st.UDP.ReceiveBufferErrors.Value(),
		UDPMalformed:       st.UDP.MalformedPacketsReceived.Value(),
		ICMPEchoReplies:    st.ICMP.V4.PacketsSent.EchoReply.Value() + st.ICMP.V6.PacketsSent.EchoReply.Value(),
		Dropped:            st.DroppedPackets.Value(),
	}
}

// counters are the peer's own live counters; the link keeps the rest.
type counters struct {
	discarded, discardedDatagrams atomic.Uint64
}

func (c *counters) snapshot(l glink.Stats, st StackStats) Stats {
	return Stats{
		In:                 l.In,
		Out:                l.Out,
		OutSuper:           l.OutSuper,
		OutBatches:         l.OutBatches,
		Drops:              l.Drops,
		Discarded:          c.discarded.Load(),
		DiscardedDatagrams: c.discardedDatagrams.Load(),
		Stack:              st,
	}
}
