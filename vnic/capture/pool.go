package capture

import (
	"sync"
	"time"

	"vnic/vnic/virtio"
)

// rec is one packet on its way to the writer goroutine: the copied bytes
// and the numbers its comment is made of (formatted by the writer, not the
// caller).
type rec struct {
	sink    *sink
	point   Point
	dir     Dir
	ts      time.Time
	hdr     virtio.Hdr
	super   uint64 // host-tx / host-rx number
	merged  int    // host-rx: wire packets merged
	origin  Origin // wire
	origLen int
	seq     uint64 // arrival order at the writer (ties in the reorder window)
	tsn     int64  // ts in UnixNano, once at the writer
	data    []byte // data = buf[:captured length]
	buf     []byte
	class   int8 // pool index, -1 for an unpooled oversize buffer
}

// Buffer size classes: headers cut by a snap length (256), wire packets (a
// 1500-byte MTU plus slack), jumbo frames, and super-packets up to the 64
// KiB IP limit plus an IPv6 header. Larger packets (BIG TCP) get an
// unpooled buffer.
var classSizes = [...]int{256, 2048, 4096, 9216, 16 << 10, 32 << 10, 64<<10 + 512}

var pools [len(classSizes)]sync.Pool

func init() {
	for i := range pools {
		size, class := classSizes[i], int8(i)
		pools[i].New = func() any { return &rec{buf: make([]byte, size), class: class} }
	}
}

// bufSizeFor returns the size of the buffer getRec(n) uses: what a queued
// packet of n bytes costs in memory.
func bufSizeFor(n int) int {
	for _, size := range classSizes {
		if n <= size {
			return size
		}
	}
	return n
}

// getRec returns a record whose data is n bytes long.
func getRec(n int) *rec {
	for i, size := range classSizes {
		if n <= size {
			r := pools[i].Get().(*rec)
			r.data = r.buf[:n]
			return r
		}
	}
	r := &rec{buf: make([]byte, n), class: -1}
	r.data = r.buf
	return r
}

// putRec clears r's references and returns it to its pool.
func putRec(r *rec) {
	if r.class < 0 {
		return
	}
	buf, class := r.buf, r.class
	*r = rec{buf: buf, class: class}
	pools[class].Put(r)
}

// recHeap is the writer's reorder window: a binary min-heap of records by
// timestamp, then arrival. Records mostly arrive in order, so a push
// usually stops at once.
type recHeap []*rec

func (h recHeap) less(i, j int) bool {
	if h[i].tsn != h[j].tsn {
		return h[i].tsn < h[j].tsn
	}
	return h[i].seq < h[j].seq
}

func (h *recHeap) push(r *rec) {
	*h = append(*h, r)
	a := *h
	i := len(a) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !a.less(i, p) {
			break
		}
		a[i], a[p] = a[p], a[i]
		i = p
	}
}

func (h *recHeap) pop() *rec {
	a := *h
	r := a[0]
	n := len(a) - 1
	a[0] = a[n]
	a[n] = nil
	a = a[:n]
	i := 0
	for {
		l, m := 2*i+1, i
		if l < n && a.less(l, m) {
			m = l
		}
		if l+1 < n && a.less(l+1, m) {
			m = l + 1
		}
		if m == i {
			break
		}
		a[i], a[m] = a[m], a[i]
		i = m
	}
	*h = a
	return r
}
