package kerneltest

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"vnic/vnic/nsutil"
	"vnic/vnic/tundev"
	"vnic/vnic/virtio"
)

// Frame is one frame read from (or written to) a TUN device with
// IFF_VNET_HDR: the virtio_net_hdr as the kernel filled it in, and the IP
// packet after it.
type Frame struct {
	Hdr virtio.Hdr
	// Tunnel is the whole 24-byte header, for a device that has one (the
	// UDP tunnel oracle's `out`); its Hdr equals Hdr.
	Tunnel virtio.HdrTunnel
	Pkt    []byte
}

// Routes the oracles install: everything the tests may address goes out of
// `out`. Only the benchmark range and the ULA range are used, and both stay
// inside the namespace (the namespace has no other link).
var (
	route4 = netip.MustParsePrefix("198.18.0.0/15")
	route6 = netip.MustParsePrefix("fd00::/8")
)

// MTU of both TUN devices: the largest a TUN takes, so that forwarding
// never fragments or sends "fragmentation needed" for a test packet (an
// IPv4 or IPv6 packet cannot be larger anyway).
const tunMTU = 65535

// pair is the forwarding setup both oracles share: a namespace with
// forwarding on, TUN `in` where test packets enter, TUN `out` where the
// kernel sends them (route4 and route6 point at it).
type pair struct {
	ns      *Netns
	in, out *tunDev
	// l2 is the Ethernet header's length in front of each packet: 14 for
	// the TAP oracles (NewGSOTAP, NewGROTAP), 0 for TUN.
	l2 int
}

func newPair(t testing.TB, inNAPI bool, inOffloads, outOffloads tundev.Offloads, inHdrLen int) *pair {
	t.Helper()
	return newPairWith(t, pairConfig{inNAPI: inNAPI, inOffloads: inOffloads, outOffloads: outOffloads, inHdrLen: inHdrLen})
}

// pairConfig says how newPairWith opens the two TUN devices (header
// sizes: 0 means 10).
type pairConfig struct {
	inNAPI                  bool
	inOffloads, outOffloads tundev.Offloads
	inHdrLen, outHdrLen     int
	// tap makes both devices TAPs (tap_linux.go): Ethernet frames, `in`
	// with the address TAPInMAC, everything routed via a permanent
	// neighbour out of `out`.
	tap bool
}

func newPairWith(t testing.TB, pc pairConfig) *pair {
	t.Helper()
	ns := NewNetns(t)
	p := &pair{ns: ns}
	if pc.tap {
		p.l2 = ethHeaderLen
	}
	t.Cleanup(func() {
		// Closing a non-persistent TUN's only fd deletes the device.
		for _, d := range []*tunDev{p.in, p.out} {
			if d != nil {
				if err := d.close(); err != nil {
					t.Errorf("kerneltest: close TUN %s: %v", d.name, err)
				}
			}
		}
	})
	err := ns.Do(func() error {
		// Defaults first: devices created afterwards inherit them.
		for _, kv := range [][2]string{
			{"net.ipv4.ip_forward", "1"},
			{"net.ipv4.conf.all.rp_filter", "0"},
			{"net.ipv4.conf.default.rp_filter", "0"},
			{"net.ipv6.conf.all.forwarding", "1"},
			// No link-local address (addr_gen_mode 1 = none), hence no
			// DAD, router solicitation or solicited-node MLD traffic; the
			// readers filter by flow anyway.
			{"net.ipv6.conf.default.addr_gen_mode", "1"},
			{"net.ipv6.conf.default.accept_ra", "0"},
			{"net.ipv6.conf.default.accept_dad", "0"},
			{"net.ipv6.conf.default.dad_transmits", "0"},
			{"net.ipv6.conf.default.router_solicitations", "0"},
		} {
			if err := nsutil.Sysctl("", kv[0], kv[1]); err != nil {
				return err
			}
		}
		var err error
		if p.in, err = openTUN("in", pc.inNAPI, pc.inOffloads, pc.inHdrLen, pc.tap); err != nil {
			return err
		}
		if p.out, err = openTUN("out", false, pc.outOffloads, pc.outHdrLen, pc.tap); err != nil {
			return err
		}
		for _, dev := range []string{"in", "out"} {
			if err := nsutil.Sysctl("", "net.ipv4.conf."+dev+".rp_filter", "0"); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	h, err := nsutil.Handle(ns.Name)
	if err != nil {
		t.Fatalf("kerneltest: %v", err)
	}
	defer h.Close()
	if pc.tap {
		if err := configureTAPs(h); err != nil {
			t.Fatalf("kerneltest: %v", err)
		}
	}
	for _, name := range []string{"in", "out"} {
		c := nsutil.LinkConfig{
			MTU: tunMTU,
			// Room for the longest burst a test makes (gso_size 1).
			TxQueueLen: 8192,
			Up:         true,
		}
		if name == "out" {
			c.Routes = []nsutil.Route{{Dst: route4}, {Dst: route6}}
		}
		if pc.tap {
			tapLinkConfig(name, &c)
		}
		if err := nsutil.ConfigureLink(h, name, c); err != nil {
			t.Fatalf("kerneltest: %v", err)
		}
	}
	return p
}

// flow is the (version, source, destination) of an IP packet; the oracles
// keep only frames of the flows the test sent, which drops anything the
// kernel originates itself (MLD, ICMP errors).
type flow struct {
	v        byte
	src, dst [16]byte
}

func flowOf(pkt []byte) (flow, bool) {
	var f flow
	if len(pkt) < 1 {
		return f, false
	}
	f.v = pkt[0] >> 4
	switch {
	case f.v == 4 && len(pkt) >= 20:
		copy(f.src[:], pkt[12:16])
		copy(f.dst[:], pkt[16:20])
	case f.v == 6 && len(pkt) >= 40:
		copy(f.src[:], pkt[8:24])
		copy(f.dst[:], pkt[24:40])
	default:
		return f, false
	}
	return f, true
}

func keepFlows(pkts ...[]byte) func(Frame) bool {
	flows := map[flow]bool{}
	for _, p := range pkts {
		if f, ok := flowOf(p); ok {
			flows[f] = true
		}
	}
	return func(fr Frame) bool {
		f, ok := flowOf(fr.Pkt)
		return ok && flows[f]
	}
}

// GSO is the kernel's software segmentation (GSO) as an oracle: TUN `in`
// takes super-packets with the offloads the daemon's device negotiates
// (CSUM|TSO4|TSO6|TSO_ECN|USO4|USO6), the namespace forwards them to TUN
// `out`, which has no offloads, so the kernel segments them and completes
// their checksums in software (validate_xmit_skb → skb_gso_segment,
// skb_checksum_help) before `out` reads them. Not safe for concurrent use.
type GSO struct {
	p *pair
}

// GSOOptions configures the GSO oracle's device `in`.
type GSOOptions struct {
	// VnetHdrSize is the virtio header size frames are written with: 10
	// (0 means 10) or 12 (struct virtio_net_hdr_mrg_rxbuf, num_buffers
	// written as 0).
	//
	// Equivalent to: ioctl(fd, TUNSETVNETHDRSZ, &size)
	VnetHdrSize int
}

// NewGSO builds the segmentation recipe in a fresh namespace; everything is
// removed in t.Cleanup.
func NewGSO(t testing.TB) *GSO { return NewGSOWith(t, GSOOptions{}) }

// NewGSOWith is NewGSO with options.
func NewGSOWith(t testing.TB, opt GSOOptions) *GSO {
	t.Helper()
	return &GSO{p: newPair(t, false, offloadsAll, 0, opt.VnetHdrSize)}
}

// Netns returns the oracle's namespace.
func (o *GSO) Netns() *Netns { return o.p.ns }

// Timing of the GSO oracle's reads. Segmentation happens synchronously in
// the write(2) (tun_get_user → netif_receive_skb → ip_forward →
// dev_queue_xmit), so the segments are queued on `out` before write
// returns. Reading stops once the segments carry the whole payload (plus
// gsoGrace for anything unexpected), or after gsoQuiet without a frame.
const (
	gsoFirst = 50 * time.Millisecond
	gsoQuiet = 10 * time.Millisecond
	gsoGrace = 1 * time.Millisecond
	gsoLimit = 5 * time.Second
)

// SegmentFrames writes one frame (h, then pkt) into `in` and returns the
// frames `out` emits for the same flow, with their virtio headers. An
// error from write(2) means the kernel refused the frame
// (virtio_net_hdr_to_skb, e.g. EINVAL).
func (o *GSO) SegmentFrames(h virtio.Hdr, pkt []byte) ([]Frame, error) {
	o.p.out.drain()
	if err := o.p.in.write(h, pkt); err != nil {
		return nil, err
	}
	ip := ipPart(pkt, o.p.l2)
	fr, _, err := o.p.out.collect(gsoFirst, gsoQuiet, gsoGrace, gsoLimit, PayloadLen(trimmed(ip)), 0, keepFlows(ip))
	return fr, err
}

// Segment is SegmentFrames returning only the IP packets: what crosses
// the wire.
func (o *GSO) Segment(h virtio.Hdr, pkt []byte) ([][]byte, error) {
	fr, err := o.SegmentFrames(h, pkt)
	pkts := make([][]byte, len(fr))
	for i := range fr {
		pkts[i] = fr[i].Pkt
	}
	return pkts, err
}

// GROOptions configures the GRO oracle's receiving device `in`.
type GROOptions struct {
	// UDPGROForwarding turns on rx-udp-gro-forwarding, without which the
	// kernel does not merge forwarded UDP (udp4_gro_receive only merges
	// for local sockets with UDP_GRO, or with NETIF_F_GRO_UDP_FWD).
	//
	// Equivalent to: ethtool -K in rx-udp-gro-forwarding on
	UDPGROForwarding bool
	// DisableGRO turns GRO off on `in`: every packet comes out alone.
	//
	// Equivalent to: ethtool -K in gro off
	DisableGRO bool
}

// GRO is the kernel's GRO as an oracle. TUN `in` (IFF_NAPI, no offloads)
// receives wire packets through NAPI (tun_napi_poll → napi_gro_receive),
// the namespace forwards what GRO made of them to TUN `out`, which has
// CSUM|TSO4|TSO6|TSO_ECN|USO4|USO6, so a merged packet reaches `out`'s
// reader whole, with its GSO metadata in the virtio header
// (virtio_net_hdr_from_skb). Not safe for concurrent use.
//
// GRO only merges packets that are on its list in the same NAPI cycle, and
// a TUN write(2) schedules and runs one poll per packet, so the oracle
// holds the flush across polls: gro_flush_timeout (1 ms) and
// napi_defer_hard_irqs (10) on `in` make napi_complete_done keep the GRO
// list and arm a timer instead of flushing, except for packets older than
// the current jiffy. Coalesce therefore starts each batch right after a
// jiffy tick.
type GRO struct {
	p   *pair
	opt GROOptions
	ip  *ipIn

	splitRetries int
	// lateFlushes counts batches whose held list left GRO after groFirst
	// (a loaded machine delaying the NAPI timer poll).
	lateFlushes int
}

// NewGRO builds the GRO recipe in a fresh namespace; everything is removed
// in t.Cleanup.
func NewGRO(t testing.TB, opt GROOptions) *GRO {
	t.Helper()
	return newGRO(t, pairConfig{inNAPI: true, outOffloads: offloadsAll}, opt)
}

func newGRO(t testing.TB, pc pairConfig, opt GROOptions) *GRO {
	t.Helper()
	p := newPairWith(t, pc)
	for _, kv := range [][2]string{
		{"class/net/in/gro_flush_timeout", "1000000"},
		{"class/net/in/napi_defer_hard_irqs", "10"},
	} {
		if err := p.ns.WriteSysfs(kv[0], kv[1]); err != nil {
			t.Fatal(err)
		}
	}
	if opt.UDPGROForwarding {
		if err := p.ns.SetFeature("in", "rx-udp-gro-forwarding", true); err != nil {
			t.Fatal(err)
		}
	}
	if opt.DisableGRO {
		if err := p.ns.SetFeature("in", "rx-gro", false); err != nil {
			t.Fatal(err)
		}
	}
	o := &GRO{p: p, opt: opt}
	if err := p.ns.Do(func() (err error) {
		o.ip, err = openIPIn()
		return err
	}); err != nil {
		t.Fatalf("kerneltest: %v", err)
	}
	t.Cleanup(o.ip.close)
	return o
}

// Netns returns the oracle's namespace.
func (o *GRO) Netns() *Netns { return o.p.ns }

// Retries returns how many batches so far had to be written again because
// a jiffy tick came in the middle of the writes (see CoalesceFrames).
func (o *GRO) Retries() int { return o.splitRetries }

// LateFlushes returns how many batches so far came out of GRO later than
// the first-frame wait of an idle machine (groFirst), and were waited for
// (see CoalesceFrames).
func (o *GRO) LateFlushes() int { return o.lateFlushes }

// Timing of the GRO oracle's reads. Packets GRO does not hold (flushed
// ones: pure ACKs, PSH, IPv4 options, GRO off) come out during the
// writes; the held list comes out in one burst on the first timer poll
// after the batch's jiffy has passed (HZ 250 here: within about 5 ms,
// but on a loaded machine the poll can run in ksoftirqd tens of
// milliseconds later). Reading stops once the frames carry the whole
// payload of the batch and as many empty segments as it had (plus
// groGrace), or after groQuiet without a frame — 100 ms, well past any
// delay seen under load.
const (
	groFirst = 250 * time.Millisecond
	groQuiet = 100 * time.Millisecond
	groGrace = 3 * time.Millisecond
	groLimit = 5 * time.Second
)

// Coalesce writes pkts into `in` back to back, each with a zero virtio
// header (no flags: the kernel verifies the checksums itself, as for a NIC
// without receive checksum offload), and returns the frames `out` emits
// for the same flows.
func (o *GRO) Coalesce(pkts [][]byte) ([]Frame, error) {
	in := make([]Frame, len(pkts))
	for i, p := range pkts {
		in[i] = Frame{Pkt: p}
	}
	return o.CoalesceFrames(in)
}

// CoalesceFrames is Coalesce with a virtio header of the caller's choosing
// per packet (for example DATA_VALID, as a NIC that verified the checksum
// would set).
//
// The batch is written right after a jiffy tick. If the coarse clock shows
// that a tick came before the last write anyway (the writer was preempted,
// the machine is busy), GRO may have flushed part of the batch early, so
// the batch is drained and written again, up to 10 times; after that the
// last result comes back with an error.
//
// Before reading, it waits until the namespace's IP layer has counted every
// packet of the batch (ipIn: the segments of a merged packet count one
// each), up to groLimit: GRO hands its held list on from a timer poll,
// which a loaded machine can delay far past groFirst. Packets the kernel
// drops before IP (none in a valid batch) end that wait at groLimit.
func (o *GRO) CoalesceFrames(in []Frame) ([]Frame, error) {
	o.p.out.drain()
	pkts := make([][]byte, len(in))
	frames := make([][]byte, len(in))
	for i, f := range in {
		pkts[i] = ipPart(f.Pkt, o.p.l2)
		frames[i] = make([]byte, virtio.Size+len(f.Pkt))
		f.Hdr.Encode(frames[i])
		copy(frames[i][virtio.Size:], f.Pkt)
	}
	want, empty := expected(pkts)
	keep := keepFlows(pkts...)
	var out []Frame
	for attempt := 0; ; attempt++ {
		before, err := o.ip.read()
		if err != nil {
			return nil, err
		}
		start, gap, err := o.writeBurst(frames)
		if err != nil {
			return nil, err
		}
		// A tick during the writes, or a pause between two of them longer
		// than the held flush's timer (a preempted writer), may have
		// flushed part of the batch early.
		split := coarseNow() != start || gap > groHoldWindow
		t1 := time.Now()
		if _, err := o.ip.waitIPIn(before+uint64(len(frames)), groLimit); err != nil {
			return nil, err
		}
		if time.Since(t1) > groFirst {
			o.lateFlushes++
		}
		out, _, err = o.p.out.collect(groFirst, groQuiet, groGrace, groLimit, want, empty, keep)
		if err != nil || !split {
			o.splitRetries += attempt
			return out, err
		}
		if attempt == groAttempts-1 {
			return out, fmt.Errorf("kerneltest: every one of %d attempts to write %d packets within one jiffy was interrupted by a tick (machine too busy?)", groAttempts, len(frames))
		}
	}
}

// groAttempts bounds how often CoalesceFrames repeats a batch whose writes
// were not all within one jiffy, or paused for more than groHoldWindow.
const groAttempts = 10

// writeBurst writes the frames into `in` back to back, starting right
// after a jiffy tick, and returns the coarse time of that tick. The writes
// (and the NAPI polls they run in their softirq) are made from a thread
// raised to SCHED_FIFO for the burst, where the machine allows it, so that
// CPU-bound neighbours cannot preempt the writer between two writes; the
// wait for the tick itself runs at normal priority. It also returns the
// longest pause between two writes (a writer preempted anyway, where
// SCHED_FIFO is not allowed).
func (o *GRO) writeBurst(frames [][]byte) (start unix.Timespec, gap time.Duration, err error) {
	runtime.LockOSThread()
	start = waitTick()
	rt := unix.SchedSetAttr(0, &unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_FIFO, Priority: 1}, 0) == nil
	last := time.Now()
	for i, fr := range frames {
		if werr := o.p.in.writeRaw(fr); werr != nil {
			err = fmt.Errorf("packet %d: %w", i, werr)
			break
		}
		now := time.Now()
		gap, last = max(gap, now.Sub(last)), now
	}
	if rt && unix.SchedSetAttr(0, &unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_NORMAL}, 0) != nil {
		// Never hand a real-time thread back to the scheduler: leaving
		// it locked makes the runtime end it with this goroutine.
		return start, gap, err
	}
	runtime.UnlockOSThread()
	return start, gap, err
}

// expected returns what the frames of a batch must carry in all once
// everything is out: the TCP/UDP payload bytes of its packets (as the
// receiving stack trims each to its IP length), -1 when some packet is
// not TCP or UDP; and the number of packets without payload (pure ACKs),
// which GRO never merges.
func expected(pkts [][]byte) (want, empty int) {
	for _, p := range pkts {
		n := PayloadLen(trimmed(p))
		switch {
		case n < 0:
			want = -1
		case n == 0:
			empty++
		case want >= 0:
			want += n
		}
	}
	return want, empty
}

// trimmed returns pkt cut to its IP length when that is shorter (what
// ip_rcv and ip6_rcv do).
func trimmed(pkt []byte) []byte {
	switch {
	case len(pkt) >= 20 && pkt[0]>>4 == 4:
		if l := int(binary.BigEndian.Uint16(pkt[2:])); l >= 20 && l < len(pkt) {
			return pkt[:l]
		}
	case len(pkt) >= 40 && pkt[0]>>4 == 6:
		if l := 40 + int(binary.BigEndian.Uint16(pkt[4:])); l > 40 && l < len(pkt) {
			return pkt[:l]
		}
	}
	return pkt
}

// groHoldWindow is the longest pause between two writes of a batch: the
// held flush's timer (gro_flush_timeout, 1 ms, re-armed as each write's
// poll completes) hands GRO's list on when it fires, so a writer
// preempted for longer splits the batch without a jiffy tick.
const groHoldWindow = 800 * time.Microsecond

func coarseNow() unix.Timespec {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC_COARSE, &ts)
	return ts
}

// waitTick returns right after the kernel's jiffies counter advances
// (CLOCK_MONOTONIC_COARSE moves with it, in tick_do_update_jiffies64),
// giving the batch that follows a whole jiffy before GRO's flush of old
// packets (napi_complete_done → gro_flush_normal(flush_old)) could split
// it. It returns the new coarse time; if the clock reads differently after
// the batch was written, a tick came in between and the batch is redone.
func waitTick() unix.Timespec {
	a := coarseNow()
	end := time.Now().Add(50 * time.Millisecond)
	for time.Now().Before(end) {
		if b := coarseNow(); b != a {
			return b
		}
	}
	return coarseNow()
}
