package router_test

import (
	"net/netip"
	"sync"
	"testing"
	"time"

	"vnic/vnic/glink"
	"vnic/vnic/pkttest"
	"vnic/vnic/router"
)

// TestGROBuggy2014MTUIsTheLinkMTU: the 2014 bug checks a merged packet's
// whole IP length against the egress device's MTU (ip_forward →
// ip_exceeds_mtu: skb->len > mtu, the link MTU 1500), so a merged DF
// packet of exactly 1500 bytes still goes through, and one of 1501 is
// refused with ICMP fragmentation-needed. (gVisor's route MTU is the
// link MTU less the minimum IP header; comparing with it would refuse
// 1481–1500-byte packets.)
func TestGROBuggy2014MTUIsTheLinkMTU(t *testing.T) {
	for _, tc := range []struct {
		v6      bool
		payload int // per segment; two segments merge into one packet
		refused bool
	}{
		{false, 730, false}, // 20 + 20 + 2×730 = 1500
		{false, 731, true},  // 1502
		{true, 710, false},  // 40 + 20 + 2×710 = 1480
		{true, 720, false},  // 1500
		{true, 721, true},   // 1502
	} {
		src, dst := netip.MustParseAddr("198.18.51.2"), netip.MustParseAddr("198.18.50.2")
		if tc.v6 {
			src, dst = netip.MustParseAddr("fd00:51::2"), netip.MustParseAddr("fd00:50::2")
		}
		var mu sync.Mutex
		var out []int
		r, err := router.New(router.Options{Ifaces: []router.Iface{
			{Addrs: []netip.Prefix{netip.MustParsePrefix("198.18.50.1/24"), netip.MustParsePrefix("fd00:50::1/64")},
				Output: func(p []glink.Packet) {
					mu.Lock()
					defer mu.Unlock()
					for _, q := range p {
						out = append(out, len(q.Data))
					}
				}},
			{Addrs: []netip.Prefix{netip.MustParsePrefix("198.18.51.1/24"), netip.MustParsePrefix("fd00:51::1/64")},
				GRO: router.GROBuggy2014, Output: func([]glink.Packet) {}},
		}})
		if err != nil {
			t.Fatal(err)
		}
		var pkts [][]byte
		for i := range 2 {
			p := pkttest.Packet{V6: tc.v6, Src: src, Dst: dst, DF: true, TTL: 64, ID: uint16(7 + i), SrcPort: 40000, DstPort: 80,
				Seq: uint32(1000 + i*tc.payload), Flags: 0x10, Window: 1000, Payload: pkttest.Payload(tc.payload, byte(i))}
			pkts = append(pkts, p.Build())
		}
		r.Inject(1, pkts)
		deadline := time.Now().Add(2 * time.Second)
		for {
			mu.Lock()
			n := len(out)
			mu.Unlock()
			if n > 0 || tc.refused || time.Now().After(deadline) {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		time.Sleep(50 * time.Millisecond)
		st := r.Stats()
		r.Close()
		icmp := st.ICMP.FragNeeded + st.ICMP.PacketTooBig
		mu.Lock()
		forwarded := len(out)
		mu.Unlock()
		merged := 2*tc.payload + 20 + map[bool]int{false: 20, true: 40}[tc.v6]
		if st.Ifaces[1].GROStats.SuperPackets == 0 {
			t.Errorf("v6=%v %d bytes: the two segments did not merge: %+v", tc.v6, merged, st.Ifaces[1].GROStats)
		}
		if tc.refused && (icmp == 0 || forwarded != 0) {
			t.Errorf("v6=%v merged %d bytes: want refused with ICMP (sent %d, forwarded %d packets)", tc.v6, merged, icmp, forwarded)
		}
		if !tc.refused && (icmp != 0 || forwarded == 0) {
			t.Errorf("v6=%v merged %d bytes ≤ MTU 1500: want forwarded (ICMP %d, forwarded %d packets %v)", tc.v6, merged, icmp, forwarded, out)
		}
	}
}
