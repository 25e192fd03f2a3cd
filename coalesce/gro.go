package coalesce

import (
	"encoding/binary"

	"vnic/vnic/virtio"
)

// receive is dev_gro_receive for packet i.
func (e *Engine) receive(i int) {
	e.cur, e.valid[i] = i, false
	var p packet
	if l2 := e.opt.L2Len; l2 > 0 {
		b := e.bufs[i][e.offset:]
		if len(b) < l2 {
			e.pass(i, PassTruncated)
			return
		}
		t := binary.BigEndian.Uint16(b[l2-2:])
		if t != etherTypeIPv4 && t != etherTypeIPv6 {
			e.pass(i, PassNotIPEtherType)
			return
		}
		if len(b) > l2 && (b[l2]>>4 == 4) != (t == etherTypeIPv4) {
			e.pass(i, PassNotIP)
			return
		}
	}
	if r, ok := e.parse(e.bufs[i][e.ip:], &p); !ok {
		e.pass(i, r)
		return
	}
	f := e.lookup(&p)
	if p.udp {
		e.udpReceive(i, f, &p)
	} else {
		e.tcpReceive(i, f, &p)
	}
}

// lookup returns the index in e.held of the packet p's flow holds, or -1.
// At most one held packet matches a flow: a packet that finds its flow
// either merges or completes the held one.
func (e *Engine) lookup(p *packet) int {
	for k, h := range e.hashes {
		if h == p.hash {
			if f := &e.held[k]; sameFlow(f, e.bufs[f.idx][e.ip:], p) && e.sameL2(f.idx) {
				return k
			}
		}
	}
	return -1
}

// sameL2 is compare_ether_header in gro_list_prepare: the held packet
// idx and the current one have the same link-layer header.
func (e *Engine) sameL2(idx int) bool {
	return e.opt.L2Len == 0 || string(e.bufs[idx][e.offset:e.ip]) == string(e.bufs[e.cur][e.offset:e.ip])
}

// EtherTypes of the IP packets GRO looks into.
const (
	etherTypeIPv4 = 0x0800
	etherTypeIPv6 = 0x86dd
)

// tcpReceive is tcp_gro_receive, with dev_gro_receive's handling of its
// result: complete the held packet (pp), hold the new one, or hand it on.
func (e *Engine) tcpReceive(i, k int, p *packet) {
	b := p.b
	th := b[p.l4:]
	flags := th[13]
	if flags&flagCWR != 0 && k >= 0 {
		// tcp_gro_receive: "flush = flags & TCP_FLAG_CWR" — a segment
		// carrying CWR never merges, so it completes its flow's held
		// packet (pp); then, with mss reset to 1, out_check_final looks
		// only at the length and URG|PSH|RST|SYN|FIN, so dev_gro_receive
		// holds the CWR segment as a new head (taking a MAX_GRO_SKBS
		// slot) like any segment that found nothing to merge with. The
		// next segment of its flow cannot merge with it either (6.18
		// compares CWR in the flag word), so it goes out alone, when that
		// segment comes or at the end of the poll. Trees with the AccECN
		// GRO patch that drops the CWR flush merge CWR runs; 6.18 does
		// not.
		e.complete(k, FlushCWR)
		k = -1
	}
	if k < 0 {
		// No packet to merge with: mss is 1, so only a zero-length or
		// flagged segment is flushed.
		switch {
		case p.flush:
			e.pass(i, PassIPLength)
		case p.payload == 0:
			e.pass(i, PassNoPayload)
		case flags&(flagURG|flagPSH|flagRST|flagSYN|flagFIN) != 0:
			e.pass(i, PassTCPFlags)
		default:
			e.hold(i, p)
		}
		return
	}
	f := &e.held[k]
	h := e.bufs[f.idx][e.ip:]
	th2 := h[f.l4:]

	why := FlushReason(0)
	flush := false
	set := func(r FlushReason) {
		if !flush {
			flush, why = true, r
		}
	}
	// Flag word: data offset, flags (CWR included: a held CWR head ends
	// here) and window; FIN and PSH may differ.
	if (binary.BigEndian.Uint32(th[12:])^binary.BigEndian.Uint32(th2[12:]))&^finPSHWord != 0 {
		set(FlushTCPFlags)
	}
	if binary.BigEndian.Uint32(th[8:]) != binary.BigEndian.Uint32(th2[8:]) {
		set(FlushAck)
	}
	if !flush && string(th[tcpHeaderLen:p.thlen]) != string(th2[tcpHeaderLen:p.thlen]) {
		set(FlushTCPOptions)
	}
	if r, ok := e.networkFlush(f, h, b); !ok {
		set(r)
	}
	mss := f.gsoSize
	// "(len - 1) >= mss" in unsigned arithmetic: a bigger segment, or none.
	if uint(p.payload-1) >= uint(mss) {
		set(FlushBigger)
	}
	if f.seq+uint32(f.payload) != binary.BigEndian.Uint32(th[4:]) {
		set(FlushSeq)
	}
	merged := false
	if !flush {
		merged = e.merge(f, i, p, &why)
	}
	if !merged {
		mss = 1
	}
	// out_check_final.
	final := p.payload < mss || flags&(flagURG|flagPSH|flagRST|flagSYN|flagFIN) != 0
	if merged {
		if final {
			e.complete(k, finalReason(flags, p.payload < mss))
		}
		return
	}
	e.complete(k, why)
	switch {
	case p.flush:
		e.pass(i, PassIPLength)
	case p.payload == 0:
		e.pass(i, PassNoPayload)
	case final:
		e.pass(i, PassTCPFlags)
	default:
		e.hold(i, p)
	}
}

// The FIN|PSH bits in tcp_flag_word (bytes 12-15 of the header).
const finPSHWord = (flagFIN | flagPSH) << 16

// finalReason names what ended a packet after a merge.
func finalReason(flags uint8, short bool) FlushReason {
	switch {
	case flags&flagPSH != 0:
		return FlushPSH
	case flags&flagFIN != 0:
		return FlushFIN
	case flags&flagURG != 0:
		return FlushURG
	case flags&flagRST != 0:
		return FlushRST
	case flags&flagSYN != 0:
		return FlushSYN
	case short:
		return FlushShort
	}
	return FlushBatchEnd
}

// udpReceive is udp_gro_receive_segment, with dev_gro_receive's handling
// of its result.
func (e *Engine) udpReceive(i, k int, p *packet) {
	ulen := binary.BigEndian.Uint16(p.b[p.l4+4:])
	if k < 0 {
		if p.flush {
			e.pass(i, PassIPLength)
		} else {
			e.hold(i, p)
		}
		return
	}
	f := &e.held[k]
	h := e.bufs[f.idx][e.ip:]
	why, ok := e.networkFlush(f, h, p.b)
	merged := false
	switch {
	case ulen > f.ulen:
		why = FlushBigger
	case ok:
		merged = e.merge(f, i, p, &why)
	}
	switch {
	case !merged:
		e.complete(k, why)
		if p.flush {
			e.pass(i, PassIPLength)
		} else {
			e.hold(i, p)
		}
	case ulen != f.ulen:
		// "On len mismatch merge the first packet shorter than gso_size,
		// otherwise complete the GRO packet."
		e.complete(k, FlushShort)
	case f.count >= udpGROCntMax:
		e.complete(k, FlushUDPCount)
	}
}

// networkFlush is gro_receive_network_flush: inet_gro_flush for IPv4
// (TTL, TOS, DF, then the ID rule) or ipv6_gro_flush (traffic class, hop
// limit). It returns false with the reason when the packets may not merge.
func (e *Engine) networkFlush(f *flow, h, b []byte) (FlushReason, bool) {
	if f.v6 {
		// <Version:4><Traffic_Class:8><Flow_Label:20>; the flow label
		// already matched.
		if (binary.BigEndian.Uint32(h)^binary.BigEndian.Uint32(b))&0x0ff00000 != 0 || h[7] != b[7] {
			return FlushIPHeader, false
		}
		return 0, true
	}
	if h[1] != b[1] || h[8] != b[8] || (h[6]^b[6])&0x40 != 0 {
		return FlushIPHeader, false
	}
	// The 6.18 rule (inet_gro_flush): the second segment decides whether
	// the run is fixed-ID (same ID, DF or not) or incrementing; from then
	// on every segment must follow: ID = first + count, or ID = first.
	off := binary.BigEndian.Uint16(b[4:]) - binary.BigEndian.Uint16(h[4:])
	if f.count == 1 && off == 0 {
		f.fixedID = true
	}
	want := uint16(f.count)
	if f.fixedID {
		want = 0
	}
	if off != want {
		return FlushIPID, false
	}
	return 0, true
}

// merge is skb_gro_receive: append p's payload to the held packet f, or
// refuse with the reason (E2BIG: too big, flagged by the IP layer, no room).
func (e *Engine) merge(f *flow, i int, p *packet, why *FlushReason) bool {
	switch {
	case f.ipLen+p.payload > e.maxSize:
		*why = FlushMaxSize
		return false
	case p.flush:
		*why = FlushIPLength
		return false
	}
	if f.count == 1 && e.opt.TUNEgress && !f.udp && !f.v6 {
		// Whether the run is fixed-ID (SKB_GSO_TCP_FIXEDID) is known at
		// its second segment.
		f.virtual = f.fixedID
	}
	if f.virtual {
		e.next[f.last] = int32(i)
		e.next[i] = -1
		f.last = int32(i)
	} else {
		dst := e.bufs[f.idx]
		start := e.ip + f.ipLen
		end := start + p.payload
		if end > cap(dst) {
			*why = FlushNoRoom
			return false
		}
		dst = dst[:end]
		copy(dst[start:], p.b[p.l4+p.thlen:])
		e.bufs[f.idx] = dst
		if !f.udp {
			// tcp_flag_word(th2) |= flags & (TCP_FLAG_FIN | TCP_FLAG_PSH)
			dst[e.ip+f.l4+13] |= p.b[p.l4+13] & (flagFIN | flagPSH)
		}
	}
	f.ipLen += p.payload
	f.payload += p.payload
	f.count++
	return true
}

// hold adds packet i to the GRO list as the head of a new packet, first
// completing the oldest held packet if the list is full.
func (e *Engine) hold(i int, p *packet) {
	if room := cap(e.bufs[i]) - len(e.bufs[i]); room < p.payload {
		e.pass(i, PassNoRoom)
		return
	}
	if len(e.held) >= e.maxHeld {
		e.complete(0, FlushEvicted)
	}
	f := flow{
		hash:    p.hash,
		idx:     i,
		v6:      p.v6,
		udp:     p.udp,
		l4:      p.l4,
		thlen:   p.thlen,
		gsoSize: p.payload,
		count:   1,
		ipLen:   len(p.b),
		payload: p.payload,
		last:    int32(i),
	}
	if p.udp {
		f.ulen = binary.BigEndian.Uint16(p.b[p.l4+4:])
	} else {
		f.seq = binary.BigEndian.Uint32(p.b[p.l4+4:])
	}
	e.next[i] = -1
	e.held = append(e.held, f)
	e.hashes = append(e.hashes, f.hash)
}

// pass hands packet i on alone, unchanged (see emitPlain).
func (e *Engine) pass(i int, r PassReason) {
	e.stats.Passed[r]++
	e.emitPlain(i)
}

// emitPlain hands packet i on as it came, with a zero virtio header, or
// DATA_VALID when its checksum was verified and MarkValid asks to say so.
func (e *Engine) emitPlain(i int) {
	h := e.bufs[i][e.offset-virtio.Size : e.offset]
	clear(h)
	if e.opt.MarkValid && e.valid[i] {
		h[0] = virtio.FlagDataValid
	}
	e.out = append(e.out, i)
	e.stats.PacketsOut++
}

// complete is napi_gro_complete for e.held[k]: a packet of one segment goes
// out as it came; a merged one gets its headers fixed up
// (inet_gro_complete/ipv6_gro_complete, tcp4/6_gro_complete or
// udp4/6_gro_complete) and the virtio header virtio_net_hdr_from_skb would
// write.
func (e *Engine) complete(k int, r FlushReason) {
	f := e.held[k]
	copy(e.held[k:], e.held[k+1:])
	e.held = e.held[:len(e.held)-1]
	copy(e.hashes[k:], e.hashes[k+1:])
	e.hashes = e.hashes[:len(e.hashes)-1]
	e.finish(&f, r)
}

// finish hands on a held packet that has left the GRO list.
func (e *Engine) finish(f *flow, r FlushReason) {
	e.stats.Flushed[r]++
	switch {
	case f.count == 1:
		e.emitPlain(f.idx)
		return
	case f.virtual:
		for j := int32(f.idx); j >= 0; j = e.next[j] {
			e.emitPlain(int(j))
			e.stats.Unmerged++
		}
		return
	}
	e.stats.SuperPackets++
	e.stats.SegmentsMerged += uint64(f.count)
	e.stats.PacketsOut++

	buf := e.bufs[f.idx]
	h := buf[e.ip:]
	var proto uint8 = protoTCP
	if f.udp {
		proto = protoUDP
	}
	if f.v6 {
		binary.BigEndian.PutUint16(h[4:], uint16(f.ipLen-ipv6HeaderLen))
	} else {
		old := binary.BigEndian.Uint16(h[2:])
		binary.BigEndian.PutUint16(h[2:], uint16(f.ipLen))
		// csum_replace2(&iph->check, iph->tot_len, newlen)
		sum := binary.BigEndian.Uint16(h[10:])
		binary.BigEndian.PutUint16(h[10:], csumReplace2(sum, old, uint16(f.ipLen)))
	}
	l4len := f.ipLen - f.l4
	// On a TAP device the offsets count from the Ethernet header.
	l2 := e.opt.L2Len
	hdr := virtio.Hdr{
		Flags:      virtio.FlagNeedsCsum,
		HdrLen:     uint16(l2 + f.l4 + f.thlen),
		GSOSize:    uint16(f.gsoSize),
		CsumStart:  uint16(l2 + f.l4),
		CsumOffset: 16,
	}
	// th->check = ~tcp_v4_check(len, saddr, daddr, 0): the pseudo-header
	// sum, for the NIC (or GSO) to fold the rest in (CHECKSUM_PARTIAL).
	if f.udp {
		binary.BigEndian.PutUint16(h[f.l4+4:], uint16(l4len))
		binary.BigEndian.PutUint16(h[f.l4+6:], pseudoSum(h, f.v6, proto, l4len))
		hdr.GSOType = virtio.GSOUDPL4
		hdr.CsumOffset = 6
	} else {
		binary.BigEndian.PutUint16(h[f.l4+16:], pseudoSum(h, f.v6, proto, l4len))
		// A merged packet never carries CWR (it is never merged), so
		// tcp_gro_complete never sets SKB_GSO_TCP_ECN and
		// VIRTIO_NET_HDR_GSO_ECN is never set here.
		hdr.GSOType = virtio.GSOTCPv4
		if f.v6 {
			hdr.GSOType = virtio.GSOTCPv6
		}
	}
	_ = hdr.Encode(buf[e.offset-virtio.Size : e.offset])
	e.out = append(e.out, f.idx)
}

// csumReplace2 is the kernel's csum_replace2: an incremental update of a
// 16-bit one's complement checksum (RFC 1624) for one changed word. Using
// it rather than recomputing keeps the result bit-identical to the kernel
// in the corner where both 0x0000 and 0xffff would verify.
func csumReplace2(sum, old, new uint16) uint16 {
	return ^csum16Add(csum16Add(^sum, ^old), new)
}

func csum16Add(c, a uint16) uint16 {
	r := c + a
	if r < a {
		r++
	}
	return r
}
