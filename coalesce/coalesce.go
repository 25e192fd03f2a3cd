package coalesce

import (
	"fmt"

	"vnic/vnic/virtio"
)

// Options configure an Engine. The zero value is the kernel's default
// receive path: GRO on, TCP only, 65535-byte super-packets, checksums
// validated.
type Options struct {
	// Disabled is the receiver's `ethtool -K dev gro off`: nothing merges,
	// every packet passes with a zero header.
	Disabled bool
	// UDP enables UDP GRO (UDP_L4 super-packets), as rx-udp-gro-forwarding
	// / UDP_GRO sockets do.
	UDP bool
	// MaxSize caps a merged IP packet's length; 0 means 65535 (the legacy
	// GRO limit, gro_max_size). Values above 65535 are treated as 65535:
	// a BIG TCP super-packet needs a jumbo header a TUN cannot take.
	MaxSize int
	// TrustChecksums skips the per-packet TCP/UDP checksum validation,
	// as the kernel does for an skb that arrives CHECKSUM_UNNECESSARY (a
	// NIC that verified it, or a TUN frame with VIRTIO_NET_HDR_F_DATA_VALID).
	// Only for a wire side whose checksums are known good (our own
	// segmenter); the default validates, as GRO on CHECKSUM_NONE does.
	TrustChecksums bool
	// MaxHeld is how many packets may be held open for merging at once; a
	// packet of a new flow beyond it first completes the oldest held one
	// (gro_flush_oldest). 0 means 64: the kernel's 8 GRO hash buckets of
	// MAX_GRO_SKBS (8) each, for a NIC that spreads flows by RSS hash. A
	// single-queue TUN with IFF_NAPI (the kernel oracle) leaves skb->hash 0,
	// so every flow shares one bucket: use 8 to match it.
	MaxHeld int
	// TUNEgress models the kernel handing its GRO output to a TUN device
	// (forwarding to a TUN opened with CSUM|TSO4|TSO6), as the kernel
	// oracle does. A fixed-ID TCPv4 run (SKB_GSO_TCP_FIXEDID) cannot cross
	// to a TUN: it needs tx-tcp-mangleid-segmentation, which a TUN does
	// not enable, so validate_xmit_skb segments it again. With TUNEgress
	// such runs are still tracked, so they end and start packets exactly
	// as the kernel's do, but their packets are handed on unmerged, byte
	// for byte as they arrived. Off, the output is what GRO itself
	// produced (what tcpdump on the receiving interface shows).
	TUNEgress bool
	// MarkValid reports the receive checksum check, as a NIC with
	// rx-checksumming on reports CHECKSUM_UNNECESSARY: every packet handed
	// on unmerged whose TCP/UDP checksum the engine verified (or that
	// TrustChecksums vouched for) gets VIRTIO_NET_HDR_F_DATA_VALID, as
	// the kernel's GRO leaves what it validated (skb_gro_checksum_validate)
	// and virtio_net_hdr_from_skb reports it; the receiving kernel then
	// does not verify it again. Packets the engine did not verify (GRO
	// off, IPv4 with options, fragments, a length mismatch, a checksum
	// that failed: Stats.Passed[PassBadL4Checksum]) keep a zero header,
	// merged packets their NEEDS_CSUM header. With UDP GRO off, UDP
	// checksums are then verified too (udp4_gro_receive validates before
	// it looks whether UDP GRO applies). Off, every unmerged packet has a
	// zero header: "the checksums were not verified" (SetMarkValid turns
	// it off and on per batch).
	MarkValid bool
	// L2Len is the length of the link-layer header in front of every
	// packet: 14 for the Ethernet frames of a TAP device, 0 (the default)
	// for the IP packets of a TUN. With it, a frame merges only with
	// frames whose link-layer header is byte for byte the same
	// (dev_gro_receive: compare_ether_header), a frame whose EtherType is
	// not IPv4 or IPv6 passes (PassNotIPEtherType), a merged frame keeps
	// its first frame's header, and the virtio header's csum_start and
	// hdr_len count from the start of the frame, as a TAP device's do.
	L2Len int
}

const (
	legacyMaxSize  = 65535 // GRO_LEGACY_MAX_SIZE - 1: skb_gro_receive needs p->len + len < 65536
	defaultMaxHeld = 64    // GRO_HASH_BUCKETS * MAX_GRO_SKBS
	udpGROCntMax   = 64    // UDP_GRO_CNT_MAX
	defaultBatch   = 256
)

// Engine runs GRO over batches of wire packets. It keeps its tables
// between calls so a steady stream of batches does not allocate. An Engine
// is not safe for concurrent use.
type Engine struct {
	opt     Options
	maxSize int
	maxHeld int

	// held is the GRO list, oldest first (the kernel keeps it newest first
	// and flushes from the tail; the order of completion is the same).
	held []flow
	// hashes mirrors held[k].hash, so the flow lookup scans 8 bytes per
	// held packet instead of a whole flow.
	hashes []uint64
	// next links the packets of a run handed on unmerged (TUNEgress), by
	// buffer index; -1 ends a list.
	next []int32
	// valid marks, by buffer index, the packets whose L4 checksum was
	// verified (or trusted) this batch; cur is the packet being parsed.
	valid []bool
	cur   int

	// Per call.
	bufs   [][]byte
	offset int // where each frame starts, after its virtio header
	ip     int // where each frame's IP packet starts: offset + L2Len
	out    []int

	stats Stats
}

// flow is one held packet: NAPI_GRO_CB(p) and the few header fields GRO
// compares against, with the head's bytes read from its buffer.
type flow struct {
	hash    uint64
	idx     int  // buffer index of the head packet
	v6, udp bool // protocol family and transport
	l4      int  // offset of the L4 header in the IP packet
	thlen   int  // L4 header length
	gsoSize int  // payload of the first segment (skb_shinfo(p)->gso_size)
	count   int  // segments in the packet (NAPI_GRO_CB(p)->count)
	ipLen   int  // IP length of the packet so far (p->len)
	payload int  // L4 payload so far (skb_gro_len(p))
	seq     uint32
	ulen    uint16 // UDP length field of the first datagram (uh2->len)
	fixedID bool   // NAPI_GRO_CB(p)->ip_fixedid
	virtual bool   // TUNEgress run: members linked through Engine.next
	last    int32  // last member of a virtual run
}

// New returns an Engine with tables sized for the options.
func New(opt Options) *Engine {
	e := &Engine{}
	e.setOptions(opt)
	e.held = make([]flow, 0, e.maxHeld)
	e.hashes = make([]uint64, 0, e.maxHeld)
	e.next = make([]int32, defaultBatch)
	e.valid = make([]bool, defaultBatch)
	return e
}

func (e *Engine) setOptions(opt Options) {
	e.opt = opt
	e.maxSize = opt.MaxSize
	if e.maxSize <= 0 || e.maxSize > legacyMaxSize {
		e.maxSize = legacyMaxSize
	}
	e.maxHeld = opt.MaxHeld
	if e.maxHeld <= 0 {
		e.maxHeld = defaultMaxHeld
	}
}

// SetDisabled turns GRO off or on at run time: the daemon calls it when it
// sees `ethtool -K dev gro off/on` on the receiving device. It takes effect
// at the next Coalesce call.
func (e *Engine) SetDisabled(disabled bool) { e.opt.Disabled = disabled }

// SetTrustChecksums turns the per-packet TCP/UDP checksum validation off
// (true) or on at run time, for a batch whose checksums the caller knows
// to be right (Options.TrustChecksums). It takes effect at the next
// Coalesce call.
func (e *Engine) SetTrustChecksums(trust bool) { e.opt.TrustChecksums = trust }

// SetMarkValid turns Options.MarkValid on or off at run time: off for a
// batch whose checksums must be reported as not verified (a NIC with
// `ethtool -K dev rx off`), on to report what the engine verified. It
// takes effect at the next Coalesce call.
func (e *Engine) SetMarkValid(mark bool) { e.opt.MarkValid = mark }

// Stats returns a copy of the engine's counters.
func (e *Engine) Stats() Stats { return e.stats }

// Coalesce runs GRO over one batch (one NAPI poll): bufs[i][offset:] holds
// one wire IP packet (an Ethernet frame with Options.L2Len), offset >=
// virtio.Size is headroom. Merged packets
// grow in place in the buffer of the flow's first packet (within
// cap(bufs[i]); a buffer without room for a merge does not become a merge
// head). It appends to toWrite the indices of the buffers to hand to the
// kernel, in order (order within a flow preserved), each with its virtio
// header written in bufs[i][offset-virtio.Size:offset] and bufs[i]
// resliced to the packet's end; then returns toWrite.
//
// The order is the kernel's order of delivery: a packet that is not held
// goes out when it arrives, a held packet when something completes it
// (the segment that ends it, the next segment of its flow that cannot
// merge, eviction) and the rest at the end of the batch, oldest first.
// Like the kernel, a packet that is passed on before GRO compares it with
// anything (a bad checksum, an IPv4 fragment or options, a hop-by-hop
// header) goes out ahead of an older held packet of its flow.
func (e *Engine) Coalesce(bufs [][]byte, offset int, toWrite []int) ([]int, error) {
	if offset < virtio.Size {
		return toWrite, fmt.Errorf("%w: offset %d, need at least %d", ErrOffset, offset, virtio.Size)
	}
	for i, b := range bufs {
		if len(b) < offset {
			return toWrite, fmt.Errorf("%w: buffer %d is %d bytes, offset %d", ErrShortBuffer, i, len(b), offset)
		}
	}
	e.stats.PacketsIn += uint64(len(bufs))
	if e.opt.Disabled {
		for i := range bufs {
			clear(bufs[i][offset-virtio.Size : offset])
			toWrite = append(toWrite, i)
		}
		e.stats.Passed[PassDisabled] += uint64(len(bufs))
		e.stats.PacketsOut += uint64(len(bufs))
		return toWrite, nil
	}
	if len(e.next) < len(bufs) {
		e.next = make([]int32, len(bufs))
		e.valid = make([]bool, len(bufs))
	}
	e.bufs, e.offset, e.ip, e.out = bufs, offset, offset+e.opt.L2Len, toWrite
	for i := range bufs {
		e.receive(i)
	}
	// napi_gro_flush: everything still held, oldest first.
	for k := range e.held {
		e.finish(&e.held[k], FlushBatchEnd)
	}
	e.held, e.hashes = e.held[:0], e.hashes[:0]
	toWrite = e.out
	e.bufs, e.out = nil, nil
	return toWrite, nil
}
