package coalesce

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"testing"

	"vnic/vnic/pkttest"
	"vnic/vnic/virtio"
)

// FuzzCoalesce checks two properties on every input:
//
//   - Arbitrary bytes cut into a batch never panic, every buffer comes out
//     exactly once, a packet with a zero header is byte-identical to what
//     went in, and a merged packet's headers are consistent (see
//     checkMerged).
//   - Generated flows (well-formed segments with occasional anomalies, all
//     steered by the input bytes) round-trip: segmenting every output back
//     by gso_size with a simple reference segmenter gives back exactly the
//     packets that went in, flow by flow, in order.
func FuzzCoalesce(f *testing.F) {
	g := newFlow(false, false, 1)
	seed := []byte{0x07}
	for range 4 {
		p := g.next(200, 0)
		seed = append(seed, byte(len(p)>>8), byte(len(p)))
		seed = append(seed, p...)
	}
	f.Add(seed)
	f.Add([]byte{0, 0, 1, 0x45})
	f.Add([]byte{0xff, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16})
	f.Add(bytes.Repeat([]byte{0x13, 0x81, 0x22, 0x05}, 40))
	l2seed := append([]byte{}, seed...)
	l2seed[0] |= 64
	f.Add(l2seed)
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzArbitrary(t, data)
		fuzzRoundTrip(t, data)
	})
}

// fuzzArbitrary cuts data into packets: a mode byte, then for each packet
// a 2-byte length and that many bytes.
func fuzzArbitrary(t *testing.T, data []byte) {
	if len(data) == 0 {
		return
	}
	mode := data[0]
	opt := Options{
		UDP:            mode&1 != 0,
		TrustChecksums: mode&2 != 0,
		TUNEgress:      mode&8 != 0,
	}
	if mode&16 != 0 {
		opt.MaxHeld = 2
	}
	if mode&32 != 0 {
		opt.MaxSize = 300
	}
	fixCsum := mode&4 != 0 // help the fuzzer past the IPv4 header checksum
	// Ethernet frames (a TAP): an EtherType from the IP version, one of
	// two source addresses.
	l2 := mode&64 != 0
	if l2 {
		opt.L2Len = 14
	}
	var pkts [][]byte
	for rest := data[1:]; len(rest) >= 2 && len(pkts) < 64; {
		n := int(binary.BigEndian.Uint16(rest)) % 2000
		rest = rest[2:]
		n = min(n, len(rest))
		p := bytes.Clone(rest[:n])
		rest = rest[n:]
		if fixCsum && len(p) >= 20 && p[0] == 0x45 {
			fixIPv4Checksum(p)
		}
		if l2 {
			et := []byte{0x08, 0x06}
			if len(p) > 0 && p[0]>>4 == 4 {
				et = []byte{0x08, 0x00}
			} else if len(p) > 0 && p[0]>>4 == 6 {
				et = []byte{0x86, 0xdd}
			}
			p = append(append([]byte{2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, byte(n % 3)}, et...), p...)
		}
		pkts = append(pkts, p)
	}
	e := New(opt)
	bufs := batch(pkts...)
	idx, err := e.Coalesce(bufs, testOffset, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(idx) > len(pkts) {
		t.Fatalf("%d out of %d in", len(idx), len(pkts))
	}
	for _, o := range decode(t, bufs, idx) {
		if o.hdr == (virtio.Hdr{}) {
			if !bytes.Equal(o.pkt, pkts[o.idx]) {
				t.Fatalf("packet %d passed with a zero header but changed", o.idx)
			}
			continue
		}
		if l2 {
			if o.hdr.CsumStart < 14 || o.hdr.HdrLen < 14 {
				t.Fatalf("packet %d: offsets inside the MAC header (%v)", o.idx, o.hdr)
			}
			o.pkt, o.hdr.CsumStart, o.hdr.HdrLen = o.pkt[14:], o.hdr.CsumStart-14, o.hdr.HdrLen-14
		}
		if err := checkMerged(o, e.maxSize); err != nil {
			t.Fatalf("packet %d: %v (%v)", o.idx, err, o.hdr)
		}
	}
	st := e.Stats()
	if st.PacketsIn != uint64(len(pkts)) || st.PacketsOut != uint64(len(idx)) {
		t.Fatalf("stats in %d out %d, batch %d → %d", st.PacketsIn, st.PacketsOut, len(pkts), len(idx))
	}
}

// checkMerged checks a super-packet's headers: virtio header, IP length,
// IPv4 header checksum, L4 length (UDP) and the pseudo-header sum in the L4
// checksum field, computed here from scratch.
func checkMerged(o output, maxSize int) error {
	h, b := o.hdr, o.pkt
	if h.Flags != virtio.FlagNeedsCsum {
		return fmt.Errorf("flags %#x", h.Flags)
	}
	tcp := true
	switch h.GSOType {
	case virtio.GSOTCPv4, virtio.GSOTCPv6:
	case virtio.GSOUDPL4:
		tcp = false
	default:
		return fmt.Errorf("gso_type %#x", h.GSOType)
	}
	if (tcp && h.CsumOffset != 16) || (!tcp && h.CsumOffset != 6) {
		return fmt.Errorf("csum_offset %d", h.CsumOffset)
	}
	hl, err := virtio.RecomputeHdrLen(b, &h)
	if err != nil || hl != int(h.HdrLen) {
		return fmt.Errorf("hdr_len %d, recomputed %d (%v)", h.HdrLen, hl, err)
	}
	if h.GSOSize == 0 || len(b)-int(h.HdrLen) <= int(h.GSOSize) {
		return fmt.Errorf("gso_size %d for %d payload bytes: not a super-packet", h.GSOSize, len(b)-int(h.HdrLen))
	}
	if len(b) > maxSize {
		return fmt.Errorf("%d bytes above MaxSize %d", len(b), maxSize)
	}
	l4 := int(h.CsumStart)
	var ph []byte
	switch b[0] >> 4 {
	case 4:
		if h.GSOType == virtio.GSOTCPv6 || l4 != 20 || int(binary.BigEndian.Uint16(b[2:])) != len(b) {
			return fmt.Errorf("IPv4 header: csum_start %d, total length %d, packet %d", l4, binary.BigEndian.Uint16(b[2:]), len(b))
		}
		if err := verifyIPv4Header(b[:20]); err != nil {
			return err
		}
		ph = append(append(ph, b[12:20]...), 0, b[9], byte((len(b)-l4)>>8), byte(len(b)-l4))
	case 6:
		if h.GSOType == virtio.GSOTCPv4 || int(binary.BigEndian.Uint16(b[4:]))+40 != len(b) {
			return fmt.Errorf("IPv6 header: payload length %d, packet %d", binary.BigEndian.Uint16(b[4:]), len(b))
		}
		n := len(b) - l4
		proto := uint8(pkttest.ProtoTCP)
		if !tcp {
			proto = pkttest.ProtoUDP
		}
		ph = append(append(ph, b[8:40]...), byte(n>>24), byte(n>>16), byte(n>>8), byte(n), 0, 0, 0, proto)
	default:
		return fmt.Errorf("IP version %d", b[0]>>4)
	}
	if !tcp && int(binary.BigEndian.Uint16(b[l4+4:])) != len(b)-l4 {
		return fmt.Errorf("UDP length %d, want %d", binary.BigEndian.Uint16(b[l4+4:]), len(b)-l4)
	}
	if got, want := binary.BigEndian.Uint16(b[l4+int(h.CsumOffset):]), onesSum(ph); got != want {
		return fmt.Errorf("L4 checksum field %#04x, want pseudo-header sum %#04x", got, want)
	}
	return nil
}

// onesSum is a plain RFC 1071 sum, folded and not complemented: a reference
// independent of the checksum package.
func onesSum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}

func verifyIPv4Header(b []byte) error {
	if s := onesSum(b); s != 0xffff {
		return fmt.Errorf("IPv4 header sums to %#04x", s)
	}
	return nil
}

// byteSource hands out the fuzz input a byte at a time, then zeros.
type byteSource struct{ b []byte }

func (s *byteSource) next() byte {
	if len(s.b) == 0 {
		return 0
	}
	c := s.b[0]
	s.b = s.b[1:]
	return c
}

// fuzzRoundTrip generates up to 4 flows of up to 40 packets from data,
// runs them through Coalesce and segments every output back.
func fuzzRoundTrip(t *testing.T, data []byte) {
	src := &byteSource{data}
	mode := src.next()
	opt := Options{UDP: true, TUNEgress: mode&1 != 0}
	if mode&2 != 0 {
		opt.MaxHeld = 1 + int(mode>>5)
	}
	if mode&4 != 0 {
		opt.MaxSize = 200 + int(src.next())*64
	}
	nflows := 1 + int(src.next()%4)
	var gens []*flowGen
	var mss []int
	fixed := make([]bool, nflows)
	for i := range nflows {
		c := src.next()
		g := newFlow(c&1 != 0, c&2 != 0, uint16(4000+i))
		g.tmpl.DF = c&4 != 0
		// Fixed-ID runs only where the reference can rebuild them: TCP with
		// TUNEgress, where they are never merged. (UDP GRO merges fixed-ID
		// datagrams like the kernel does, and USO then increments the IDs,
		// so a fixed-ID UDP run cannot round-trip.)
		fixed[i] = c&8 != 0 && opt.TUNEgress && c&2 == 0
		gens = append(gens, g)
		mss = append(mss, 1+int(src.next())*6)
	}
	var pkts [][]byte
	var flowOf []int
	n := 1 + int(src.next()%40)
	for range n {
		c := src.next()
		i := int(c) % nflows
		g := gens[i]
		size := mss[i]
		var flags uint8
		switch a := src.next(); {
		case a < 200:
		case a < 210:
			size = int(a) % mss[i] // short segment
		case a < 215:
			flags = pkttest.PSH
		case a < 218:
			flags = pkttest.FIN
		case a < 221:
			flags = pkttest.CWR
		case a < 223:
			flags = pkttest.SYN
		case a < 225:
			flags = pkttest.URG
		case a < 227:
			size = 0 // pure ACK
		case a < 230:
			g.seq += 7 // gap
		case a < 233:
			g.tmpl.Ack++
		case a < 236:
			g.tmpl.Window--
		case a < 239:
			g.tmpl.TTL = 60 + a%3
		case a < 242:
			g.tmpl.TOS ^= 1
		case a < 245:
			size = mss[i] + 1 // bigger
		case a < 248:
			g.tmpl.BadL4Checksum = true
		}
		if g.tmpl.Proto == pkttest.ProtoUDP {
			flags = 0
			if size == 0 {
				size = 1
			}
		}
		if fixed[i] {
			g.id--
		}
		pkts = append(pkts, g.next(size, flags))
		g.tmpl.BadL4Checksum = false
		flowOf = append(flowOf, i)
	}
	e := New(opt)
	bufs := batch(pkts...)
	idx, err := e.Coalesce(bufs, testOffset, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := make([][][]byte, nflows)
	for _, o := range decode(t, bufs, idx) {
		if o.hdr != (virtio.Hdr{}) {
			if err := checkMerged(o, e.maxSize); err != nil {
				t.Fatalf("packet %d: %v (%v)", o.idx, err, o.hdr)
			}
		}
		for _, s := range resegment(o) {
			f := flowOf[o.idx]
			got[f] = append(got[f], s)
		}
	}
	// Packets GRO hands on before it looks for their flow (here: a bad
	// checksum) overtake an older held packet of the flow, as in the
	// kernel; the rest keep their order. Compare the two kinds apart.
	for f := range nflows {
		var want [2][][]byte
		for k, p := range pkts {
			if flowOf[k] == f {
				want[earlyPass(p)] = append(want[earlyPass(p)], p)
			}
		}
		var back [2][][]byte
		for _, p := range got[f] {
			back[earlyPass(p)] = append(back[earlyPass(p)], p)
		}
		for kind := range 2 {
			if len(back[kind]) != len(want[kind]) {
				t.Fatalf("flow %d kind %d: %d segments back, %d went in", f, kind, len(back[kind]), len(want[kind]))
			}
			for k := range want[kind] {
				if !bytes.Equal(back[kind][k], want[kind][k]) {
					t.Fatalf("flow %d kind %d segment %d differs after the round trip\n got %x\nwant %x", f, kind, k, back[kind][k], want[kind][k])
				}
			}
		}
	}
}

// earlyPass is 1 for a packet GRO rejects before the flow lookup.
func earlyPass(p []byte) int {
	if pkttest.Verify(p) != nil {
		return 1
	}
	return 0
}

// resegment is a reference GSO in a few lines: cut the payload at gso_size,
// copy the headers, advance the sequence number and the IPv4 ID, FIN and
// PSH on the last segment only, lengths and checksums complete.
func resegment(o output) [][]byte {
	if o.hdr == (virtio.Hdr{}) {
		return [][]byte{o.pkt}
	}
	b, h := o.pkt, o.hdr
	hl, l4, mss := int(h.HdrLen), int(h.CsumStart), int(h.GSOSize)
	tcp := h.GSOType != virtio.GSOUDPL4
	var segs [][]byte
	for k, off := 0, hl; off < len(b); k, off = k+1, off+mss {
		end := min(off+mss, len(b))
		s := append(append([]byte(nil), b[:hl]...), b[off:end]...)
		if s[0]>>4 == 4 {
			binary.BigEndian.PutUint16(s[2:], uint16(len(s)))
			binary.BigEndian.PutUint16(s[4:], binary.BigEndian.Uint16(b[4:])+uint16(k))
			s[10], s[11] = 0, 0
			binary.BigEndian.PutUint16(s[10:], ^onesSum(s[:20]))
		} else {
			binary.BigEndian.PutUint16(s[4:], uint16(len(s)-40))
		}
		if tcp {
			binary.BigEndian.PutUint32(s[l4+4:], binary.BigEndian.Uint32(b[l4+4:])+uint32(k*mss))
			if end != len(b) {
				s[l4+13] &^= pkttest.FIN | pkttest.PSH
			}
		} else {
			binary.BigEndian.PutUint16(s[l4+4:], uint16(len(s)-l4))
		}
		// Complete the checksum from scratch.
		var ph []byte
		n := len(s) - l4
		proto := uint8(pkttest.ProtoUDP)
		if tcp {
			proto = pkttest.ProtoTCP
		}
		if s[0]>>4 == 4 {
			ph = append(append(ph, s[12:20]...), 0, proto, byte(n>>8), byte(n))
		} else {
			ph = append(append(ph, s[8:40]...), byte(n>>24), byte(n>>16), byte(n>>8), byte(n), 0, 0, 0, proto)
		}
		co := l4 + int(h.CsumOffset)
		s[co], s[co+1] = 0, 0
		c := ^onesSum(append(ph, s[l4:]...))
		if !tcp && c == 0 {
			c = 0xffff
		}
		binary.BigEndian.PutUint16(s[co:], c)
		segs = append(segs, s)
	}
	return segs
}
