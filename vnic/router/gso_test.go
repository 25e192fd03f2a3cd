package router_test

import (
	"bytes"
	"net/netip"
	"sync"
	"testing"
	"time"

	"vnic/segment"
	"vnic/vnic/glink"
	"vnic/vnic/pkttest"
	"vnic/vnic/router"
	"vnic/vnic/virtio"
)

// gsoCapture keeps an interface's Output with its virtio headers.
type gsoCapture struct {
	mu   sync.Mutex
	pkts []glink.Packet
}

func (c *gsoCapture) output(pkts []glink.Packet) {
	c.mu.Lock()
	for _, p := range pkts {
		c.pkts = append(c.pkts, glink.Packet{Hdr: p.Hdr, Data: bytes.Clone(p.Data)})
	}
	c.mu.Unlock()
}

func (c *gsoCapture) wait(t *testing.T, n int) []glink.Packet {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c.mu.Lock()
		p := append([]glink.Packet(nil), c.pkts...)
		c.mu.Unlock()
		if len(p) >= n {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("captured %d packets, want %d", len(p), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// tcpRun is n consecutive DF segments of one TCP stream, as a sender's TSO
// puts them on the wire (IDs incrementing, PSH on the last).
func tcpRun(src, dst netip.Addr, ttl uint8, n, payload int) [][]byte {
	var pkts [][]byte
	for i := range n {
		p := pkttest.Packet{V6: src.Is6(), Src: src, Dst: dst, TTL: ttl, DF: true, ID: uint16(100 + i),
			Seq: uint32(1 + i*payload), Ack: 1, Flags: 0x10, Payload: pkttest.Payload(payload, byte(i))}
		if i == n-1 {
			p.Flags |= 0x08
		}
		pkts = append(pkts, p.Build())
	}
	return pkts
}

// TestGROFixedForwardsWhole: with GROFixed a merged stream leaves the
// egress as one super-packet with a GSO header (TTL/hop limit decremented
// once, header checksum right) whose segments are the wire packets that
// arrived, each with its TTL decremented. Where the fixed kernel would
// not forward it whole — TTL 1, a segment above the egress MTU — the
// merged packet is cut again and gVisor answers, as without GRO.
func TestGROFixedForwardsWhole(t *testing.T) {
	c0, c1 := &gsoCapture{}, &gsoCapture{}
	r, err := router.New(router.Options{Ifaces: []router.Iface{
		{Addrs: eth0Addrs, MTU: 1500, GRO: router.GROFixed, Output: c0.output},
		{Addrs: eth1Addrs, MTU: 1500, GRO: router.GROFixed, Output: c1.output},
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	for i, dst := range []netip.Addr{server4, server6} {
		src := client4
		if dst.Is6() {
			src = client6
		}
		in := tcpRun(src, dst, 64, 8, 1000)
		r.Inject(0, in)
		got := c1.wait(t, i+1)[i]
		if got.Hdr.GSOType == virtio.GSONone || got.Hdr.GSOSize != 1000 || got.Hdr.Flags&virtio.FlagNeedsCsum == 0 {
			t.Fatalf("%v: forwarded with header %+v, want a GSO super-packet with gso_size 1000", dst, got.Hdr)
		}
		out := make([][]byte, 16)
		for j := range out {
			out[j] = make([]byte, 2000)
		}
		sizes := make([]int, len(out))
		n, err := segment.Segment(got.Hdr, got.Data, out, sizes, 0, segment.Options{MaxPacket: 1500})
		if err != nil || n != len(in) {
			t.Fatalf("%v: segmenting the super-packet: %d segments, %v", dst, n, err)
		}
		for j := range n {
			seg := out[j][:sizes[j]]
			if err := pkttest.Verify(seg); err != nil {
				t.Errorf("%v segment %d: %v", dst, j, err)
			}
			want := bytes.Clone(in[j])
			if dst.Is4() {
				want[8]--
				// Header checksum: compare the rest, Verify checked it.
				want[10], want[11] = seg[10], seg[11]
			} else {
				want[7]--
			}
			if !bytes.Equal(seg, want) {
				t.Errorf("%v segment %d differs from what arrived (TTL decremented)", dst, j)
			}
		}
	}
	st := r.Stats()
	if g := st.Ifaces[0].GROStats; g.ForwardedGSO != 2 || g.Resegmented != 0 {
		t.Errorf("GRO %+v, want 2 forwarded whole", g)
	}
	if l := st.Ifaces[1].Link; l.OutSuper != 2 || l.OutForwarded != 2 {
		t.Errorf("eth1 link %+v", l)
	}

	// TTL 1: gVisor answers each segment with time-exceeded.
	r.Inject(0, tcpRun(client4, server4, 1, 4, 1000))
	// Egress MTU: segments of 1480 bytes towards a 1400-byte route.
	r2c0, r2c1 := &gsoCapture{}, &gsoCapture{}
	r2, err := router.New(router.Options{Ifaces: []router.Iface{
		{Addrs: eth0Addrs, MTU: 1500, GRO: router.GROFixed, Output: r2c0.output},
		{Addrs: eth1Addrs, MTU: 1400, Output: r2c1.output},
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	r2.Inject(0, tcpRun(client4, server4, 64, 4, 1460))

	for _, tc := range []struct {
		name string
		r    *router.Router
		c0   *gsoCapture
		icmp func(router.ICMPStats) uint64
	}{
		{"TTL 1", r, c0, func(s router.ICMPStats) uint64 { return s.TimeExceeded }},
		{"MTU", r2, r2c0, func(s router.ICMPStats) uint64 { return s.FragNeeded }},
	} {
		answers := tc.c0.wait(t, 4)
		for _, a := range answers {
			if a.Hdr != (virtio.Hdr{}) {
				t.Errorf("%s: ICMP with a virtio header %+v", tc.name, a.Hdr)
			}
		}
		st := tc.r.Stats()
		if n := tc.icmp(st.ICMP); n != 4 {
			t.Errorf("%s: %d ICMP answers, want 4 (one per segment): %+v", tc.name, n, st.ICMP)
		}
		if g := st.Ifaces[0].GROStats; g.Resegmented != 4 {
			t.Errorf("%s: GRO %+v, want the 4 segments cut again", tc.name, g)
		}
	}
	time.Sleep(20 * time.Millisecond)
	if n := len(c1.wait(t, 2)); n != 2 {
		t.Errorf("eth1 sent %d packets, want only the 2 super-packets", n)
	}
	r2c1.mu.Lock()
	defer r2c1.mu.Unlock()
	if len(r2c1.pkts) != 0 {
		t.Errorf("forwarded %d packets above the egress MTU", len(r2c1.pkts))
	}
}
