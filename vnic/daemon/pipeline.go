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
	txPass   []byte // ModelTSOPassthrough: the super-packet going out whole

	// receive (wire → host), owned by the peer's output goroutine
	rxMu      sync.Mutex // guards gro against Stats() from the control socket
	gro       *coalesce.Engine
	groOn     atomic.Bool // the kernel's view: ethtool -k generic-receive-offload
	groWasOn  bool
	rxBufs    [][]byte // wire packets at rxBufs[i][virtio.Size:], room for a 64 KiB merge
	rxN       int
	rxOut     [][]byte // frames handed to dev.Write
	rxToWrite []int
	rxSeg     [][]byte
	rxSegSz   []int
	rxBig     overflow
	rxPkts    []peer.Packet // receive: wire packets from another NIC, as peer packets
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
	e.txFrames = make([][]byte, batch)
	for i := range e.txFrames {
		e.txFrames[i] = make([]byte, maxFrame)
	}
	e.txSizes = make([]int, batch)
	// Enough wire buffers for a batch of super-packets at the usual MSS;
	// a bigger fan-out (a small MSS) goes through txBig.
	const wireBufs = 512
	e.txWire = make([][]byte, wireBufs)
	for i := range e.txWire {
		e.txWire[i] = make([]byte, mtu)
	}
	e.txWSizes = make([]int, wireBufs)
	e.txInject = make([][]byte, wireBufs)

	e.gro = coalesce.New(coalesce.Options{UDP: true})
	e.groOn.Store(true)
	e.groWasOn = true
	const rxBufs = 128
	e.rxBufs = make([][]byte, rxBufs)
	for i := range e.rxBufs {
		e.rxBufs[i] = make([]byte, maxFrame)
	}
	e.rxOut = make([][]byte, rxBufs)
	e.rxToWrite = make([]int, 0, rxBufs)
	e.rxSeg = make([][]byte, rxBufs)
	e.rxSegSz = make([]int, rxBufs)
	return e
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
	for {
		n, err := e.dev.Read(e.txFrames, e.txSizes, 0)
		if err != nil {
			return err
		}
		now := time.Now()
		w := 0
		for i := 0; i < n; i++ {
			w = e.transmit(e.txFrames[i][:e.txSizes[i]], now, w)
		}
		e.inject(w)
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
	e.st.hostTX.add(len(pkt))
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
		e.st.wireOut.add(len(wp))
		e.cap.Wire(now, capture.Out, wp, capture.Origin{Kind: capture.FromHostTX, Super: id, Index: 0, Count: 1})
		e.txInject[0] = wp
		e.far.Inject(e.txInject[:1])
		return 0
	}
	if h.GSOType == virtio.GSONone && len(pkt) > e.hwMTU {
		h = cutTCP(h, pkt, e.hwMTU)
	}
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
				e.st.wireOut.add(len(bufs[i]))
				e.cap.Wire(now, capture.Out, bufs[i], capture.Origin{Kind: capture.FromHostTX, Super: id, Index: i, Count: n})
			}
			e.far.Inject(bufs[:n])
			return 0
		}
	}
	if err != nil {
		e.st.drop(segment.Reason(err))
		return w
	}
	for i := 0; i < n; i++ {
		wp := e.txWire[w+i][:e.txWSizes[w+i]]
		e.leavePartial(h, wp)
		e.st.wireOut.add(len(wp))
		e.cap.Wire(now, capture.Out, wp, capture.Origin{Kind: capture.FromHostTX, Super: id, Index: i, Count: n})
		e.txInject[w+i] = wp
	}
	return w + n
}

// completeChecksum completes a CHECKSUM_PARTIAL packet (NEEDS_CSUM: the
// field at csum_start+csum_offset holds the pseudo-header sum) as a NIC
// does.
func completeChecksum(pkt []byte, h virtio.Hdr) {
	if h.Flags&virtio.FlagNeedsCsum == 0 {
		return
	}
	cs, co := int(h.CsumStart), int(h.CsumOffset)
	if cs+co+2 > len(pkt) {
		return
	}
	binary.BigEndian.PutUint16(pkt[cs+co:], 0)
	binary.BigEndian.PutUint16(pkt[cs+co:], ^checksum.Checksum(pkt[cs:], pseudoSum(pkt, len(pkt)-cs)))
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

func (e *engine) inject(w int) {
	if w > 0 {
		e.far.Inject(e.txInject[:w])
	}
}

// output is the peer's Output: its NIC segments what the peer's stack
// sends (the peer's TSO), the wire carries it, and our NIC coalesces it
// (GRO) into frames for the host. It runs on the peer's single output
// goroutine.
func (e *engine) output(pkts []peer.Packet) {
	now := time.Now()
	for i := range pkts {
		p := &pkts[i]
		free := len(e.rxBufs) - e.rxN
		n, err := segment.Segment(p.Hdr, p.Data, e.rxBufs[e.rxN:], e.rxSegSz[:free], virtio.Size, segment.Options{})
		if errors.Is(err, segment.ErrTooManySegments) && e.rxN > 0 {
			e.flushRX(now)
			n, err = segment.Segment(p.Hdr, p.Data, e.rxBufs, e.rxSegSz, virtio.Size, segment.Options{})
		}
		if errors.Is(err, segment.ErrTooManySegments) {
			e.outputLarge(p, now)
			continue
		}
		if err != nil {
			e.st.dropPeer(segment.Reason(err))
			continue
		}
		k := e.rxN
		for j := 0; j < n; j++ {
			b := e.rxBufs[e.rxN+j][:virtio.Size+e.rxSegSz[j]]
			if !e.admitRX(now, b[virtio.Size:]) {
				continue
			}
			// Swap, not copy: every slot must keep its own buffer.
			if idx := e.rxN + j; idx != k {
				e.rxBufs[idx] = e.rxBufs[k]
			}
			e.rxBufs[k] = b
			k++
		}
		e.rxN = k
	}
	e.flushRX(now)
}

// receive takes wire packets (already segmented, checksums complete)
// from the far end of a direct wire into the NIC: GRO, then the host. Like
// output it must be called from one goroutine at a time.
func (e *engine) receive(pkts [][]byte) {
	if cap(e.rxPkts) < len(pkts) {
		e.rxPkts = make([]peer.Packet, len(pkts))
	}
	ps := e.rxPkts[:len(pkts)]
	for i, p := range pkts {
		ps[i] = peer.Packet{Data: p}
	}
	e.output(ps)
	clear(ps)
}

// admitRX counts and records a wire packet from the peer and reports
// whether the NIC can receive it.
func (e *engine) admitRX(now time.Time, wp []byte) bool {
	e.st.wireIn.add(len(wp))
	e.cap.Wire(now, capture.In, wp, capture.Origin{})
	if len(wp) > e.hwMTU {
		e.st.drop(DropRXOverHWMTU)
		return false
	}
	return true
}

// outputLarge takes a peer super-packet with more segments than rxBufs
// holds (a small MSS; rxBufs is empty here): it is segmented into overflow
// buffers, then copied into rxBufs a batch (one GRO poll) at a time.
func (e *engine) outputLarge(p *peer.Packet, now time.Time) {
	bufs, sizes := e.rxBig.carve(p.Hdr, len(p.Data), 0, 0)
	n, err := segment.Segment(p.Hdr, p.Data, bufs, sizes, 0, segment.Options{})
	if err != nil {
		e.st.dropPeer(segment.Reason(err))
		return
	}
	for j := 0; j < n; j++ {
		wp := bufs[j][:sizes[j]]
		if !e.admitRX(now, wp) {
			continue
		}
		if e.rxN == len(e.rxBufs) {
			e.flushRX(now)
		}
		b := e.rxBufs[e.rxN][:virtio.Size+len(wp)]
		copy(b[virtio.Size:], wp)
		e.rxBufs[e.rxN] = b
		e.rxN++
	}
}

// flushRX runs GRO over the queued wire packets (one NAPI poll) and
// writes the result into the host.
func (e *engine) flushRX(now time.Time) {
	if e.rxN == 0 {
		return
	}
	e.rxMu.Lock()
	if on := e.groOn.Load(); on != e.groWasOn {
		e.gro.SetDisabled(!on)
		e.groWasOn = on
	}
	toWrite, err := e.gro.Coalesce(e.rxBufs[:e.rxN], virtio.Size, e.rxToWrite[:0])
	e.rxMu.Unlock()
	if err != nil {
		// Only a layout mistake of ours; count, never crash.
		e.st.drop("other")
		e.resetRX()
		return
	}
	e.rxToWrite = toWrite
	for k, i := range toWrite {
		f := e.rxBufs[i]
		var h virtio.Hdr
		_ = h.Decode(f)
		pkt := f[virtio.Size:]
		e.st.hostRX.add(len(pkt))
		merged := 1
		if h.GSOType != virtio.GSONone {
			e.st.hostRXMerged.Add(1)
			if h.GSOSize > 0 {
				merged = (len(pkt) - int(h.HdrLen) + int(h.GSOSize) - 1) / int(h.GSOSize)
			}
		}
		e.cap.HostRX(now, h, pkt, 0, merged)
		e.rxOut[k] = f
	}
	written, err := e.dev.Write(e.rxOut[:len(toWrite)], 0)
	if err != nil || written < len(toWrite) {
		for range len(toWrite) - written {
			e.st.drop(DropTUNWrite)
		}
	}
	e.resetRX()
}

func (e *engine) resetRX() {
	for i := range e.rxN {
		e.rxBufs[i] = e.rxBufs[i][:cap(e.rxBufs[i])]
	}
	e.rxN = 0
}

func (e *engine) coalesceStats() *coalesce.Stats {
	e.rxMu.Lock()
	defer e.rxMu.Unlock()
	s := e.gro.Stats()
	return &s
}
