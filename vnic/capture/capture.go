package capture

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"vnic/vnic/safefile"
	"vnic/vnic/virtio"
)

// Point is a capture point. Each NIC has one pcapng interface per point,
// named "<ifname>@<point>".
type Point uint8

// Capture points.
const (
	PointUnknown Point = iota // an interface not named <ifname>@<point> (ReadFile only)
	HostTX                    // "host-tx": what the kernel handed the NIC
	Wire                      // "wire": wire-size packets, both directions
	HostRX                    // "host-rx": what the NIC handed the kernel after GRO
	numPoints
)

// String returns the name used in interface names: "host-tx", "wire",
// "host-rx".
func (p Point) String() string {
	switch p {
	case HostTX:
		return "host-tx"
	case Wire:
		return "wire"
	case HostRX:
		return "host-rx"
	}
	return "unknown"
}

// Dir is the direction of a packet, as the pcapng EPB flags word carries it.
type Dir uint8

// Directions.
const (
	DirUnknown Dir = iota
	Out            // from the host towards the wire ("out" in comments, EPB outbound)
	In             // from the wire towards the host ("in" in comments, EPB inbound)
)

// String returns "out", "in" or "unknown".
func (d Dir) String() string {
	switch d {
	case Out:
		return "out"
	case In:
		return "in"
	}
	return "unknown"
}

// Kind says how a wire packet relates to a host-side packet.
type Kind uint8

// Origin kinds.
const (
	// NoOrigin: the wire packet has no host-side counterpart (made by the
	// netstack, forwarded, or not merged into anything yet).
	NoOrigin Kind = iota
	// FromHostTX: segment Index of Count of host-tx #Super.
	FromHostTX
	// IntoHostRX: merged into host-rx #Super as packet Index of Count.
	IntoHostRX
)

// Origin ties a wire packet to the host-side packet it came from or went
// into. It is passed by value and formatted in the writer goroutine.
type Origin struct {
	Kind Kind
	// Super is the host-tx or host-rx number (HostTX's result or
	// ReserveHostRX's).
	Super uint64
	// Index is the 0-based position of this packet among Count packets:
	// the loop index. Comments show it 1-based ("segment 1/7").
	Index, Count int
	// Note is appended to the comment ("dropped: ttl exceeded"). Pass a
	// constant or otherwise long-lived string: it is kept, not copied,
	// until the packet is written.
	Note string
}

// LinkTypeDLTRaw is the link type the Writer gives its interfaces by
// default: 12, DLT_RAW on Linux and most BSDs, raw IPv4 or IPv6 with no
// link-layer header.
//
// The pcapng registry value for raw IP is LINKTYPE_RAW (101,
// layers.LinkTypeRaw), but libpcap cannot read a pcapng file with more than
// one LINKTYPE_RAW interface: pcap_ng_check_header maps the first IDB's 101
// to DLT_RAW (12), and pcap_ng_next_packet then compares each further IDB's
// unmapped 101 with that 12 and fails with "an interface has a type 101
// different from the type of the first interface" (libpcap 1.10.3, and
// still so on master). 12 is raw IP to all the readers we care about:
// libpcap passes it through as DLT_RAW, Wireshark's wiretap maps pcap type
// 12 to raw IP, and gopacket's layers decode LinkType(12) as IPv4-or-6.
const LinkTypeDLTRaw layers.LinkType = 12

// Options configure a Writer. The zero value is usable.
type Options struct {
	// LinkType of every interface; 0 means LinkTypeDLTRaw, which tcpdump,
	// tshark, Wireshark and gopacket all read. layers.LinkTypeRaw (101) is
	// the registry's value, which tcpdump refuses once the file has a
	// second interface.
	LinkType layers.LinkType
	// Ifnames are the NICs whose three interfaces are written when the file
	// is created, in this order. Other ifnames are added on their first
	// packet.
	Ifnames []string
	// Snaplen is the number of bytes kept of each packet; the pcapng
	// original length is always the full length. 0 keeps whole packets.
	Snaplen int
	// QueueLen is the number of packets that may wait for the writer
	// goroutine, rounded up to a power of two (at least 2); 0 means 4096.
	QueueLen int
	// QueueBytes bounds the memory of the buffers (pooled, in size classes
	// from 256 bytes to 64.5 KiB) of packets waiting for the writer goroutine,
	// so a burst of super-packets cannot take QueueLen × 64 KiB; 0 means
	// 32 MiB.
	QueueBytes int
	// Block makes the recording methods wait for room in the queue (and
	// the byte budget) instead of dropping the packet. For tests and
	// offline tools: it lets a slow disk slow down the data path.
	Block bool
	// FlushInterval is how often buffered data is written to the file while
	// packets keep coming; 0 means 200ms. The file is also flushed when
	// traffic pauses for 10ms, and by Close.
	FlushInterval time.Duration
	// Comment is written as the pcapng section comment, e.g. the lab or
	// command line that made the capture.
	Comment string
	// Logger receives write errors and, on Close, the drop counts; nil
	// means slog.Default().
	Logger *slog.Logger
}

// Stats are a Writer's counters since Create.
type Stats struct {
	Written uint64 // packets written to the file
	Bytes   uint64 // captured bytes of those packets
	Dropped uint64 // packets not recorded because the writer fell behind (queue or byte budget full)
	Failed  uint64 // packets lost because writing the file failed
}

// Writer records packets into a pcapng file. Its methods are safe for
// concurrent use; a nil *Writer records nothing.
type Writer struct {
	q        *queue
	block    bool
	snaplen  int
	linkType layers.LinkType
	maxBytes int64
	inflight atomic.Int64
	closed   atomic.Bool
	sleeping atomic.Bool   // the writer goroutine waits for a wake-up
	wakeup   chan struct{} // capacity 1
	wakeAt   int           // queue length at which callers wake the writer
	stop     chan struct{}
	done     chan struct{}

	nicMu sync.Mutex
	nics  atomic.Pointer[map[string]*NIC]

	// dropped is added to by the data path, written and bytes by the
	// writer for every packet: a cache line apart.
	_                      [64]byte
	dropped                atomic.Uint64
	_                      [56]byte
	written, bytes, failed atomic.Uint64

	closeOnce sync.Once
	closeErr  error
	log       *slog.Logger
	start     time.Time

	// Owned by the writer goroutine (and by Create before it starts).
	ng       *pcapgo.NgWriter
	bw       *bufio.Writer
	closer   io.Closer
	name     string // file name for messages
	order    []*NIC // NICs with interfaces in the file, in interface order
	err      error
	dirty    bool
	flushInt time.Duration
	hdrs     map[virtio.Hdr]string
	cbuf     []byte // the packet comment being formatted
	epb      []byte // the block being encoded, less the packet data
	discard  bool   // test hook: release records without writing them
}

// NIC is the recorder for one ifname, from Writer.NIC. Holding it saves
// the map lookup by name on every packet. A nil *NIC records nothing.
type NIC struct {
	w     *Writer
	name  string
	txSeq atomic.Uint64
	rxSeq atomic.Uint64

	dropped [numPoints]atomic.Uint64

	// Owned by the writer goroutine.
	ids     [numPoints]int
	hasIDB  bool
	written [numPoints]uint64
}

// Create creates the pcapng file at path, mode 0600 (it holds packet
// payloads), and starts the writer goroutine. Close it to flush and close
// the file. It replaces a file the caller created earlier, but never
// writes through a symbolic link or into another user's file
// (safefile.Create).
func Create(path string, opts Options) (*Writer, error) {
	f, err := safefile.Create(path, safefile.Perm)
	if err != nil {
		return nil, fmt.Errorf("capture: pcapng file: %w", err)
	}
	w, err := newWriter(f, path, opts)
	if err != nil {
		f.Close()
		os.Remove(path)
		return nil, err
	}
	w.closer = f
	w.startWriter()
	return w, nil
}

// New writes the pcapng stream to out, e.g. a pipe into `wireshark -k -i -`.
// Close flushes but does not close out.
func New(out io.Writer, opts Options) (*Writer, error) {
	w, err := newWriter(out, "pcapng stream", opts)
	if err != nil {
		return nil, err
	}
	w.startWriter()
	return w, nil
}

const bufSize = 1 << 20 // batches file writes: one write(2) per MiB under load

func newWriter(out io.Writer, name string, opts Options) (*Writer, error) {
	if opts.QueueLen <= 0 {
		opts.QueueLen = 4096
	}
	if opts.QueueBytes <= 0 {
		opts.QueueBytes = 32 << 20
	}
	if opts.FlushInterval <= 0 {
		opts.FlushInterval = 200 * time.Millisecond
	}
	if opts.Snaplen < 0 {
		opts.Snaplen = 0
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.LinkType == 0 {
		opts.LinkType = LinkTypeDLTRaw
	}
	w := &Writer{
		q:        newQueue(opts.QueueLen),
		block:    opts.Block,
		snaplen:  opts.Snaplen,
		linkType: opts.LinkType,
		maxBytes: int64(opts.QueueBytes),
		wakeup:   make(chan struct{}, 1),
		wakeAt:   max(opts.QueueLen/2, 1),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
		log:      opts.Logger,
		start:    time.Now(),
		bw:       bufio.NewWriterSize(out, bufSize),
		name:     name,
		flushInt: opts.FlushInterval,
		hdrs:     make(map[virtio.Hdr]string),
	}
	m := make(map[string]*NIC)
	w.nics.Store(&m)
	// NgWriter insists on writing one interface with the section header, so
	// the section starts with the first NIC's host-tx interface; a file
	// with no NIC named up front starts with a placeholder.
	first := pcapgo.NgInterface{Name: "vnic", Description: "vnic capture (no packets)", LinkType: w.linkType}
	var firstNIC *NIC
	if len(opts.Ifnames) > 0 {
		firstNIC = w.NIC(opts.Ifnames[0])
		first = w.intf(firstNIC, HostTX)
	}
	ng, err := pcapgo.NewNgWriterInterface(w.bw, first, pcapgo.NgWriterOptions{SectionInfo: pcapgo.NgSectionInfo{
		Hardware:    runtime.GOARCH,
		OS:          runtime.GOOS,
		Application: "vnic",
		Comment:     opts.Comment,
	}})
	if err != nil {
		return nil, fmt.Errorf("capture: write pcapng header: %w", err)
	}
	// bufio.NewWriter inside NgWriter returns w.bw itself (it is large
	// enough), so NgWriter's blocks (header, interfaces, statistics) and
	// writeEPB's packets share one buffer and stay in order.
	w.ng = ng
	if firstNIC != nil {
		firstNIC.ids[HostTX] = 0
		if err := w.addIntfs(firstNIC, Wire, HostRX); err != nil {
			return nil, err
		}
	}
	for _, name := range opts.Ifnames {
		if c := w.NIC(name); !c.hasIDB {
			if err := w.addIntfs(c, HostTX, Wire, HostRX); err != nil {
				return nil, err
			}
		}
	}
	return w, nil
}

func (w *Writer) startWriter() { go w.run() }

// intf describes the pcapng interface of c at point p.
func (w *Writer) intf(c *NIC, p Point) pcapgo.NgInterface {
	var desc string
	switch p {
	case HostTX:
		desc = "what the kernel handed the NIC (tcpdump -i " + c.name + " outbound): GSO super-packets with partial checksums; the virtio_net_hdr is in each packet comment"
	case Wire:
		desc = "what crossed the wire, both directions: wire-size packets after segmentation and before GRO; each comment names its host-tx or host-rx packet"
	case HostRX:
		desc = "what the NIC handed the kernel after GRO (tcpdump -i " + c.name + " inbound); the virtio_net_hdr is in each packet comment"
	}
	return pcapgo.NgInterface{
		Name:        c.name + "@" + p.String(),
		Description: c.name + " " + p.String() + ": " + desc,
		OS:          runtime.GOOS,
		LinkType:    w.linkType,
		SnapLength:  uint32(w.snaplen),
	}
}

// addIntfs writes interface description blocks for c; writer goroutine only
// (or Create before it starts).
func (w *Writer) addIntfs(c *NIC, points ...Point) error {
	for _, p := range points {
		id, err := w.ng.AddInterface(w.intf(c, p))
		if err != nil {
			return fmt.Errorf("capture: write pcapng interface %s@%s: %w", c.name, p, err)
		}
		c.ids[p] = id
	}
	c.hasIDB = true
	w.order = append(w.order, c)
	return nil
}

// NIC returns the recorder for ifname, creating it on first use. Safe on a
// nil Writer (returns nil).
func (w *Writer) NIC(ifname string) *NIC {
	if w == nil {
		return nil
	}
	if c := (*w.nics.Load())[ifname]; c != nil {
		return c
	}
	w.nicMu.Lock()
	defer w.nicMu.Unlock()
	old := *w.nics.Load()
	if c := old[ifname]; c != nil {
		return c
	}
	m := make(map[string]*NIC, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	c := &NIC{w: w, name: ifname}
	m[ifname] = c
	w.nics.Store(&m)
	return c
}

// Name returns the NIC's ifname.
func (c *NIC) Name() string {
	if c == nil {
		return ""
	}
	return c.name
}

// HostTX records a frame the kernel handed the NIC on ifname: hdr is its
// virtio_net_hdr, pkt the IP packet. It returns the packet's host-tx
// number, for the Origin of its segments (0 on a nil Writer).
func (w *Writer) HostTX(ifname string, ts time.Time, hdr virtio.Hdr, pkt []byte) uint64 {
	if w == nil {
		return 0
	}
	return w.NIC(ifname).HostTX(ts, hdr, pkt)
}

// Wire records a wire packet on ifname going in direction dir.
func (w *Writer) Wire(ifname string, ts time.Time, dir Dir, pkt []byte, origin Origin) {
	if w == nil {
		return
	}
	w.NIC(ifname).Wire(ts, dir, pkt, origin)
}

// ReserveHostRX returns the number the next host-rx packet on ifname will
// carry, so the wire packets merged into it can name it before it is
// recorded. Pass it to HostRX.
func (w *Writer) ReserveHostRX(ifname string) uint64 {
	if w == nil {
		return 0
	}
	return w.NIC(ifname).ReserveHostRX()
}

// HostRX records a frame the NIC handed the kernel on ifname after GRO:
// hdr is its virtio_net_hdr, pkt the IP packet, merged the number of wire
// packets coalesced into it (0 if not known). n is the number from
// ReserveHostRX, or 0 to take the next number. It returns the number used.
func (w *Writer) HostRX(ifname string, ts time.Time, hdr virtio.Hdr, pkt []byte, n uint64, merged int) uint64 {
	if w == nil {
		return 0
	}
	return w.NIC(ifname).HostRX(ts, hdr, pkt, n, merged)
}

// HostTX is Writer.HostTX for this NIC.
func (c *NIC) HostTX(ts time.Time, hdr virtio.Hdr, pkt []byte) uint64 {
	if c == nil {
		return 0
	}
	n := c.txSeq.Add(1)
	if r := c.w.get(c, HostTX, pkt); r != nil {
		r.ts, r.dir, r.hdr, r.super = ts, Out, hdr, n
		c.w.send(r)
	}
	return n
}

// Wire is Writer.Wire for this NIC.
func (c *NIC) Wire(ts time.Time, dir Dir, pkt []byte, origin Origin) {
	if c == nil {
		return
	}
	if r := c.w.get(c, Wire, pkt); r != nil {
		r.ts, r.dir, r.origin = ts, dir, origin
		c.w.send(r)
	}
}

// ReserveHostRX is Writer.ReserveHostRX for this NIC.
func (c *NIC) ReserveHostRX() uint64 {
	if c == nil {
		return 0
	}
	return c.rxSeq.Add(1)
}

// HostRX is Writer.HostRX for this NIC.
func (c *NIC) HostRX(ts time.Time, hdr virtio.Hdr, pkt []byte, n uint64, merged int) uint64 {
	if c == nil {
		return 0
	}
	if n == 0 {
		n = c.rxSeq.Add(1)
	}
	if r := c.w.get(c, HostRX, pkt); r != nil {
		r.ts, r.dir, r.hdr, r.super, r.merged = ts, In, hdr, n, merged
		c.w.send(r)
	}
	return n
}

// Stats returns the counters. Safe on a nil Writer (all zero).
func (w *Writer) Stats() Stats {
	if w == nil {
		return Stats{}
	}
	return Stats{
		Written: w.written.Load(),
		Bytes:   w.bytes.Load(),
		Dropped: w.dropped.Load(),
		Failed:  w.failed.Load(),
	}
}

// Close stops recording, waits for the queued packets to be written,
// writes per-interface statistics (packets offered and dropped), flushes
// and, for Create, closes the file. Packets recorded concurrently with
// Close may be lost. Calling Close again returns the first result. Safe on
// a nil Writer.
func (w *Writer) Close() error {
	if w == nil {
		return nil
	}
	w.closeOnce.Do(func() {
		w.closed.Store(true)
		close(w.stop)
		<-w.done
		w.closeErr = w.err
	})
	return w.closeErr
}

// drop counts a packet the writer fell behind on.
func (w *Writer) drop(c *NIC, p Point) {
	w.dropped.Add(1)
	c.dropped[p].Add(1)
}

// get copies the first snaplen bytes of pkt into a pooled record, or
// returns nil (and counts a drop) when the writer is closed or behind.
// Whether there is room is decided before the copy, so a drop costs a few
// atomic loads; nothing is locked, and nothing is allocated once the pools
// are warm.
func (w *Writer) get(c *NIC, p Point, pkt []byte) *rec {
	if w.closed.Load() {
		return nil
	}
	n := len(pkt)
	if w.snaplen > 0 && n > w.snaplen {
		n = w.snaplen
	}
	if !w.block && w.q.full() {
		w.drop(c, p)
		return nil
	}
	size := int64(bufSizeFor(n))
	for w.inflight.Add(size) > w.maxBytes {
		w.inflight.Add(-size)
		if !w.block {
			w.drop(c, p)
			return nil
		}
		// Blocking mode: wait for the writer to catch up.
		w.wake()
		time.Sleep(50 * time.Microsecond)
		if w.closed.Load() {
			return nil
		}
	}
	r := getRec(n)
	copy(r.data, pkt)
	r.nic, r.point, r.origLen = c, p, len(pkt)
	return r
}

// send hands r to the writer goroutine. It wakes the writer (a channel
// send that may cost a futex wake-up) only when the writer sleeps or has
// fallen half behind; otherwise the writer's next poll finds r.
func (w *Writer) send(r *rec) {
	for !w.q.push(r) {
		if !w.block || w.closed.Load() {
			if !w.block {
				w.drop(r.nic, r.point)
			}
			w.release(r)
			return
		}
		w.wake()
		time.Sleep(50 * time.Microsecond)
	}
	if w.sleeping.Load() || w.q.len() >= w.wakeAt || w.inflight.Load() >= w.maxBytes/2 {
		w.wake()
	}
}

func (w *Writer) release(r *rec) {
	w.inflight.Add(-int64(len(r.buf)))
	putRec(r)
}

// The writer goroutine polls rather than waiting on the queue: a receiver
// parked on a channel is woken (a futex wake, microseconds) by every send,
// which would put one wake-up per packet on the data path. Instead it
// drains the queue every pollInterval while packets flow and, after
// idleRounds empty polls, flushes and sleeps until a caller wakes it.
// Callers wake it only when it sleeps or the queue (or its byte budget) is
// half full.
//
// A writer that falls behind (packets were dropped in the last
// behindWindow) cannot record everything anyway; it then runs at the lowest
// CPU priority (see priority), so that the NIC and the applications get
// the CPU first and capture takes only what they leave, until a window
// passes without drops.
const (
	pollInterval = time.Millisecond
	idleRounds   = 10
	behindWindow = 100 * time.Millisecond
	// drainBatch bounds a drain, so that under a steady load the writer
	// still gets round to flushing and checking whether it is behind.
	drainBatch = 1024
)

// run is the writer goroutine.
func (w *Writer) run() {
	defer close(w.done)
	pr := newPriority(w.log)
	lastDrops, lastCheck := w.dropped.Load(), time.Now()
	timer := time.NewTimer(pollInterval)
	defer timer.Stop()
	lastFlush := time.Now()
	idle := 0
	for {
		n := w.drain(drainBatch)
		if n > 0 {
			idle = 0
		} else {
			idle++
		}
		if w.dirty && time.Since(lastFlush) >= w.flushInt {
			w.flush()
			lastFlush = time.Now()
		}
		if now := time.Now(); now.Sub(lastCheck) >= behindWindow {
			d := w.dropped.Load()
			pr.set(d != lastDrops)
			lastDrops, lastCheck = d, now
		}
		if n == drainBatch {
			continue // more queued: no wait
		}
		wait := pollInterval
		if idle >= idleRounds {
			if w.dirty {
				w.flush()
				lastFlush = time.Now()
			}
			w.sleeping.Store(true)
			if w.q.len() > 0 { // a caller enqueued before seeing sleeping
				w.sleeping.Store(false)
				continue
			}
			wait = w.flushInt // a safety net only: callers wake a sleeping writer
		}
		timer.Reset(wait)
		select {
		case <-w.wakeup:
		case <-timer.C:
		case <-w.stop:
			w.sleeping.Store(false)
			w.drain(-1)
			w.finish()
			return
		}
		w.sleeping.Store(false)
	}
}

// drain writes queued records, at most max of them (all if max < 0), and
// returns how many.
func (w *Writer) drain(max int) int {
	n := 0
	for ; n != max; n++ {
		r := w.q.pop()
		if r == nil {
			break
		}
		w.write(r)
	}
	return n
}

// wake wakes the writer goroutine; never blocks.
func (w *Writer) wake() {
	select {
	case w.wakeup <- struct{}{}:
	default:
	}
}

// write writes one record; writer goroutine only.
func (w *Writer) write(r *rec) {
	defer w.release(r)
	if w.discard {
		return
	}
	if w.err != nil {
		w.failed.Add(1)
		return
	}
	c := r.nic
	if !c.hasIDB {
		if err := w.addIntfs(c, HostTX, Wire, HostRX); err != nil {
			w.fail(err)
			w.failed.Add(1)
			return
		}
	}
	w.cbuf = w.appendComment(w.cbuf[:0], r)
	if err := w.writeEPB(c.ids[r.point], r, w.cbuf); err != nil {
		w.fail(fmt.Errorf("capture: write packet to %s: %w", w.name, err))
		w.failed.Add(1)
		return
	}
	c.written[r.point]++
	w.written.Add(1)
	w.bytes.Add(uint64(len(r.data)))
	w.dirty = true
}

func (w *Writer) flush() {
	w.dirty = false
	if w.err != nil {
		return
	}
	if err := w.ng.Flush(); err != nil {
		w.fail(fmt.Errorf("capture: write to %s: %w", w.name, err))
		return
	}
	if err := w.bw.Flush(); err != nil {
		w.fail(fmt.Errorf("capture: write to %s: %w", w.name, err))
	}
}

// fail records the first write error; later packets are counted as Failed.
func (w *Writer) fail(err error) {
	if w.err == nil {
		w.err = err
		w.log.Error("packet capture stopped: writing the pcapng file failed; free disk space or choose another path", "file", w.name, "err", err)
	}
}

// finish writes interface statistics, flushes and closes the file.
func (w *Writer) finish() {
	now := time.Now()
	if w.err == nil {
		// NICs whose every packet was dropped still get interfaces, so the
		// statistics can say so.
		for _, c := range *w.nics.Load() {
			if !c.hasIDB && c.droppedAny() {
				if err := w.addIntfs(c, HostTX, Wire, HostRX); err != nil {
					w.fail(err)
					break
				}
			}
		}
	}
	if w.err == nil {
	stats:
		for _, c := range w.order {
			for p := HostTX; p < numPoints; p++ {
				d := c.dropped[p].Load()
				err := w.ng.WriteInterfaceStats(c.ids[p], pcapgo.NgInterfaceStatistics{
					LastUpdate:      now,
					StartTime:       w.start,
					EndTime:         now,
					PacketsReceived: c.written[p] + d,
					PacketsDropped:  d,
				})
				if err != nil {
					w.fail(fmt.Errorf("capture: write statistics to %s: %w", w.name, err))
					break stats
				}
			}
		}
	}
	w.flush()
	if w.closer != nil {
		if err := w.closer.Close(); err != nil && w.err == nil {
			w.err = fmt.Errorf("capture: close %s: %w", w.name, err)
		}
	}
	if s := w.Stats(); s.Dropped > 0 || s.Failed > 0 {
		w.log.Warn("packet capture incomplete", "file", w.name, "written", s.Written, "dropped", s.Dropped, "failed", s.Failed)
	}
}

func (c *NIC) droppedAny() bool {
	for p := range c.dropped {
		if c.dropped[p].Load() != 0 {
			return true
		}
	}
	return false
}
