package coalesce

import (
	"bytes"
	"testing"

	"vnic/segment"
	"vnic/vnic/pkttest"
	"vnic/vnic/virtio"
)

// FuzzSegmentCoalesceRoundTrip is the NIC's loop: a super-packet the
// kernel would hand a TSO/USO NIC goes through segment (the transmit side)
// and the wire packets through coalesce (the receive side); what comes out
// must be the super-packet we started with — the same bytes (IP header
// with the first segment's ID, TCP flags with PSH/FIN or-ed back, the
// pseudo-header sum in the checksum field) and the same virtio header
// (gso type, gso_size, csum_start/offset, a correct hdr_len).
//
// CWR is left out (GRO never merges a CWR segment, so the loop does
// not close), and so are IPv4 options (inet_gro_receive never merges
// them): those are covered by their own rule tests.
func FuzzSegmentCoalesceRoundTrip(f *testing.F) {
	f.Add(uint16(10000), uint16(1448), uint8(0), uint16(1), uint32(1))
	f.Add(uint16(64000), uint16(1448), uint8(1), uint16(0xfff0), uint32(0xffffff00))
	f.Add(uint16(3000), uint16(1000), uint8(2), uint16(7), uint32(9))
	f.Add(uint16(2000), uint16(7), uint8(3), uint16(7), uint32(9))
	f.Add(uint16(60000), uint16(8948), uint8(4|8), uint16(7), uint32(9))
	out := make([][]byte, 160)
	for i := range out {
		out[i] = make([]byte, testOffset+65535)
	}
	sizes := make([]int, len(out))
	e := New(Options{UDP: true})
	var toWrite []int
	f.Fuzz(func(t *testing.T, size, gso uint16, kind uint8, id uint16, seq uint32) {
		p := pkttest.Packet{
			V6:    kind&1 != 0,
			ID:    id,
			DF:    true,
			Seq:   seq,
			Ack:   seq ^ 0x5555,
			Flags: pkttest.ACK | kind&(pkttest.PSH|pkttest.FIN),
		}
		if kind&2 != 0 {
			p.Proto = pkttest.ProtoUDP
		}
		if kind&4 != 0 && p.Proto != pkttest.ProtoUDP {
			p.TCPOptions = []byte{1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2}
		}
		if kind&32 != 0 && p.V6 {
			p.ExtHdrs = []pkttest.ExtHdr{{Type: pkttest.ExtDestOpts, Data: make([]byte, 6)}}
		}
		mss := int(gso)%9000 + 1
		hdrs := 60 + len(p.TCPOptions) + 8*len(p.ExtHdrs)
		n := int(size) % (65535 - hdrs)
		if n <= mss || (p.Proto == pkttest.ProtoUDP && n > 64*mss) || n/mss+1 > len(out) {
			return // not a super-packet, or more than one GRO run can hold
		}
		p.Payload = pkttest.Payload(n, kind)
		super, h := p.BuildGSO(mss, false)

		cnt, err := segment.Segment(h, super, out, sizes, testOffset, segment.Options{})
		if err != nil {
			t.Fatalf("segment %d bytes at gso_size %d: %v", n, mss, err)
		}
		bufs := make([][]byte, cnt)
		for i := range cnt {
			bufs[i] = out[i][:testOffset+sizes[i]]
		}
		toWrite, err = e.Coalesce(bufs, testOffset, toWrite[:0])
		if err != nil {
			t.Fatal(err)
		}
		if len(toWrite) != 1 {
			t.Fatalf("%d wire packets came back as %d packets, want 1", cnt, len(toWrite))
		}
		got := bufs[toWrite[0]]
		var gh virtio.Hdr
		if err := gh.Decode(got[testOffset-virtio.Size:]); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got[testOffset:], super) {
			t.Fatalf("round trip of %d bytes at gso_size %d (%d segments) changed the packet:\n got % x\nwant % x",
				n, mss, cnt, got[testOffset:testOffset+64], super[:64])
		}
		want := h
		want.HdrLen = uint16(len(super) - n) // recomputed, never the kernel's
		if gh != want {
			t.Fatalf("virtio header: got %v, want %v", gh, want)
		}
	})
}
