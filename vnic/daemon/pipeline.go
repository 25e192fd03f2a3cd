package daemon

import (
	"encoding/binary"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"

	"vnic/coalesce"
	"vnic/segment"
	"vnic/vnic/capture"
	"vnic/vnic/peer"
	"vnic/vnic/virtio"
)

// frameDev is the host side of the NIC: a TUN device with IFF_VNET_HDR.
// Every frame is a virtio_net_hdr followed by an IP packet.
type frameDev interface {
	// Read blocks until at least one frame is there, then reads up to
	// len(bufs) frames into bufs[i][offset:], lengths into sizes.
	Read(bufs [][]byte, sizes []int, offset int) (int, error)
	// Write writes each bufs[i][offset:] as one frame.
	Write(bufs [][]byte, offset int) (int, error)
}

// maxFrame is the largest frame a TUN with IFF_VNET_HDR hands over: the
// header and a 64 KiB IP packet.
const maxFrame = virtio.Size + 65535

// engine is vnic's NIC: TSO/USO with segment on the way out, GRO with
// coalesce on the way in, a capture at each point.
type engine struct {
	dev   frameDev
	far   WireEnd // the far end of the wire: the peer, another NIC, a wire.Wire
	cap   *capture.NIC
	st    *stats
	hwMTU int
	// the NIC model (labs; SetModel): passthrough is ModelTSOPassthrough,
	// noCsum ModelNoCsum, neither ModelStandard
	passthrough atomic.Bool
	noCsum      atomic.Bool

	// transmit (host → wire), owned by the tx goroutine
	txFrames [][]byte
	txSizes  []int
	txWire   [][]byte
	txWSizes []int
	txInject [][]byte
	txOpt    segment.Options
	txBig    overflow
	txMTU    int    // the size of each txWire buffer
	txPass   []byte // ModelTSOPassthrough: the super-packet going out whole
	txHost   tally  // hostTX, added once per batch
	txOut    tally  // wireOut
	// txChecked: every wire packet queued in txInject has a checksum
	// this NIC computed (segment completed a NEEDS_CSUM frame, standard
	// model), so a NIC on the far end of a direct wire need not verify
	// them again (checkedEnd).
	txChecked bool
	// direct is the far NIC's engine on a direct wire (directEnd), nil
	// otherwise.
	direct *engine

	// receive (wire → host), like a NIC's rx ring and its NAPI poll: the
	// producer — the peer's output goroutine, or on a direct wire the far
	// NIC's transmit loop — segments (the peer's TSO) or copies wire
	// packets into a batch (rx), and each full batch, and the last one,
	// goes through GRO into the host on the same goroutine (poll). Batches
	// come from rxBatchFree and go back after the poll, so an idle NIC
	// holds none. (Handing batches to a second goroutine to use both
	// cores was measured: 25–40 % more CPU per GB and slower, the cores
	// being busy with the applications and the kernel already.)
	rx      *rxBatch // the batch being filled (nil: none)
	rxWire  tally    // wireIn
	rxBig   overflow
	rxSegSz []int
	rxPkts  []peer.Packet // receive: wire packets from another NIC, as peer packets

	rxMu      sync.Mutex // guards gro against Stats() from the control socket
	gro       *coalesce.Engine
	groOn     atomic.Bool // the kernel's view: ethtool -k generic-receive-offload
	groWasOn  bool
	trustOn   bool // gro's TrustChecksums as last set
	rxOut     [][]byte
	rxToWrite []int
	rxHost    tally
}

// rxSlots is the size of a receive batch (one NAPI poll): about three
// 64 KiB super-packets of 1448-byte segments.
const rxSlots = 128

// rxBatch is one receive batch: wire packets at bufs[i][virtio.Size:],
// each buffer with room for a 64 KiB merge.
type rxBatch struct {
	bufs [][]byte
	n    int
	// partial[i], when not zero, says packet i's TCP/UDP checksum was left
	// partial by segment (Options.PartialChecksum): the L4 header's
	// offset, plus 1<<15 for UDP. GRO merges such packets as any other
	// (its output is CHECKSUM_PARTIAL anyway); one it hands on alone gets
	// its checksum completed first (completePartial).
	partial []uint16
	now     time.Time
	// checked: every packet's checksum was computed by a vnic segmenter
	// on its way here (the peer's NIC, or a standard-model NIC on a
	// direct wire), so GRO need not verify it again.
	checked bool
}

// rxBatchFree holds idle receive batches (8 MiB each) for every NIC of
// the process: a bounded free list rather than a sync.Pool, which drops
// its batches at every garbage collection and so made the process
// allocate 8 MiB again and again under load (the soak test saw the heap
// swing between 17 and 48 MiB). A NIC takes a batch for a burst and gives
// it back after the poll, so idle NICs hold none; beyond rxBatchFreeMax
// idle batches the garbage collector gets them.
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

// WireEnd is the far end of a NIC's wire: whatever takes the wire-size
// packets its transmit side puts on the cable. A *peer.Peer (the gVisor
// host), another NIC's receive side (*NIC), a router interface, or a
// wire.Wire with impairments in between (InjectFunc(w.Send)) all fit.
// Inject must not keep pkts (nor their buffers) after it returns.
type WireEnd interface {
	Inject(pkts [][]byte)
}

// InjectFunc makes a function a WireEnd.
type InjectFunc func(pkts [][]byte)

// Inject calls f.
func (f InjectFunc) Inject(pkts [][]byte) { f(pkts) }

// overflow holds wire buffers for a super-packet with more segments than
// the fixed buffers hold. A small MSS does that: with TCP_MAXSEG 88 a
// 64 KiB super-packet is 860 segments, and the kernel's own GSO sends them
// all. The buffers are carved on demand from one slab, each just big
// enough for its segment, and kept for the next such packet.
type overflow struct {
	slab  []byte
	bufs  [][]byte
	sizes []int
}

// carve returns enough buffers for every segment of the n-byte
// super-packet h describes, each of at most maxPacket bytes (segment's
// MaxPacket; 0 for none), after offset bytes of headroom.
func (o *overflow) carve(h virtio.Hdr, n, offset, maxPacket int) ([][]byte, []int) {
	if maxPacket <= 0 {
		maxPacket = maxFrame
	}
	// The headers copied in front of each segment: with NEEDS_CSUM the L4
	// header starts at csum_start (segment checks it) and TCP's is at
	// most 60 bytes; without, they are bounded only by the packet.
	hdr := n
	if h.Flags&virtio.FlagNeedsCsum != 0 {
		hdr = int(h.CsumStart) + 60
	}
	gso := max(int(h.GSOSize), 1)
	mss := max(min(gso, maxPacket-hdr), 1) // the smallest payload per segment
	count := (n + mss - 1) / mss
	size := offset + min(maxPacket, hdr+gso)
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

func newEngine(dev frameDev, far WireEnd, c *capture.NIC, st *stats, batch, mtu, hwMTU int) *engine {
	e := &engine{dev: dev, far: far, cap: c, st: st, hwMTU: hwMTU}
	e.txOpt = segment.Options{MaxPacket: hwMTU}
	// Frame buffers are added as reads fill them (growFrames): an idle
	// NIC holds txFramesMin of them, a busy one up to batch.
	e.txFrames = make([][]byte, 0, batch)
	e.growFrames(txFramesMin)
	e.txSizes = make([]int, batch)
	// Enough wire buffers for a batch of super-packets at the usual MSS
	// (one slab, taken on the first frame that needs them: a NIC on a
	// direct wire segments into the far NIC's batch instead); a bigger
	// fan-out (a small MSS) goes through txBig.
	e.txWire = make([][]byte, wireBufs)
	e.txMTU = mtu
	e.txWSizes = make([]int, wireBufs)
	e.txInject = make([][]byte, wireBufs)

	e.gro = coalesce.New(coalesce.Options{UDP: true})
	e.groOn.Store(true)
	e.groWasOn = true
	e.rxOut = make([][]byte, rxSlots)
	e.rxToWrite = make([]int, 0, rxSlots)
	e.rxSegSz = make([]int, rxSlots)
	return e
}

const (
	wireBufs    = 512
	txFramesMin = 4
)

// growFrames adds frame buffers up to n (at most the batch).
func (e *engine) growFrames(n int) {
	for len(e.txFrames) < min(n, cap(e.txFrames)) {
		e.txFrames = append(e.txFrames, make([]byte, maxFrame))
	}
}

// wireBuffers allocates txWire's buffers on first use.
func (e *engine) wireBuffers() {
	if e.txWire[0] != nil {
		return
	}
	slab := make([]byte, wireBufs*e.txMTU)
	for i := range e.txWire {
		e.txWire[i] = slab[i*e.txMTU : (i+1)*e.txMTU : (i+1)*e.txMTU]
	}
}

// setModel switches the NIC model (ModelStandard, ModelTSOPassthrough or
// ModelNoCsum; "" is ModelStandard); it takes effect with the next frame.
func (e *engine) setModel(m string) {
	e.passthrough.Store(m == ModelTSOPassthrough)
	e.noCsum.Store(m == ModelNoCsum)
}

// setGRO follows the kernel's feature flag (ethtool -K dev gro on|off).
func (e *engine) setGRO(on bool) { e.groOn.Store(on) }

// txLoop moves frames from the host to the wire until the device fails
// (closed on shutdown).
func (e *engine) txLoop() error {
	if d, ok := e.far.(directEnd); ok {
		e.direct = d.rxEngine()
	}
	for {
		n, err := e.dev.Read(e.txFrames, e.txSizes, 0)
		if err != nil {
			return err
		}
		if n == len(e.txFrames) {
			// The kernel had more queued than there were buffers.
			e.growFrames(2 * n)
		}
		now := time.Now()
		w := 0
		e.txChecked = !e.noCsum.Load()
		for i := 0; i < n; i++ {
			w = e.transmit(e.txFrames[i][:e.txSizes[i]], now, w)
		}
		e.inject(w)
		if d := e.direct; d != nil {
			d.handoff(now)
			d.rxWire.flushTo(&d.st.wireIn)
		}
		e.txHost.flushTo(&e.st.hostTX)
		e.txOut.flushTo(&e.st.wireOut)
	}
}

// transmit segments one frame into txWire[w:], sending what is queued
// first when it does not fit, and returns the new fill level.
func (e *engine) transmit(frame []byte, now time.Time, w int) int {
	var h virtio.Hdr
	if err := h.Decode(frame); err != nil {
		e.st.drop(DropShortFrame)
		return w
	}
	pkt := frame[virtio.Size:]
	e.txHost.add(len(pkt))
	if h.Flags&virtio.FlagNeedsCsum == 0 {
		// The kernel's own checksum (or none): the far NIC checks it.
		e.txChecked = false
	}
	if h.GSOType != virtio.GSONone {
		e.st.hostTXSuper.Add(1)
	}
	id := e.cap.HostTX(now, h, pkt)
	if e.passthrough.Load() && h.GSOType != virtio.GSONone {
		// Between VMs nothing segments: the super-packet goes on the wire
		// whole, checksum completed (wire buffers are MTU-sized, so it
		// goes out on its own).
		e.inject(w)
		if cap(e.txPass) < len(pkt) {
			e.txPass = make([]byte, maxFrame)
		}
		wp := e.txPass[:len(pkt)]
		copy(wp, pkt)
		completeChecksum(wp, h)
		e.txOut.add(len(wp))
		e.cap.Wire(now, capture.Out, wp, capture.Origin{Kind: capture.FromHostTX, Super: id, Index: 0, Count: 1})
		e.txInject[0] = wp
		e.inject(1)
		e.txChecked = !e.noCsum.Load()
		return 0
	}
	if h.GSOType == virtio.GSONone && len(pkt) > e.hwMTU {
		h = cutTCP(h, pkt, e.hwMTU)
	}
	if e.direct != nil && e.transmitDirect(h, pkt, id, now) {
		return w
	}
	e.wireBuffers()
	n, err := segment.Segment(h, pkt, e.txWire[w:], e.txWSizes[w:], 0, e.txOpt)
	if errors.Is(err, segment.ErrTooManySegments) && w > 0 {
		e.inject(w)
		w = 0
		n, err = segment.Segment(h, pkt, e.txWire, e.txWSizes, 0, e.txOpt)
	}
	if errors.Is(err, segment.ErrTooManySegments) {
		// More segments than txWire holds (w is 0 here): a small MSS.
		bufs, sizes := e.txBig.carve(h, len(pkt), 0, e.hwMTU)
		if n, err = segment.Segment(h, pkt, bufs, sizes, 0, e.txOpt); err == nil {
			for i := 0; i < n; i++ {
				bufs[i] = bufs[i][:sizes[i]]
				e.leavePartial(h, bufs[i])
				e.txOut.add(len(bufs[i]))
				e.cap.Wire(now, capture.Out, bufs[i], capture.Origin{Kind: capture.FromHostTX, Super: id, Index: i, Count: n})
			}
			e.injectBufs(bufs[:n])
			e.txChecked = !e.noCsum.Load()
			return 0
		}
	}
	if err != nil {
		e.st.drop(segment.Reason(err).String())
		return w
	}
	for i := 0; i < n; i++ {
		wp := e.txWire[w+i][:e.txWSizes[w+i]]
		e.leavePartial(h, wp)
		e.txOut.add(len(wp))
		e.cap.Wire(now, capture.Out, wp, capture.Origin{Kind: capture.FromHostTX, Super: id, Index: i, Count: n})
		e.txInject[w+i] = wp
	}
	return w + n
}

// directEnd is a WireEnd whose receive side is a vnic engine in this
// process (another NIC on a direct wire): the transmitting NIC segments
// straight into its receive batch, where the wire packets would have been
// copied anyway.
type directEnd interface {
	rxEngine() *engine
}

// transmitDirect segments the frame straight into the receive batch of
// the NIC at the far end of a direct wire (e.direct), with everything the
// two NICs do in between: this NIC's wire capture and counters, the far
// NIC's wire capture, counters and hardware MTU. It reports false, having
// done nothing, for a frame of more segments than a batch holds (a small
// MSS), which takes the ordinary path.
func (e *engine) transmitDirect(h virtio.Hdr, pkt []byte, id uint64, now time.Time) bool {
	d := e.direct
	checked := h.Flags&virtio.FlagNeedsCsum != 0 && !e.noCsum.Load()
	// Nobody looks at these wire packets' checksums unless a capture
	// records them or GRO leaves them unmerged: leave them partial and
	// complete only those (poll). The checksum is a function of the
	// bytes; what the host sees is the same.
	opt := e.txOpt
	var partial uint16
	if checked && e.cap == nil && d.cap == nil && (h.CsumOffset == 16 || h.CsumOffset == 6) {
		opt.PartialChecksum = true
		partial = h.CsumStart
		if h.CsumOffset == 6 {
			partial |= partialUDP
		}
	}
	b := d.batch(checked)
	if b.n > 0 && h.GSOType != virtio.GSONone && h.GSOSize > 0 && len(pkt)/int(h.GSOSize)+1 > rxSlots-b.n {
		// Likely more segments than the batch has room for: end the
		// batch first rather than have segment refuse.
		d.handoff(now)
		b = d.batch(checked)
	}
	sizes := e.txWSizes[:rxSlots]
	n, err := segment.Segment(h, pkt, b.bufs[b.n:], sizes[:rxSlots-b.n], virtio.Size, opt)
	if errors.Is(err, segment.ErrTooManySegments) && b.n > 0 {
		d.handoff(now)
		b = d.batch(checked)
		n, err = segment.Segment(h, pkt, b.bufs, sizes, virtio.Size, opt)
	}
	if errors.Is(err, segment.ErrTooManySegments) {
		return false
	}
	if err != nil {
		e.st.drop(segment.Reason(err).String())
		return true
	}
	for i := 0; i < n; i++ {
		wp := b.bufs[b.n+i][virtio.Size : virtio.Size+sizes[i]]
		e.leavePartial(h, wp)
		e.txOut.add(len(wp))
		e.cap.Wire(now, capture.Out, wp, capture.Origin{Kind: capture.FromHostTX, Super: id, Index: i, Count: n})
	}
	d.admit(b, now, n, sizes, partial)
	return true
}

// admit receives the n wire packets just written after the batch's last
// (packet i at b.bufs[b.n+i][virtio.Size:], sizes[i] bytes): each is
// counted and recorded on the wire, and those the NIC can take join the
// batch with their partial-checksum mark.
func (e *engine) admit(b *rxBatch, now time.Time, n int, sizes []int, partial uint16) {
	k := b.n
	for i := 0; i < n; i++ {
		buf := b.bufs[b.n+i][:virtio.Size+sizes[i]]
		if !e.admitRX(now, buf[virtio.Size:]) {
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

// partialUDP marks a UDP packet in rxBatch.partial.
const partialUDP = 1 << 15

// completePartial completes the checksum segment left partial in pkt (p
// is its rxBatch.partial entry).
func completePartial(pkt []byte, p uint16) {
	co := 16
	if p&partialUDP != 0 {
		co = 6
	}
	segment.CompletePartial(pkt, int(p&^partialUDP), co)
}

// completeChecksum completes a CHECKSUM_PARTIAL packet (NEEDS_CSUM: the
// field at csum_start+csum_offset holds the pseudo-header sum) as a NIC
// does.
func completeChecksum(pkt []byte, h virtio.Hdr) {
	if h.Flags&virtio.FlagNeedsCsum != 0 {
		segment.CompleteChecksum(pkt, int(h.CsumStart), int(h.CsumOffset))
	}
}

// leavePartial is ModelNoCsum: a wire packet cut from a frame the kernel
// left to the NIC to checksum (NEEDS_CSUM) goes out with only the
// pseudo-header sum in its TCP/UDP checksum field, as the kernel wrote it
// (uncomplemented), instead of the complete checksum: the receiver drops
// it. Packets the kernel checksummed itself pass unchanged.
func (e *engine) leavePartial(h virtio.Hdr, wp []byte) {
	if !e.noCsum.Load() || h.Flags&virtio.FlagNeedsCsum == 0 {
		return
	}
	cs, co := int(h.CsumStart), int(h.CsumOffset)
	if cs+co+2 > len(wp) {
		return
	}
	binary.BigEndian.PutUint16(wp[cs+co:], pseudoSum(wp, len(wp)-cs))
}

// pseudoSum is the folded, uncomplemented TCP/UDP pseudo-header sum of the
// IP packet pkt for an L4 length of l4len (0 for what is not IPv4/IPv6).
func pseudoSum(pkt []byte, l4len int) uint16 {
	var b [40]byte
	switch {
	case len(pkt) >= 20 && pkt[0]>>4 == 4:
		copy(b[0:8], pkt[12:20])
		b[9] = pkt[9]
		binary.BigEndian.PutUint16(b[10:], uint16(l4len))
		return checksum.Checksum(b[:12], 0)
	case len(pkt) >= 40 && pkt[0]>>4 == 6:
		copy(b[0:32], pkt[8:40])
		binary.BigEndian.PutUint32(b[32:], uint32(l4len))
		b[39] = l4Proto6(pkt)
		return checksum.Checksum(b[:40], 0)
	}
	return 0
}

// l4Proto6 is the upper-layer protocol of an IPv6 packet: the next header,
// skipping hop-by-hop, routing and destination options headers.
func l4Proto6(pkt []byte) uint8 {
	nh, off := pkt[6], 40
	for (nh == 0 || nh == 43 || nh == 60) && off+8 <= len(pkt) {
		nh, off = pkt[off], off+(int(pkt[off+1])+1)*8
	}
	return nh
}

// cutTCP is the forcedeth NIC's TSO (Config.HWMTU below the MTU) for a
// TCP packet the kernel did not mark GSO: a single segment of the MTU's
// MSS, larger than the hardware MTU, is cut to fit like a super-packet.
// It returns h with a TCP gso type and the gso_size that fills hwMTU, or h
// unchanged for anything else (which segment then drops as too big).
func cutTCP(h virtio.Hdr, pkt []byte, hwMTU int) virtio.Hdr {
	var l4 int
	var gso uint8
	switch {
	case len(pkt) >= 20 && pkt[0]>>4 == 4 && pkt[9] == 6 && binary.BigEndian.Uint16(pkt[6:])&0x3fff == 0:
		l4, gso = int(pkt[0]&0xf)*4, virtio.GSOTCPv4 // TCP, not a fragment
	case len(pkt) >= 40 && pkt[0]>>4 == 6 && pkt[6] == 6:
		l4, gso = 40, virtio.GSOTCPv6
	default:
		return h
	}
	if l4+20 > len(pkt) {
		return h
	}
	hdrLen := l4 + int(pkt[l4+12]>>4)*4
	if hdrLen >= hwMTU || hdrLen > len(pkt) {
		return h
	}
	h.GSOType, h.GSOSize = gso, uint16(hwMTU-hdrLen)
	return h
}

// checkedEnd is a WireEnd that can skip verifying checksums the sending
// NIC computed itself: another NIC's receive side on a direct wire.
type checkedEnd interface {
	injectChecked(pkts [][]byte)
}

// inject puts txInject[:w] on the wire.
func (e *engine) inject(w int) {
	if w > 0 {
		e.injectBufs(e.txInject[:w])
	}
}

func (e *engine) injectBufs(pkts [][]byte) {
	if c, ok := e.far.(checkedEnd); ok && e.txChecked {
		c.injectChecked(pkts)
		return
	}
	e.far.Inject(pkts)
}

// output is the peer's Output: its NIC segments what the peer's stack
// sends (the peer's TSO), the wire carries it, and our NIC coalesces it
// (GRO) into frames for the host. It runs on the peer's single output
// goroutine. The daemon's peer's packets are checksummed by gVisor or by
// segment, with nothing on the wire in between to corrupt them, so GRO
// trusts them (a lab NIC's Output, which may carry a router's forwarded
// packets, does not: NIC.Output).
func (e *engine) output(pkts []peer.Packet) { e.fill(pkts, true) }

// fill segments or copies packets into receive batches (the producer
// half) and hands each full batch, and the last one, to the rx goroutine.
func (e *engine) fill(pkts []peer.Packet, checked bool) {
	now := time.Now()
	for i := range pkts {
		p := &pkts[i]
		b := e.batch(checked)
		if b.n > 0 && p.Hdr.GSOType != virtio.GSONone && p.Hdr.GSOSize > 0 && len(p.Data)/int(p.Hdr.GSOSize)+1 > rxSlots-b.n {
			// Likely more segments than the batch has room for.
			e.handoff(now)
			b = e.batch(checked)
		}
		n, err := segment.Segment(p.Hdr, p.Data, b.bufs[b.n:], e.rxSegSz[:rxSlots-b.n], virtio.Size, segment.Options{})
		if errors.Is(err, segment.ErrTooManySegments) && b.n > 0 {
			e.handoff(now)
			b = e.batch(checked)
			n, err = segment.Segment(p.Hdr, p.Data, b.bufs, e.rxSegSz, virtio.Size, segment.Options{})
		}
		if errors.Is(err, segment.ErrTooManySegments) {
			e.outputLarge(p, now, checked)
			continue
		}
		if err != nil {
			e.st.dropPeer(segment.Reason(err).String())
			continue
		}
		e.admit(b, now, n, e.rxSegSz, 0)
	}
	e.handoff(now)
	e.rxWire.flushTo(&e.st.wireIn)
}

// batch returns the producer's current receive batch, taking one from the
// pool if there is none; checked false marks it as needing checksum
// verification.
func (e *engine) batch(checked bool) *rxBatch {
	if e.rx == nil {
		e.rx = getBatch()
		e.rx.checked = true
	}
	e.rx.checked = e.rx.checked && checked
	return e.rx
}

// receive takes wire packets from the far end of a direct wire or a
// wire.Wire (complete IP packets; their checksums are verified by GRO, as
// a NIC's rx-checksumming would) into the NIC: GRO, then the host. Like
// output it must be called from one goroutine at a time.
func (e *engine) receive(pkts [][]byte) { e.receiveFrom(pkts, false) }

// injectChecked is receive for packets another vnic NIC segmented and
// checksummed itself, handed over directly (checkedEnd).
func (e *engine) injectChecked(pkts [][]byte) { e.receiveFrom(pkts, true) }

func (e *engine) receiveFrom(pkts [][]byte, checked bool) {
	if cap(e.rxPkts) < len(pkts) {
		e.rxPkts = make([]peer.Packet, len(pkts))
	}
	ps := e.rxPkts[:len(pkts)]
	for i, p := range pkts {
		ps[i] = peer.Packet{Data: p}
	}
	e.fill(ps, checked)
	clear(ps)
}

// admitRX counts and records a wire packet from the peer and reports
// whether the NIC can receive it.
func (e *engine) admitRX(now time.Time, wp []byte) bool {
	e.rxWire.add(len(wp))
	e.cap.Wire(now, capture.In, wp, capture.Origin{})
	if len(wp) > e.hwMTU {
		e.st.drop(DropRXOverHWMTU)
		return false
	}
	return true
}

// outputLarge takes a super-packet with more segments than a batch
// holds (a small MSS; the current batch is empty here): it is segmented
// into overflow buffers, then copied into batches.
func (e *engine) outputLarge(p *peer.Packet, now time.Time, checked bool) {
	bufs, sizes := e.rxBig.carve(p.Hdr, len(p.Data), 0, 0)
	n, err := segment.Segment(p.Hdr, p.Data, bufs, sizes, 0, segment.Options{})
	if err != nil {
		e.st.dropPeer(segment.Reason(err).String())
		return
	}
	for j := 0; j < n; j++ {
		wp := bufs[j][:sizes[j]]
		if !e.admitRX(now, wp) {
			continue
		}
		b := e.batch(checked)
		if b.n == rxSlots {
			e.handoff(now)
			b = e.batch(checked)
		}
		buf := b.bufs[b.n][:virtio.Size+len(wp)]
		copy(buf[virtio.Size:], wp)
		b.bufs[b.n] = buf
		b.partial[b.n] = 0
		b.n++
	}
}

// handoff ends the producer's batch: GRO over it and into the host.
func (e *engine) handoff(now time.Time) {
	b := e.rx
	if b == nil || b.n == 0 {
		return
	}
	e.rx = nil
	b.now = now
	e.poll(b)
}

// poll runs GRO over one batch and writes the result into the host, then
// returns the batch to the pool.
func (e *engine) poll(b *rxBatch) {
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
	if b.checked != e.trustOn {
		e.gro.SetTrustChecksums(b.checked)
		e.trustOn = b.checked
	}
	toWrite, err := e.gro.Coalesce(b.bufs[:b.n], virtio.Size, e.rxToWrite[:0])
	e.rxMu.Unlock()
	if err != nil {
		// Only a layout mistake of ours; count, never crash.
		e.st.drop("other")
		return
	}
	e.rxToWrite = toWrite
	if cap(e.rxOut) < len(toWrite) {
		e.rxOut = make([][]byte, len(toWrite))
	}
	for k, i := range toWrite {
		f := b.bufs[i]
		var h virtio.Hdr
		_ = h.Decode(f)
		pkt := f[virtio.Size:]
		if h.GSOType == virtio.GSONone && b.partial[i] != 0 {
			completePartial(pkt, b.partial[i])
		}
		e.rxHost.add(len(pkt))
		merged := 1
		if h.GSOType != virtio.GSONone {
			e.st.hostRXMerged.Add(1)
			if h.GSOSize > 0 {
				merged = (len(pkt) - int(h.HdrLen) + int(h.GSOSize) - 1) / int(h.GSOSize)
			}
		}
		e.cap.HostRX(b.now, h, pkt, 0, merged)
		e.rxOut[k] = f
	}
	e.rxHost.flushTo(&e.st.hostRX)
	written, err := e.dev.Write(e.rxOut[:len(toWrite)], 0)
	if err != nil || written < len(toWrite) {
		for range len(toWrite) - written {
			e.st.drop(DropTUNWrite)
		}
	}
	clear(e.rxOut[:len(toWrite)])
}

func (e *engine) coalesceStats() *coalesce.Stats {
	e.rxMu.Lock()
	defer e.rxMu.Unlock()
	s := e.gro.Stats()
	return &s
}
