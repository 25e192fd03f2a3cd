package nic

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"

	"vnic/vnic/drop"
	"vnic/vnic/glink"
	"vnic/vnic/packet"
	"vnic/vnic/pkttest"
	"vnic/vnic/virtio"
)

// fakePair is two started NICs over fake devices, wired to each other
// directly.
func fakePair(t *testing.T, opt Options) (a, b *NIC, da, db *fakeDev) {
	t.Helper()
	a, da = newTestNIC(t, opt)
	b, db = newTestNIC(t, opt)
	a.Connect(b)
	b.Connect(a)
	a.Start()
	b.Start()
	return a, b, da, db
}

// stream is the super-packets of one TCP flow carrying payload, each of
// at most max payload bytes cut at mss, in order.
func stream(v6 bool, payload []byte, mss, max int) [][]byte {
	var frames [][]byte
	seq := uint32(1000)
	for off := 0; off < len(payload); off += max {
		end := min(off+max, len(payload))
		p := pkttest.Packet{V6: v6, DF: !v6, Seq: seq, Flags: pkttest.ACK, ID: uint16(off / mss), Payload: payload[off:end]}
		if end == len(payload) {
			p.Flags |= pkttest.PSH
		}
		var b []byte
		var h virtio.Hdr
		if end-off > mss {
			b, h = p.BuildGSO(mss, false)
		} else {
			b, h = p.BuildPartial()
		}
		frames = append(frames, frame(h, b))
		seq += uint32(end - off)
	}
	return frames
}

// reassemble checks that the frames written into a host carry one TCP
// flow's payload in sequence order, with complete or partial (GRO)
// checksums, and returns the payload.
func reassemble(t *testing.T, frames [][]byte) []byte {
	t.Helper()
	var out []byte
	next := uint32(1000)
	for i, f := range frames {
		var h virtio.Hdr
		if err := h.Decode(f); err != nil {
			t.Fatal(err)
		}
		pkt := f[virtio.Size:]
		p, err := packet.Parse(pkt)
		if err != nil || !p.TCP() {
			t.Fatalf("frame %d: not TCP: %v", i, err)
		}
		seq := binary.BigEndian.Uint32(pkt[p.L4+4:])
		if seq != next {
			t.Fatalf("frame %d: seq %d, want %d: the NIC reordered or lost packets of the flow", i, seq, next)
		}
		if h.GSOType == virtio.GSONone {
			if err := pkttest.Verify(pkt); err != nil {
				t.Fatalf("frame %d: %v", i, err)
			}
		}
		out = append(out, pkt[p.Payload():]...)
		next += uint32(len(pkt) - p.Payload())
	}
	return out
}

// TestPairMergesAndFollowsGRO: super-packets from A's host cross a direct
// wire and reach B's host merged (GRO on), each frame in sequence order;
// with B's GRO off (ethtool -K gro off, here SetGRO) every wire packet
// reaches B's host alone.
func TestPairMergesAndFollowsGRO(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		a, b, da, db := fakePair(t, Options{})
		payload := pkttest.Payload(200_000, 9)
		da.send(stream(v6, payload, 1400, 60_000)...)
		got := reassemble(t, db.waitPayload(t, len(payload)))
		if !bytes.Equal(got, payload) {
			t.Fatalf("v6=%v: B's host got %d bytes, not the %d sent", v6, len(got), len(payload))
		}
		sa, sb := waitStats(a, b)
		if sa.HostTXSuper == 0 || sb.HostRXMerged == 0 || sb.HostRX.Packets >= sb.WireIn.Packets {
			t.Errorf("v6=%v: A super %d, B merged %d, B host-rx %d of %d wire packets: want merging", v6, sa.HostTXSuper, sb.HostRXMerged, sb.HostRX.Packets, sb.WireIn.Packets)
		}
		if sa.WireOut != sb.WireIn {
			t.Errorf("v6=%v: A wire-out %+v, B wire-in %+v", v6, sa.WireOut, sb.WireIn)
		}

		b.SetGRO(false)
		before := len(db.frames())
		wireBefore, rxBefore := sb.WireIn.Packets, sb.HostRX.Packets
		da.send(stream(v6, payload[:50_000], 1400, 60_000)...)
		fs := db.waitPayload(t, len(payload)+50_000)[before:]
		// The host sees the frames before the batch's counters are added.
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
			if _, sb = waitStats(a, b); sb.HostRX.Packets-rxBefore >= uint64(len(fs)) {
				break
			}
		}
		if uint64(len(fs)) != sb.WireIn.Packets-wireBefore {
			t.Errorf("v6=%v, GRO off: %d frames to the host for %d wire packets", v6, len(fs), sb.WireIn.Packets-wireBefore)
		}
		for i, f := range fs {
			var h virtio.Hdr
			_ = h.Decode(f)
			if h.GSOType != virtio.GSONone {
				t.Fatalf("v6=%v, GRO off: frame %d merged", v6, i)
			}
			if err := pkttest.Verify(f[virtio.Size:]); err != nil {
				t.Fatalf("v6=%v, GRO off: frame %d: %v (a checksum left partial for GRO was not completed)", v6, i, err)
			}
		}
		if sa.DropTotal()+sb.DropTotal() != 0 {
			t.Errorf("drops: %v, %v", sa.Drops, sb.Drops)
		}
	}
}

// waitStats waits for both NICs' per-batch counters to settle (A's
// wire-out equal to B's wire-in, and B's host-rx counted: the host may
// see a frame before the batch's counters are added).
func waitStats(a, b *NIC) (Stats, Stats) {
	deadline := time.Now().Add(5 * time.Second)
	var last [2]Counter
	for {
		sa, sb := a.Stats(), b.Stats()
		now := [2]Counter{sa.WireOut, sb.HostRX}
		if sa.WireOut == sb.WireIn && sb.HostRX.Packets > 0 && now == last || time.Now().After(deadline) {
			return sa, sb
		}
		last = now
		time.Sleep(20 * time.Millisecond)
	}
}

// TestPairSmallMSS: super-packets of more segments than a receive batch
// holds (TCP_MAXSEG 88: 800 segments in 64 KiB) still arrive whole and
// in order — the NIC never reorders packets of one flow.
func TestPairSmallMSS(t *testing.T) {
	_, _, da, db := fakePair(t, Options{})
	payload := pkttest.Payload(300_000, 11)
	da.send(stream(false, payload, 76, 65_000)...)
	got := reassemble(t, db.waitPayload(t, len(payload)))
	if !bytes.Equal(got, payload) {
		t.Fatalf("B got %d bytes, not the %d sent", len(got), len(payload))
	}
}

// TestBadFramesCountedByReason: malformed frames from the host are
// counted by reason and dropped, the rest go on; frames in = wire +
// drops.
func TestBadFramesCountedByReason(t *testing.T) {
	n, _ := newTestNIC(t, Options{})
	rec := &recorder{}
	n.Connect(rec)
	good := pkttest.Packet{Payload: pkttest.Payload(100, 1)}
	gb, gh := good.BuildPartial()
	bad := func(f func(h *virtio.Hdr, b []byte)) []byte {
		b := bytes.Clone(gb)
		h := gh
		f(&h, b)
		return frame(h, b)
	}
	transmit(n,
		[]byte{1, 2, 3}, // shorter than the virtio header
		bad(func(h *virtio.Hdr, b []byte) { b[0] = 0x75 }),
		bad(func(h *virtio.Hdr, b []byte) { h.GSOType, h.GSOSize = 0x20, 100 }),
		bad(func(h *virtio.Hdr, b []byte) { h.GSOType, h.GSOSize = virtio.GSOTCPv4, 0 }),
		bad(func(h *virtio.Hdr, b []byte) { h.CsumOffset = 6 }),
		frame(gh, gb),
	)
	s := n.Stats()
	for _, r := range []drop.Reason{drop.ShortFrame, drop.IPVersion, drop.GSOType, drop.GSOSizeZero} {
		if s.Dropped(HostTX, r) != 1 {
			t.Errorf("host_tx %s: %d, want 1 (drops %v)", r, s.Dropped(HostTX, r), s.Drops)
		}
	}
	// A non-GSO frame with csum_offset 6 on TCP is no error for the
	// kernel either (skb_partial_csum_set): the checksum is written
	// where it says.
	if s.HostTX.Packets != 5 || len(rec.got()) != 2 {
		t.Errorf("host-tx %d frames (want 5 counted: the short one has no packet), wire %d (want 2)", s.HostTX.Packets, len(rec.got()))
	}
	// frames in = frames out + counted drops
	if in, out := s.HostTX.Packets+s.Dropped(HostTX, drop.ShortFrame), uint64(len(rec.got()))+s.DropTotal(); in != out {
		t.Errorf("%d frames in, %d on the wire + %d dropped", in, len(rec.got()), s.DropTotal())
	}
}

// TestOutputFarTSO: a gVisor stack's super-packet handed to Output is
// cut by the far end's TSO, merged again by this NIC's GRO and written
// into the host; what the far end's TSO refuses is counted at far_tx.
func TestOutputFarTSO(t *testing.T) {
	n, dev := newTestNIC(t, Options{})
	p, b, h := superPacket(false)
	n.OutputChecked([]glink.Packet{{Hdr: h, Data: b}})
	fs := dev.frames()
	if len(fs) != 1 {
		t.Fatalf("%d frames to the host, want one merged", len(fs))
	}
	var got virtio.Hdr
	_ = got.Decode(fs[0])
	if got.GSOType != virtio.GSOTCPv4 || got.GSOSize != 1448 || len(fs[0])-virtio.Size != len(b) {
		t.Errorf("host-rx header %+v, %d bytes; want the 10-segment super-packet back (%d bytes)", got, len(fs[0])-virtio.Size, len(b))
	}
	_ = p
	bad := h
	bad.GSOType = 0x20
	n.Output([]glink.Packet{{Hdr: bad, Data: b}})
	if s := n.Stats(); s.Dropped(FarTX, drop.GSOType) != 1 {
		t.Errorf("drops %v, want far_tx gso_type 1", s.Drops)
	}
}

// TestDataPathNoAllocs: once warm, moving a batch of frames across a
// direct wire into the far host allocates nothing — with the shortcut,
// through segment and GRO (GRO on and off), through the far end's TSO
// (Output) and through a plain wire end (Inject).
func TestDataPathNoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	_, b4, h4 := superPacket(false)
	_, b6, h6 := superPacket(true)
	small := pkttest.Packet{Flags: pkttest.ACK, Payload: pkttest.Payload(200, 4)}
	sb, sh := small.BuildPartial()
	frames := [][]byte{frame(h4, b4), frame(h6, b6), frame(sh, sb)}
	for _, c := range []struct {
		name  string
		setup func(a, b *NIC)
	}{
		{"shortcut", func(a, b *NIC) {}},
		{"segment+GRO", func(a, b *NIC) { noShortcut = true }},
		{"GRO off", func(a, b *NIC) { noShortcut = true; b.SetGRO(false) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			defer func() { noShortcut = false }()
			a, _ := newTestNIC(t, Options{})
			b, db := newTestNIC(t, Options{})
			a.Connect(b)
			c.setup(a, b)
			db.discard = true
			inPlace = nil
			transmitInPlace(a, frames)
			if n := testing.AllocsPerRun(100, func() { transmitInPlace(a, frames) }); n != 0 {
				t.Errorf("%v allocations per batch", n)
			}
		})
	}
	n, dev := newTestNIC(t, Options{})
	dev.discard = true
	out := []glink.Packet{{Hdr: h4, Data: b4}, {Hdr: h6, Data: b6}}
	n.OutputChecked(out)
	if allocs := testing.AllocsPerRun(100, func() { n.OutputChecked(out) }); allocs != 0 {
		t.Errorf("Output: %v allocations per batch", allocs)
	}
	wire := [][]byte{(&pkttest.Packet{Payload: pkttest.Payload(1448, 1)}).Build(), (&pkttest.Packet{V6: true, Payload: pkttest.Payload(1428, 2)}).Build()}
	n.Inject(wire)
	if allocs := testing.AllocsPerRun(100, func() { n.Inject(wire) }); allocs != 0 {
		t.Errorf("Inject: %v allocations per batch", allocs)
	}
}
