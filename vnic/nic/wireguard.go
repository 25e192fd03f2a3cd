package nic

import (
	"errors"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/tun"

	"vnic/segment"
	"vnic/vnic/capture"
	"vnic/vnic/drop"
	"vnic/vnic/glink"
	"vnic/vnic/virtio"
)

// wgEngine is the reference engine: wireguard-go's tun package, which
// splits the kernel's super-packets itself on Read (gsoSplit) and
// coalesces on Write (handleGRO). The host-tx and host-rx views are inside
// wireguard-go: not counted, not recorded; the wire is.
type wgEngine struct {
	n *NIC

	txBufs  [][]byte
	txSizes []int
	txPkts  [][]byte
	txOut   tally
	txDrops drop.Counts

	rxBufs   [][]byte
	rxSizes  []int
	rxN      int
	rxBig    overflow
	rxWire   tally
	farDrops drop.Counts
	hostDrop drop.Counts
	groOn    atomic.Bool
}

// wgOffset is the headroom wireguard-go's Read and Write want in front of
// each packet for the virtio header.
const wgOffset = virtio.Size

// wgUncounted is what the wireguard engine cannot count or record.
var wgUncounted = []string{"host_tx", "host_rx", "host_tx capture", "host_rx capture"}

func newWGEngine(n *NIC) *wgEngine {
	e := &wgEngine{n: n}
	e.groOn.Store(true)
	// gsoSplit needs one buffer per segment of the largest super-packet.
	const bufs = 256
	e.txBufs = make([][]byte, bufs)
	for i := range e.txBufs {
		e.txBufs[i] = make([]byte, wgOffset+65535)
	}
	e.txSizes = make([]int, bufs)
	e.txPkts = make([][]byte, bufs)
	e.rxBufs = make([][]byte, rxSlots)
	for i := range e.rxBufs {
		e.rxBufs[i] = make([]byte, wgOffset+65535)
	}
	e.rxSizes = make([]int, len(e.rxBufs))
	return e
}

func (e *wgEngine) setGRO(on bool) { e.groOn.Store(on) }
func (e *wgEngine) setModel(Model) {}
func (e *wgEngine) setRxCsum(bool) {}
func (e *wgEngine) fill(s *Stats) {
	s.GRO = e.groOn.Load()
	s.Uncounted = wgUncounted
}

func (e *wgEngine) txLoop() error {
	st := &e.n.st
	for {
		cnt, err := e.n.dev.Read(e.txBufs, e.txSizes, wgOffset)
		if err != nil {
			if errors.Is(err, tun.ErrTooManySegments) {
				e.txDrops.Add(drop.TooManySegments)
				st.drops[HostTX].Flush(&e.txDrops)
				continue
			}
			return err
		}
		now := time.Now()
		for i := 0; i < cnt; i++ {
			p := e.txBufs[i][wgOffset : wgOffset+e.txSizes[i]]
			e.txOut.add(len(p))
			e.n.opt.Capture.Wire(now, capture.Out, p, capture.Origin{})
			e.txPkts[i] = p
		}
		e.n.far.Inject(e.txPkts[:cnt])
		clear(e.txPkts[:cnt])
		e.txOut.flushTo(&st.wireOut)
	}
}

// output segments what a gVisor stack sends (the far end's NIC does TSO)
// and hands the wire packets to wireguard-go's Write, whose GRO coalesces
// them.
func (e *wgEngine) output(pkts []glink.Packet, _ bool) {
	now := time.Now()
	for i := range pkts {
		p := &pkts[i]
		plan, err := segment.NewPlan(p.Hdr, p.Data, segment.Options{})
		if err != nil {
			e.farDrops.Add(segment.Reason(err))
			continue
		}
		k := plan.Segments()
		if k > len(e.rxBufs)-e.rxN {
			e.flush()
		}
		if k > len(e.rxBufs) {
			bufs, sizes := e.rxBig.carve(k, plan.MaxSize(), 0)
			c, err := plan.Cut(bufs, sizes, 0)
			if err != nil {
				e.farDrops.Add(segment.Reason(err))
				continue
			}
			for j := range c {
				e.copyIn(bufs[j][:sizes[j]], now)
			}
			continue
		}
		c, err := plan.Cut(e.rxBufs[e.rxN:], e.rxSizes[e.rxN:], wgOffset)
		if err != nil {
			e.farDrops.Add(segment.Reason(err))
			continue
		}
		for j := 0; j < c; j++ {
			b := e.rxBufs[e.rxN+j][:wgOffset+e.rxSizes[e.rxN+j]]
			e.rxWire.add(len(b) - wgOffset)
			e.n.opt.Capture.Wire(now, capture.In, b[wgOffset:], capture.Origin{})
			e.rxBufs[e.rxN+j] = b
		}
		e.rxN += c
	}
	e.flush()
}

// receive takes wire packets from the far end: copied into the receive
// buffers and handed to wireguard-go's Write, whose GRO coalesces them.
func (e *wgEngine) receive(pkts [][]byte, _ bool) {
	now := time.Now()
	for _, wp := range pkts {
		e.copyIn(wp, now)
	}
	e.flush()
}

func (e *wgEngine) copyIn(wp []byte, now time.Time) {
	e.rxWire.add(len(wp))
	e.n.opt.Capture.Wire(now, capture.In, wp, capture.Origin{})
	if e.rxN == len(e.rxBufs) {
		e.flush()
	}
	b := e.rxBufs[e.rxN][:wgOffset+len(wp)]
	copy(b[wgOffset:], wp)
	e.rxBufs[e.rxN] = b
	e.rxN++
}

func (e *wgEngine) flush() {
	st := &e.n.st
	defer func() {
		e.rxWire.flushTo(&st.wireIn)
		st.drops[FarTX].Flush(&e.farDrops)
		st.drops[HostRX].Flush(&e.hostDrop)
	}()
	if e.rxN == 0 {
		return
	}
	bufs := e.rxBufs[:e.rxN]
	if !e.groOn.Load() {
		// wireguard-go has no GRO switch: write one packet at a time so
		// that its GRO has nothing to merge.
		for i := range bufs {
			e.write(bufs[i : i+1])
		}
	} else {
		e.write(bufs)
	}
	for i := range bufs {
		bufs[i] = bufs[i][:cap(bufs[i])]
	}
	e.rxN = 0
}

// write hands wire packets to wireguard-go. What its GRO makes of them is
// not visible from here, so host_rx stays 0 for this engine.
func (e *wgEngine) write(bufs [][]byte) {
	if _, err := e.n.dev.Write(bufs, wgOffset); err != nil {
		e.hostDrop.Add(drop.TUNInvalid)
	}
}
