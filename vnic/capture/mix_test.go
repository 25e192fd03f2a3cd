package capture

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"vnic/vnic/pkttest"
	"vnic/vnic/virtio"
)

// mix is what the data path records for one 64 KiB of TCP in each
// direction at the daemon's usual sizes: one host-tx super-packet, its 45
// wire segments of 1448 bytes of payload, and one host-rx packet that GRO
// merged from 45 wire packets.
type mix struct {
	super []byte
	hdr   virtio.Hdr
	segs  [][]byte
	bytes int // everything the data path hands capture per round
	dst   [][]byte
}

func newMix() *mix {
	p := pkttest.Packet{Seq: 1000, Ack: 1, ID: 0x1234, DF: true, Flags: pkttest.ACK | pkttest.PSH, Payload: pkttest.Payload(45*1448, 7)}
	m := &mix{segs: tcpSegments(p, 1448)}
	m.super, m.hdr = p.BuildGSO(1448, false)
	m.bytes = 2 * len(m.super)
	for _, s := range m.segs {
		m.bytes += len(s)
	}
	m.dst = append(m.dst, make([]byte, len(m.super)), make([]byte, len(m.super)))
	for _, s := range m.segs {
		m.dst = append(m.dst, make([]byte, len(s)))
	}
	return m
}

// record hands one round to c the way vnic/daemon's pipeline does.
func (m *mix) record(c *NIC, ts time.Time) {
	n := c.HostTX(ts, m.hdr, m.super)
	for i, s := range m.segs {
		c.Wire(ts, Out, s, Origin{Kind: FromHostTX, Super: n, Index: i, Count: len(m.segs)})
	}
	r := c.ReserveHostRX()
	c.HostRX(ts, m.hdr, m.super, r, len(m.segs))
}

// copyAll is the reference: one plain copy of the same bytes.
func (m *mix) copyAll() {
	copy(m.dst[0], m.super)
	for i, s := range m.segs {
		copy(m.dst[2+i], s)
	}
	copy(m.dst[1], m.super)
}

// copyNs measures copyAll, off the benchmark's clock.
func (m *mix) copyNs() float64 {
	const rounds = 4000
	m.copyAll()
	best := time.Duration(1<<63 - 1)
	for range 3 {
		t0 := time.Now()
		for range rounds {
			m.copyAll()
		}
		best = min(best, time.Since(t0))
	}
	return float64(best.Nanoseconds()) / rounds
}

// BenchmarkMix measures what capture costs the data path per round of the
// mix (47 packets, ~192 KB), as a ratio to a plain copy of the same bytes
// ("x-copy"): the recording calls only, against a writer goroutine that
// recycles records without writing them, caught up off the clock so that
// nothing is dropped. snap=128 records headers only. The "drop" case is a
// stalled writer: every packet is dropped before any copy. Zero
// allocations per round is the requirement.
func BenchmarkMix(b *testing.B) {
	m := newMix()
	copyNs := m.copyNs()
	for _, tc := range []struct {
		name    string
		snaplen int
		stalled bool
	}{
		{"full", 0, false},
		{"snap=128", 128, false},
		{"drop", 0, true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			w, err := newWriter(io.Discard, "discard", Options{Ifnames: []string{"vnic0"}, Snaplen: tc.snaplen, QueueLen: 1, Logger: slog.New(slog.DiscardHandler)})
			if !tc.stalled {
				w, err = newWriter(io.Discard, "discard", Options{Ifnames: []string{"vnic0"}, Snaplen: tc.snaplen, Logger: slog.New(slog.DiscardHandler)})
			}
			if err != nil {
				b.Fatal(err)
			}
			if tc.stalled {
				for !w.q.full() { // no writer runs
					w.Wire("vnic0", base, Out, m.segs[0], Origin{})
				}
			} else {
				w.discard = true
				w.startWriter()
				defer w.Close()
			}
			c := w.NIC("vnic0")
			b.ReportAllocs()
			b.SetBytes(int64(m.bytes))
			b.ResetTimer()
			for i := range b.N {
				if !tc.stalled && i%64 == 0 {
					waitDrained(b, w)
				}
				m.record(c, base)
			}
			b.StopTimer()
			if d := w.Stats().Dropped; !tc.stalled && d != 0 {
				b.Fatalf("%d packets dropped: the benchmark measured drops, not recording", d)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/copyNs, "x-copy")
		})
	}
}

// BenchmarkMixWriter runs the mix through the whole recorder, writer
// goroutine included (pcapng encoding, comments, buffered writes into
// io.Discard), in blocking mode: the rate at which capture keeps up with
// the data path, again as a ratio to a plain copy of the same bytes.
func BenchmarkMixWriter(b *testing.B) {
	m := newMix()
	copyNs := m.copyNs()
	for _, snaplen := range []int{0, 128} {
		name := "full"
		if snaplen > 0 {
			name = "snap=128"
		}
		b.Run(name, func(b *testing.B) {
			w, err := New(io.Discard, Options{Ifnames: []string{"vnic0"}, Snaplen: snaplen, Block: true})
			if err != nil {
				b.Fatal(err)
			}
			c := w.NIC("vnic0")
			b.ReportAllocs()
			b.SetBytes(int64(m.bytes))
			b.ResetTimer()
			for range b.N {
				m.record(c, base)
			}
			w.Close()
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/copyNs, "x-copy")
		})
	}
}
