package capture

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strings"
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
	// is created, in this order (Writer.NIC returns their recorders).
	// Other ifnames are added on their first packet.
	Ifnames []string
	// Sources are NICs made elsewhere (NewNIC, or another Writer's) that
	// this Writer records too, at the points given, from its creation on:
	// a live tap of one capture point beside the file.
	Sources []Source
	// PointFile, if set, also splits a file made by Create into one
	// pcapng per capture point when it is closed: the packets of ifname's
	// point p go to PointFile(ifname, p) (every point of the Ifnames and
	// Sources gets a file, other NICs' points one if they have packets).
	// Each per-point file shows every packet once, so Wireshark's TCP
	// analysis finds in it only what happened; the file Create names, with
	// the same packet seen at two or three points, is for the comments
	// and the picture (its section comment says so). See PointPath.
	PointFile func(ifname string, p Point) string
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
	// Reorder is how long the writer holds a packet before writing it, so
	// that packets recorded by different goroutines (each stamps a whole
	// batch with the time it started it) are written in timestamp order;
	// 0 means DefaultReorder. A packet that arrives later than that
	// (its goroutine was descheduled longer) is written with the time of
	// the packet before it, and its comment says by how much it was moved
	// (Stats.Late): the file stays in strict time order. Under memory
	// pressure (half the byte budget) the writer does not wait.
	Reorder time.Duration
	// FlushInterval is how often buffered data is written to the file while
	// packets keep coming; 0 means 200ms. The file is also flushed when
	// traffic pauses for 10ms (and what the reorder window holds is
	// written), and by Close.
	FlushInterval time.Duration
	// Comment is written as the pcapng section comment, e.g. the lab or
	// command line that made the capture.
	Comment string
	// Logger receives write errors and, on Close, the drop counts; nil
	// means slog.Default().
	Logger *slog.Logger
}

// DefaultReorder is Options.Reorder's default: longer than the batches of
// a busy NIC (up to a few ms on a loaded machine), short enough to cost
// little memory and cache at full speed. A lab, which records less and
// blocks rather than drop, waits longer.
const DefaultReorder = 10 * time.Millisecond

// Source is a NIC a Writer records at Points (all three when empty).
type Source struct {
	NIC    *NIC
	Points []Point
}

// PointPath is the usual Options.PointFile for a file at path: with one
// NIC, "vnic.pcapng" → "vnic.host-tx.pcapng", "vnic.wire.pcapng",
// "vnic.host-rx.pcapng"; with several (perNIC), the NIC's name goes in
// too: "lab.ginger.eth0.wire.pcapng".
func PointPath(path string, perNIC bool) func(ifname string, p Point) string {
	base := strings.TrimSuffix(path, ".pcapng")
	return func(ifname string, p Point) string {
		if perNIC {
			return base + "." + ifname + "." + p.String() + ".pcapng"
		}
		return base + "." + p.String() + ".pcapng"
	}
}

// Stats are a Writer's counters since Create.
type Stats struct {
	Written uint64 // packets written to the file
	Bytes   uint64 // captured bytes of those packets
	Dropped uint64 // packets not recorded because the writer fell behind (queue or byte budget full)
	Failed  uint64 // packets lost because writing the file failed
	Late    uint64 // packets that arrived after the reorder window, written with a moved timestamp
}

// Writer records packets into a pcapng file (or one per capture point,
// Options.PointFile). Its methods are safe for concurrent use; a nil
// *Writer records nothing.
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
	nics  atomic.Pointer[map[string]*NIC] // the NICs Writer.NIC made
	sinks []*sink                         // every sink of this writer, guarded by nicMu

	// dropped is added to by the data path, written and bytes by the
	// writer for every packet: a cache line apart.
	_                            [64]byte
	dropped                      atomic.Uint64
	_                            [56]byte
	written, bytes, failed, late atomic.Uint64

	closeOnce sync.Once
	closeErr  error
	log       *slog.Logger
	start     time.Time
	comment   string

	// Owned by the writer goroutine (and by newWriter before it starts).
	main      *output // the file (or stream) with every point
	split     func(ifname string, p Point) string
	order     []*sink // sinks with interfaces, in the order they got them
	err       error
	dirty     bool
	flushInt  time.Duration
	window    time.Duration
	pending   recHeap // the reorder window
	arrivals  uint64
	hdrs      map[virtio.Hdr]string
	cbuf      []byte // the packet comment being formatted
	epb       []byte // the block being encoded, less the packet data
	discard   bool   // test hook: release records without writing them
	createOut func(path string) (io.Writer, io.Closer, error)
}

// output is one pcapng file (or stream) and its buffer; writer goroutine
// only.
type output struct {
	name   string // for messages
	path   string // "" for a stream
	ng     *pcapgo.NgWriter
	bw     *bufio.Writer
	closer io.Closer
	nIntf  int
	lastTS int64 // of the last packet written, UnixNano
}

// NIC is the recorder for one ifname. The data path holds it and calls
// HostTX, Wire and HostRX; whatever records it (a Writer's file, a live
// tap, or both) is attached to it, and a NIC nobody records costs one
// atomic load per packet. A nil *NIC records nothing.
type NIC struct {
	name string
	// linkType, when set (SetLinkType), overrides the Writer's for this
	// NIC's interfaces: a TAP NIC's Ethernet frames in any file or stream.
	linkType layers.LinkType
	txSeq    atomic.Uint64
	rxSeq    atomic.Uint64
	sinks    atomic.Pointer[[]*sink] // nil when nobody records
	mu       sync.Mutex              // serialises Attach and detach
}

// sink is one Writer recording one NIC.
type sink struct {
	w       *Writer
	nic     *NIC
	points  uint8 // 1<<p for each point recorded
	upfront bool  // named at creation: interfaces (and files) for every point at once
	dropped [numPoints]atomic.Uint64

	// Owned by the writer goroutine.
	hasIDB  bool
	ids     [numPoints]int
	outs    [numPoints]*output
	written [numPoints]uint64
}

func (s *sink) has(p Point) bool { return s.points&(1<<p) != 0 }

// NewNIC returns a recorder for ifname that nothing records yet: hand it
// to the data path, and Attach writers (or a Tap) to it when wanted.
func NewNIC(ifname string) *NIC { return &NIC{name: ifname} }

// SetLinkType sets the link type of the NIC's interfaces in whatever
// records it (layers.LinkTypeEthernet for a TAP NIC), whatever the
// Writer's Options.LinkType. Call it before anything records the NIC.
// Safe on a nil NIC.
func (c *NIC) SetLinkType(lt layers.LinkType) {
	if c != nil {
		c.linkType = lt
	}
}

// Active reports whether anything records the NIC now.
func (c *NIC) Active() bool { return c != nil && c.sinks.Load() != nil }

func (c *NIC) attach(s *sink) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var ss []*sink
	if old := c.sinks.Load(); old != nil {
		ss = append(ss, *old...)
	}
	ss = append(ss, s)
	c.sinks.Store(&ss)
}

func (c *NIC) detach(s *sink) {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.sinks.Load()
	if old == nil {
		return
	}
	var ss []*sink
	for _, x := range *old {
		if x != s {
			ss = append(ss, x)
		}
	}
	if len(ss) == 0 {
		c.sinks.Store(nil)
		return
	}
	c.sinks.Store(&ss)
}

// Create creates the pcapng file at path, mode 0600 (it holds packet
// payloads), and starts the writer goroutine. With Options.PointFile it
// also makes the per-point files when it is closed. Close it to flush and
// close the files. It replaces a file the caller created earlier, but
// never writes through a symbolic link or into another user's file
// (CreateFile).
func Create(path string, opts Options) (*Writer, error) {
	open := func(p string) (io.Writer, io.Closer, error) {
		f, err := CreateFile(p)
		if err != nil {
			return nil, nil, fmt.Errorf("capture: create pcapng file: %w (check that the directory exists and is writable)", err)
		}
		return f, f, nil
	}
	if opts.PointFile != nil {
		if opts.Comment != "" {
			opts.Comment += "\n"
		}
		opts.Comment += CombinedNote
	}
	f, c, err := open(path)
	if err != nil {
		return nil, err
	}
	w, err := newWriter(f, path, opts)
	if err != nil {
		c.Close()
		os.Remove(path)
		return nil, err
	}
	w.main.closer = c
	w.main.path = path
	w.split = opts.PointFile
	w.createOut = open
	w.startWriter()
	return w, nil
}

// CreateFile creates (or truncates) a file vnic writes: a capture or a
// report. Every file the capture and lab code write is created here:
// mode 0600 (they hold packet payloads), never through a symbolic link,
// never into another user's file (safefile.Create).
func CreateFile(path string) (*os.File, error) {
	return safefile.Create(path, safefile.Perm)
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
	w := newBase(opts)
	w.main = &output{name: name, bw: bufio.NewWriterSize(out, bufSize)}
	if err := w.addSources(opts); err != nil {
		return nil, err
	}
	return w, nil
}

func newBase(opts Options) *Writer {
	if opts.QueueLen <= 0 {
		opts.QueueLen = 4096
	}
	if opts.QueueBytes <= 0 {
		opts.QueueBytes = 32 << 20
	}
	if opts.FlushInterval <= 0 {
		opts.FlushInterval = 200 * time.Millisecond
	}
	if opts.Reorder <= 0 {
		opts.Reorder = DefaultReorder
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
		comment:  opts.Comment,
		flushInt: opts.FlushInterval,
		window:   opts.Reorder,
		hdrs:     make(map[virtio.Hdr]string),
	}
	m := make(map[string]*NIC)
	w.nics.Store(&m)
	return w
}

// addSources writes the interfaces (creates the files) of the NICs named
// in opts and attaches them; newWriter only, before the goroutine starts.
func (w *Writer) addSources(opts Options) error {
	var ss []*sink
	for _, name := range opts.Ifnames {
		c := w.nicFor(name)
		if s := w.sinkOf(c); s != nil {
			continue
		}
		ss = append(ss, w.newSink(c, allPoints, true))
	}
	for _, src := range opts.Sources {
		mask := allPoints
		if len(src.Points) > 0 {
			mask = 0
			for _, p := range src.Points {
				mask |= 1 << p
			}
		}
		ss = append(ss, w.newSink(src.NIC, mask, true))
	}
	for _, s := range ss {
		if err := w.addIntfs(s); err != nil {
			return err
		}
	}
	if w.main.ng == nil && len(ss) == 0 {
		// A stream starts with its section header at once, so that a
		// reader sees a capture begin even before the first packet.
		if err := w.placeholder(w.main); err != nil {
			return err
		}
	}
	// The header and interfaces go out with the writer's first idle
	// flush, so that a live reader (tshark -i -) starts before the first
	// packet.
	w.dirty = true
	for _, s := range ss {
		s.nic.attach(s)
	}
	return nil
}

const allPoints uint8 = 1<<HostTX | 1<<Wire | 1<<HostRX

// nicFor returns the Writer's NIC for ifname, creating (not attaching) it.
func (w *Writer) nicFor(ifname string) *NIC {
	if c := (*w.nics.Load())[ifname]; c != nil {
		return c
	}
	old := *w.nics.Load()
	m := make(map[string]*NIC, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	c := NewNIC(ifname)
	m[ifname] = c
	w.nics.Store(&m)
	return c
}

// sinkOf returns w's sink on c, if any.
func (w *Writer) sinkOf(c *NIC) *sink {
	if ss := c.sinks.Load(); ss != nil {
		for _, s := range *ss {
			if s.w == w {
				return s
			}
		}
	}
	return nil
}

func (w *Writer) newSink(c *NIC, points uint8, upfront bool) *sink {
	s := &sink{w: w, nic: c, points: points, upfront: upfront}
	w.sinks = append(w.sinks, s)
	return s
}

func (w *Writer) startWriter() { go w.run() }

// Attach makes w record c at points (all three when none are given) until
// the returned function is called or w is closed. The interfaces are
// written before c's first packet.
func (w *Writer) Attach(c *NIC, points ...Point) (detach func()) {
	if w == nil || c == nil {
		return func() {}
	}
	mask := uint8(allPoints)
	if len(points) > 0 {
		mask = 0
		for _, p := range points {
			mask |= 1 << p
		}
	}
	w.nicMu.Lock()
	s := w.newSink(c, mask, false)
	w.nicMu.Unlock()
	if w.closed.Load() {
		return func() {}
	}
	c.attach(s)
	return func() { c.detach(s) }
}

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
	lt := w.linkType
	if c.linkType != 0 {
		lt = c.linkType
	}
	return pcapgo.NgInterface{
		Name:        c.name + "@" + p.String(),
		Description: c.name + " " + p.String() + ": " + desc,
		OS:          runtime.GOOS,
		LinkType:    lt,
		SnapLength:  uint32(w.snaplen),
	}
}

// sectionInfo is the section header of every file.
func (w *Writer) sectionInfo() pcapgo.NgWriterOptions {
	return pcapgo.NgWriterOptions{SectionInfo: pcapgo.NgSectionInfo{
		Hardware:    runtime.GOARCH,
		OS:          runtime.GOOS,
		Application: "vnic",
		Comment:     w.comment,
	}}
}

// addIntf writes an interface description block into o (the section
// header first, with it, if o has none yet) and returns its index.
func (w *Writer) addIntf(o *output, intf pcapgo.NgInterface) (int, error) {
	if o.ng == nil {
		// bufio.NewWriter inside NgWriter returns o.bw itself (it is
		// large enough), so NgWriter's blocks (header, interfaces,
		// statistics) and writeEPB's packets share one buffer and stay
		// in order.
		ng, err := pcapgo.NewNgWriterInterface(o.bw, intf, w.sectionInfo())
		if err != nil {
			return 0, err
		}
		o.ng = ng
		o.nIntf = 1
		return 0, nil
	}
	id, err := o.ng.AddInterface(intf)
	if err != nil {
		return 0, err
	}
	o.nIntf++
	return id, nil
}

// placeholder starts o with an interface that carries no packets: NgWriter
// writes one interface with the section header, and a file with no NIC
// still needs its header.
func (w *Writer) placeholder(o *output) error {
	_, err := w.addIntf(o, pcapgo.NgInterface{Name: "vnic", Description: "vnic capture (no packets)", LinkType: w.linkType})
	return err
}

// addIntfs writes the interface description blocks of s, one per point
// it records, all at once. Writer goroutine only (or newWriter).
func (w *Writer) addIntfs(s *sink) error {
	if !s.hasIDB {
		s.hasIDB = true
		w.order = append(w.order, s)
	}
	for p := HostTX; p < numPoints; p++ {
		if !s.has(p) || s.outs[p] != nil {
			continue
		}
		id, err := w.addIntf(w.main, w.intf(s.nic, p))
		if err != nil {
			return fmt.Errorf("capture: write pcapng interface %s@%s: %w", s.nic.name, p, err)
		}
		s.ids[p], s.outs[p] = id, w.main
	}
	return nil
}

// NIC returns the recorder for ifname, creating it on first use and
// recording it at every point. Safe on a nil Writer (returns nil).
func (w *Writer) NIC(ifname string) *NIC {
	if w == nil {
		return nil
	}
	if c := (*w.nics.Load())[ifname]; c != nil {
		return c
	}
	w.nicMu.Lock()
	defer w.nicMu.Unlock()
	if c := (*w.nics.Load())[ifname]; c != nil {
		return c
	}
	c := w.nicFor(ifname)
	s := w.newSink(c, allPoints, false)
	if !w.closed.Load() {
		c.attach(s)
	}
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

// HostTX is Writer.HostTX for this NIC. A NIC that nothing records
// returns 0 without numbering.
func (c *NIC) HostTX(ts time.Time, hdr virtio.Hdr, pkt []byte) uint64 {
	if c == nil {
		return 0
	}
	ss := c.sinks.Load()
	if ss == nil {
		return 0
	}
	n := c.txSeq.Add(1)
	for _, s := range *ss {
		if !s.has(HostTX) {
			continue
		}
		if r := s.w.get(s, HostTX, pkt); r != nil {
			r.ts, r.dir, r.hdr, r.super = ts, Out, hdr, n
			s.w.send(r)
		}
	}
	return n
}

// Wire is Writer.Wire for this NIC.
func (c *NIC) Wire(ts time.Time, dir Dir, pkt []byte, origin Origin) {
	if c == nil {
		return
	}
	ss := c.sinks.Load()
	if ss == nil {
		return
	}
	for _, s := range *ss {
		if !s.has(Wire) {
			continue
		}
		if r := s.w.get(s, Wire, pkt); r != nil {
			r.ts, r.dir, r.origin = ts, dir, origin
			s.w.send(r)
		}
	}
}

// ReserveHostRX is Writer.ReserveHostRX for this NIC (0 when nothing
// records it).
func (c *NIC) ReserveHostRX() uint64 {
	if c == nil || c.sinks.Load() == nil {
		return 0
	}
	return c.rxSeq.Add(1)
}

// HostRX is Writer.HostRX for this NIC.
func (c *NIC) HostRX(ts time.Time, hdr virtio.Hdr, pkt []byte, n uint64, merged int) uint64 {
	if c == nil {
		return 0
	}
	ss := c.sinks.Load()
	if ss == nil {
		return 0
	}
	if n == 0 {
		n = c.rxSeq.Add(1)
	}
	for _, s := range *ss {
		if !s.has(HostRX) {
			continue
		}
		if r := s.w.get(s, HostRX, pkt); r != nil {
			r.ts, r.dir, r.hdr, r.super, r.merged = ts, In, hdr, n, merged
			s.w.send(r)
		}
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
		Late:    w.late.Load(),
	}
}

// Close stops recording (its NICs no longer offer it packets), waits for
// the queued packets to be written, writes per-interface statistics
// (packets offered and dropped), flushes and, for Create, closes the
// files; with Options.PointFile it then merges the per-point files into
// the file Create named (which takes about as long as copying them).
// Packets recorded concurrently with Close may be lost. Calling Close
// again returns the first result. Safe on a nil Writer.
func (w *Writer) Close() error {
	if w == nil {
		return nil
	}
	w.closeOnce.Do(func() {
		w.closed.Store(true)
		w.nicMu.Lock()
		for _, s := range w.sinks {
			s.nic.detach(s)
		}
		w.nicMu.Unlock()
		close(w.stop)
		<-w.done
		w.closeErr = w.err
	})
	return w.closeErr
}

// drop counts a packet the writer fell behind on.
func (w *Writer) drop(s *sink, p Point) {
	w.dropped.Add(1)
	s.dropped[p].Add(1)
}

// get copies the first snaplen bytes of pkt into a pooled record, or
// returns nil (and counts a drop) when the writer is closed or behind.
// Whether there is room is decided before the copy, so a drop costs a few
// atomic loads; nothing is locked, and nothing is allocated once the pools
// are warm.
func (w *Writer) get(s *sink, p Point, pkt []byte) *rec {
	if w.closed.Load() {
		return nil
	}
	n := len(pkt)
	if w.snaplen > 0 && n > w.snaplen {
		n = w.snaplen
	}
	if !w.block && w.q.full() {
		w.drop(s, p)
		return nil
	}
	size := int64(bufSizeFor(n))
	for w.inflight.Add(size) > w.maxBytes {
		w.inflight.Add(-size)
		if !w.block {
			w.drop(s, p)
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
	r.sink, r.point, r.origLen = s, p, len(pkt)
	return r
}

// send hands r to the writer goroutine. It wakes the writer (a channel
// send that may cost a futex wake-up) only when the writer sleeps or has
// fallen half behind; otherwise the writer's next poll finds r.
func (w *Writer) send(r *rec) {
	for !w.q.push(r) {
		if !w.block || w.closed.Load() {
			if !w.block {
				w.drop(r.sink, r.point)
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
// idleRounds empty polls, writes what the reorder window holds, flushes
// and sleeps until a caller wakes it. Callers wake it only when it sleeps
// or the queue (or its byte budget) is half full.
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
		now := time.Now()
		w.releaseDue(now, idle >= idleRounds)
		if w.dirty && now.Sub(lastFlush) >= w.flushInt {
			w.flush()
			lastFlush = now
		}
		if now.Sub(lastCheck) >= behindWindow {
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
			w.releaseDue(time.Now(), true)
			w.finish()
			return
		}
		w.sleeping.Store(false)
	}
}

// drain moves queued records into the reorder window, at most max of them
// (all if max < 0), writing those already due as it goes (so that their
// buffers go back to the pool while still in cache), and returns how many.
func (w *Writer) drain(max int) int {
	n := 0
	cutoff := time.Now().Add(-w.window).UnixNano()
	for ; n != max; n++ {
		r := w.q.pop()
		if r == nil {
			break
		}
		if w.discard {
			w.release(r)
			continue
		}
		w.arrivals++
		r.seq = w.arrivals
		r.tsn = r.ts.UnixNano()
		w.pending.push(r)
		if w.pending[0].tsn <= cutoff {
			w.write(w.pending.pop())
		}
	}
	return n
}

// releaseDue writes the records of the reorder window that are due: older
// than the window, or all of them (all: the traffic paused, or Close), or
// as many as needed to bring the memory in flight below half the budget.
func (w *Writer) releaseDue(now time.Time, all bool) {
	cutoff := now.Add(-w.window).UnixNano()
	for len(w.pending) > 0 {
		r := w.pending[0]
		if !all && r.tsn > cutoff && w.inflight.Load() < w.maxBytes/2 {
			return
		}
		w.pending.pop()
		w.write(r)
	}
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
	if w.err != nil {
		w.failed.Add(1)
		return
	}
	s := r.sink
	if s.outs[r.point] == nil {
		if err := w.addIntfs(s); err != nil {
			w.fail(err)
			w.failed.Add(1)
			return
		}
	}
	o := s.outs[r.point]
	w.cbuf = w.appendComment(w.cbuf[:0], r)
	tsn := r.tsn
	if tsn < o.lastTS {
		// Later than the reorder window: keep the file in time order and
		// say so.
		w.cbuf = append(w.cbuf, "; recorded late: stamped +"...)
		w.cbuf = append(w.cbuf, time.Duration(o.lastTS-tsn).String()...)
		w.cbuf = append(w.cbuf, " after its batch's time"...)
		tsn = o.lastTS
		w.late.Add(1)
	}
	o.lastTS = tsn
	if err := w.writeEPB(o, s.ids[r.point], r, tsn, w.cbuf); err != nil {
		w.fail(fmt.Errorf("capture: write packet to %s: %w", o.name, err))
		w.failed.Add(1)
		return
	}
	s.written[r.point]++
	w.written.Add(1)
	w.bytes.Add(uint64(len(r.data)))
	w.dirty = true
}

// outputs returns every output w writes while recording.
func (w *Writer) outputs() []*output { return []*output{w.main} }

func (w *Writer) flush() {
	w.dirty = false
	if w.err != nil {
		return
	}
	for _, o := range w.outputs() {
		if o.ng != nil {
			if err := o.ng.Flush(); err != nil {
				w.fail(fmt.Errorf("capture: write to %s: %w", o.name, err))
				return
			}
		}
		if err := o.bw.Flush(); err != nil {
			w.fail(fmt.Errorf("capture: write to %s: %w", o.name, err))
			return
		}
	}
}

// fail records the first write error; later packets are counted as Failed.
func (w *Writer) fail(err error) {
	if w.err == nil {
		w.err = err
		w.log.Error("packet capture stopped: writing the pcapng file failed; free disk space or choose another path", "file", err)
	}
}

// finish writes interface statistics, flushes and closes the file, and
// splits it into per-point files.
func (w *Writer) finish() {
	now := time.Now()
	if w.err == nil {
		// NICs whose every packet was dropped still get interfaces, so the
		// statistics can say so.
		w.nicMu.Lock()
		sinks := append([]*sink(nil), w.sinks...)
		w.nicMu.Unlock()
		for _, s := range sinks {
			for p := HostTX; p < numPoints; p++ {
				if s.has(p) && s.outs[p] == nil && s.dropped[p].Load() != 0 {
					if err := w.addIntfs(s); err != nil {
						w.fail(err)
						break
					}
				}
			}
		}
	}
	if w.main.ng == nil && w.err == nil {
		if err := w.placeholder(w.main); err != nil {
			w.fail(fmt.Errorf("capture: write pcapng header: %w", err))
		}
	}
	if w.err == nil {
	stats:
		for _, s := range w.order {
			for p := HostTX; p < numPoints; p++ {
				o := s.outs[p]
				if o == nil {
					continue
				}
				if err := o.ng.WriteInterfaceStats(s.ids[p], s.isb(p, w.start, now)); err != nil {
					w.fail(fmt.Errorf("capture: write statistics to %s: %w", o.name, err))
					break stats
				}
			}
		}
	}
	w.flush()
	w.closeOutputs()
	if w.split != nil && w.err == nil {
		if err := w.splitFile(now); err != nil {
			w.fail(err)
		}
	}
	if s := w.Stats(); s.Dropped > 0 || s.Failed > 0 {
		w.log.Warn("packet capture incomplete", "file", w.name(), "written", s.Written, "dropped", s.Dropped, "failed", s.Failed)
	}
}

// name is the file name for messages.
func (w *Writer) name() string { return w.main.name }

// isb is the interface statistics of s at p.
func (s *sink) isb(p Point, start, end time.Time) pcapgo.NgInterfaceStatistics {
	d := s.dropped[p].Load()
	return pcapgo.NgInterfaceStatistics{
		LastUpdate:      end,
		StartTime:       start,
		EndTime:         end,
		PacketsReceived: s.written[p] + d,
		PacketsDropped:  d,
	}
}

func (w *Writer) closeOutputs() {
	for _, o := range w.outputs() {
		if o.closer != nil {
			if err := o.closer.Close(); err != nil && w.err == nil {
				w.err = fmt.Errorf("capture: close %s: %w", o.name, err)
			}
			o.closer = nil
		}
	}
}
