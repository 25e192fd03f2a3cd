package segment

import (
	"bytes"
	"testing"

	"vnic/vnic/drop"
	"vnic/vnic/pkttest"
	"vnic/vnic/virtio"
)

var macHdr = []byte{2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2}

// behind puts pkt behind an Ethernet header (with a VLAN tag when vlan)
// and moves h's offsets by its length.
func behind(h virtio.Hdr, pkt []byte, vlan bool) (virtio.Hdr, []byte, int) {
	l2 := append([]byte{}, macHdr...)
	if vlan {
		l2 = append(l2, 0x81, 0x00, 0x00, 0x64)
	}
	if pkt[0]>>4 == 6 {
		l2 = append(l2, 0x86, 0xdd)
	} else {
		l2 = append(l2, 0x08, 0x00)
	}
	if h.Flags&virtio.FlagNeedsCsum != 0 {
		h.CsumStart += uint16(len(l2))
	}
	if h.HdrLen != 0 {
		h.HdrLen += uint16(len(l2))
	}
	return h, append(l2, pkt...), len(l2)
}

// TestL2LenCopiesTheHeaderIntoEverySegment: with L2Len the wire packets
// are the IP packet's, each behind a copy of the frame's Ethernet header;
// the Plan measures them with the header.
func TestL2LenCopiesTheHeaderIntoEverySegment(t *testing.T) {
	for _, p := range []pkttest.Packet{
		{Flags: pkttest.ACK | pkttest.PSH, Payload: pkttest.Payload(10000, 1)},
		{V6: true, Proto: pkttest.ProtoUDP, Payload: pkttest.Payload(5000, 2)},
	} {
		pkt, h := p.BuildGSO(1400, false)
		want, wsizes := newBufs(16, 1600)
		n, err := Segment(h, pkt, want, wsizes, 0, Options{})
		if err != nil {
			t.Fatal(err)
		}
		for _, vlan := range []bool{false, true} {
			fh, frame, l2 := behind(h, pkt, vlan)
			plan, err := NewPlan(fh, frame, Options{L2Len: l2})
			if err != nil {
				t.Fatal(err)
			}
			got, sizes := newBufs(16, 1600)
			if k, err := plan.Cut(got, sizes, 4); err != nil || k != n {
				t.Fatalf("Cut: %d, %v; want %d", k, err, n)
			}
			total := 0
			for i := range n {
				o := got[i][4 : 4+sizes[i]]
				if !bytes.Equal(o[:l2], frame[:l2]) || !bytes.Equal(o[l2:], want[i][:wsizes[i]]) {
					t.Errorf("vlan %v: packet %d is not the header and segment's packet", vlan, i)
				}
				total += sizes[i]
			}
			if plan.MaxSize() != l2+wsizes[0] || plan.WireBytes() != total {
				t.Errorf("vlan %v: MaxSize %d WireBytes %d, want %d and %d", vlan, plan.MaxSize(), plan.WireBytes(), l2+wsizes[0], total)
			}
			if ok, hl, _ := plan.TSO(); ok && hl != l2+40 {
				t.Errorf("TSO hdrLen %d, want %d", hl, l2+40)
			}
		}
	}
}

func TestL2LenRefusals(t *testing.T) {
	p := pkttest.Packet{Flags: pkttest.ACK, Payload: pkttest.Payload(3000, 1)}
	pkt, h := p.BuildGSO(1000, false)
	fh, frame, _ := behind(h, pkt, false)
	for _, tc := range []struct {
		name  string
		h     virtio.Hdr
		frame []byte
		want  drop.Reason
	}{
		{"short frame", fh, frame[:10], drop.EtherShort},
		{"csum_start in the MAC header", virtio.Hdr{Flags: virtio.FlagNeedsCsum, CsumStart: 6, CsumOffset: 16}, frame, drop.CsumOffsets},
		{"ARP EtherType", fh, append(append([]byte{}, frame[:12]...), append([]byte{0x08, 0x06}, frame[14:]...)...), drop.IPVersion},
		{"IPv6 EtherType on IPv4", fh, append(append([]byte{}, frame[:12]...), append([]byte{0x86, 0xdd}, frame[14:]...)...), drop.IPVersion},
		{"hdr_len past the frame", virtio.Hdr{HdrLen: uint16(len(frame) + 1)}, frame, drop.HdrLen},
	} {
		if _, err := NewPlan(tc.h, tc.frame, Options{L2Len: 14}); Reason(err) != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestL2LenNoAllocation(t *testing.T) {
	p := pkttest.Packet{Flags: pkttest.ACK, Payload: pkttest.Payload(60000, 1)}
	pkt, h := p.BuildGSO(1448, false)
	fh, frame, l2 := behind(h, pkt, false)
	out, sizes := newBufs(64, 1600)
	allocs := testing.AllocsPerRun(100, func() {
		plan, err := NewPlan(fh, frame, Options{L2Len: l2})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := plan.Cut(out, sizes, 0); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per frame", allocs)
	}
}

// FuzzSegmentL2: whatever a TAP hands over, NewPlan with L2Len refuses it
// with a typed error or Cut writes packets that each start with the
// frame's Ethernet header and fit the Plan's measure.
func FuzzSegmentL2(f *testing.F) {
	p := pkttest.Packet{Flags: pkttest.ACK, Payload: pkttest.Payload(3000, 1)}
	pkt, h := p.BuildGSO(1000, false)
	fh, frame, _ := behind(h, pkt, false)
	var hb [virtio.Size]byte
	_ = fh.Encode(hb[:])
	f.Add(hb[:], frame, uint8(14))
	fh, frame, _ = behind(h, pkt, true)
	_ = fh.Encode(hb[:])
	f.Add(hb[:], frame, uint8(18))
	f.Fuzz(func(t *testing.T, hb, frame []byte, l2 uint8) {
		var h virtio.Hdr
		var raw [virtio.Size]byte
		copy(raw[:], hb)
		_ = h.Decode(raw[:])
		opt := Options{L2Len: 14 + int(l2%3)*4}
		plan, err := NewPlan(h, frame, opt)
		if err != nil {
			if Reason(err) == drop.Internal {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if plan.Segments() > len(fuzzOut) {
			return
		}
		n, err := plan.Cut(fuzzOut, fuzzSizes, fuzzOffset)
		if err != nil {
			t.Fatalf("Cut after NewPlan: %v", err)
		}
		for i := range n {
			o := fuzzOut[i][fuzzOffset : fuzzOffset+fuzzSizes[i]]
			if len(o) > plan.MaxSize() || !bytes.Equal(o[:opt.L2Len], frame[:opt.L2Len]) {
				t.Fatalf("packet %d: %d bytes (Plan: at most %d), header % x", i, len(o), plan.MaxSize(), o[:opt.L2Len])
			}
		}
	})
}
