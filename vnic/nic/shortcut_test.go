package nic

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"vnic/segment"
	"vnic/vnic/pkttest"
	"vnic/vnic/virtio"
)

// TestShortcutIsSegmentThenGRO: on a direct wire with nothing recording
// it, a TCP super-packet the receiver's GRO would merge back into itself
// crosses whole (the shortcut). For thousands of random super-packets —
// IPv4 and IPv6, gso_size 1 to 9000, 2 to 128 segments, with and without
// TCP options, DF and IDs across the wrap, PSH, FIN, ACK, ECE, and the
// flags that stop GRO (CWR, URG, SYN, RST), which must not take the
// shortcut — what the receiving host gets is byte for byte, header
// included, what segment + coalesce make of it (the path proven against
// the kernel), and the counters agree.
func TestShortcutIsSegmentThenGRO(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 9))
	flags := []uint8{pkttest.ACK, pkttest.ACK | pkttest.PSH, pkttest.ACK | pkttest.FIN, pkttest.ACK | pkttest.PSH | pkttest.FIN,
		pkttest.ACK | 0x40, pkttest.ACK | 0x80, pkttest.ACK | 0x20, pkttest.ACK | 0x04, 0x02}
	taken := 0
	type pair struct {
		a, b *NIC
		db   *fakeDev
		seen int
	}
	newPair := func(mtu int) *pair {
		a, _ := newTestNIC(t, Options{MTU: mtu})
		b, db := newTestNIC(t, Options{MTU: mtu})
		a.Connect(b)
		return &pair{a: a, b: b, db: db}
	}
	pairs := map[int]*[2]*pair{}
	cases := 2000
	if raceEnabled {
		cases = 300
	}
	for i := range cases {
		v6 := rng.IntN(2) == 0
		gso := 1 + rng.IntN(1448)
		if rng.IntN(10) == 0 {
			gso = 1 + rng.IntN(9000)
		}
		segs := 2 + rng.IntN(127)
		n := min(gso*(segs-1)+1+rng.IntN(gso), 65000)
		if n <= gso {
			n = gso + 1
		}
		p := pkttest.Packet{V6: v6, DF: rng.IntN(4) != 0, ID: uint16(rng.Uint32()), Seq: rng.Uint32(), Ack: rng.Uint32(),
			Flags: flags[rng.IntN(len(flags))], Window: uint16(rng.Uint32()), Payload: pkttest.Payload(n, byte(i))}
		if p.Flags&0x20 != 0 {
			p.Urgent = 1
		}
		if rng.IntN(2) == 0 {
			p.TCPOptions = []byte{1, 1, 8, 10, 1, 2, 3, 4, 5, 6, 7, 8}
		}
		mtu := 9000 + 100
		if v6 {
			mtu = max(mtu, 1280)
		}
		b, h := p.BuildGSO(gso, p.Flags&0x80 != 0)
		f := frame(h, b)
		pp := pairs[mtu]
		if pp == nil {
			pp = &[2]*pair{newPair(mtu), newPair(mtu)}
			pairs[mtu] = pp
		}
		// Does the shortcut apply? (Then the full path must give one frame.)
		plan, err := segment.NewPlan(h, b, pp[0].a.eng.(*vnicEngine).txOpt)
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		eligible := pp[0].a.eng.(*vnicEngine).shortcut(pp[0].b.eng.(*vnicEngine), h, b, 0, &plan)
		via := func(q *pair, off bool) ([][]byte, Stats, Stats) {
			noShortcut = off
			defer func() { noShortcut = false }()
			a0, b0 := q.a.Stats(), q.b.Stats()
			transmit(q.a, bytes.Clone(f))
			fs := q.db.frames()[q.seen:]
			q.seen += len(fs)
			a1, b1 := q.a.Stats(), q.b.Stats()
			a1.WireOut.Packets -= a0.WireOut.Packets
			a1.WireOut.Bytes -= a0.WireOut.Bytes
			b1.WireIn.Packets -= b0.WireIn.Packets
			b1.WireIn.Bytes -= b0.WireIn.Bytes
			b1.HostRX.Packets -= b0.HostRX.Packets
			b1.HostRX.Bytes -= b0.HostRX.Bytes
			b1.HostRXMerged -= b0.HostRXMerged
			return fs, a1, b1
		}
		got, ga, gb := via(pp[0], false)
		want, wa, wb := via(pp[1], true)
		if len(got) != len(want) {
			t.Fatalf("case %d (v6 %v, gso %d, %d bytes, flags %#x): %d frames to the host, the full path %d", i, v6, gso, n, p.Flags, len(got), len(want))
		}
		for j := range got {
			if !bytes.Equal(got[j], want[j]) {
				var hg, hw virtio.Hdr
				_ = hg.Decode(got[j])
				_ = hw.Decode(want[j])
				t.Fatalf("case %d (v6 %v, gso %d, %d bytes, flags %#x): frame %d differs: header %+v vs %+v, %d vs %d bytes",
					i, v6, gso, n, p.Flags, j, hg, hw, len(got[j]), len(want[j]))
			}
		}
		if ga.WireOut != wa.WireOut || gb.WireIn != wb.WireIn || gb.HostRX != wb.HostRX || gb.HostRXMerged != wb.HostRXMerged {
			t.Fatalf("case %d: counters differ: wire out %+v / %+v, in %+v / %+v, host-rx %+v / %+v, merged %d / %d",
				i, ga.WireOut, wa.WireOut, gb.WireIn, wb.WireIn, gb.HostRX, wb.HostRX, gb.HostRXMerged, wb.HostRXMerged)
		}
		if eligible {
			if len(want) != 1 {
				t.Fatalf("case %d took the shortcut, but the full path makes %d frames of it", i, len(want))
			}
			taken++
		}
	}
	t.Logf("%d of %d super-packets took the shortcut", taken, cases)
	if taken < cases/3 {
		t.Errorf("only %d super-packets were merged whole: the test does not exercise the shortcut", taken)
	}
}
