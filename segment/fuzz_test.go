package segment

import (
	"bytes"
	"errors"
	"testing"

	"vnic/vnic/drop"
	"vnic/vnic/pkttest"
	"vnic/vnic/virtio"
)

const fuzzOffset = 10

var fuzzOut, fuzzSizes = newBufs(160, fuzzOffset+65536)

// FuzzSegment has two halves. With arbitrary bytes for the virtio header
// and the packet, Segment must not panic and whatever it reports must lie
// inside the buffers. With a valid packet generated from the same inputs
// by pkttest, it must either refuse with one of the errors a valid packet
// can get, or emit packets that all verify and whose payloads concatenate
// to the original payload. In both halves a Plan must agree with Segment
// and measure exactly what its Cut writes (planCheck).
func FuzzSegment(f *testing.F) {
	for i, p := range []pkttest.Packet{
		{Flags: pkttest.ACK | pkttest.PSH, Payload: pkttest.Payload(5000, 1)},
		{V6: true, Flags: pkttest.ACK | pkttest.CWR, TCPOptions: tsTCPOptions, Payload: pkttest.Payload(3000, 2)},
		{Proto: pkttest.ProtoUDP, IPOptions: []byte{1, 1, 1, 0}, Payload: pkttest.Payload(4000, 3)},
		{V6: true, Proto: pkttest.ProtoUDP, ExtHdrs: []pkttest.ExtHdr{{Type: pkttest.ExtHopByHop, Data: make([]byte, 6)}}, Payload: pkttest.Payload(2000, 4)},
		{V6: true, ExtHdrs: []pkttest.ExtHdr{{Type: pkttest.ExtFragment, Data: make([]byte, 6)}}, Payload: pkttest.Payload(2000, 5)},
	} {
		pkt, h := p.BuildGSO(1000+i*100, i == 1)
		var hb [virtio.Size]byte
		_ = h.Encode(hb[:])
		f.Add(hb[:], pkt, uint8(i), uint16(len(p.Payload)), uint16(1000+i*100), uint16(0))
		pkt, h = p.BuildPartial()
		_ = h.Encode(hb[:])
		f.Add(hb[:], pkt, uint8(i+8), uint16(100), uint16(1448), uint16(1500))
	}
	f.Fuzz(func(t *testing.T, hb, pkt []byte, kind uint8, size, gso, maxPacket uint16) {
		// Half one: arbitrary input.
		var h virtio.Hdr
		var raw [virtio.Size]byte
		copy(raw[:], hb)
		_ = h.Decode(raw[:])
		opt := Options{MaxPacket: int(maxPacket), FixedID: kind&1 != 0, AccECN: kind&2 != 0}
		n, err := Segment(h, pkt, fuzzOut, fuzzSizes, fuzzOffset, opt)
		if err == nil {
			if n < 1 || n > len(fuzzOut) {
				t.Fatalf("%d packets", n)
			}
			for i := 0; i < n; i++ {
				if fuzzSizes[i] <= 0 || fuzzSizes[i] > 65535 {
					t.Fatalf("packet %d size %d", i, fuzzSizes[i])
				}
			}
		} else if Reason(err) == drop.Internal {
			t.Fatalf("untyped error %v", err)
		}
		fuzzPlan(t, h, pkt, opt, err)

		// Half two: a valid packet.
		p := pkttest.Packet{
			V6:      kind&4 != 0,
			Proto:   pkttest.ProtoTCP,
			ID:      uint16(size) * 31,
			Seq:     uint32(gso) << 16,
			Flags:   pkttest.ACK | (kind & (pkttest.PSH | pkttest.FIN | pkttest.CWR)),
			DF:      kind&16 != 0,
			Payload: pkttest.Payload(int(size)%(65535-120), kind),
		}
		if kind&8 != 0 {
			p.Proto = pkttest.ProtoUDP
		}
		if kind&32 != 0 {
			if p.V6 {
				p.ExtHdrs = []pkttest.ExtHdr{{Type: pkttest.ExtDestOpts, Data: make([]byte, 6)}}
			} else {
				p.IPOptions = []byte{1, 1, 1, 0}
			}
		}
		if kind&64 != 0 && p.Proto == pkttest.ProtoTCP {
			p.TCPOptions = tsTCPOptions
		}
		mss := max(int(gso), 1)
		var vh virtio.Hdr
		if kind&128 != 0 {
			pkt, vh = p.BuildPartial()
		} else {
			pkt, vh = p.BuildGSO(mss, kind&2 != 0 && p.Proto == pkttest.ProtoTCP)
		}
		opt.MaxPacket = int(maxPacket) % 9001
		n, err = Segment(vh, pkt, fuzzOut, fuzzSizes, fuzzOffset, opt)
		fuzzPlan(t, vh, pkt, opt, err)
		if err != nil {
			switch {
			case errors.Is(err, ErrTooManySegments), errors.Is(err, ErrUSOSegments), errors.Is(err, ErrTooBig):
			case errors.Is(err, ErrGSOShort) && len(p.Payload) <= mss:
			default:
				t.Fatalf("valid %s at gso_size %d, %+v: %v", name(p), mss, opt, err)
			}
			return
		}
		var joined []byte
		for i := 0; i < n; i++ {
			g := fuzzOut[i][fuzzOffset : fuzzOffset+fuzzSizes[i]]
			if err := pkttest.Verify(g); err != nil {
				t.Fatalf("valid %s at gso_size %d: packet %d of %d: %v", name(p), mss, i, n, err)
			}
			if opt.MaxPacket > 0 && len(g) > opt.MaxPacket {
				t.Fatalf("packet %d is %d bytes, MaxPacket %d", i, len(g), opt.MaxPacket)
			}
			_, data, _ := l4At(g)
			joined = append(joined, g[data:]...)
		}
		if !bytes.Equal(joined, p.Payload) {
			t.Fatalf("valid %s at gso_size %d: payloads joined to %d bytes, want %d", name(p), mss, len(joined), len(p.Payload))
		}
	})
}

// fuzzPlan checks a Plan agrees with what Segment did (err) and measures
// exactly what its Cut writes (planCheck), for frames of at most
// len(fuzzOut) packets; a bigger one must be what made Segment run out of
// buffers.
func fuzzPlan(t *testing.T, h virtio.Hdr, pkt []byte, opt Options, err error) {
	t.Helper()
	if p, perr := NewPlan(h, pkt, opt); perr == nil && p.Segments() > len(fuzzOut) {
		if !errors.Is(err, ErrTooManySegments) {
			t.Fatalf("Plan of %d packets, %d buffers: Segment said %v", p.Segments(), len(fuzzOut), err)
		}
		return
	}
	if _, perr := planCheck(h, pkt, opt); (perr == nil) != (err == nil) || perr != nil && Reason(perr) == drop.Internal {
		t.Fatalf("Segment: %v; Plan: %v", err, perr)
	}
}
