package router

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"vnic/coalesce"
	"vnic/segment"
	"vnic/vnic/capture"
	"vnic/vnic/glink"
	"vnic/vnic/virtio"
)

// iface is one interface: its gVisor link and our receive and transmit
// paths around it.
type iface struct {
	r          *Router
	idx        int
	id         tcpip.NICID
	name       string
	mtu        uint32
	maxReceive uint32
	out        func([]glink.Packet)
	cap        *capture.NIC // what tcpdump on this interface shows
	link       *glink.Endpoint
	gro        atomic.Int32 // GROMode

	// mu serialises the receive path (the GRO engines and the buffers
	// below are not safe for concurrent use).
	mu       sync.Mutex
	buggy    *coalesce.Engine // GROBuggy2014
	fixed    *coalesce.Engine // GROFixed (TUNEgress: fixed-ID runs stay unmerged)
	bufs     [][]byte         // NAPIBudget buffers of groOffset+GROMaxSize
	toWrite  []int
	segOut   [][]byte // NAPIBudget buffers of maxReceive: re-segmented packets
	segSizes []int
	batch    [][]byte // what goes to gVisor
	cow      []byte   // copies of packets our rules rewrite

	// Transmit path, only used on the link's output goroutine.
	outPkts []glink.Packet

	cnt ifaceCounters
}

// groOffset is the headroom coalesce writes the virtio header into.
const groOffset = virtio.Size

func (r *Router) newIface(i int, opt Iface) (*iface, error) {
	f := &iface{
		r:          r,
		idx:        i,
		id:         tcpip.NICID(i + 1),
		name:       opt.Name,
		mtu:        opt.MTU,
		maxReceive: opt.MaxReceive,
		out:        opt.Output,
		cap:        opt.Capture,
	}
	f.gro.Store(int32(opt.GRO))
	link, err := glink.New(glink.Options{
		MTU: opt.MTU,
		// GRO hands gVisor merged packets bigger than the MTU.
		MaxInject: GROMaxSize,
		// A router leaves forwarded packets' L4 checksums alone.
		TXChecksumOffload: true,
		// gVisor's IPv4 forwarding reads headers of released chunks
		// (see glink.ForwardGuard).
		ForwardGuard: r.guard,
		Output:       f.output,
	})
	if err != nil {
		return nil, fmt.Errorf("router: interface %s: %w", f.name, err)
	}
	f.link = link
	return f, nil
}

func (f *iface) mode() GROMode { return GROMode(f.gro.Load()) }

// receive is the interface's receive path: the wire packets of one Inject.
func (f *iface) receive(pkts [][]byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	mode := f.mode()
	if mode == GROOff {
		f.batch = f.batch[:0]
		f.cow = f.cow[:0]
		now := f.now()
		for _, b := range pkts {
			if !f.admit(b) {
				continue
			}
			f.cap.HostRX(now, virtio.Hdr{}, b, 0, 1)
			f.deliverOne(b, true)
		}
		f.flush()
		return
	}
	f.ensureGRO()
	for len(pkts) > 0 {
		n := min(len(pkts), NAPIBudget)
		f.poll(mode, pkts[:n])
		pkts = pkts[n:]
	}
}

// admit applies the NIC's own limit.
func (f *iface) admit(b []byte) bool {
	if len(b) > int(f.maxReceive) {
		f.cnt.dropOversize.Add(1)
		return false
	}
	return true
}

func (f *iface) ensureGRO() {
	if f.bufs != nil {
		return
	}
	f.buggy = coalesce.New(coalesce.Options{MaxSize: GROMaxSize})
	f.fixed = coalesce.New(coalesce.Options{MaxSize: GROMaxSize, TUNEgress: true})
	f.bufs = make([][]byte, NAPIBudget)
	f.segOut = make([][]byte, NAPIBudget)
	for i := range f.bufs {
		f.bufs[i] = make([]byte, groOffset+GROMaxSize)
		f.segOut[i] = make([]byte, f.maxReceive)
	}
	f.segSizes = make([]int, NAPIBudget)
}

// poll runs GRO over one NAPI poll's worth of wire packets and hands the
// result to gVisor.
func (f *iface) poll(mode GROMode, pkts [][]byte) {
	bufs := f.bufs[:0]
	for _, b := range pkts {
		if !f.admit(b) {
			continue
		}
		k := len(bufs)
		buf := f.bufs[k][:groOffset+len(b)]
		copy(buf[groOffset:], b)
		bufs = append(bufs, buf)
	}
	if len(bufs) == 0 {
		return
	}
	eng := f.buggy
	if mode == GROFixed {
		eng = f.fixed
	}
	var err error
	f.toWrite, err = eng.Coalesce(bufs, groOffset, f.toWrite[:0])
	if err != nil { // a layout error of ours: cannot happen
		f.r.log.Error("router: GRO", "iface", f.name, "err", err)
		return
	}
	f.cnt.groPolls.Add(1)
	f.batch = f.batch[:0]
	f.cow = f.cow[:0]
	nseg := 0
	now := f.now()
	for _, i := range f.toWrite {
		b := bufs[i]
		var h virtio.Hdr
		_ = h.Decode(b[:groOffset])
		pkt := b[groOffset:]
		f.cap.HostRX(now, h, pkt, 0, merged(h, len(pkt)))
		if h.GSOType == virtio.GSONone {
			f.deliverOne(pkt, false)
			continue
		}
		f.cnt.groSuper.Add(1)
		if mode == GROFixed && f.r.forwardWhole(pkt, h) {
			f.cnt.groForwardedGSO.Add(1)
			continue
		}
		if mode == GRODropsMerged && f.r.mustRefuse(pkt) {
			// gVisor's forwarding: too big, DF, dropped; no ICMP.
			f.cnt.groDroppedMerged.Add(1)
			continue
		}
		if mode == GROBuggy2014 && f.r.mustRefuse(pkt) {
			// The 2014 bug: the merged packet meets the egress MTU check
			// whole.
			completeChecksum(pkt, h)
			f.cnt.groForwardedWhole.Add(1)
			f.deliverOne(pkt, false)
			continue
		}
		// The fixed kernel: each segment meets the MTU check. The
		// segments are the ones that were merged (gso_size is the first
		// segment's payload; IDs increment, PSH only on the last).
		n, err := segment.Segment(h, pkt, f.segOut[nseg:], f.segSizes[nseg:], 0, segment.Options{})
		if err != nil {
			f.cnt.dropResegment.Add(1)
			f.r.log.Warn("router: re-segmenting a GRO packet", "iface", f.name, "err", err)
			continue
		}
		for j := range n {
			f.deliverOne(f.segOut[nseg+j][:f.segSizes[nseg+j]], false)
		}
		f.cnt.groResegmented.Add(uint64(n))
		nseg += n
	}
	f.flush()
}

// forwardWhole is the fixed kernel's forwarding of a GRO packet: kept
// whole through the forwarding path, its segments checked against the
// egress MTU (ip_exceeds_mtu → skb_gso_validate_network_len), its TTL or
// hop limit decremented once, and out on the egress interface as one
// super-packet with its GSO header, for the egress NIC's TSO (whoever
// consumes Iface.Output segments it, as package segment does). It takes
// only the packets gVisor would forward unchanged but for the TTL: TCP
// without IPv4 options or IPv6 extension headers, TTL/hop limit above 1,
// unicast addresses that are not the router's, a route out of the
// router, every segment within the egress MTU, and no firewall rules
// (which see the wire's packets). Anything else returns false and is
// re-segmented and handed to gVisor as before, so every ICMP answer,
// fragmentation and local delivery is still gVisor's.
func (r *Router) forwardWhole(pkt []byte, h virtio.Hdr) bool {
	if len(r.fw) > 0 || r.gvOnly || h.GSOType&^virtio.GSOECN == virtio.GSOUDPL4 {
		return false
	}
	var src, dst netip.Addr
	proto := ipv4.ProtocolNumber
	switch pkt[0] >> 4 {
	case 4:
		ip := header.IPv4(pkt)
		if ip.HeaderLength() != header.IPv4MinimumSize || ip.TTL() <= 1 || ip.Protocol() != uint8(header.TCPProtocolNumber) {
			return false
		}
		src, dst = netip.AddrFrom4(ip.SourceAddress().As4()), netip.AddrFrom4(ip.DestinationAddress().As4())
		if r.isBroadcast(dst) {
			return false
		}
	case 6:
		ip := header.IPv6(pkt)
		if ip.HopLimit() <= 1 || ip.NextHeader() != uint8(header.TCPProtocolNumber) {
			return false
		}
		proto = ipv6.ProtocolNumber
		src, dst = netip.AddrFrom16(ip.SourceAddress().As16()), netip.AddrFrom16(ip.DestinationAddress().As16())
	default:
		return false
	}
	if !src.IsGlobalUnicast() || !dst.IsGlobalUnicast() || r.isOwn(dst) || r.isOwn(src) {
		return false
	}
	rt, err := r.s.FindRoute(0, tcpip.Address{}, tcpip.AddrFromSlice(dst.AsSlice()), proto, false)
	if err != nil {
		return false
	}
	nic, loop := rt.NICID(), rt.Loop()
	rt.Release()
	if loop != stack.PacketOut || nic < 1 || int(nic) > len(r.ifs) {
		return false
	}
	out := r.ifs[nic-1]
	if int(h.HdrLen)+int(h.GSOSize) > int(out.mtu) {
		return false // ip_exceeds_mtu: gVisor answers for each segment
	}
	if proto == ipv4.ProtocolNumber {
		// ip_decrease_ttl: TTL and header checksum, incrementally.
		old := binary.BigEndian.Uint16(pkt[8:])
		pkt[8]--
		updateChecksum(pkt[10:12], old, binary.BigEndian.Uint16(pkt[8:]), false)
	} else {
		pkt[7]--
	}
	// After Close the link drops it (Drops.ClosedOut), as gVisor's would.
	out.link.Forward(h, pkt)
	return true
}

// isBroadcast reports whether a is the broadcast address of one of the
// router's IPv4 prefixes, or the limited broadcast address.
func (r *Router) isBroadcast(a netip.Addr) bool {
	if a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return true
	}
	_, ok := r.bcast[a]
	return ok
}

// mustRefuse reports whether a merged packet is one the 2014 kernel
// refused: DF (always for IPv6), bigger than the MTU of the route to its
// destination. Other merged packets were segmented at the egress by that
// kernel too (ip_finish_output_gso), and are re-segmented here.
func (r *Router) mustRefuse(pkt []byte) bool {
	var dst tcpip.Address
	proto := ipv4.ProtocolNumber
	if pkt[0]>>4 == 4 {
		h := header.IPv4(pkt)
		if h.Flags()&header.IPv4FlagDontFragment == 0 {
			return false
		}
		dst = h.DestinationAddress()
	} else {
		proto = ipv6.ProtocolNumber
		dst = header.IPv6(pkt).DestinationAddress()
	}
	rt, err := r.s.FindRoute(0, tcpip.Address{}, dst, proto, false)
	if err != nil {
		// Unroutable or local: gVisor answers or takes it whole.
		return true
	}
	defer rt.Release()
	return len(pkt) > int(rt.MTU())
}

// completeChecksum folds the L4 bytes into the pseudo-header sum coalesce
// left in a merged packet's checksum field (CHECKSUM_PARTIAL →
// complete), as skb_checksum_help does.
func completeChecksum(pkt []byte, h virtio.Hdr) {
	if h.Flags&virtio.FlagNeedsCsum != 0 {
		segment.CompleteChecksum(pkt, int(h.CsumStart), int(h.CsumOffset))
	}
}

// deliverOne runs the inbound firewall and the TTL correction on one
// packet and queues it for gVisor. borrowed says b belongs to the caller
// of Inject and must be copied before it is rewritten.
func (f *iface) deliverOne(b []byte, borrowed bool) {
	if len(f.r.fw) > 0 {
		var ok bool
		if b, ok = f.r.filter(f, In, b, borrowed, &f.cow); !ok {
			return
		}
	}
	if !f.r.gvOnly {
		b = f.fixTTL(b, borrowed)
	}
	f.batch = append(f.batch, b)
}

func (f *iface) flush() {
	if len(f.batch) > 0 {
		f.link.Inject(f.batch)
	}
	clear(f.batch)
	f.batch = f.batch[:0]
}

// fixTTL corrects a divergence of gVisor's IPv4 forwarding from Linux's:
// gVisor's forwardUnicastPacket only refuses TTL 0 and forwards a packet
// that arrives with TTL 1 with TTL 0; Linux's ip_forward refuses TTL <= 1
// (and IPv6 forwarding in gVisor does check hop limit <= 1). A packet
// with TTL 1 that is not for the router gets TTL 0 here, so that gVisor
// sends time-exceeded. The quoted header in that ICMP then says TTL 0
// where Linux's says 1.
func (f *iface) fixTTL(b []byte, borrowed bool) []byte {
	if len(b) < header.IPv4MinimumSize || b[0]>>4 != 4 {
		return b
	}
	h := header.IPv4(b)
	if h.TTL() != 1 {
		return b
	}
	dst := netip.AddrFrom4(h.DestinationAddress().As4())
	if f.r.isOwn(dst) || dst.IsMulticast() || dst == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return b
	}
	if borrowed {
		b = copyInto(&f.cow, b)
		h = header.IPv4(b)
	}
	// Incremental checksum update (RFC 1624) of the TTL/protocol word.
	old := binary.BigEndian.Uint16(b[8:])
	b[8] = 0
	updateChecksum(b[10:12], old, binary.BigEndian.Uint16(b[8:]), false)
	f.cnt.ttlFixed.Add(1)
	return b
}

// copyInto appends b to the arena and returns the copy. The arena only
// grows within one receive pass; earlier copies stay valid because a
// grown arena is a new array.
func copyInto(arena *[]byte, b []byte) []byte {
	off := len(*arena)
	*arena = append(*arena, b...)
	return (*arena)[off : off+len(b) : off+len(b)]
}

// updateChecksum replaces old by new in the 16-bit word covered by the
// ones' complement checksum stored in field (RFC 1624, eqn. 3). odd says
// the word sits at an odd offset from the start of the checksummed
// region, so its bytes count swapped.
func updateChecksum(field []byte, old, new uint16, odd bool) {
	if odd {
		old, new = old<<8|old>>8, new<<8|new>>8
	}
	c := binary.BigEndian.Uint16(field)
	c = ^checksum.Combine(checksum.Combine(^c, ^old), new)
	binary.BigEndian.PutUint16(field, c)
}

// output is the interface's transmit path, on the link's output goroutine:
// the router's own ICMP is counted (and corrected), the router's own
// TCP/UDP checksums completed, the outbound firewall run, and the rest
// handed to Iface.Output.
func (f *iface) output(pkts []glink.Packet) {
	f.outPkts = f.outPkts[:0]
	for _, p := range pkts {
		b := p.Data
		f.r.ownPacket(f, b)
		if len(f.r.fw) > 0 {
			var ok bool
			if b, ok = f.r.filter(f, Out, b, false, nil); !ok {
				continue
			}
		}
		f.outPkts = append(f.outPkts, glink.Packet{Hdr: p.Hdr, Data: b})
	}
	if f.cap.Active() {
		now := time.Now()
		for _, p := range f.outPkts {
			f.cap.HostTX(now, p.Hdr, p.Data)
		}
	}
	if len(f.outPkts) > 0 {
		f.out(f.outPkts)
	}
	clear(f.outPkts)
}

// now is the time to stamp a batch with when anything records the
// interface.
func (f *iface) now() time.Time {
	if f.cap.Active() {
		return time.Now()
	}
	return time.Time{}
}

// merged is how many wire packets GRO merged into pkt (h its header).
func merged(h virtio.Hdr, n int) int {
	if h.GSOType == virtio.GSONone || h.GSOSize == 0 {
		return 1
	}
	return (n - int(h.HdrLen) + int(h.GSOSize) - 1) / int(h.GSOSize)
}
