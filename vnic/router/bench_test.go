package router_test

import (
	"sync/atomic"
	"testing"

	"vnic/vnic/glink"
	"vnic/vnic/pkttest"
	"vnic/vnic/router"
	"vnic/vnic/virtio"
)

// BenchmarkForward measures the router's forwarding path: batches of 64
// wire packets of one TCP stream (1500 bytes, DF, consecutive sequence
// numbers, as a NIC's TSO puts them on the wire) injected on eth0 and
// forwarded to eth1, whose Output only counts them. One op is one packet.
func BenchmarkForward(b *testing.B) {
	for _, mode := range []router.GROMode{router.GROOff, router.GROFixed} {
		b.Run("gro="+mode.String(), func(b *testing.B) {
			var outPkts, outBytes, outSuper atomic.Int64
			count := func(pkts []glink.Packet) {
				for _, p := range pkts {
					outPkts.Add(1)
					outBytes.Add(int64(len(p.Data)))
					if p.Hdr.GSOType != virtio.GSONone {
						outSuper.Add(1)
					}
				}
			}
			r, err := router.New(router.Options{Ifaces: []router.Iface{
				{Addrs: eth0Addrs, GRO: mode, Output: func([]glink.Packet) {}},
				{Addrs: eth1Addrs, GRO: mode, Output: count},
			}})
			if err != nil {
				b.Fatal(err)
			}
			defer r.Close()
			const batch = 64
			const payload = 1448
			pkts := make([][]byte, batch)
			seq := uint32(1)
			build := func() {
				for i := range pkts {
					p := pkttest.Packet{Src: client4, Dst: server4, DF: true, ID: uint16(i + 1), Seq: seq, Ack: 1,
						Flags: 0x10, Payload: pkttest.Payload(payload, byte(i))}
					pkts[i] = p.Build()
					seq += payload
				}
			}
			build()
			b.SetBytes(int64(len(pkts[0])))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i += batch {
				// The same 64 packets again: a new GRO flow each time
				// (sequence numbers jump back), merged as before.
				r.Inject(0, pkts)
			}
			b.StopTimer()
			r.Close()
			if outPkts.Load() == 0 {
				b.Fatal("nothing forwarded")
			}
			b.ReportMetric(float64(outSuper.Load())/float64(outPkts.Load()), "super/out")
		})
	}
}
