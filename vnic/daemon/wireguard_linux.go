package daemon

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/tun"

	"vnic/segment"
	"vnic/vnic/capture"
	"vnic/vnic/peer"
	"vnic/vnic/virtio"
)

// wgNIC is the reference engine: wireguard-go's tun package, which splits
// the kernel's super-packets itself on Read (gsoSplit) and coalesces on
// Write (handleGRO). The host-tx and host-rx views are inside wireguard-go
// and not recorded; the wire is.
type wgNIC struct {
	dev tun.Device
	far WireEnd // the peer, or another NIC on a direct wire
	cap *capture.NIC
	st  *stats

	txBufs   [][]byte
	txSizes  []int
	txInject [][]byte

	rxBufs  [][]byte
	rxSizes []int
	rxN     int
	rxBig   overflow
	groOn   atomic.Bool
}

// wgOffset is the headroom wireguard-go's Read and Write want in front of
// each packet for the virtio header.
const wgOffset = virtio.Size

func openWireGuard(name string, mtu int, st *stats) (*wgNIC, error) {
	dev, err := tun.CreateTUN(name, mtu)
	if err != nil {
		return nil, fmt.Errorf("wireguard-go CreateTUN(%q): %w", name, err)
	}
	n := &wgNIC{dev: dev, st: st}
	n.groOn.Store(true)
	// gsoSplit needs one buffer per segment of the largest super-packet.
	const bufs = 256
	n.txBufs = make([][]byte, bufs)
	for i := range n.txBufs {
		n.txBufs[i] = make([]byte, wgOffset+65535)
	}
	n.txSizes = make([]int, bufs)
	n.txInject = make([][]byte, bufs)
	n.rxBufs = make([][]byte, 128)
	for i := range n.rxBufs {
		n.rxBufs[i] = make([]byte, wgOffset+65535)
	}
	n.rxSizes = make([]int, len(n.rxBufs))
	return n, nil
}

func (n *wgNIC) close() error { return n.dev.Close() }
func (n *wgNIC) grantedOffloads() string {
	return "csum|tso4|tso6 (+uso4|uso6 when the kernel has them), negotiated by wireguard-go"
}
func (n *wgNIC) setGRO(on bool) { n.groOn.Store(on) }
func (n *wgNIC) stats(s *Stats) { s.GRO = n.groOn.Load() }

func (n *wgNIC) txLoop() error {
	for {
		cnt, err := n.dev.Read(n.txBufs, n.txSizes, wgOffset)
		if err != nil {
			if errors.Is(err, tun.ErrTooManySegments) {
				n.st.drop("too_many_segments")
				continue
			}
			return err
		}
		now := time.Now()
		for i := 0; i < cnt; i++ {
			p := n.txBufs[i][wgOffset : wgOffset+n.txSizes[i]]
			n.st.wireOut.add(len(p))
			n.cap.Wire(now, capture.Out, p, capture.Origin{})
			n.txInject[i] = p
		}
		n.far.Inject(n.txInject[:cnt])
	}
}

// output segments what the peer sends (the peer's NIC does TSO) and hands
// the wire packets to wireguard-go's Write, whose GRO coalesces them.
func (n *wgNIC) output(pkts []peer.Packet) {
	now := time.Now()
	for i := range pkts {
		p := &pkts[i]
		free := len(n.rxBufs) - n.rxN
		c, err := segment.Segment(p.Hdr, p.Data, n.rxBufs[n.rxN:], n.rxSizes[:free], wgOffset, segment.Options{})
		if errors.Is(err, segment.ErrTooManySegments) && n.rxN > 0 {
			n.flush()
			c, err = segment.Segment(p.Hdr, p.Data, n.rxBufs, n.rxSizes, wgOffset, segment.Options{})
		}
		if errors.Is(err, segment.ErrTooManySegments) {
			n.outputLarge(p, now)
			continue
		}
		if err != nil {
			n.st.dropPeer(segment.Reason(err).String())
			continue
		}
		for j := 0; j < c; j++ {
			b := n.rxBufs[n.rxN+j][:wgOffset+n.rxSizes[j]]
			n.st.wireIn.add(len(b) - wgOffset)
			n.cap.Wire(now, capture.In, b[wgOffset:], capture.Origin{})
			n.rxBufs[n.rxN+j] = b
		}
		n.rxN += c
	}
	n.flush()
}

// receive takes wire packets from the far end of a direct wire (another
// NIC): copied into the receive buffers, as the daemon's engine does, and
// handed to wireguard-go's Write, whose GRO coalesces them. One goroutine
// at a time.
func (n *wgNIC) receive(pkts [][]byte) {
	now := time.Now()
	for _, wp := range pkts {
		n.st.wireIn.add(len(wp))
		n.cap.Wire(now, capture.In, wp, capture.Origin{})
		if n.rxN == len(n.rxBufs) {
			n.flush()
		}
		b := n.rxBufs[n.rxN][:wgOffset+len(wp)]
		copy(b[wgOffset:], wp)
		n.rxBufs[n.rxN] = b
		n.rxN++
	}
	n.flush()
}

// outputLarge takes a peer super-packet with more segments than rxBufs
// holds (a small MSS; rxBufs is empty here): segmented into overflow
// buffers, then copied into rxBufs a batch at a time.
func (n *wgNIC) outputLarge(p *peer.Packet, now time.Time) {
	bufs, sizes := n.rxBig.carve(p.Hdr, len(p.Data), 0, 0)
	c, err := segment.Segment(p.Hdr, p.Data, bufs, sizes, 0, segment.Options{})
	if err != nil {
		n.st.dropPeer(segment.Reason(err).String())
		return
	}
	for j := 0; j < c; j++ {
		wp := bufs[j][:sizes[j]]
		n.st.wireIn.add(len(wp))
		n.cap.Wire(now, capture.In, wp, capture.Origin{})
		if n.rxN == len(n.rxBufs) {
			n.flush()
		}
		b := n.rxBufs[n.rxN][:wgOffset+len(wp)]
		copy(b[wgOffset:], wp)
		n.rxBufs[n.rxN] = b
		n.rxN++
	}
}

func (n *wgNIC) flush() {
	if n.rxN == 0 {
		return
	}
	bufs := n.rxBufs[:n.rxN]
	if !n.groOn.Load() {
		// wireguard-go has no GRO switch: write one packet at a time so
		// that its GRO has nothing to merge.
		for i := range bufs {
			n.write(bufs[i : i+1])
		}
	} else {
		n.write(bufs)
	}
	for i := range bufs {
		bufs[i] = bufs[i][:cap(bufs[i])]
	}
	n.rxN = 0
}

// write hands wire packets to wireguard-go. What its GRO makes of them is
// not visible from here, so host_rx stays 0 for this engine.
func (n *wgNIC) write(bufs [][]byte) {
	if _, err := n.dev.Write(bufs, wgOffset); err != nil {
		n.st.drop(DropTUNWrite)
	}
}
