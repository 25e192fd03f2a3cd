package coalesce

import (
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
)

// bench is a batch of wire packets that can be put back cheaply after
// Coalesce merged it in place: merging only grows a head's buffer and
// rewrites its headers, so restoring means reslicing every buffer to its
// old length and copying back the first headerKeep bytes of the heads
// (a few dozen bytes per super-packet, not the payload).
type bench struct {
	bufs    [][]byte
	lens    []int
	headers [][]byte
	bytes   int // IP bytes in the batch
}

const headerKeep = testOffset + 80

// newBench builds flows × segs TCP segments of mss payload bytes,
// interleaved round robin across the flows.
func newBench(v6 bool, flows, segs, mss int) *bench {
	gens := make([]*flowGen, flows)
	for i := range gens {
		gens[i] = newFlow(v6, false, uint16(30000+i))
	}
	var pkts [][]byte
	for range segs {
		for _, g := range gens {
			pkts = append(pkts, g.next(mss, 0))
		}
	}
	b := &bench{bufs: batch(pkts...)}
	for _, buf := range b.bufs {
		b.lens = append(b.lens, len(buf))
		b.headers = append(b.headers, append([]byte(nil), buf[:headerKeep]...))
		b.bytes += len(buf) - testOffset
	}
	return b
}

func (b *bench) restore() {
	for i, buf := range b.bufs {
		if len(buf) != b.lens[i] {
			buf = buf[:b.lens[i]]
			copy(buf, b.headers[i])
			b.bufs[i] = buf
		}
	}
}

func runBench(b *testing.B, bb *bench, opt Options) {
	e := New(opt)
	toWrite := make([]int, 0, len(bb.bufs))
	b.SetBytes(int64(bb.bytes))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		bb.restore()
		toWrite, _ = e.Coalesce(bb.bufs, testOffset, toWrite[:0])
	}
	b.ReportMetric(float64(len(bb.bufs))*float64(b.N)/b.Elapsed().Seconds(), "pkts/s")
}

// BenchmarkCoalesceOneFlow: 45 × 1448-byte-payload TCPv4 segments of one
// flow per batch, merged into one 65200-byte super-packet. Each iteration
// restores the batch first (BenchmarkRestoreOnly: about 40 ns of it).
func BenchmarkCoalesceOneFlow(b *testing.B) {
	runBench(b, newBench(false, 1, 45, 1448), Options{})
}

func BenchmarkCoalesceOneFlowTrusted(b *testing.B) {
	runBench(b, newBench(false, 1, 45, 1448), Options{TrustChecksums: true})
}

func BenchmarkCoalesceOneFlowV6(b *testing.B) {
	runBench(b, newBench(true, 1, 45, 1428), Options{})
}

// BenchmarkCoalesce64Flows: 64 flows × 4 segments, interleaved round robin
// (every packet lands on a different flow than the one before).
func BenchmarkCoalesce64Flows(b *testing.B) {
	runBench(b, newBench(false, 64, 4, 1448), Options{})
}

// BenchmarkRestoreOnly is the benchmarks' cost of putting the batch back,
// to subtract from the figures above.
func BenchmarkRestoreOnly(b *testing.B) {
	bb := newBench(false, 1, 45, 1448)
	e := New(Options{})
	toWrite := make([]int, 0, len(bb.bufs))
	toWrite, _ = e.Coalesce(bb.bufs, testOffset, toWrite[:0])
	b.ReportAllocs()
	for b.Loop() {
		// Dirty the lengths the way Coalesce does, then restore.
		bb.bufs[0] = bb.bufs[0][:cap(bb.bufs[0])]
		bb.bufs[44] = bb.bufs[44][:cap(bb.bufs[44])]
		bb.restore()
	}
	_ = toWrite
}

// BenchmarkFloor_ChecksumPlusCopy is the physical floor for the same bytes:
// one checksum pass over every packet (the validation GRO must do) and one
// copy of every payload into a super-packet buffer.
func BenchmarkFloor_ChecksumPlusCopy(b *testing.B) {
	bb := newBench(false, 1, 45, 1448)
	dst := make([]byte, 65536)
	b.SetBytes(int64(bb.bytes))
	b.ReportAllocs()
	var sink uint16
	for b.Loop() {
		off := 0
		for _, buf := range bb.bufs {
			p := buf[testOffset:]
			sink += checksum.Checksum(p[20:], 0)
			n := copy(dst[off%(65536-1500):], p[40:])
			off += n
		}
	}
	b.ReportMetric(float64(len(bb.bufs))*float64(b.N)/b.Elapsed().Seconds(), "pkts/s")
	_ = sink
}
