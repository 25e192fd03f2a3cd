// Package wire is the cable between two of vnic's in-memory hosts, with
// the impairments of a bad one: loss, duplication, corruption, reordering,
// delay and jitter, decided by a seeded random source so that a lab run is
// reproducible: the same Seed and the same sequence of packets give the
// same decisions, packet by packet. The model follows Linux's netem qdisc
// (tc qdisc add dev X root netem loss 1% duplicate 1% corrupt 1%
// reorder 25% delay 10ms 2ms):
//
//   - Loss drops the packet; Duplicate delivers it twice (back to back);
//     Corrupt flips one byte (XOR 0xff) past the IP header, so that the
//     L4 checksum (or the ICMP one) catches it, as netem corrupts a random
//     bit of the frame.
//   - Delay holds every packet Delay ± Jitter (uniform) on a timer
//     goroutine; packets keep their order (a packet is never released
//     before one sent earlier), except the reordered ones.
//   - Reorder: with Delay, a reordered packet skips the delay and
//     overtakes whatever is queued (netem's reorder); without Delay, it is
//     held back and delivered at the end of its Send batch, behind the
//     packets after it.
//
// Decisions are drawn in a fixed order per packet (loss, duplicate,
// corrupt, corrupted byte, reorder, jitter) whatever the outcome, so one
// impairment's pattern does not shift when another's probability changes.
//
// Without Delay, Send delivers synchronously on the caller's goroutine and
// allocates nothing per packet (buffers are pooled). With Delay, Deliver is
// called from the wire's timer goroutine, one batch per expiry holding
// every packet due, so a receiver running GRO still sees batches.
package wire

import (
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// Options configures a Wire. Probabilities are in [0, 1].
type Options struct {
	// Loss is the probability a packet is dropped.
	Loss float64
	// Duplicate is the probability a packet is delivered twice.
	Duplicate float64
	// Corrupt is the probability one byte past the IP header is flipped.
	Corrupt float64
	// Reorder is the probability a packet is delivered out of order (see
	// the package doc).
	Reorder float64
	// Delay is the one-way latency; 0 delivers synchronously.
	Delay time.Duration
	// Jitter spreads each packet's delay uniformly over Delay ± Jitter
	// (clamped at 0; order is kept). Only with Delay.
	Jitter time.Duration
	// Seed seeds the random source.
	Seed int64
	// Deliver receives the packets at the far end, in batches. The slice
	// and the packets are only valid during the call; Deliver may modify
	// them. Without Delay it runs on the goroutine calling Send (and so
	// concurrently if Send is), with Delay on the wire's timer goroutine.
	// Required.
	Deliver func(pkts [][]byte)
}

// Stats counts what the wire did. All counters only grow.
type Stats struct {
	Sent       uint64 // packets handed to Send
	Delivered  uint64 // packets handed to Deliver (duplicates included)
	Lost       uint64
	Duplicated uint64
	Corrupted  uint64
	Reordered  uint64 // packets delivered behind later ones (see the package doc)
	Discarded  uint64 // sent after Close, or still in flight at Close
}

// Wire is one direction of a cable.
type Wire struct {
	opt Options

	mu      sync.Mutex // guards rng and the delay queue
	rng     *rand.Rand
	q       []item // delayed packets, in due order
	qHead   int
	imm     []item // reordered packets that skip the delay
	lastDue time.Time
	closed  bool

	wake chan struct{}
	done chan struct{}
	wg   sync.WaitGroup

	batches sync.Pool // *batch (no delay)
	bufs    sync.Pool // *[]byte

	sent, delivered, lost, duplicated, corrupted, reordered, discarded atomic.Uint64
}

type item struct {
	buf *[]byte
	due time.Time
}

type decision struct {
	lost, dup, corrupt, reorder bool
	pos                         uint64
	jitter                      float64
}

// batch is the scratch of one synchronous Send.
type batch struct {
	dec  []decision
	out  [][]byte
	held [][]byte
	bufs []*[]byte
}

// New returns a wire; with Delay it starts the timer goroutine (Close
// stops it).
func New(opt Options) (*Wire, error) {
	if opt.Deliver == nil {
		return nil, errors.New("wire: Options.Deliver is nil: the wire needs a far end")
	}
	for _, p := range []float64{opt.Loss, opt.Duplicate, opt.Corrupt, opt.Reorder} {
		if !(p >= 0 && p <= 1) {
			return nil, errors.New("wire: probabilities must be in [0, 1]")
		}
	}
	if opt.Delay < 0 || opt.Jitter < 0 {
		return nil, errors.New("wire: Delay and Jitter must not be negative")
	}
	seed := uint64(opt.Seed)
	w := &Wire{
		opt:  opt,
		rng:  rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		wake: make(chan struct{}, 1),
		done: make(chan struct{}),
	}
	w.batches.New = func() any { return new(batch) }
	if opt.Delay > 0 {
		w.wg.Add(1)
		go w.run()
	}
	return w, nil
}

// decide draws one packet's decisions. Called with mu held.
func (w *Wire) decide() decision {
	var d decision
	d.lost = w.rng.Float64() < w.opt.Loss
	d.dup = w.rng.Float64() < w.opt.Duplicate
	d.corrupt = w.rng.Float64() < w.opt.Corrupt
	d.pos = w.rng.Uint64()
	d.reorder = w.rng.Float64() < w.opt.Reorder
	d.jitter = w.rng.Float64()*2 - 1
	return d
}

// Send puts packets on the wire. They are copied (or delivered before Send
// returns): pkts may be reused when Send returns.
func (w *Wire) Send(pkts [][]byte) {
	if len(pkts) == 0 {
		return
	}
	w.sent.Add(uint64(len(pkts)))
	if w.opt.Delay > 0 {
		w.sendDelayed(pkts)
		return
	}
	b := w.batches.Get().(*batch)
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		w.discarded.Add(uint64(len(pkts)))
		w.batches.Put(b)
		return
	}
	b.dec = b.dec[:0]
	for range pkts {
		b.dec = append(b.dec, w.decide())
	}
	w.mu.Unlock()

	b.out, b.held = b.out[:0], b.held[:0]
	heldAt := -1
	for i, p := range pkts {
		d := b.dec[i]
		if d.lost {
			w.lost.Add(1)
			continue
		}
		if d.corrupt {
			buf := w.getBuf(len(p))
			copy(*buf, p)
			if corrupt(*buf, d.pos) {
				w.corrupted.Add(1)
			}
			b.bufs = append(b.bufs, buf)
			p = *buf
		}
		if d.reorder {
			if heldAt < 0 {
				heldAt = len(b.out)
			}
			b.held = append(b.held, p)
			if d.dup {
				w.duplicated.Add(1)
				b.held = append(b.held, p)
			}
			continue
		}
		b.out = append(b.out, p)
		if d.dup {
			w.duplicated.Add(1)
			b.out = append(b.out, p)
		}
	}
	if len(b.held) > 0 {
		if heldAt < len(b.out) {
			// Something sent after the first held packet goes ahead of it.
			w.reordered.Add(uint64(len(b.held)))
		}
		b.out = append(b.out, b.held...)
	}
	if len(b.out) > 0 {
		w.delivered.Add(uint64(len(b.out)))
		w.opt.Deliver(b.out)
	}
	clear(b.out)
	clear(b.held)
	for _, buf := range b.bufs {
		w.bufs.Put(buf)
	}
	clear(b.bufs)
	b.bufs = b.bufs[:0]
	w.batches.Put(b)
}

// corrupt flips one byte past the IP header (anywhere in a packet that is
// not IP or has nothing past its header). It reports whether it did.
func corrupt(b []byte, pos uint64) bool {
	if len(b) == 0 {
		return false
	}
	start := 0
	switch b[0] >> 4 {
	case 4:
		start = int(b[0]&0x0f) * 4
	case 6:
		start = 40
	}
	if start >= len(b) {
		start = 0
	}
	b[start+int(pos%uint64(len(b)-start))] ^= 0xff
	return true
}

func (w *Wire) getBuf(n int) *[]byte {
	if v := w.bufs.Get(); v != nil {
		p := v.(*[]byte)
		if cap(*p) >= n {
			*p = (*p)[:n]
			return p
		}
	}
	b := make([]byte, n, max(n, 2048))
	return &b
}

func (w *Wire) sendDelayed(pkts [][]byte) {
	now := time.Now()
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		w.discarded.Add(uint64(len(pkts)))
		return
	}
	for _, p := range pkts {
		d := w.decide()
		if d.lost {
			w.lost.Add(1)
			continue
		}
		buf := w.getBuf(len(p))
		copy(*buf, p)
		if d.corrupt && corrupt(*buf, d.pos) {
			w.corrupted.Add(1)
		}
		n := 1
		if d.dup {
			w.duplicated.Add(1)
			n = 2
		}
		for k := range n {
			bb := buf
			if k == 1 {
				bb = w.getBuf(len(p))
				copy(*bb, *buf)
			}
			if d.reorder {
				if len(w.q) > w.qHead {
					w.reordered.Add(1)
				}
				w.imm = append(w.imm, item{buf: bb, due: now})
				continue
			}
			due := now.Add(w.opt.Delay + time.Duration(d.jitter*float64(w.opt.Jitter)))
			if due.Before(now) {
				due = now
			}
			if due.Before(w.lastDue) {
				due = w.lastDue
			}
			w.lastDue = due
			w.q = append(w.q, item{buf: bb, due: due})
		}
	}
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// run is the timer goroutine: it delivers, in one batch, every packet that
// is due, then sleeps until the next one is.
func (w *Wire) run() {
	defer w.wg.Done()
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	var out [][]byte
	var bufs []*[]byte
	for {
		now := time.Now()
		w.mu.Lock()
		for _, it := range w.imm {
			out = append(out, *it.buf)
			bufs = append(bufs, it.buf)
		}
		clear(w.imm)
		w.imm = w.imm[:0]
		for w.qHead < len(w.q) && !w.q[w.qHead].due.After(now) {
			it := w.q[w.qHead]
			w.q[w.qHead] = item{}
			w.qHead++
			out = append(out, *it.buf)
			bufs = append(bufs, it.buf)
		}
		if w.qHead == len(w.q) {
			w.q, w.qHead = w.q[:0], 0
		} else if w.qHead > len(w.q)/2 {
			n := copy(w.q, w.q[w.qHead:])
			clear(w.q[n:])
			w.q, w.qHead = w.q[:n], 0
		}
		next := time.Hour
		if w.qHead < len(w.q) {
			next = time.Until(w.q[w.qHead].due)
		}
		w.mu.Unlock()
		if len(out) > 0 {
			w.delivered.Add(uint64(len(out)))
			w.opt.Deliver(out)
			clear(out)
			out = out[:0]
			for _, b := range bufs {
				w.bufs.Put(b)
			}
			clear(bufs)
			bufs = bufs[:0]
			continue // more may have become due meanwhile
		}
		t.Reset(next)
		select {
		case <-t.C:
		case <-w.wake:
		case <-w.done:
			return
		}
	}
}

// Stats returns a snapshot of the wire's counters.
func (w *Wire) Stats() Stats {
	return Stats{
		Sent:       w.sent.Load(),
		Delivered:  w.delivered.Load(),
		Lost:       w.lost.Load(),
		Duplicated: w.duplicated.Load(),
		Corrupted:  w.corrupted.Load(),
		Reordered:  w.reordered.Load(),
		Discarded:  w.discarded.Load(),
	}
}

// Close stops the timer goroutine and waits for it; packets still in
// flight are discarded (Stats.Discarded), and later Sends are too.
// Idempotent.
func (w *Wire) Close() {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return
	}
	w.closed = true
	w.mu.Unlock()
	if w.opt.Delay > 0 {
		close(w.done)
		w.wg.Wait()
	}
	w.mu.Lock()
	w.discarded.Add(uint64(len(w.q) - w.qHead + len(w.imm)))
	w.q, w.imm, w.qHead = nil, nil, 0
	w.mu.Unlock()
}
