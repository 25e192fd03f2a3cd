package capture

import "sync/atomic"

// queue is the bounded, lock-free hand-off from the data path (any number
// of goroutines) to the writer goroutine: Dmitry Vyukov's bounded MPMC
// ring, used with one consumer. A push is one CAS and two atomic stores,
// with no lock for the writer to contend on, unlike a channel, whose
// mutex the writer's receives and the data path's sends took turns on
// (runtime.lock2 was 5% of the daemon's CPU with capture on).
//
// Each slot carries a sequence number: pos when it is free for the push at
// pos, pos+1 once that push has stored its record, pos+size when the pop
// at pos has emptied it for the next lap. A push finds the queue full from
// its slot alone, without reading the consumer's position.
type queue struct {
	slots []slot
	mask  uint64
	_     [64]byte
	head  atomic.Uint64 // next push position
	_     [56]byte
	tail  atomic.Uint64 // next pop position; written by the consumer only
	_     [56]byte
}

type slot struct {
	seq atomic.Uint64
	r   *rec
}

// newQueue returns a queue of n slots rounded up to a power of two, and
// at least 2: with one slot, "stored at pos" and "free for pos+1" would be
// the same sequence number.
func newQueue(n int) *queue {
	size := 2
	for size < n {
		size <<= 1
	}
	q := &queue{slots: make([]slot, size), mask: uint64(size - 1)}
	for i := range q.slots {
		q.slots[i].seq.Store(uint64(i))
	}
	return q
}

// len returns the number of records queued (or being pushed).
func (q *queue) len() int {
	return int(q.head.Load() - q.tail.Load())
}

// full reports whether a push would fail now: the next slot still holds
// the record of the previous lap.
func (q *queue) full() bool {
	pos := q.head.Load()
	return q.slots[pos&q.mask].seq.Load() < pos
}

// push queues r, or reports false when the queue is full.
func (q *queue) push(r *rec) bool {
	for {
		pos := q.head.Load()
		s := &q.slots[pos&q.mask]
		switch d := int64(s.seq.Load() - pos); {
		case d == 0:
			if q.head.CompareAndSwap(pos, pos+1) {
				s.r = r
				s.seq.Store(pos + 1)
				return true
			}
		case d < 0:
			return false // the slot's previous record is not popped yet
		}
		// Another push took pos: try the next one.
	}
}

// pop takes the oldest record, or returns nil when there is none (or the
// oldest push has not stored its record yet). One consumer only.
func (q *queue) pop() *rec {
	pos := q.tail.Load()
	s := &q.slots[pos&q.mask]
	if s.seq.Load() != pos+1 {
		return nil
	}
	r := s.r
	s.r = nil
	s.seq.Store(pos + q.mask + 1)
	q.tail.Store(pos + 1)
	return r
}
