package capture

import "testing"

// TestQueueFull: a queue holds its size in records, no more, for every
// size including the smallest, and gives them back in order.
func TestQueueFull(t *testing.T) {
	for _, n := range []int{1, 2, 3, 4, 100} {
		q := newQueue(n)
		size := len(q.slots)
		if size < n || size < 2 {
			t.Fatalf("newQueue(%d): %d slots", n, size)
		}
		for lap := range 3 {
			recs := make([]rec, size)
			for i := range recs {
				if q.full() || !q.push(&recs[i]) {
					t.Fatalf("size %d lap %d: push %d failed", size, lap, i)
				}
			}
			if !q.full() || q.push(&rec{}) || q.len() != size {
				t.Fatalf("size %d lap %d: a full queue took another record (len %d)", size, lap, q.len())
			}
			for i := range recs {
				if r := q.pop(); r != &recs[i] {
					t.Fatalf("size %d lap %d: pop %d returned the wrong record", size, lap, i)
				}
			}
			if q.pop() != nil || q.len() != 0 {
				t.Fatalf("size %d lap %d: empty queue not empty", size, lap)
			}
		}
	}
}
