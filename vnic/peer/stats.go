package peer

import (
	"sync/atomic"

	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"vnic/vnic/glink"
)

// Stats is a snapshot of the peer's counters. All counters only grow.
type Stats struct {
	// In counts the packets Inject accepted and delivered to the stack.
	In Counter
	// Out counts the packets handed to Output; a super-packet counts once,
	// with its full length.
	Out Counter
	// OutSuper counts the Output packets that were super-packets
	// (Hdr.GSOType != GSONone).
	OutSuper uint64
	// OutBatches counts the calls to Output.
	OutBatches uint64
	// Drops counts packets dropped by the peer's link, by reason.
	Drops Drops
	// Discarded counts the bytes swallowed by the discard services (TCP
	// and UDP port 9).
	Discarded uint64
	// DiscardedDatagrams counts the UDP datagrams the UDP discard service
	// read (their bytes are in Discarded).
	DiscardedDatagrams uint64
	// Stack holds gVisor's own counters that explain lost or refused
	// traffic.
	Stack StackStats
}

// Counter is a packet and byte count.
type Counter = glink.Counter

// Drops counts packets the peer's link dropped, by reason (see
// glink.Drops).
type Drops = glink.Drops

// StackStats is a selection of gVisor's tcpip.Stats.
type StackStats struct {
	IPMalformed        uint64 // IP.MalformedPacketsReceived
	IPInvalidDst       uint64 // IP.InvalidDestinationAddressesReceived
	IPOutgoingErrors   uint64 // IP.OutgoingPacketErrors
	TCPChecksumErrors  uint64 // TCP.ChecksumErrors
	TCPInvalidSegments uint64 // TCP.InvalidSegmentsReceived
	TCPSegmentsSent    uint64 // TCP.SegmentsSent
	TCPRetransmits     uint64 // TCP.Retransmits
	TCPTimeouts        uint64 // TCP.Timeouts (RTO expiries)
	TCPFastRetransmit  uint64 // TCP.FastRetransmit
	TCPSACKRecovery    uint64 // TCP.SACKRecovery (RACK/SACK loss recovery entered)
	TCPTLPRecovery     uint64 // TCP.TLPRecovery (tail loss probes that recovered)
	TCPSpurious        uint64 // TCP.SpuriousRecovery + SpuriousRTORecovery (recoveries undone by DSACK)
	TCPDSACKAcked      uint64 // TCP.SegmentsAckedWithDSACK (the receiver said: already had it)
	TCPResetsSent      uint64 // TCP.ResetsSent
	TCPFailedConnects  uint64 // TCP.FailedConnectionAttempts
	TCPListenDrops     uint64 // TCP.ListenOverflowSynDrop + ListenOverflowAckDrop
	UDPChecksumErrors  uint64 // UDP.ChecksumErrors
	UDPUnknownPort     uint64 // UDP.UnknownPortErrors
	UDPRcvBufErrors    uint64 // UDP.ReceiveBufferErrors
	UDPMalformed       uint64 // UDP.MalformedPacketsReceived
	ICMPEchoReplies    uint64 // ICMP.V4+V6.PacketsSent.EchoReply
	Dropped            uint64 // DroppedPackets (stack-wide)
}

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
