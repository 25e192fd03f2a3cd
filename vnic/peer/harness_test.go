package peer_test

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"vnic/vnic/glink/glinktest"

	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"

	"vnic/segment"
	"vnic/vnic/peer"
	"vnic/vnic/pkttest"
	"vnic/vnic/virtio"
)

var (
	peerAddrs   = []netip.Prefix{netip.MustParsePrefix("198.18.0.2/15"), netip.MustParsePrefix("fd00::2/64")}
	clientAddrs = []netip.Prefix{netip.MustParsePrefix("198.18.0.1/15"), netip.MustParsePrefix("fd00::1/64")}
	peer4       = netip.MustParseAddr("198.18.0.2")
	peer6       = netip.MustParseAddr("fd00::2")
	client4     = netip.MustParseAddr("198.18.0.1")
	client6     = netip.MustParseAddr("fd00::1")
)

const testMTU = 1500

// wire carries one direction: it takes what a stack hands to Output, puts
// it on the wire (segment.Segment splits super-packets and completes
// partial checksums, as the NIC would), checks every header and every wire
// packet, and injects the wire packets into the other side.
type wire struct {
	name string
	mtu  int
	// fast skips the per-packet checks (benchmarks).
	fast bool
	dst  atomic.Pointer[peer.Peer]

	out   [][]byte
	sizes []int
	batch [][]byte
	arena []byte

	mu       sync.Mutex
	problems []string
	packets  int
	partial  int // NEEDS_CSUM without GSO
	supers   []superInfo
}

type superInfo struct {
	hdr virtio.Hdr
	len int
	v6  bool
}

func newWire(name string, mtu int) *wire {
	w := &wire{name: name, mtu: mtu}
	w.out = make([][]byte, 64)
	for i := range w.out {
		w.out[i] = make([]byte, mtu)
	}
	w.sizes = make([]int, len(w.out))
	return w
}

func (w *wire) problem(format string, args ...any) {
	w.mu.Lock()
	if len(w.problems) < 20 {
		w.problems = append(w.problems, w.name+": "+fmt.Sprintf(format, args...))
	}
	w.mu.Unlock()
}

// output is the Output function of the sending side. It runs on that
// side's single output goroutine, so w.out/w.batch need no lock.
func (w *wire) output(pkts []peer.Packet) {
	w.batch = w.batch[:0]
	arena := w.arena[:0]
	defer func() { w.arena = arena }()
	for _, p := range pkts {
		if !w.fast {
			w.checkHdr(p)
		}
		if p.Hdr == (virtio.Hdr{}) {
			if !w.fast {
				w.checkWire(p.Data)
			}
			w.batch = append(w.batch, p.Data)
			continue
		}
		n, err := segment.Segment(p.Hdr, p.Data, w.out, w.sizes, 0, segment.Options{MaxPacket: w.mtu})
		if err != nil {
			w.problem("segment.Segment(%v, %d bytes): %v", p.Hdr, len(p.Data), err)
			continue
		}
		for i := range n {
			seg := w.out[i][:w.sizes[i]]
			if !w.fast {
				w.checkWire(seg)
			}
			// w.out is reused by the next packet of the batch: copy.
			off := len(arena)
			arena = append(arena, seg...)
			w.batch = append(w.batch, arena[off:off+len(seg):off+len(seg)])
		}
	}
	w.mu.Lock()
	w.packets += len(pkts)
	w.mu.Unlock()
	if d := w.dst.Load(); d != nil && len(w.batch) > 0 {
		d.Inject(w.batch)
	}
}

// checkHdr checks a packet's virtio header against the packet, the way the
// kernel would read it from a TUN: NEEDS_CSUM with csum_start at the L4
// header, csum_offset 16 and the pseudo-header sum (over the whole L4
// length) in the TCP checksum field; GSO with gso_size <= MTU-40 and a
// correct hdr_len.
func (w *wire) checkHdr(p peer.Packet) {
	h, b := p.Hdr, p.Data
	if h == (virtio.Hdr{}) {
		if len(b) > w.mtu {
			w.problem("%d-byte packet without GSO exceeds MTU %d", len(b), w.mtu)
		}
		return
	}
	v6 := b[0]>>4 == 6
	l3 := 20
	if v6 {
		l3 = 40
	}
	if h.Flags != virtio.FlagNeedsCsum {
		w.problem("flags %#x, want NEEDS_CSUM: %v", h.Flags, h)
	}
	if int(h.CsumStart) != l3 || h.CsumOffset != 16 {
		w.problem("csum_start %d csum_offset %d, want %d and 16: %v", h.CsumStart, h.CsumOffset, l3, h)
	}
	if want := pseudoSum(b, l3); binary.BigEndian.Uint16(b[l3+16:]) != want {
		w.problem("TCP checksum field %#04x, want pseudo-header sum %#04x", binary.BigEndian.Uint16(b[l3+16:]), want)
	}
	if h.GSOType == virtio.GSONone {
		w.mu.Lock()
		w.partial++
		w.mu.Unlock()
		if len(b) > w.mtu {
			w.problem("%d-byte partial-checksum packet without GSO exceeds MTU %d", len(b), w.mtu)
		}
		return
	}
	wantType := virtio.GSOTCPv4
	if v6 {
		wantType = virtio.GSOTCPv6
	}
	if h.GSOBase() != wantType {
		w.problem("gso_type %s for IPv%d", virtio.GSOName(h.GSOType), b[0]>>4)
	}
	if h.GSOSize == 0 || int(h.GSOSize) > w.mtu-40 {
		w.problem("gso_size %d, want 1..%d", h.GSOSize, w.mtu-40)
	}
	if hl, err := virtio.RecomputeHdrLen(b, &h); err != nil || hl != int(h.HdrLen) {
		w.problem("hdr_len %d, recomputed %d (%v)", h.HdrLen, hl, err)
	}
	w.mu.Lock()
	w.supers = append(w.supers, superInfo{hdr: h, len: len(b), v6: v6})
	w.mu.Unlock()
}

// pseudoSum is the TCP pseudo-header sum (not complemented) over the whole
// L4 length, computed from the RFC layout.
func pseudoSum(b []byte, l3 int) uint16 {
	var ph []byte
	l4len := len(b) - l3
	if l3 == 20 {
		ph = append(ph, b[12:20]...)
		ph = append(ph, 0, 6, byte(l4len>>8), byte(l4len))
	} else {
		ph = append(ph, b[8:40]...)
		ph = append(ph, byte(l4len>>24), byte(l4len>>16), byte(l4len>>8), byte(l4len), 0, 0, 0, 6)
	}
	return checksum.Checksum(ph, 0)
}

// checkWire checks a packet as it crosses the wire.
func (w *wire) checkWire(b []byte) {
	if len(b) > w.mtu {
		w.problem("%d-byte wire packet exceeds MTU %d", len(b), w.mtu)
	}
	if err := pkttest.Verify(b); err != nil {
		w.problem("wire packet: %v", err)
	}
}

func (w *wire) report(t testing.TB) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, p := range w.problems {
		t.Error(p)
	}
}

// pair is a peer (all services) and a client host (no services) joined by
// two wires.
type pair struct {
	peer, client *peer.Peer
	toClient     *wire // what the peer sends
	toPeer       *wire // what the client sends
}

type pairOpts struct {
	peerGSO, clientGSO uint32
	peerGRO            bool
	mtu                int
	fast               bool // no per-packet checks on the wires
}

func newPair(tb testing.TB, po pairOpts) *pair {
	tb.Helper()
	if po.mtu == 0 {
		po.mtu = testMTU
	}
	pr := &pair{toClient: newWire("peer→client", po.mtu), toPeer: newWire("client→peer", po.mtu)}
	pr.toClient.fast, pr.toPeer.fast = po.fast, po.fast
	var err error
	pr.peer, err = peer.New(peer.Options{
		Addrs:      peerAddrs,
		MTU:        uint32(po.mtu),
		GSOMaxSize: po.peerGSO,
		GRO:        po.peerGRO,
		Output:     pr.toClient.output,
	})
	if err != nil {
		tb.Fatal(err)
	}
	pr.client, err = peer.New(peer.Options{
		Addrs:      clientAddrs,
		MTU:        uint32(po.mtu),
		GSOMaxSize: po.clientGSO,
		Disable:    peer.ServiceAll,
		Output:     pr.toPeer.output,
	})
	if err != nil {
		pr.peer.Close()
		tb.Fatal(err)
	}
	pr.toClient.dst.Store(pr.client)
	pr.toPeer.dst.Store(pr.peer)
	tb.Cleanup(func() {
		pr.client.Close()
		pr.peer.Close()
		pr.toClient.report(tb)
		pr.toPeer.report(tb)
	})
	return pr
}

var fullAddr = glinktest.FullAddr

// dial opens a TCP connection from the client to the peer.
func (pr *pair) dial(tb testing.TB, a netip.Addr, port uint16) *gonet.TCPConn {
	tb.Helper()
	return glinktest.DialTCP(tb, pr.client.Stack(), a, port)
}

// waitFor polls cond until it holds or the deadline passes.
var waitFor = glinktest.WaitFor

// settleGoroutines waits until the goroutine count falls to at most n.
func settleGoroutines(n int, d time.Duration) int {
	deadline := time.Now().Add(d)
	for {
		g := runtime.NumGoroutine()
		if g <= n || time.Now().After(deadline) {
			return g
		}
		time.Sleep(5 * time.Millisecond)
	}
}
