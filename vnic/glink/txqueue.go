package glink

import (
	"sync"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"vnic/vnic/virtio"
)

// vnetHdr turns gVisor's GSO options into the virtio_net_hdr Linux would
// attach to the same packet (virtio_net_hdr_from_skb). It follows
// link/fdbased's writePacket with two corrections: csum_start is the actual
// network header length (fdbased adds an ethernet header length even
// without ethernet, and gVisor's L3HdrLen is a constant that ignores IPv6
// extension headers), and the ECN bit is set when the super-packet carries
// CWR, as tcp_gso_segment expects (SKB_GSO_TCP_ECN).
//
// What gVisor does, for the record (transport/tcp/connect.go buildTCPHdr,
// endpoint.go initHostGSO): on a route whose link reports HostGSOSupported,
// every TCP segment of a connected endpoint, data or pure ACK, carries
// GSOOptions{Type: GSOTCPv4|GSOTCPv6, NeedsCsum: true, CsumOffset: 16,
// MSS: the current send MSS, which reserves the 40 bytes of the largest
// TCP options (1420 for IPv4 at MTU 1500), L3HdrLen: 20|40}, and its
// checksum field holds the pseudo-header sum (not complemented) over the
// whole L4 length of the packet, i.e. CHECKSUM_PARTIAL exactly as
// __tcp_v4_send_check leaves it. A packet is a super-packet only when its
// payload exceeds MSS. Segments sent without a connected endpoint (the
// listener's SYN-ACK, an RST for a closed port) have no GSO options and a
// complete checksum. TestControlSegmentHeaders and the test wire's
// checkHdr pin this down.
func vnetHdr(pkt *stack.PacketBuffer) virtio.Hdr {
	g := pkt.GSOOptions
	if g.Type != stack.GSOTCPv4 && g.Type != stack.GSOTCPv6 {
		return virtio.Hdr{}
	}
	// On an Ethernet endpoint csum_start and hdr_len count from the
	// Ethernet header, as a TAP device's do.
	l2 := len(pkt.LinkHeader().Slice())
	l3 := l2 + len(pkt.NetworkHeader().Slice())
	l4 := len(pkt.TransportHeader().Slice())
	var h virtio.Hdr
	if g.NeedsCsum {
		h.Flags = virtio.FlagNeedsCsum
		h.CsumStart = uint16(l3)
		h.CsumOffset = g.CsumOffset
	}
	if pkt.Data().Size() > int(g.MSS) {
		h.GSOType = virtio.GSOTCPv4
		if g.Type == stack.GSOTCPv6 {
			h.GSOType = virtio.GSOTCPv6
		}
		if l4 >= header.TCPMinimumSize && header.TCP(pkt.TransportHeader().Slice()).Flags()&header.TCPFlagCwr != 0 {
			h.GSOType |= virtio.GSOECN
		}
		h.GSOSize = g.MSS
		h.HdrLen = uint16(l3 + l4)
	}
	return h
}

// txQueue is the link's transmit ring: gVisor goroutines push, one output
// goroutine drains everything pushed so far as one batch and hands it to
// Output. Packets are copied into an arena on push, so gVisor's buffers are
// released at once and Output sees contiguous IP packets. Two batches
// alternate; in steady state nothing is allocated.
type txQueue struct {
	limit int // bytes

	mu     sync.Mutex
	cur    *txBatch
	spare  *txBatch
	closed bool

	wake chan struct{}
	done chan struct{}

	stats *counters
}

type txBatch struct {
	arena []byte
	ents  []txEnt
	pkts  []Packet
}

type txEnt struct {
	hdr      virtio.Hdr
	off, len int
}

func newTxQueue(limit int, stats *counters) *txQueue {
	return &txQueue{
		limit: limit,
		cur:   &txBatch{},
		spare: &txBatch{},
		wake:  make(chan struct{}, 1),
		done:  make(chan struct{}),
		stats: stats,
	}
}

// push queues one packet: pkt's bytes, or raw when pkt is nil.
func (q *txQueue) push(h virtio.Hdr, pkt *stack.PacketBuffer, raw []byte) tcpip.Error {
	size := len(raw)
	if pkt != nil {
		size = pkt.Size()
	}
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		q.stats.dropClosedOut.Add(1)
		return &tcpip.ErrClosedForSend{}
	}
	b := q.cur
	if len(b.arena)+size > q.limit && len(b.ents) > 0 {
		q.mu.Unlock()
		// Lost on the wire, as far as the stack knows: returning an error
		// instead (ErrNoBufferSpace) makes gVisor's TCP back off its
		// retransmission timer without retransmitting through the
		// loss-recovery path, and a bulk transfer stalls for seconds.
		q.stats.dropTxQueueFull.Add(1)
		return nil
	}
	off := len(b.arena)
	if pkt != nil {
		b.arena = appendPacket(b.arena, pkt)
	} else {
		b.arena = append(b.arena, raw...)
	}
	b.ents = append(b.ents, txEnt{hdr: h, off: off, len: size})
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
	return nil
}

// appendPacket appends the packet's bytes (headers and data) to dst without
// allocating (pkt.AsSlices would).
func appendPacket(dst []byte, pkt *stack.PacketBuffer) []byte {
	vl, skip := pkt.AsViewList()
	for v := vl.Front(); v != nil; v = v.Next() {
		s := v.AsSlice()
		if skip >= len(s) {
			skip -= len(s)
			continue
		}
		dst = append(dst, s[skip:]...)
		skip = 0
	}
	return dst
}

// run is the output goroutine. It returns when done is closed, after a last
// drain.
func (q *txQueue) run(output func([]Packet)) {
	for {
		select {
		case <-q.wake:
			q.flush(output)
		case <-q.done:
			q.flush(output)
			return
		}
	}
}

func (q *txQueue) flush(output func([]Packet)) {
	for {
		q.mu.Lock()
		b := q.cur
		if len(b.ents) == 0 {
			q.mu.Unlock()
			return
		}
		q.cur, q.spare = q.spare, b
		q.mu.Unlock()

		b.pkts = b.pkts[:0]
		var bytes, super uint64
		for _, e := range b.ents {
			b.pkts = append(b.pkts, Packet{Hdr: e.hdr, Data: b.arena[e.off : e.off+e.len : e.off+e.len]})
			bytes += uint64(e.len)
			if e.hdr.GSOType != virtio.GSONone {
				super++
			}
		}
		// Count before the call, so that whoever sees a packet in Output
		// also sees it in Stats.
		q.stats.outPackets.Add(uint64(len(b.ents)))
		q.stats.outBytes.Add(bytes)
		q.stats.outSuper.Add(super)
		q.stats.outBatches.Add(1)
		output(b.pkts)
		clear(b.pkts) // drop references into the arena
		b.ents = b.ents[:0]
		// Keep the arena (growing it again costs a copy of everything
		// queued) unless one burst blew it up beyond the queue's limit.
		if cap(b.arena) > max(q.limit+maxPacketBytes, maxKeptArena) {
			b.arena = nil
		} else {
			b.arena = b.arena[:0]
		}
	}
}

// maxKeptArena is the least a batch may keep between bursts, whatever the
// queue's limit; maxPacketBytes the most one packet adds beyond the limit.
const (
	maxKeptArena   = 4 << 20
	maxPacketBytes = 1 << 16
)

// close stops accepting packets. The caller then closes done and waits for
// run to return.
func (q *txQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
}
