package glink

import "sync/atomic"

// Stats is a snapshot of an Endpoint's counters. All counters only grow.
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
	// OutForwarded counts the packets the stack sent that it forwarded
	// (pkt.NetworkPacketInfo.IsForwardedPacket), i.e. it routed them
	// from another NIC rather than originating them.
	OutForwarded uint64 `json:"out_forwarded"`
	// OutFragments counts the IPv4 fragments the stack made itself: of a
	// forwarded packet without DF too big for this link, or of one of its
	// own packets. Fragments that were forwarded as they arrived are not
	// counted.
	OutFragments uint64 `json:"out_fragments"`
	// Drops counts packets the link dropped, by reason.
	Drops Drops `json:"drops"`
}

// Counter is a packet and byte count.
type Counter struct {
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// Drops counts packets the link dropped, by reason.
type Drops struct {
	// Inject: the packet was empty.
	Empty uint64 `json:"empty"`
	// Inject: the IP version nibble was neither 4 nor 6.
	BadVersion uint64 `json:"bad_version"`
	// Inject: shorter than its IP header or than the length the header
	// claims.
	Truncated uint64 `json:"truncated"`
	// Inject: longer than the wire MTU, or Options.MaxInject (a real NIC
	// drops such a frame).
	Oversize uint64 `json:"oversize"`
	// Inject with Options.GRO: an IPv4 header, TCP, UDP or ICMP checksum
	// did not verify (the link plays a NIC with receive checksum offload).
	BadChecksum uint64 `json:"bad_checksum"`
	// Inject after CloseInject (or before the link was attached).
	Closed uint64 `json:"closed"`
	// Inject on an Ethernet endpoint: a unicast frame for another
	// hardware address (a NIC that is not promiscuous drops it).
	NotForUs uint64 `json:"not_for_us"`
	// Transmit: the queue held Options.TxQueueBytes already (Output is too
	// slow); to the stack the packet is lost on the wire.
	TxQueueFull uint64 `json:"tx_queue_full"`
	// Transmit after CloseOutput.
	ClosedOut uint64 `json:"closed_out"`
}

// Drop is one of Drops' counters, named.
type Drop struct {
	Reason  string `json:"reason"`
	Packets uint64 `json:"packets"`
}

// List returns the non-zero counters by their stable snake_case names.
func (d Drops) List() []Drop {
	var out []Drop
	for _, c := range []Drop{{"empty", d.Empty}, {"bad_version", d.BadVersion}, {"truncated", d.Truncated},
		{"oversize", d.Oversize}, {"bad_checksum", d.BadChecksum}, {"closed", d.Closed}, {"not_for_us", d.NotForUs},
		{"tx_queue_full", d.TxQueueFull}, {"closed_out", d.ClosedOut}} {
		if c.Packets != 0 {
			out = append(out, c)
		}
	}
	return out
}

// Total is the sum of all drop reasons.
func (d Drops) Total() uint64 {
	return d.Empty + d.BadVersion + d.Truncated + d.Oversize + d.BadChecksum + d.Closed + d.NotForUs + d.TxQueueFull + d.ClosedOut
}

// Stats returns a snapshot of the endpoint's counters.
func (e *Endpoint) Stats() Stats { return e.cnt.snapshot() }

// counters are the endpoint's live counters.
type counters struct {
	inPackets, inBytes         atomic.Uint64
	outPackets, outBytes       atomic.Uint64
	outSuper, outBatches       atomic.Uint64
	outForwarded, outFragments atomic.Uint64

	dropEmpty, dropBadVersion, dropTruncated, dropOversize atomic.Uint64
	dropBadChecksum, dropClosed, dropNotForUs              atomic.Uint64
	dropTxQueueFull, dropClosedOut                         atomic.Uint64
}

func (c *counters) snapshot() Stats {
	return Stats{
		In:           Counter{c.inPackets.Load(), c.inBytes.Load()},
		Out:          Counter{c.outPackets.Load(), c.outBytes.Load()},
		OutSuper:     c.outSuper.Load(),
		OutBatches:   c.outBatches.Load(),
		OutForwarded: c.outForwarded.Load(),
		OutFragments: c.outFragments.Load(),
		Drops: Drops{
			Empty:       c.dropEmpty.Load(),
			BadVersion:  c.dropBadVersion.Load(),
			Truncated:   c.dropTruncated.Load(),
			Oversize:    c.dropOversize.Load(),
			BadChecksum: c.dropBadChecksum.Load(),
			Closed:      c.dropClosed.Load(),
			NotForUs:    c.dropNotForUs.Load(),
			TxQueueFull: c.dropTxQueueFull.Load(),
			ClosedOut:   c.dropClosedOut.Load(),
		},
	}
}
