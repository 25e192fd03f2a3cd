package peer_test

import (
	"fmt"
	"testing"
	"time"

	"vnic/vnic/peer"
)

// BenchmarkBulkToDiscard measures the peer's receive ceiling: one TCP
// stream from the client stack to the peer's discard service through the
// in-process wire (client super-packets split by segment.Segment when the
// client has GSO; the peer receives MTU-sized wire packets either way).
// The figure is bytes of TCP payload per second.
func BenchmarkBulkToDiscard(b *testing.B) {
	for _, bc := range []struct {
		name string
		po   pairOpts
	}{
		{"ClientGSO/PeerGSO", pairOpts{clientGSO: 65536, peerGSO: 65536}},
		{"ClientGSO/PeerNoGSO", pairOpts{clientGSO: 65536}},
		{"NoGSO", pairOpts{}},
		{"ClientGSO/PeerGRO", pairOpts{clientGSO: 65536, peerGSO: 65536, peerGRO: true}},
	} {
		for _, f := range families {
			b.Run(fmt.Sprintf("%s/%s", bc.name, f.name), func(b *testing.B) {
				bc.po.fast = true
				pr := newPair(b, bc.po)
				c := pr.dial(b, f.addr, peer.PortDiscard)
				buf := make([]byte, 64<<10)
				b.SetBytes(int64(len(buf)))
				b.ReportAllocs()
				start := pr.peer.Stats().Discarded
				b.ResetTimer()
				for b.Loop() {
					if _, err := c.Write(buf); err != nil {
						b.Fatal(err)
					}
				}
				want := start + uint64(b.N*len(buf))
				waitFor(b, "the peer to swallow everything", 30*time.Second, func() bool { return pr.peer.Stats().Discarded >= want })
				b.StopTimer()
				st := pr.peer.Stats()
				b.ReportMetric(float64(st.In.Packets)/float64(b.N), "wirepkts/op")
				if d := st.Drops.Total(); d != 0 {
					b.Errorf("peer dropped %d packets: %+v", d, st.Drops)
				}
			})
		}
	}
}
