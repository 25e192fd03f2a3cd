package router

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"sync"
	"testing"
	"time"

	"vnic/vnic/glink"
	"vnic/vnic/pkttest"
)

// These tests pin down what gVisor's forwarding does by itself (with the
// router's corrections off), so that a gVisor upgrade that changes it is
// noticed: the corrections would then have to go.

type rec struct {
	mu   sync.Mutex
	pkts [][]byte
}

func (r *rec) output(pkts []glink.Packet) {
	r.mu.Lock()
	for _, p := range pkts {
		r.pkts = append(r.pkts, bytes.Clone(p.Data))
	}
	r.mu.Unlock()
}

func (r *rec) wait(t *testing.T, n int) [][]byte {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		r.mu.Lock()
		p := append([][]byte(nil), r.pkts...)
		r.mu.Unlock()
		if len(p) >= n {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("got %d packets, want %d", len(p), n)
		}
		time.Sleep(time.Millisecond)
	}
}

func gvisorOnlyRouter(t *testing.T, mtu1 uint32) (*Router, *rec, *rec) {
	c0, c1 := &rec{}, &rec{}
	r, err := New(Options{
		Ifaces: []Iface{
			{Addrs: []netip.Prefix{netip.MustParsePrefix("10.1.0.1/24"), netip.MustParsePrefix("2001:db8:1::1/64")}, Output: c0.output},
			{Addrs: []netip.Prefix{netip.MustParsePrefix("10.2.0.1/24"), netip.MustParsePrefix("2001:db8:2::1/64")}, MTU: mtu1, Output: c1.output},
		},
		gvisorOnly: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r, c0, c1
}

// TestGVisorForwardsTTL1: gVisor's IPv4 forwarding (forwardUnicastPacket)
// only refuses TTL 0, so a packet arriving with TTL 1 leaves with TTL 0.
// Linux's ip_forward refuses TTL <= 1; the router corrects this (fixTTL).
func TestGVisorForwardsTTL1(t *testing.T) {
	r, _, c1 := gvisorOnlyRouter(t, 1500)
	p := pkttest.Packet{Proto: pkttest.ProtoUDP, Src: netip.MustParseAddr("10.1.0.2"), Dst: netip.MustParseAddr("10.2.0.2"), TTL: 1, Payload: []byte("x")}
	r.Inject(0, [][]byte{p.Build()})
	got := c1.wait(t, 1)[0]
	if got[8] != 0 {
		t.Errorf("gVisor forwarded TTL 1 as TTL %d; if it now refuses it, drop fixTTL", got[8])
	}
}

// TestGVisorPacketTooBigHasNoMTU: gVisor's ICMPv6 packet-too-big for a
// forwarded packet carries MTU 0 (icmpReasonPacketTooBig has no MTU;
// returnError writes typeSpecific 0). The router fills it in (fixPTB).
func TestGVisorPacketTooBigHasNoMTU(t *testing.T) {
	r, c0, _ := gvisorOnlyRouter(t, 1280)
	p := pkttest.Packet{V6: true, Proto: pkttest.ProtoUDP, Src: netip.MustParseAddr("2001:db8:1::2"), Dst: netip.MustParseAddr("2001:db8:2::2"), Payload: make([]byte, 1400)}
	r.Inject(0, [][]byte{p.Build()})
	got := c0.wait(t, 1)[0]
	if got[40] != 2 {
		t.Fatalf("ICMPv6 type %d, want packet-too-big", got[40])
	}
	if mtu := binary.BigEndian.Uint32(got[44:]); mtu != 0 {
		t.Errorf("gVisor's packet-too-big says MTU %d; if it is right now, drop fixPTB", mtu)
	}
}
