package nic

import (
	"encoding/binary"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"vnic/coalesce"
	"vnic/segment"
	"vnic/vnic/capture"
	"vnic/vnic/drop"
	"vnic/vnic/glink"
	"vnic/vnic/packet"
	"vnic/vnic/tundev"
	"vnic/vnic/virtio"
)

// maxFrame is the largest frame a TUN or TAP with IFF_VNET_HDR hands
// over: the header, a 64 KiB IP packet and, on a TAP, its Ethernet header
// (VLAN tags included).
const maxFrame = virtio.SizeTunnel + maxL2 + 65535

// rxSlots is the size of a receive batch (one NAPI poll): about three
// 64 KiB super-packets of 1448-byte segments.
const rxSlots = 128

// wireBufs is how many wire-size packets the transmit side queues for a
// far end that is not a vnic NIC before handing them over.
const wireBufs = 512

// txFramesMin is how many frame buffers an idle NIC holds; a busy one
// grows to the batch.
const txFramesMin = 4

// vnicEngine is vnic's NIC: TSO/USO with segment on the way out, GRO with
// coalesce on the way in, a capture at each point.
type vnicEngine struct {
	n     *NIC
	hwMTU int
	// hsz is the virtio header's size in front of every frame: 10, or 24
	// (virtio.HdrTunnel) on a TUN with the UDP tunnel offloads.
	hsz int
	tap bool // ModeTAP: Ethernet frames (tap.go)
	// the NIC model (SetModel)
	passthrough atomic.Bool // ModelTSOPassthrough
	noCsum      atomic.Bool // ModelNoCsum
	trusting    atomic.Bool // ModelRxCsumTrusting
	rxCsum      atomic.Bool // receive checksum offload (Options.NoRxCsum, SetRxCsum)

	// transmit (host → wire), owned by the transmit goroutine
	txFrames [][]byte
	txSizes  []int
	txWire   [][]byte // wire buffers for a far end that is not a vnic NIC (one slab, taken on first use)
	txWSizes []int
	txQueue  [][]byte // wire packets queued for the far end
	txOpt    segment.Options
	txBig    overflow
	txMTU    int       // the size of each txWire buffer
	txPass   []byte    // ModelTSOPassthrough: the super-packet going out whole
	txOne    [1][]byte // and the batch of one it goes in
	txHost   tally     // host_tx, added to the stats once per batch
	txSuper  uint64
	txTunnel uint64
	txOut    tally // wire_out
	txDrops  drop.Counts
	// txChecked: every packet in txQueue has a checksum this NIC
	// computed (segment completed a NEEDS_CSUM frame, standard model),
	// so a vnic NIC at the far end need not verify it again.
	txChecked bool
	// direct is the far NIC's engine on a direct wire (the far end is a
	// *NIC with vnic's engine), nil otherwise: segments go straight into
	// its receive batch.
	direct *vnicEngine

	// receive (wire → host), like a NIC's rx ring and its NAPI poll: the
	// producer — a gVisor stack's output goroutine, a wire's, or on a
	// direct wire the far NIC's transmit loop — segments (the far end's
	// TSO) or copies wire packets into a batch (rx), and each full batch,
	// and the last one, goes through GRO into the host on the same
	// goroutine (poll). Batches come from rxBatchFree and go back after
	// the poll, so an idle NIC holds none. (Handing batches to a second
	// goroutine to use both cores was measured: 25–40 % more CPU per GB
	// and slower, the cores being busy with the applications and the
	// kernel already.)
	rx       *rxBatch
	rxWire   tally // wire_in
	rxBig    overflow
	rxSegSz  []int
	rxDrops  drop.Counts // wire_rx
	farDrops drop.Counts // far_tx
	hostDrop drop.Counts // host_rx

	rxMu      sync.Mutex // guards gro against Stats
	gro       *coalesce.Engine
	groOn     atomic.Bool // the kernel's view: ethtool -k generic-receive-offload
	groWasOn  bool
	trustOn   bool // gro's TrustChecksums as last set
	markOn    bool // gro's MarkValid as last set
	rxOut     [][]byte
	rxToWrite []int
	rxHost    tally
	rxMerged  uint64
	// pass are frames a direct wire's sender handed over whole
	// (passWhole), waiting to be written into the host.
	pass [][]byte
	// rxOne is a batch of one frame that is not IP, from a gVisor stack
	// (output).
	rxOne [1][]byte
}

func newVNICEngine(n *NIC) *vnicEngine {
	o := &n.opt
	e := &vnicEngine{n: n, hwMTU: o.HWMTU, txMTU: o.MTU, tap: o.Mode == ModeTAP, hsz: virtio.Size}
	if d, ok := n.dev.(interface{ VnetHdrSize() int }); ok && d.VnetHdrSize() == virtio.SizeTunnel {
		e.hsz = virtio.SizeTunnel
	}
	l2 := 0
	if e.tap {
		// Wire buffers hold the Ethernet header too.
		e.txMTU += maxL2
		l2 = ethHeader
	}
	e.txOpt = segment.Options{MaxPacket: o.HWMTU}
	// Frame buffers are added as reads fill them (growFrames): an idle
	// NIC holds txFramesMin of them, a busy one up to the batch.
	e.txFrames = make([][]byte, 0, o.Batch)
	e.growFrames(txFramesMin)
	e.txSizes = make([]int, o.Batch)
	e.txWire = make([][]byte, wireBufs)
	e.txWSizes = make([]int, wireBufs)
	e.txQueue = make([][]byte, 0, wireBufs)
	e.txChecked = true

	e.rxCsum.Store(!o.NoRxCsum)
	e.markOn = !o.NoRxCsum
	e.gro = coalesce.New(coalesce.Options{UDP: true, MarkValid: e.markOn, L2Len: l2})
	e.groOn.Store(true)
	e.groWasOn = true
	e.rxOut = make([][]byte, rxSlots)
	e.rxToWrite = make([]int, 0, rxSlots)
	e.rxSegSz = make([]int, rxSlots)
	e.pass = make([][]byte, 0, rxSlots)
	return e
}

// growFrames adds frame buffers up to n (at most the batch).
func (e *vnicEngine) growFrames(n int) {
	for len(e.txFrames) < min(n, cap(e.txFrames)) {
		e.txFrames = append(e.txFrames, make([]byte, maxFrame))
	}
}

// wireBuffers allocates txWire's buffers on first use.
func (e *vnicEngine) wireBuffers() {
	if e.txWire[0] != nil {
		return
	}
	slab := make([]byte, wireBufs*e.txMTU)
	for i := range e.txWire {
		e.txWire[i] = slab[i*e.txMTU : (i+1)*e.txMTU : (i+1)*e.txMTU]
	}
}

func (e *vnicEngine) setModel(m Model) {
	e.passthrough.Store(m == ModelTSOPassthrough)
	e.noCsum.Store(m == ModelNoCsum)
	e.trusting.Store(m == ModelRxCsumTrusting)
}

func (e *vnicEngine) setRxCsum(on bool) { e.rxCsum.Store(on) }

func (e *vnicEngine) setGRO(on bool) { e.groOn.Store(on) }

func (e *vnicEngine) fill(s *Stats) {
	s.GRO = e.groOn.Load()
	s.RXCsum = e.rxCsum.Load()
	e.rxMu.Lock()
	c := e.gro.Stats()
	e.rxMu.Unlock()
	s.RXCsumBad = c.Passed[coalesce.PassBadL4Checksum]
	s.Coalesce = map[string]uint64{}
	c.Each(func(name string, v uint64) {
		if v != 0 {
			s.Coalesce[name] = v
		}
	})
	if d, ok := e.n.dev.(*tundev.Device); ok {
		s.addDrops(HostRX, d.Stats().Dropped)
	}
}

// txLoop moves frames from the host to the wire until the device fails.
func (e *vnicEngine) txLoop() error {
	if far, ok := e.n.far.(*NIC); ok {
		e.direct, _ = far.eng.(*vnicEngine)
	}
	st := &e.n.st
	for {
		n, err := e.n.dev.Read(e.txFrames, e.txSizes, 0)
		if err != nil {
			return err
		}
		if n == len(e.txFrames) {
			// The kernel had more queued than there were buffers.
			e.growFrames(2 * n)
		}
		now := time.Now()
		for i := 0; i < n; i++ {
			e.transmit(e.txFrames[i][:e.txSizes[i]], now)
		}
		e.flushWire()
		if d := e.direct; d != nil {
			d.handoff(now)
			d.writePass()
			d.flushRX()
		}
		e.txHost.flushTo(&st.hostTX)
		e.txOut.flushTo(&st.wireOut)
		if e.txSuper != 0 {
			st.hostTXSuper.Add(e.txSuper)
			st.hostTXTunnel.Add(e.txTunnel)
			e.txSuper, e.txTunnel = 0, 0
		}
		st.drops[HostTX].Flush(&e.txDrops)
	}
}

// transmit puts one frame from the host on the wire: segmented (TSO/USO),
// checksums completed, as the NIC model says.
func (e *vnicEngine) transmit(frame []byte, now time.Time) {
	var ht virtio.HdrTunnel
	var err error
	if e.hsz == virtio.SizeTunnel {
		err = ht.Decode(frame)
	} else {
		err = ht.Hdr.Decode(frame)
	}
	if err != nil {
		e.txDrops.Add(drop.ShortFrame)
		return
	}
	h := ht.Hdr
	pkt := frame[e.hsz:]
	// A super-packet inside a UDP tunnel (VXLAN over this NIC, with the
	// tunnel offloads): cut as skb_udp_tunnel_segment does.
	tunnel := h.GSOType&virtio.GSOUDPTunnel != 0
	l2, ip, ok := e.l2(pkt)
	if !ok {
		e.txDrops.Add(drop.EtherShort)
		return
	}
	e.txHost.add(len(pkt))
	if h.GSOType != virtio.GSONone {
		e.txSuper++
		if tunnel {
			e.txTunnel++
		}
	}
	id := e.n.opt.Capture.HostTX(now, h, pkt)
	if !ip {
		e.transmitRaw(h, pkt, id, now)
		return
	}
	if e.passthrough.Load() && h.GSOType != virtio.GSONone && !tunnel {
		e.transmitWhole(h, pkt, id, now)
		return
	}
	if h.GSOType == virtio.GSONone && len(pkt)-l2 > e.hwMTU {
		h = cutTCP(h, pkt[l2:], e.hwMTU)
	}
	// checked: the checksum of every packet cut from this frame is one
	// this NIC computes (or leaves partial for the far NIC to complete).
	checked := h.Flags&virtio.FlagNeedsCsum != 0 && !e.noCsum.Load()
	opt := e.txOpt
	opt.L2Len = l2
	var partial uint16
	d := e.direct
	if d != nil && checked && !tunnel && !e.n.opt.Capture.Active() && !d.n.opt.Capture.Active() &&
		(h.CsumOffset == packet.TCPCsumOffset || h.CsumOffset == packet.UDPCsumOffset) {
		// Nobody looks at these wire packets' checksums unless a capture
		// records them or GRO hands one on alone: leave them partial and
		// complete only those (poll). The checksum is a function of the
		// bytes; what the host sees is the same.
		opt.PartialChecksum = true
		partial = h.CsumStart
		if h.CsumOffset == packet.UDPCsumOffset {
			partial |= partialUDP
		}
	}
	var plan segment.Plan
	if tunnel {
		plan, err = segment.NewTunnelPlan(ht, pkt, opt)
	} else {
		plan, err = segment.NewPlan(h, pkt, opt)
	}
	if err != nil {
		e.txDrops.Add(segment.Reason(err))
		return
	}
	if d != nil {
		if d.hsz == e.hsz && e.shortcut(d, h, pkt, l2, &plan) {
			d.passWhole(frame, h, &plan, e, now)
			return
		}
		d.take(&plan, sender{e, h, id}, partial, checked, now)
		return
	}
	k := plan.Segments()
	if k > wireBufs-len(e.txQueue) {
		e.flushWire()
	}
	if k > wireBufs || plan.MaxSize() > e.txMTU {
		// More segments than the wire buffers hold (a small MSS), or a
		// packet larger than the MTU (the MTU was raised under the NIC):
		// cut into overflow buffers and hand over at once (the queue is
		// empty here).
		bufs, sizes := e.txBig.carve(k, plan.MaxSize(), 0)
		c, err := plan.Cut(bufs, sizes, 0)
		if err != nil {
			e.txDrops.Add(segment.Reason(err))
			return
		}
		for i := range c {
			bufs[i] = bufs[i][:sizes[i]]
			e.sent(h, bufs[i], id, i, c, now)
		}
		e.injectBufs(bufs[:c], checked)
		return
	}
	e.wireBuffers()
	w := len(e.txQueue)
	c, err := plan.Cut(e.txWire[w:], e.txWSizes[w:], 0)
	if err != nil {
		e.txDrops.Add(segment.Reason(err))
		return
	}
	for i := range c {
		wp := e.txWire[w+i][:e.txWSizes[w+i]]
		e.sent(h, wp, id, i, c, now)
		e.txQueue = append(e.txQueue, wp)
	}
	e.txChecked = e.txChecked && checked
}

// noShortcut turns the shortcut off (tests compare both paths).
var noShortcut bool

// shortcut reports whether the frame h, pkt (planned as plan) may cross
// the direct wire to d whole: when d's GRO would merge the segments this
// NIC cuts from it back into exactly the frame — GRO∘TSO is the identity
// for it — and nothing records the wire, cutting and merging it again is
// work with no effect; the receiving host gets the same bytes and header
// (TestShortcutIsSegmentThenGRO proves it against the full path). That
// holds for a TCP super-packet of 2 to rxSlots segments at its own
// gso_size (no hardware MTU below it), with a checksum left to the NIC,
// no flag that makes GRO flush early (CWR, URG, SYN, RST), IPv4 without
// options or IPv6 without extension headers, a standard model on this
// NIC, and GRO on at d. What the shortcut skips is counted as if done
// (the wire packets, the merge).
func (e *vnicEngine) shortcut(d *vnicEngine, h virtio.Hdr, pkt []byte, l2 int, plan *segment.Plan) bool {
	if h.Flags&virtio.FlagNeedsCsum == 0 || h.GSOType&virtio.GSOECN != 0 ||
		(h.GSOType != virtio.GSOTCPv4 && h.GSOType != virtio.GSOTCPv6) {
		return false
	}
	tso, hdrLen, mss := plan.TSO()
	if !tso || mss != int(h.GSOSize) || plan.Segments() < 2 || plan.Segments() > rxSlots || plan.MaxSize() > d.hwMTU {
		return false
	}
	if e.n.opt.Capture.Active() || d.n.opt.Capture.Active() || e.passthrough.Load() || e.noCsum.Load() || !d.groOn.Load() || noShortcut {
		return false
	}
	l4 := int(h.CsumStart)
	if h.GSOType == virtio.GSOTCPv4 && l4-l2 != packet.IPv4MinHeader || h.GSOType == virtio.GSOTCPv6 && l4-l2 != packet.IPv6Header {
		return false
	}
	if hdrLen > len(pkt) || l4+14 > len(pkt) {
		return false
	}
	return pkt[l4+13]&(packet.TCPFlagCWR|packet.TCPFlagURG|packet.TCPFlagSYN|packet.TCPFlagRST) == 0
}

// passWhole takes a frame from the NIC at the other end of a direct wire
// whole (shortcut): it is written into the host as GRO would have written
// its segments, after whatever the receive batch holds, so that the order
// within a flow is kept. frame is the sender's buffer, valid until its
// next read; its virtio header is rewritten as GRO writes one (hdr_len
// recomputed).
func (d *vnicEngine) passWhole(frame []byte, h virtio.Hdr, plan *segment.Plan, from *vnicEngine, now time.Time) {
	_, hdrLen, _ := plan.TSO()
	k, wireBytes := plan.Segments(), plan.WireBytes()
	from.txOut.addN(k, wireBytes)
	d.rxWire.addN(k, wireBytes)
	d.handoff(now)
	h.HdrLen = uint16(hdrLen)
	h.Flags &= virtio.FlagNeedsCsum
	_ = h.Encode(frame)
	d.rxHost.add(len(frame) - d.hsz)
	d.rxMerged++
	d.pass = append(d.pass, frame)
	if len(d.pass) == cap(d.pass) {
		d.writePass()
	}
}

// writePass writes the frames passWhole queued into the host.
func (d *vnicEngine) writePass() {
	if len(d.pass) == 0 {
		return
	}
	d.writeHost(d.pass)
	clear(d.pass)
	d.pass = d.pass[:0]
}

// transmitWhole is ModelTSOPassthrough for a super-packet: between VMs
// nothing segments, so it goes on the wire whole, checksum completed.
func (e *vnicEngine) transmitWhole(h virtio.Hdr, pkt []byte, id uint64, now time.Time) {
	e.flushWire()
	if cap(e.txPass) < len(pkt) {
		e.txPass = make([]byte, maxFrame)
	}
	wp := e.txPass[:len(pkt)]
	copy(wp, pkt)
	if h.Flags&virtio.FlagNeedsCsum != 0 {
		segment.CompleteChecksum(wp, int(h.CsumStart), int(h.CsumOffset))
	}
	e.txOut.add(len(wp))
	e.n.opt.Capture.Wire(now, capture.Out, wp, capture.Origin{Kind: capture.FromHostTX, Super: id, Index: 0, Count: 1})
	e.txOne[0] = wp
	e.injectBufs(e.txOne[:], !e.noCsum.Load())
	e.txOne[0] = nil
}

// sender is the transmitting side of a frame being cut: what it does to
// each wire packet (sent) when the packet is cut into a buffer of the
// receiving NIC's.
type sender struct {
	e  *vnicEngine // nil: a gVisor stack's packet (the far end's TSO)
	h  virtio.Hdr
	id uint64 // the frame's host-tx capture number
}

// sent is what the NIC does with wire packet i of c cut from the frame
// h: the no-csum model's damage, the wire counter, the wire capture.
func (e *vnicEngine) sent(h virtio.Hdr, wp []byte, id uint64, i, c int, now time.Time) {
	e.leavePartial(h, wp)
	e.txOut.add(len(wp))
	e.n.opt.Capture.Wire(now, capture.Out, wp, capture.Origin{Kind: capture.FromHostTX, Super: id, Index: i, Count: c})
}

// flushWire hands the queued wire packets to the far end.
func (e *vnicEngine) flushWire() {
	if len(e.txQueue) > 0 {
		e.injectBufs(e.txQueue, e.txChecked)
		clear(e.txQueue)
		e.txQueue = e.txQueue[:0]
	}
	e.txChecked = true
}

func (e *vnicEngine) injectBufs(pkts [][]byte, checked bool) {
	if far, ok := e.n.far.(*NIC); ok && checked {
		far.injectChecked(pkts)
		return
	}
	e.n.far.Inject(pkts)
}

// rxBatch is one receive batch: wire packets at bufs[i][hsz:] (the
// NIC's virtio header size),
// each buffer with room for a 64 KiB merge.
type rxBatch struct {
	bufs [][]byte
	n    int
	// partial[i], when not zero, says packet i's TCP/UDP checksum was
	// left partial by segment (Options.PartialChecksum): the L4 header's
	// offset, plus partialUDP for UDP. GRO merges such packets as any
	// other (its output is CHECKSUM_PARTIAL anyway); one it hands on
	// alone gets its checksum completed first.
	partial []uint16
	now     time.Time
	// checked: every packet's checksum was computed by a vnic segmenter
	// on its way here, so GRO need not verify it again.
	checked bool
}

// partialUDP marks a UDP packet in rxBatch.partial.
const partialUDP = 1 << 15

// rxBatchFree holds idle receive batches (8 MiB each) for every NIC of
// the process: a bounded free list rather than a sync.Pool, which drops
// its batches at every garbage collection and so made the process
// allocate 8 MiB again and again under load. A NIC takes a batch for a
// burst and gives it back after the poll, so idle NICs hold none; beyond
// rxBatchFreeMax idle batches the garbage collector gets them.
var rxBatchFree = make(chan *rxBatch, rxBatchFreeMax)

// rxBatchFreeMax: one NIC polls one batch at a time, a direct wire two.
const rxBatchFreeMax = 4

func getBatch() *rxBatch {
	select {
	case b := <-rxBatchFree:
		return b
	default:
	}
	slab := make([]byte, rxSlots*maxFrame)
	b := &rxBatch{bufs: make([][]byte, rxSlots), partial: make([]uint16, rxSlots)}
	for i := range b.bufs {
		b.bufs[i] = slab[i*maxFrame : (i+1)*maxFrame : (i+1)*maxFrame]
	}
	return b
}

func putBatch(b *rxBatch) {
	select {
	case rxBatchFree <- b:
	default:
	}
}

// batch returns the producer's current receive batch, taking one from the
// free list if there is none; checked false marks it as needing checksum
// verification.
func (e *vnicEngine) batch(checked bool) *rxBatch {
	e.writePass() // what came whole goes first: the order within a flow
	if e.rx == nil {
		e.rx = getBatch()
		e.rx.checked = true
	}
	e.rx.checked = e.rx.checked && checked
	return e.rx
}

// take receives the wire packets of a planned frame: cut straight into
// the receive batch when they fit (ending the batch first if they do not
// fit in what is left of it), else through overflow buffers. from is the
// NIC that transmits them (a direct wire) or has e nil (a gVisor stack's
// packet: the far end's TSO).
func (e *vnicEngine) take(plan *segment.Plan, from sender, partial uint16, checked bool, now time.Time) {
	k := plan.Segments()
	b := e.batch(checked)
	if k > rxSlots-b.n && b.n > 0 {
		e.handoff(now)
		b = e.batch(checked)
	}
	if k > rxSlots {
		// More segments than a batch holds (a small MSS).
		big := &e.rxBig
		if from.e != nil {
			big = &from.e.txBig
		}
		bufs, sizes := big.carve(k, plan.MaxSize(), 0)
		c, err := plan.Cut(bufs, sizes, 0)
		if err != nil {
			e.dropCut(from, err)
			return
		}
		for i := range c {
			bufs[i] = bufs[i][:sizes[i]]
			if from.e != nil {
				from.e.sent(from.h, bufs[i], from.id, i, c, now)
			}
		}
		e.copyIn(bufs[:c], partial, checked, now)
		return
	}
	sizes := e.rxSegSz[:rxSlots-b.n]
	c, err := plan.Cut(b.bufs[b.n:], sizes, e.hsz)
	if err != nil {
		e.dropCut(from, err)
		return
	}
	for i := range c {
		wp := b.bufs[b.n+i][e.hsz : e.hsz+sizes[i]]
		if from.e != nil {
			from.e.sent(from.h, wp, from.id, i, c, now)
		}
	}
	e.admit(b, now, c, sizes, partial)
}

func (e *vnicEngine) dropCut(from sender, err error) {
	if from.e != nil {
		from.e.txDrops.Add(segment.Reason(err))
	} else {
		e.farDrops.Add(segment.Reason(err))
	}
}

// admit receives the c wire packets just cut after the batch's last
// (packet i at b.bufs[b.n+i][hsz:], sizes[i] bytes): each is
// counted and recorded on the wire, and those the NIC can take join the
// batch with their partial-checksum mark.
func (e *vnicEngine) admit(b *rxBatch, now time.Time, c int, sizes []int, partial uint16) {
	k := b.n
	for i := 0; i < c; i++ {
		buf := b.bufs[b.n+i][:e.hsz+sizes[i]]
		if !e.admitRX(now, buf[e.hsz:]) {
			continue
		}
		// Swap, not copy: every slot must keep its own buffer.
		if idx := b.n + i; idx != k {
			b.bufs[idx] = b.bufs[k]
		}
		b.bufs[k] = buf
		b.partial[k] = partial
		k++
	}
	b.n = k
}

// copyIn copies wire packets into receive batches.
func (e *vnicEngine) copyIn(pkts [][]byte, partial uint16, checked bool, now time.Time) {
	for _, wp := range pkts {
		if !e.admitRX(now, wp) {
			continue
		}
		b := e.batch(checked)
		if b.n == rxSlots {
			e.handoff(now)
			b = e.batch(checked)
		}
		buf := b.bufs[b.n][:e.hsz+len(wp)]
		copy(buf[e.hsz:], wp)
		b.bufs[b.n] = buf
		b.partial[b.n] = partial
		b.n++
	}
}

// admitRX counts and records a wire packet arriving and reports whether
// the NIC can receive it.
func (e *vnicEngine) admitRX(now time.Time, wp []byte) bool {
	e.rxWire.add(len(wp))
	e.n.opt.Capture.Wire(now, capture.In, wp, capture.Origin{})
	l2, _, ok := e.l2(wp)
	if !ok {
		e.rxDrops.Add(drop.EtherShort)
		return false
	}
	if len(wp)-l2 > e.hwMTU {
		e.rxDrops.Add(drop.RXExceedsHWMTU)
		return false
	}
	return true
}

// receive takes wire packets from a far end that is not a gVisor stack:
// copied into batches, GRO, the host.
func (e *vnicEngine) receive(pkts [][]byte, checked bool) {
	now := time.Now()
	e.copyIn(pkts, 0, checked, now)
	e.handoff(now)
	e.flushRX()
}

// output takes a gVisor stack's packets: this NIC's far end segments them
// (the far end's TSO) into receive batches, then GRO, the host.
func (e *vnicEngine) output(pkts []glink.Packet, checked bool) {
	now := time.Now()
	for i := range pkts {
		p := &pkts[i]
		l2, ip, ok := e.l2(p.Data)
		if !ok {
			e.farDrops.Add(drop.EtherShort)
			continue
		}
		if !ip {
			// ARP and the like from an Ethernet peer: as they are.
			e.rxOne[0] = p.Data
			e.copyIn(e.rxOne[:], 0, checked, now)
			e.rxOne[0] = nil
			continue
		}
		plan, err := segment.NewPlan(p.Hdr, p.Data, segment.Options{L2Len: l2})
		if err != nil {
			e.farDrops.Add(segment.Reason(err))
			continue
		}
		e.take(&plan, sender{}, 0, checked, now)
	}
	e.handoff(now)
	e.flushRX()
}

// flushRX adds the receive side's tallies to the stats.
func (e *vnicEngine) flushRX() {
	st := &e.n.st
	e.rxWire.flushTo(&st.wireIn)
	e.rxHost.flushTo(&st.hostRX)
	if e.rxMerged != 0 {
		st.hostRXMerged.Add(e.rxMerged)
		e.rxMerged = 0
	}
	st.drops[WireRX].Flush(&e.rxDrops)
	st.drops[FarTX].Flush(&e.farDrops)
	st.drops[HostRX].Flush(&e.hostDrop)
}

// handoff ends the producer's batch: GRO over it and into the host.
func (e *vnicEngine) handoff(now time.Time) {
	b := e.rx
	if b == nil || b.n == 0 {
		return
	}
	e.rx = nil
	b.now = now
	e.poll(b)
}

// poll runs GRO over one batch and writes the result into the host, then
// returns the batch to the free list.
func (e *vnicEngine) poll(b *rxBatch) {
	defer func() {
		for i := range b.n {
			b.bufs[i] = b.bufs[i][:cap(b.bufs[i])]
			b.partial[i] = 0
		}
		b.n = 0
		putBatch(b)
	}()
	e.rxMu.Lock()
	if on := e.groOn.Load(); on != e.groWasOn {
		e.gro.SetDisabled(!on)
		e.groWasOn = on
	}
	// A NIC that trusts every checksum (ModelRxCsumTrusting) skips
	// verifying as for packets a vnic segmenter just checksummed.
	if trust := b.checked || e.trusting.Load(); trust != e.trustOn {
		e.gro.SetTrustChecksums(trust)
		e.trustOn = trust
	}
	if mark := e.rxCsum.Load() || e.trusting.Load(); mark != e.markOn {
		e.gro.SetMarkValid(mark)
		e.markOn = mark
	}
	toWrite, err := e.gro.Coalesce(b.bufs[:b.n], e.hsz, e.rxToWrite[:0])
	e.rxMu.Unlock()
	if err != nil {
		// Only a layout mistake of ours; count, never crash.
		for range b.n {
			e.hostDrop.Add(drop.Internal)
		}
		return
	}
	e.rxToWrite = toWrite
	if cap(e.rxOut) < len(toWrite) {
		e.rxOut = make([][]byte, len(toWrite))
	}
	capt := e.n.opt.Capture
	trusting := e.trusting.Load()
	for k, i := range toWrite {
		f := b.bufs[i]
		var h virtio.Hdr
		_ = h.Decode(f[e.hsz-virtio.Size:]) // GRO's header, just before the packet
		pkt := f[e.hsz:]
		if h.GSOType == virtio.GSONone && b.partial[i] != 0 {
			completePartial(pkt, b.partial[i])
		}
		if h.GSOType == virtio.GSONone && h.Flags&virtio.FlagNeedsCsum == 0 && trusting {
			h = vouch(pkt, h)
			e.putHdr(f, h)
		} else if e.hsz != virtio.Size {
			e.putHdr(f, h)
		}
		e.rxHost.add(len(pkt))
		merged := 1
		if h.GSOType != virtio.GSONone {
			e.rxMerged++
			if h.GSOSize > 0 {
				merged = (len(pkt) - int(h.HdrLen) + int(h.GSOSize) - 1) / int(h.GSOSize)
			}
		}
		capt.HostRX(b.now, h, pkt, 0, merged)
		e.rxOut[k] = f
	}
	e.writeHost(e.rxOut[:len(toWrite)])
	clear(e.rxOut[:len(toWrite)])
}

// vouch is ModelRxCsumTrusting for a packet GRO hands on alone: the NIC
// tells the kernel the checksum needs no check. A TUN ignores DATA_VALID
// on write (the kernel verifies such a packet all the same), so the NIC
// says it the one way a TUN accepts: as a CHECKSUM_PARTIAL packet (virtio
// NEEDS_CSUM, the checksum field holding the pseudo-header sum), which
// the receiving kernel takes as locally checksummed and never verifies —
// the way GRO's merged packets already reach it. Packets that are not
// TCP or UDP, and fragments, are left as they are.
func vouch(pkt []byte, h virtio.Hdr) virtio.Hdr {
	p, err := packet.Parse(pkt)
	if err != nil || p.Frag || p.IPLen != len(pkt) || !(p.TCP() || p.UDP()) {
		return h
	}
	co := packet.TCPCsumOffset
	if p.UDP() {
		co = packet.UDPCsumOffset
	}
	binary.BigEndian.PutUint16(pkt[p.L4+co:], packet.PseudoSum(pkt, p.Proto, len(pkt)-p.L4))
	return virtio.Hdr{Flags: virtio.FlagNeedsCsum, CsumStart: uint16(p.L4), CsumOffset: uint16(co)}
}

// putHdr writes h as the frame's virtio header, in the NIC's header size
// (the 24-byte one with no tunnel offsets set: a TUN refuses tunnel
// frames on write anyway).
func (e *vnicEngine) putHdr(f []byte, h virtio.Hdr) {
	if e.hsz == virtio.SizeTunnel {
		ht := virtio.HdrTunnel{Hdr: h}
		_ = ht.Encode(f)
		return
	}
	_ = h.Encode(f)
}

// writeHost writes frames into the host, counting what is lost.
func (e *vnicEngine) writeHost(frames [][]byte) {
	written, err := e.n.dev.Write(frames, 0)
	if lost := len(frames) - written; lost > 0 {
		// A refusal by the kernel is counted by the TUN device itself
		// (its Stats, added in fill); count only what it does not.
		var de *tundev.DropError
		if errors.As(err, &de) {
			lost -= de.Total()
		}
		for range lost {
			e.hostDrop.Add(drop.TUNDown)
		}
	}
}

// completePartial completes the checksum segment left partial in pkt (p
// is its rxBatch.partial entry).
func completePartial(pkt []byte, p uint16) {
	co := packet.TCPCsumOffset
	if p&partialUDP != 0 {
		co = packet.UDPCsumOffset
	}
	segment.CompletePartial(pkt, int(p&^partialUDP), co)
}

// overflow holds wire buffers for a frame with more segments than the
// fixed buffers hold. A small MSS does that: with TCP_MAXSEG 88 a 64 KiB
// super-packet is 860 segments, and the kernel's own GSO sends them all.
// The buffers are carved on demand from one slab and kept for the next
// such frame.
type overflow struct {
	slab  []byte
	bufs  [][]byte
	sizes []int
}

// carve returns count buffers of offset+size bytes each.
func (o *overflow) carve(count, size, offset int) ([][]byte, []int) {
	size += offset
	if len(o.slab) < count*size {
		o.slab = make([]byte, count*size)
	}
	if len(o.bufs) < count {
		o.bufs = make([][]byte, count)
		o.sizes = make([]int, count)
	}
	for i := range count {
		o.bufs[i] = o.slab[i*size : (i+1)*size : (i+1)*size]
	}
	return o.bufs[:count], o.sizes[:count]
}
