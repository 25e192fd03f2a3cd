package segment

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"vnic/vnic/pkttest"
	"vnic/vnic/virtio"
)

// planCheck cuts pkt through a Plan into buffers of exactly offset +
// MaxSize bytes and checks the Plan told the truth: Cut writes Segments
// packets, the largest is MaxSize bytes, and the bytes are Segment's. It
// also checks Cut refuses one buffer too few and a buffer one byte too
// small, and returns the packets (nil when NewPlan refused, with its
// error).
func planCheck(h virtio.Hdr, pkt []byte, opt Options) ([][]byte, error) {
	const offset = 7
	p, err := NewPlan(h, pkt, opt)
	if err != nil {
		// Segment refuses it the same way, whatever its buffers.
		_, serr := Segment(h, pkt, [][]byte{make([]byte, 65600)}, []int{0}, offset, opt)
		if serr == nil || serr.Error() != err.Error() {
			return nil, fmt.Errorf("NewPlan: %v, but Segment: %v", err, serr)
		}
		if errors.Is(err, ErrTooManySegments) || errors.Is(err, ErrBufferTooSmall) {
			return nil, fmt.Errorf("NewPlan reported a buffer error: %v", err)
		}
		return nil, err
	}
	n, maxSize := p.Segments(), p.MaxSize()
	if n < 1 || maxSize < 1 {
		return nil, fmt.Errorf("Segments %d, MaxSize %d", n, maxSize)
	}
	out, sizes := slab(n, offset+maxSize)
	k, err := p.Cut(out, sizes, offset)
	if err != nil {
		return nil, fmt.Errorf("Cut into %d buffers of offset + MaxSize: %v", n, err)
	}
	if k != n {
		return nil, fmt.Errorf("Cut wrote %d packets, Segments said %d", k, n)
	}
	got := make([][]byte, k)
	largest := 0
	for i := range got {
		got[i] = out[i][offset : offset+sizes[i]]
		largest = max(largest, sizes[i])
	}
	if largest != maxSize {
		return nil, fmt.Errorf("largest packet %d bytes, MaxSize said %d", largest, maxSize)
	}
	sout, ssizes := slab(n, offset+maxSize)
	if k, err := Segment(h, pkt, sout, ssizes, offset, opt); err != nil || k != n {
		return nil, fmt.Errorf("NewPlan accepted, Segment into the same buffers: %d, %v", k, err)
	}
	for i := range got {
		if !bytes.Equal(got[i], sout[i][offset:offset+ssizes[i]]) {
			return nil, fmt.Errorf("packet %d: Cut and Segment differ", i)
		}
	}
	// Caller mistakes, and only they, make Cut fail.
	if _, err := p.Cut(out[:n-1], sizes, offset); !errors.Is(err, ErrTooManySegments) {
		return nil, fmt.Errorf("Cut into %d buffers: %v, want ErrTooManySegments", n-1, err)
	}
	if _, err := p.Cut(out, sizes[:n-1], offset); !errors.Is(err, ErrTooManySegments) {
		return nil, fmt.Errorf("Cut with %d sizes: %v, want ErrTooManySegments", n-1, err)
	}
	if _, err := p.Cut(out, sizes, offset+1); !errors.Is(err, ErrBufferTooSmall) {
		return nil, fmt.Errorf("Cut at offset + 1: %v, want ErrBufferTooSmall", err)
	}
	if _, err := p.Cut(out, sizes, -1); !errors.Is(err, ErrBufferTooSmall) {
		return nil, fmt.Errorf("Cut at offset -1: %v, want ErrBufferTooSmall", err)
	}
	return got, nil
}

// slab returns n buffers of size bytes carved from one allocation (a
// frame at gso_size 1 makes tens of thousands of packets).
func slab(n, size int) ([][]byte, []int) {
	b := make([]byte, n*size)
	out := make([][]byte, n)
	for i := range out {
		out[i] = b[i*size : (i+1)*size : (i+1)*size]
	}
	return out, make([]int, n)
}

// TestPlanMeasuresWhatCutWrites: Segments and MaxSize agree with what Cut
// writes for TSO, USO, frames too small to be GSO, GSO_NONE, a hardware
// MTU below gso_size, and last segments of every remainder.
func TestPlanMeasuresWhatCutWrites(t *testing.T) {
	type tc struct {
		p       pkttest.Packet
		gso     int // 0: GSO_NONE with NEEDS_CSUM
		opt     Options
		segs    int
		maxSize int
	}
	tcp := func(n int) pkttest.Packet {
		return pkttest.Packet{Flags: pkttest.ACK, TCPOptions: tsTCPOptions, Payload: pkttest.Payload(n, 1)}
	}
	udp6 := func(n int) pkttest.Packet {
		return pkttest.Packet{V6: true, Proto: pkttest.ProtoUDP, Payload: pkttest.Payload(n, 2)}
	}
	for _, c := range []tc{
		{tcp(10000), 1448, Options{}, 7, 20 + 32 + 1448},
		{tcp(2896), 1448, Options{}, 2, 20 + 32 + 1448},
		{tcp(2897), 1448, Options{}, 3, 20 + 32 + 1448},
		{tcp(1436), 1448, Options{}, 1, 20 + 32 + 1436},        // not GSO: 1448 bytes after a 20-byte TCP header
		{tcp(1449), 1448, Options{}, 2, 20 + 32 + 1448},        // one byte over
		{tcp(64000), 8948, Options{MaxPacket: 1500}, 45, 1500}, // cut at the hardware MTU
		{tcp(500), 0, Options{}, 1, 20 + 32 + 500},
		{tcp(500), 0, Options{PartialChecksum: true}, 1, 20 + 32 + 500},
		{udp6(4000), 1000, Options{}, 4, 40 + 8 + 1000},
		{udp6(4001), 1000, Options{PartialChecksum: true}, 5, 40 + 8 + 1000},
		{udp6(128), 1, Options{}, 128, 40 + 8 + 1},
		{udp6(999), 1000, Options{}, 1, 40 + 8 + 999},
	} {
		var pkt []byte
		var h virtio.Hdr
		if c.gso > 0 {
			pkt, h = c.p.BuildGSO(c.gso, false)
		} else {
			pkt, h = c.p.BuildPartial()
		}
		t.Run(fmt.Sprintf("%s-gso%d-max%d", name(c.p), c.gso, c.opt.MaxPacket), func(t *testing.T) {
			if _, err := planCheck(h, pkt, c.opt); err != nil {
				t.Fatal(err)
			}
			p, _ := NewPlan(h, pkt, c.opt)
			if p.Segments() != c.segs || p.MaxSize() != c.maxSize {
				t.Errorf("Segments %d, MaxSize %d; want %d, %d", p.Segments(), p.MaxSize(), c.segs, c.maxSize)
			}
		})
	}
}

// TestPlanRefusesWhatSegmentRefuses: every check is NewPlan's, with the
// same error as Segment; Cut never sees a malformed frame.
func TestPlanRefusesWhatSegmentRefuses(t *testing.T) {
	p := pkttest.Packet{Flags: pkttest.ACK, Payload: pkttest.Payload(3000, 3)}
	pkt, h := p.BuildGSO(1000, false)
	for _, c := range []struct {
		name string
		h    virtio.Hdr
		pkt  []byte
		opt  Options
		want *DropError
	}{
		{"gso_type", virtio.Hdr{GSOType: 9, GSOSize: 1000}, pkt, Options{}, ErrGSOType},
		{"gso_size_zero", virtio.Hdr{GSOType: virtio.GSOTCPv4, Flags: h.Flags, CsumStart: h.CsumStart, CsumOffset: h.CsumOffset}, pkt, Options{}, ErrGSOSizeZero},
		{"csum_offset", virtio.Hdr{GSOType: virtio.GSOTCPv4, GSOSize: 1000, Flags: h.Flags, CsumStart: h.CsumStart, CsumOffset: 6}, pkt, Options{}, ErrCsum},
		{"ip_length", h, pkt[:len(pkt)-1], Options{}, ErrIPLength},
		{"too_big", h, pkt, Options{MaxPacket: 40}, ErrTooBig},
	} {
		got, err := planCheck(c.h, c.pkt, c.opt)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: %d packets, %v; want %v", c.name, len(got), err, c.want)
		}
	}
}

// TestPlanZeroCutsNothing: the zero Plan has no packets and Cut writes
// none.
func TestPlanZeroCutsNothing(t *testing.T) {
	var p Plan
	if p.Segments() != 0 || p.MaxSize() != 0 {
		t.Errorf("zero Plan: Segments %d, MaxSize %d", p.Segments(), p.MaxSize())
	}
	if n, err := p.Cut(nil, nil, 0); n != 0 || err != nil {
		t.Errorf("zero Plan: Cut = %d, %v", n, err)
	}
}

// Steady state: asking and cutting allocate nothing, and the Plan stays
// on the stack.
func TestPlanNoAllocs(t *testing.T) {
	tcp := pkttest.Packet{Flags: pkttest.ACK, TCPOptions: tsTCPOptions, Payload: pkttest.Payload(64000, 47)}
	udp := pkttest.Packet{V6: true, Proto: pkttest.ProtoUDP, Payload: pkttest.Payload(64000, 48)}
	small := pkttest.Packet{Flags: pkttest.ACK, Payload: pkttest.Payload(500, 49)}
	out, sizes := newBufs(64, 65536)
	for _, tc := range []struct {
		p   pkttest.Packet
		gso int
	}{{tcp, 1448}, {udp, 1452}, {small, 0}} {
		var pkt []byte
		var h virtio.Hdr
		if tc.gso > 0 {
			pkt, h = tc.p.BuildGSO(tc.gso, false)
		} else {
			pkt, h = tc.p.BuildPartial()
		}
		allocs := testing.AllocsPerRun(100, func() {
			p, err := NewPlan(h, pkt, Options{MaxPacket: 9000})
			if err != nil {
				t.Fatal(err)
			}
			if p.Segments() > len(out) || p.MaxSize() > len(out[0]) {
				t.Fatal("does not fit")
			}
			if _, err := p.Cut(out, sizes, 0); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocations per run", name(tc.p), allocs)
		}
	}
}
