package peer

import (
	"sync"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"vnic/vnic/virtio"
)

// link is the peer's network interface: a point-to-point IP link with no
// link-layer header (no ethernet, no ARP, no NDP), like gVisor's channel
// endpoint, except that what the stack sends is turned into Packets (IP
// packet + virtio_net_hdr) and handed to Output from one goroutine, in
// batches, in the order the stack sent them.
//
// With GSO on it advertises stack.HostGSOSupported, so gVisor's TCP hands
// down super-packets with pkt.GSOOptions set (the way it does for a host
// AF_PACKET or tap socket in link/fdbased), and the link encodes those
// options as the virtio_net_hdr the Linux kernel would put in front of the
// same packet on a TUN device.
type link struct {
	mtu    uint32
	gsoMax uint32 // 0: GSO off
	caps   stack.LinkEndpointCapabilities

	mu         sync.RWMutex
	dispatcher stack.NetworkDispatcher
	onClose    func()

	q *txQueue
}

var (
	_ stack.LinkEndpoint = (*link)(nil)
	_ stack.GSOEndpoint  = (*link)(nil)
)

// MTU implements stack.LinkEndpoint.
func (l *link) MTU() uint32 { return l.mtu }

// SetMTU implements stack.LinkEndpoint. The wire's MTU is fixed at New.
func (l *link) SetMTU(uint32) {}

// MaxHeaderLength implements stack.LinkEndpoint: no link-layer header.
func (l *link) MaxHeaderLength() uint16 { return 0 }

// LinkAddress implements stack.LinkEndpoint: a point-to-point link has none.
func (l *link) LinkAddress() tcpip.LinkAddress { return "" }

// SetLinkAddress implements stack.LinkEndpoint.
func (l *link) SetLinkAddress(tcpip.LinkAddress) {}

// Capabilities implements stack.LinkEndpoint. No TX checksum offload: the
// stack completes every checksum except the TCP ones it marks NeedsCsum on
// GSO routes. RX checksum offload only when gVisor's GRO is on (see
// Options.GRO).
func (l *link) Capabilities() stack.LinkEndpointCapabilities { return l.caps }

// Attach implements stack.LinkEndpoint.
func (l *link) Attach(d stack.NetworkDispatcher) {
	l.mu.Lock()
	l.dispatcher = d
	l.mu.Unlock()
}

// IsAttached implements stack.LinkEndpoint.
func (l *link) IsAttached() bool {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.dispatcher != nil
}

func (l *link) getDispatcher() stack.NetworkDispatcher {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.dispatcher
}

// Wait implements stack.LinkEndpoint. The link has no goroutine of its own
// that the stack must wait for; the output goroutine is the Peer's.
func (l *link) Wait() {}

// ARPHardwareType implements stack.LinkEndpoint.
func (l *link) ARPHardwareType() header.ARPHardwareType { return header.ARPHardwareNone }

// AddHeader implements stack.LinkEndpoint: nothing to add.
func (l *link) AddHeader(*stack.PacketBuffer) {}

// ParseHeader implements stack.LinkEndpoint: nothing to parse.
func (l *link) ParseHeader(*stack.PacketBuffer) bool { return true }

// Close implements stack.LinkEndpoint.
func (l *link) Close() {
	l.mu.Lock()
	f := l.onClose
	l.onClose = nil
	l.mu.Unlock()
	if f != nil {
		f()
	}
}

// SetOnCloseAction implements stack.LinkEndpoint.
func (l *link) SetOnCloseAction(f func()) {
	l.mu.Lock()
	l.onClose = f
	l.mu.Unlock()
}

// GSOMaxSize implements stack.GSOEndpoint.
func (l *link) GSOMaxSize() uint32 { return l.gsoMax }

// SupportedGSO implements stack.GSOEndpoint: host GSO (the offload is done
// by whoever reads Output, as a host kernel does for fdbased) or none.
func (l *link) SupportedGSO() stack.SupportedGSO {
	if l.gsoMax == 0 {
		return stack.GSONotSupported
	}
	return stack.HostGSOSupported
}

// WritePackets implements stack.LinkWriter. The packets are copied into the
// transmit queue; gVisor keeps ownership of the buffers.
func (l *link) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	n := 0
	for _, pkt := range pkts.AsSlice() {
		if err := l.q.push(vnetHdr(pkt), pkt); err != nil { // only when closed
			if n == 0 {
				return 0, err
			}
			return n, nil
		}
		n++
	}
	return n, nil
}

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
	l3 := len(pkt.NetworkHeader().Slice())
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

func (q *txQueue) push(h virtio.Hdr, pkt *stack.PacketBuffer) tcpip.Error {
	size := pkt.Size()
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
	b.arena = appendPacket(b.arena, pkt)
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
		output(b.pkts)
		q.stats.outPackets.Add(uint64(len(b.ents)))
		q.stats.outBytes.Add(bytes)
		q.stats.outSuper.Add(super)
		q.stats.outBatches.Add(1)
		clear(b.pkts) // drop references into the arena
		b.ents = b.ents[:0]
		// Keep the arena unless one burst blew it up beyond the usual.
		if cap(b.arena) > maxKeptArena {
			b.arena = nil
		} else {
			b.arena = b.arena[:0]
		}
	}
}

// maxKeptArena bounds the memory a batch keeps between bursts.
const maxKeptArena = 4 << 20

// close stops accepting packets. The caller then closes done and waits for
// run to return.
func (q *txQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
}
