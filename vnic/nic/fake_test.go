package nic

import (
	"bytes"
	"os"
	"sync"
	"testing"
	"time"

	"vnic/vnic/pkttest"
	"vnic/vnic/virtio"
)

// fakeDev is a Device without a kernel: Read hands out the frames given to
// send (virtio header + IP packet), Write records what the NIC hands the
// host. It lets the NIC's batching, models and GRO following be tested
// without root.
type fakeDev struct {
	in     chan []byte
	closed chan struct{}
	once   sync.Once

	mu      sync.Mutex
	written [][]byte // copies of the frames written, in order
	wrote   chan struct{}
	// discard: Write keeps nothing (allocation tests).
	discard bool
}

func newFakeDev() *fakeDev {
	return &fakeDev{in: make(chan []byte, 4096), closed: make(chan struct{}), wrote: make(chan struct{}, 1)}
}

// send queues frames for the NIC's transmit loop to read.
func (d *fakeDev) send(frames ...[]byte) {
	for _, f := range frames {
		d.in <- f
	}
}

func (d *fakeDev) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	var f []byte
	select {
	case f = <-d.in:
	case <-d.closed:
		return 0, os.ErrClosed
	}
	n := 0
	for {
		sizes[n] = copy(bufs[n][offset:], f)
		n++
		if n == len(bufs) {
			return n, nil
		}
		select {
		case f = <-d.in:
		default:
			return n, nil
		}
	}
}

func (d *fakeDev) Write(bufs [][]byte, offset int) (int, error) {
	select {
	case <-d.closed:
		return 0, os.ErrClosed
	default:
	}
	if d.discard {
		return len(bufs), nil
	}
	d.mu.Lock()
	for _, b := range bufs {
		d.written = append(d.written, bytes.Clone(b[offset:]))
	}
	d.mu.Unlock()
	select {
	case d.wrote <- struct{}{}:
	default:
	}
	return len(bufs), nil
}

func (d *fakeDev) Close() error {
	d.once.Do(func() { close(d.closed) })
	return nil
}

// frames returns a copy of what was written so far.
func (d *fakeDev) frames() [][]byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([][]byte(nil), d.written...)
}

// waitPayload waits until the frames written carry at least n bytes of
// TCP/UDP payload in all, and returns them.
func (d *fakeDev) waitPayload(t *testing.T, n int) [][]byte {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		fs := d.frames()
		got := 0
		for _, f := range fs {
			got += payloadLen(t, f[virtio.Size:])
		}
		if got >= n {
			return fs
		}
		if time.Now().After(deadline) {
			t.Fatalf("the host got %d of %d payload bytes in %d frames", got, n, len(fs))
		}
		select {
		case <-d.wrote:
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// recorder is a far end that keeps copies of what reaches the wire.
type recorder struct {
	mu   sync.Mutex
	pkts [][]byte
}

func (r *recorder) Inject(pkts [][]byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range pkts {
		r.pkts = append(r.pkts, bytes.Clone(p))
	}
}

func (r *recorder) got() [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]byte(nil), r.pkts...)
}

// newTestNIC is a NIC over a fake device, not started.
func newTestNIC(t *testing.T, opt Options) (*NIC, *fakeDev) {
	t.Helper()
	dev := newFakeDev()
	n, err := New(dev, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	return n, dev
}

// transmit runs frames through n's transmit side on the caller's
// goroutine, as one batch read from the host.
func transmit(n *NIC, frames ...[]byte) {
	e := n.eng.(*vnicEngine)
	if far, ok := n.far.(*NIC); ok {
		e.direct, _ = far.eng.(*vnicEngine)
	}
	now := time.Now()
	for _, f := range frames {
		e.transmit(f, now)
	}
	e.flushWire()
	if d := e.direct; d != nil {
		d.handoff(now)
		d.writePass()
		d.flushRX()
	}
	e.txHost.flushTo(&n.st.hostTX)
	e.txOut.flushTo(&n.st.wireOut)
	n.st.drops[HostTX].Flush(&e.txDrops)
}

// transmitInPlace is transmit over copies of frames kept from call to
// call (the NIC may rewrite a frame's header, as it may a TUN read
// buffer): what a transmit loop does per batch, without allocating.
func transmitInPlace(n *NIC, frames [][]byte) {
	if inPlace == nil {
		for _, f := range frames {
			inPlace = append(inPlace, bytes.Clone(f))
		}
	}
	for i, f := range frames {
		copy(inPlace[i], f)
	}
	transmit(n, inPlace...)
}

var inPlace [][]byte

func frame(h virtio.Hdr, pkt []byte) []byte {
	f := make([]byte, virtio.Size+len(pkt))
	if err := h.Encode(f); err != nil {
		panic(err)
	}
	copy(f[virtio.Size:], pkt)
	return f
}

// superPacket is a TCP super-packet of 10 segments at the usual MSS.
func superPacket(v6 bool) (pkttest.Packet, []byte, virtio.Hdr) {
	mss := 1448
	if v6 {
		mss = 1428
	}
	p := pkttest.Packet{V6: v6, DF: !v6, Seq: 1000, Flags: 0x18, Payload: pkttest.Payload(10*mss, 3)}
	b, h := p.BuildGSO(mss, false)
	return p, b, h
}
