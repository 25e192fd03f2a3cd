package wire_test

import (
	"bytes"
	"encoding/binary"
	"slices"
	"sync"
	"testing"
	"time"

	"vnic/vnic/pkttest"
	"vnic/vnic/wire"
)

// packets builds n TCP packets whose payload starts with their index.
func packets(n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		pl := make([]byte, 100)
		binary.BigEndian.PutUint32(pl, uint32(i))
		p := pkttest.Packet{Seq: uint32(i * 100), Flags: pkttest.ACK, Payload: pl, ID: uint16(i)}
		out[i] = p.Build()
	}
	return out
}

// index is the packet number, from the IPv4 ID (corruption spares the IP
// header).
func index(p []byte) int { return int(binary.BigEndian.Uint16(p[4:])) }

// recorder is a Deliver that keeps copies.
type recorder struct {
	mu   sync.Mutex
	pkts [][]byte
}

func (r *recorder) deliver(pkts [][]byte) {
	r.mu.Lock()
	for _, p := range pkts {
		r.pkts = append(r.pkts, bytes.Clone(p))
	}
	r.mu.Unlock()
}

func (r *recorder) snapshot() [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.pkts)
}

func run(t *testing.T, opt wire.Options, in [][]byte, batch int) ([][]byte, wire.Stats) {
	t.Helper()
	rec := &recorder{}
	opt.Deliver = rec.deliver
	w, err := wire.New(opt)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(in); i += batch {
		w.Send(in[i:min(i+batch, len(in))])
	}
	if opt.Delay > 0 {
		deadline := time.Now().Add(5 * time.Second)
		for {
			st := w.Stats()
			if st.Delivered == st.Sent-st.Lost+st.Duplicated || time.Now().After(deadline) {
				break
			}
			time.Sleep(time.Millisecond)
		}
	}
	w.Close()
	return rec.snapshot(), w.Stats()
}

func TestSameSeedSameDecisions(t *testing.T) {
	in := packets(2000)
	opt := wire.Options{Loss: 0.1, Duplicate: 0.1, Corrupt: 0.1, Reorder: 0.1, Seed: 42}
	a, sa := run(t, opt, in, 16)
	b, sb := run(t, opt, in, 16)
	if sa != sb {
		t.Errorf("same seed, different stats:\n%+v\n%+v", sa, sb)
	}
	if !slices.EqualFunc(a, b, bytes.Equal) {
		t.Error("same seed, different deliveries")
	}
	if sa.Lost == 0 || sa.Duplicated == 0 || sa.Corrupted == 0 || sa.Reordered == 0 {
		t.Errorf("some impairment never happened: %+v", sa)
	}
	opt.Seed = 43
	c, _ := run(t, opt, in, 16)
	if slices.EqualFunc(a, c, bytes.Equal) {
		t.Error("different seeds, same deliveries")
	}
	// The loss pattern does not depend on the other probabilities.
	lossOnly := func(o wire.Options) []int {
		d, _ := run(t, o, in, 16)
		var idx []int
		for _, p := range d {
			idx = append(idx, index(p))
		}
		return idx
	}
	l1 := lossOnly(wire.Options{Loss: 0.2, Seed: 7})
	l2 := lossOnly(wire.Options{Loss: 0.2, Corrupt: 0.5, Seed: 7})
	if !slices.Equal(l1, l2) {
		t.Error("turning corruption on changed which packets were lost")
	}
}

func TestDelayedSameSeedSameDecisions(t *testing.T) {
	in := packets(300)
	opt := wire.Options{Loss: 0.1, Duplicate: 0.1, Corrupt: 0.1, Seed: 9, Delay: time.Millisecond, Jitter: 500 * time.Microsecond}
	a, sa := run(t, opt, in, 10)
	b, sb := run(t, opt, in, 10)
	if sa != sb || !slices.EqualFunc(a, b, bytes.Equal) {
		t.Errorf("same seed with delay, different outcome:\n%+v\n%+v", sa, sb)
	}
}

func TestLossRate(t *testing.T) {
	in := packets(10000)
	out, st := run(t, wire.Options{Loss: 0.3, Seed: 1}, in, 64)
	if st.Lost < 2700 || st.Lost > 3300 {
		t.Errorf("lost %d of 10000 at 30%%", st.Lost)
	}
	if uint64(len(out)) != st.Delivered || st.Delivered+st.Lost != st.Sent {
		t.Errorf("counts do not add up: %d delivered, %+v", len(out), st)
	}
}

// TestCorruptionCaughtByChecksum: every corrupted packet fails its
// checksum; the sender's packets are untouched.
func TestCorruptionCaughtByChecksum(t *testing.T) {
	in := packets(500)
	orig := make([][]byte, len(in))
	for i := range in {
		orig[i] = bytes.Clone(in[i])
	}
	out, st := run(t, wire.Options{Corrupt: 1, Seed: 3}, in, 8)
	if st.Corrupted != 500 || len(out) != 500 {
		t.Fatalf("%+v, %d delivered", st, len(out))
	}
	for i, p := range out {
		if err := pkttest.Verify(p); err == nil {
			t.Errorf("corrupted packet %d passes its checksums", i)
		}
		if !bytes.Equal(in[i], orig[i]) {
			t.Fatalf("Send modified the sender's packet %d", i)
		}
		if !bytes.Equal(p[:20], in[i][:20]) {
			t.Errorf("packet %d: IP header changed; corruption belongs past it", i)
		}
	}
}

func TestDelayKeepsOrder(t *testing.T) {
	in := packets(200)
	start := time.Now()
	out, st := run(t, wire.Options{Delay: 10 * time.Millisecond, Jitter: 8 * time.Millisecond, Seed: 5}, in, 4)
	if el := time.Since(start); el < 2*time.Millisecond {
		t.Errorf("200 packets with 10±8 ms delay took %v", el)
	}
	if len(out) != 200 {
		t.Fatalf("delivered %d of 200: %+v", len(out), st)
	}
	for i, p := range out {
		if index(p) != i {
			t.Fatalf("packet %d delivered at position %d: delay must keep order", index(p), i)
		}
	}
}

func TestReorder(t *testing.T) {
	for _, delay := range []time.Duration{0, 5 * time.Millisecond} {
		in := packets(400)
		out, st := run(t, wire.Options{Reorder: 0.25, Delay: delay, Seed: 11}, in, 8)
		if len(out) != 400 {
			t.Fatalf("delay %v: delivered %d of 400", delay, len(out))
		}
		var idx []int
		inversions := 0
		for i, p := range out {
			idx = append(idx, index(p))
			if i > 0 && idx[i] < idx[i-1] {
				inversions++
			}
		}
		if inversions == 0 || st.Reordered == 0 {
			t.Errorf("delay %v: nothing reordered: %+v", delay, st)
		}
		slices.Sort(idx)
		for i := range idx {
			if idx[i] != i {
				t.Fatalf("delay %v: packet %d missing or doubled", delay, i)
			}
		}
	}
}

func TestDuplicate(t *testing.T) {
	in := packets(100)
	out, st := run(t, wire.Options{Duplicate: 1, Seed: 1}, in, 10)
	if len(out) != 200 || st.Duplicated != 100 {
		t.Fatalf("%d delivered, %+v", len(out), st)
	}
	for i := 0; i < 200; i += 2 {
		if !bytes.Equal(out[i], out[i+1]) {
			t.Fatalf("duplicate %d not back to back", i/2)
		}
	}
}

// TestNoAllocWithoutDelay: the synchronous path allocates nothing per
// packet once its pools are warm.
func TestNoAllocWithoutDelay(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop items")
	}
	in := packets(32)
	w, err := wire.New(wire.Options{Loss: 0.1, Duplicate: 0.1, Corrupt: 0.2, Reorder: 0.1, Seed: 1, Deliver: func([][]byte) {}})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for range 10 {
		w.Send(in)
	}
	if a := testing.AllocsPerRun(200, func() { w.Send(in) }); a != 0 {
		t.Errorf("Send of 32 packets: %v allocations, want 0", a)
	}
}

func TestClose(t *testing.T) {
	w, err := wire.New(wire.Options{Delay: time.Hour, Deliver: func([][]byte) { t.Error("delivered after Close") }})
	if err != nil {
		t.Fatal(err)
	}
	w.Send(packets(5))
	w.Close()
	w.Close()
	w.Send(packets(2))
	if st := w.Stats(); st.Discarded != 7 || st.Delivered != 0 {
		t.Errorf("%+v", st)
	}
}

func TestOptionsValidation(t *testing.T) {
	for _, o := range []wire.Options{
		{},
		{Deliver: func([][]byte) {}, Loss: 1.5},
		{Deliver: func([][]byte) {}, Reorder: -0.1},
		{Deliver: func([][]byte) {}, Delay: -1},
	} {
		if _, err := wire.New(o); err == nil {
			t.Errorf("New(%+v) accepted", o)
		}
	}
}
