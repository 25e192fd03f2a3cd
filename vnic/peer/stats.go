package peer

import (
	"sync/atomic"

	"gvisor.dev/gvisor/pkg/tcpip/stack"
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
	// Stack holds gVisor's own counters that explain lost or refused
	// traffic.
	Stack StackStats
}

// Counter is a packet and byte count.
type Counter struct {
	Packets, Bytes uint64
}

// Drops counts packets the peer's link dropped, by reason.
type Drops struct {
	// Inject: the packet was empty.
	Empty uint64
	// Inject: the IP version nibble was neither 4 nor 6.
	BadVersion uint64
	// Inject: shorter than its IP header or than the length the header
	// claims.
	Truncated uint64
	// Inject: longer than the wire MTU (a real NIC drops such a frame).
	Oversize uint64
	// Inject with Options.GRO: an IPv4 header, TCP, UDP or ICMP checksum
	// did not verify (the link plays a NIC with receive checksum offload).
	BadChecksum uint64
	// Inject after Close.
	Closed uint64
	// Transmit: the Output queue held Options.TxQueueBytes already
	// (Output is too slow); to the stack the packet is lost on the wire.
	TxQueueFull uint64
	// Transmit after Close.
	ClosedOut uint64
}

// Total is the sum of all drop reasons.
func (d Drops) Total() uint64 {
	return d.Empty + d.BadVersion + d.Truncated + d.Oversize + d.BadChecksum + d.Closed + d.TxQueueFull + d.ClosedOut
}

// StackStats is a selection of gVisor's tcpip.Stats.
type StackStats struct {
	IPMalformed        uint64 // IP.MalformedPacketsReceived
	IPInvalidDst       uint64 // IP.InvalidDestinationAddressesReceived
	IPOutgoingErrors   uint64 // IP.OutgoingPacketErrors
	TCPChecksumErrors  uint64 // TCP.ChecksumErrors
	TCPInvalidSegments uint64 // TCP.InvalidSegmentsReceived
	TCPRetransmits     uint64 // TCP.Retransmits
	TCPTimeouts        uint64 // TCP.Timeouts (RTO expiries)
	TCPResetsSent      uint64 // TCP.ResetsSent
	TCPFailedConnects  uint64 // TCP.FailedConnectionAttempts
	TCPListenDrops     uint64 // TCP.ListenOverflowSynDrop + ListenOverflowAckDrop
	UDPChecksumErrors  uint64 // UDP.ChecksumErrors
	UDPUnknownPort     uint64 // UDP.UnknownPortErrors
	UDPRcvBufErrors    uint64 // UDP.ReceiveBufferErrors
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
		TCPRetransmits:     st.TCP.Retransmits.Value(),
		TCPTimeouts:        st.TCP.Timeouts.Value(),
		TCPResetsSent:      st.TCP.ResetsSent.Value(),
		TCPFailedConnects:  st.TCP.FailedConnectionAttempts.Value(),
		TCPListenDrops:     st.TCP.ListenOverflowSynDrop.Value() + st.TCP.ListenOverflowAckDrop.Value(),
		UDPChecksumErrors:  st.UDP.ChecksumErrors.Value(),
		UDPUnknownPort:     st.UDP.UnknownPortErrors.Value(),
		UDPRcvBufErrors:    st.UDP.ReceiveBufferErrors.Value(),
		ICMPEchoReplies:    st.ICMP.V4.PacketsSent.EchoReply.Value() + st.ICMP.V6.PacketsSent.EchoReply.Value(),
		Dropped:            st.DroppedPackets.Value(),
	}
}

// counters are the peer's own live counters.
type counters struct {
	inPackets, inBytes   atomic.Uint64
	outPackets, outBytes atomic.Uint64
	outSuper, outBatches atomic.Uint64
	discarded            atomic.Uint64

	dropEmpty, dropBadVersion, dropTruncated, dropOversize atomic.Uint64
	dropBadChecksum, dropClosed                            atomic.Uint64
	dropTxQueueFull, dropClosedOut                         atomic.Uint64
}

func (c *counters) snapshot() Stats {
	return Stats{
		In:         Counter{c.inPackets.Load(), c.inBytes.Load()},
		Out:        Counter{c.outPackets.Load(), c.outBytes.Load()},
		OutSuper:   c.outSuper.Load(),
		OutBatches: c.outBatches.Load(),
		Discarded:  c.discarded.Load(),
		Drops: Drops{
			Empty:       c.dropEmpty.Load(),
			BadVersion:  c.dropBadVersion.Load(),
			Truncated:   c.dropTruncated.Load(),
			Oversize:    c.dropOversize.Load(),
			BadChecksum: c.dropBadChecksum.Load(),
			Closed:      c.dropClosed.Load(),
			TxQueueFull: c.dropTxQueueFull.Load(),
			ClosedOut:   c.dropClosedOut.Load(),
		},
	}
}
