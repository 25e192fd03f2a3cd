package segment_test

// Differential tests: the same super-packet through the running kernel's
// software GSO (kerneltest.GSO: TUN with TSO/USO → forwarding → TUN
// without offloads) and through segment.Segment, compared byte for byte.
//
// The kernel forwards, so its segments have the TTL/hop limit one lower
// (and the IPv4 header checksum adjusted). Segment is therefore fed
// kerneltest.AfterForwarding(super-packet): forwarding commutes with
// segmentation, and the outputs must then be identical. A frame the kernel
// refuses (write(2) fails) or drops silently must be refused by Segment
// with an error, and vice versa.

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"vnic/segment"
	"vnic/vnic/kerneltest"
	"vnic/vnic/pkttest"
	"vnic/vnic/virtio"
)

// kcase is one super-packet: the packet, and how its virtio header says to
// treat it.
type kcase struct {
	p       pkttest.Packet
	gso     int  // gso_size; 0 with none=true
	ecn     bool // VIRTIO_NET_HDR_GSO_ECN
	none    bool // GSO_NONE
	noCsum  bool // no NEEDS_CSUM (GSO_NONE: a complete packet)
	comment string
	// edit, when set, changes the built frame (its header in place, its
	// bytes in the copy it returns): the malformed and odd frames.
	edit func(h *virtio.Hdr, pkt []byte) []byte
}

func flagNames(f uint8) string {
	var s []string
	for _, n := range []struct {
		bit  uint8
		name string
	}{{pkttest.CWR, "CWR"}, {pkttest.ECE, "ECE"}, {pkttest.URG, "URG"}, {pkttest.ACK, "ACK"},
		{pkttest.PSH, "PSH"}, {pkttest.RST, "RST"}, {pkttest.SYN, "SYN"}, {pkttest.FIN, "FIN"}} {
		if f&n.bit != 0 {
			s = append(s, n.name)
		}
	}
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, "|")
}

func (c kcase) name() string {
	var b strings.Builder
	if c.p.V6 {
		b.WriteString("v6")
	} else {
		b.WriteString("v4")
	}
	if c.p.Proto == pkttest.ProtoUDP {
		b.WriteString("-udp")
	} else {
		fmt.Fprintf(&b, "-tcp-%s", flagNames(c.p.Flags))
	}
	switch {
	case c.none && c.noCsum:
		b.WriteString("-none")
	case c.none:
		b.WriteString("-none-needs_csum")
	default:
		fmt.Fprintf(&b, "-gso%d", c.gso)
	}
	if c.ecn {
		b.WriteString("-ecnbit")
	}
	fmt.Fprintf(&b, "-len%d", len(c.p.Payload))
	if !c.p.V6 {
		fmt.Fprintf(&b, "-id%04x", c.p.ID)
		if c.p.DF {
			b.WriteString("-df")
		}
		if len(c.p.IPOptions) > 0 {
			fmt.Fprintf(&b, "-ipopt%d", len(c.p.IPOptions))
		}
	}
	for _, e := range c.p.ExtHdrs {
		switch e.Type {
		case pkttest.ExtHopByHop:
			fmt.Fprintf(&b, "-hbh%d", 2+len(e.Data))
		case pkttest.ExtDestOpts:
			fmt.Fprintf(&b, "-dst%d", 2+len(e.Data))
		}
	}
	if len(c.p.TCPOptions) > 0 {
		fmt.Fprintf(&b, "-tcpopt%d", len(c.p.TCPOptions))
	}
	if c.p.TOS != 0 {
		fmt.Fprintf(&b, "-tos%02x", c.p.TOS)
	}
	if c.comment != "" {
		b.WriteString("-" + c.comment)
	}
	return b.String()
}

func (c kcase) build() (virtio.Hdr, []byte) {
	p := c.p
	var h virtio.Hdr
	var b []byte
	switch {
	case c.none && c.noCsum:
		b = p.Build()
	case c.none:
		b, h = p.BuildPartial()
	default:
		b, h = p.BuildGSO(c.gso, c.ecn)
	}
	if c.edit != nil {
		b = c.edit(&h, bytes.Clone(b))
	}
	return h, b
}

// kernelCompare puts c through the kernel and through a segment.Plan and
// reports every difference; the Plan must also have measured what the
// kernel made (Segments, MaxSize).
func kernelCompare(t *testing.T, o *kerneltest.GSO, c kcase, opt segment.Options) {
	t.Helper()
	h, pkt := c.build()
	kern, kerr := o.Segment(h, pkt)

	fwd := kerneltest.AfterForwarding(pkt)
	const offset = 16
	var ours [][]byte
	plan, err := segment.NewPlan(h, fwd, opt)
	if err == nil {
		out := make([][]byte, plan.Segments())
		for i := range out {
			out[i] = make([]byte, offset+plan.MaxSize())
		}
		sizes := make([]int, len(out))
		var k int
		if k, err = plan.Cut(out, sizes, offset); err != nil {
			t.Fatalf("Cut into the buffers the Plan asked for: %v", err)
		}
		for i := 0; i < k; i++ {
			ours = append(ours, out[i][offset:offset+sizes[i]])
		}
	}

	kernelRefused := kerr != nil || len(kern) == 0
	switch {
	case kernelRefused && err != nil:
		return // both refuse
	case kernelRefused:
		why := "dropped it silently"
		if kerr != nil {
			why = "refused it: " + kerr.Error()
		}
		t.Fatalf("kernel %s; segment made %d packets (header %v)", why, len(ours), h)
	case err != nil:
		t.Fatalf("kernel made %d packets; segment refused: %v (header %v)", len(kern), err, h)
	}
	largest := 0
	for _, p := range kern {
		largest = max(largest, len(p))
	}
	if plan.Segments() != len(kern) || plan.MaxSize() != largest {
		t.Errorf("Plan: %d packets of up to %d bytes; the kernel made %d of up to %d (header %v)",
			plan.Segments(), plan.MaxSize(), len(kern), largest, h)
	}
	bad := 0
	for i := 0; i < min(len(ours), len(kern)); i++ {
		if d := kerneltest.DiffPackets(kern[i], ours[i]); d != "" {
			if bad++; bad <= 3 {
				t.Errorf("packet %d of %d: %s", i, len(kern), d)
			}
		}
	}
	if bad > 3 {
		t.Errorf("... %d packets differ in all", bad)
	}
	if strings.HasPrefix(c.comment, "csum0") {
		// Prove the case exercises what it is named after.
		l4, off := ipHdr(c.p.V6), 16
		if c.p.Proto == pkttest.ProtoUDP {
			off = 6
		}
		var sums []string
		found := false
		for _, k := range kern {
			v := uint16(k[l4+off])<<8 | uint16(k[l4+off+1])
			sums = append(sums, fmt.Sprintf("%#04x", v))
			found = found || v == 0 || v == 0xffff
		}
		if !found {
			t.Errorf("no kernel packet has a checksum of 0 or 0xffff: %v", sums)
		}
		t.Logf("kernel checksums: %v", sums)
	}
}

func runCases(t *testing.T, cases []kcase) {
	runCasesWith(t, kerneltest.GSOOptions{}, cases)
}

// runCasesWith runs the cases through an oracle whose `in` has the given
// options, and segment with the matching Options.
func runCasesWith(t *testing.T, ko kerneltest.GSOOptions, cases []kcase) {
	o := kerneltest.NewGSOWith(t, ko)
	opt := segment.Options{VnetHdrSize: ko.VnetHdrSize}
	start := time.Now()
	seen := map[string]int{}
	for _, c := range cases {
		name := c.name()
		if seen[name]++; seen[name] > 1 {
			name = fmt.Sprintf("%s#%d", name, seen[name])
		}
		t.Run(name, func(t *testing.T) { kernelCompare(t, o, c, opt) })
	}
	t.Logf("%d cases in %v", len(cases), time.Since(start).Round(time.Millisecond))
}

var (
	tsOpt   = []byte{1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2}
	mssSack = []byte{2, 4, 5, 0xb4, 4, 2, 1, 1}
	sack3   = []byte{1, 1, 5, 26, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0, 5, 0, 0, 0, 6}
	maxOpts = append(append([]byte{}, tsOpt...), sack3...) // 40 bytes
	hbh8    = []pkttest.ExtHdr{{Type: pkttest.ExtHopByHop, Data: []byte{1, 4, 0, 0, 0, 0}}}
	dst16   = []pkttest.ExtHdr{{Type: pkttest.ExtDestOpts, Data: []byte{1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}}}
	hbhDst  = []pkttest.ExtHdr{hbh8[0], {Type: pkttest.ExtDestOpts, Data: []byte{1, 4, 0, 0, 0, 0}}}
	nops    = func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = 1
		}
		return b
	}
	// routerAlert is RFC 2113's option: forwarding passes it unchanged.
	routerAlert = []byte{0x94, 4, 0, 0}
)

func ipHdr(v6 bool) int {
	if v6 {
		return 40
	}
	return 20
}

// zeroChecksumPayload returns p's payload with its first two bytes chosen
// so that p's TCP/UDP checksum computes to 0: adding the complement of the
// sum brings the sum to 0xffff.
func zeroChecksumPayload(p pkttest.Packet) []byte {
	q := p
	q.Payload = append([]byte{}, p.Payload...)
	q.Payload[0], q.Payload[1] = 0, 0
	b := q.Build()
	l4 := len(b) - len(q.Payload) - 8 // UDP
	off := 6
	if q.Proto != pkttest.ProtoUDP {
		l4 = len(b) - len(q.Payload) - 20 - (len(q.TCPOptions)+3)&^3
		off = 16
	}
	q.Payload[0], q.Payload[1] = b[l4+off], b[l4+off+1]
	return q.Payload
}

func pay(n int, seed byte) []byte { return pkttest.Payload(n, seed) }

// TestKernelTSOIPv4IDIncrements: inet_gso_segment gives segment i the ID
// of the super-packet plus i, wrapping at 0xffff, DF or not.
func TestKernelTSOIPv4IDIncrements(t *testing.T) {
	var cases []kcase
	for _, id := range []uint16{0, 1, 0x1234, 0xfff0, 0xfffd, 0xffff} {
		for _, df := range []bool{false, true} {
			cases = append(cases, kcase{p: pkttest.Packet{ID: id, DF: df, Flags: pkttest.ACK, Payload: pay(6000, 1)}, gso: 1448})
			cases = append(cases, kcase{p: pkttest.Packet{Proto: pkttest.ProtoUDP, ID: id, DF: df, Payload: pay(4000, 2)}, gso: 1000})
		}
	}
	runCases(t, cases)
}

// TestKernelTSOFlagsPSHFINOnLastCWROnFirst: tcp_gso_segment keeps PSH and
// FIN on the last segment only and CWR on the first only (with or without
// VIRTIO_NET_HDR_GSO_ECN); every other flag, URG and the urgent pointer
// included, is copied to every segment.
func TestKernelTSOFlagsPSHFINOnLastCWROnFirst(t *testing.T) {
	var cases []kcase
	flags := []uint8{
		pkttest.ACK, pkttest.ACK | pkttest.PSH, pkttest.ACK | pkttest.FIN, pkttest.ACK | pkttest.PSH | pkttest.FIN,
		pkttest.ACK | pkttest.CWR, pkttest.ACK | pkttest.CWR | pkttest.ECE, pkttest.ACK | pkttest.ECE,
		pkttest.ACK | pkttest.URG, pkttest.ACK | pkttest.URG | pkttest.PSH, 0, pkttest.ACK | pkttest.RST,
		pkttest.ACK | pkttest.CWR | pkttest.ECE | pkttest.URG | pkttest.PSH | pkttest.FIN,
	}
	for i, f := range flags {
		for _, v6 := range []bool{false, true} {
			for _, ecn := range []bool{false, true} {
				if !ecn && i%2 == 1 && f&pkttest.CWR == 0 {
					continue
				}
				p := pkttest.Packet{V6: v6, Flags: f, Seq: 0xfffff000, Ack: 77, Payload: pay(5000, byte(i))}
				if f&pkttest.URG != 0 {
					p.Urgent = 3000
				}
				cases = append(cases, kcase{p: p, gso: 1220, ecn: ecn})
			}
		}
	}
	runCases(t, cases)
}

// TestKernelTSOCopiesHeaders: inet_gso_segment and ipv6_gso_segment copy
// IPv4 options and IPv6 hop-by-hop/destination-options headers into every
// segment, tcp_gso_segment copies the TCP options; TOS/traffic class
// (ECN bits included) and the flow label are kept.
func TestKernelTSOCopiesHeaders(t *testing.T) {
	var cases []kcase
	for _, opt := range [][]byte{nops(4), nops(8), append(routerAlert, nops(4)...), nops(40)} {
		for _, proto := range []uint8{pkttest.ProtoTCP, pkttest.ProtoUDP} {
			cases = append(cases, kcase{p: pkttest.Packet{Proto: proto, IPOptions: opt, Flags: pkttest.ACK, ID: 9, Payload: pay(3500, 3)}, gso: 1000})
		}
	}
	for _, ext := range [][]pkttest.ExtHdr{hbh8, dst16, hbhDst} {
		for _, proto := range []uint8{pkttest.ProtoTCP, pkttest.ProtoUDP} {
			cases = append(cases, kcase{p: pkttest.Packet{V6: true, Proto: proto, ExtHdrs: ext, Flags: pkttest.ACK | pkttest.PSH, FlowLabel: 0xabcde, Payload: pay(3500, 4)}, gso: 1000})
		}
	}
	for _, to := range [][]byte{tsOpt, mssSack, sack3, maxOpts, {1, 1, 1}} {
		for _, v6 := range []bool{false, true} {
			cases = append(cases, kcase{p: pkttest.Packet{V6: v6, TCPOptions: to, Flags: pkttest.ACK, Payload: pay(4000, 5)}, gso: 1448})
		}
	}
	for _, tos := range []uint8{0x01, 0x02, 0x03, 0xb8, 0xbb} {
		for _, v6 := range []bool{false, true} {
			cases = append(cases, kcase{p: pkttest.Packet{V6: v6, TOS: tos, Flags: pkttest.ACK, Payload: pay(3000, 6)}, gso: 1448})
			cases = append(cases, kcase{p: pkttest.Packet{V6: v6, Proto: pkttest.ProtoUDP, TOS: tos, Payload: pay(3000, 6)}, gso: 1448})
		}
	}
	runCases(t, cases)
}

// TestKernelTSOGSOSizes: segments of gso_size payload bytes and a shorter
// last one, for gso_size from 1 to 65000; a payload not larger than
// gso_size is not GSO at all (__virtio_net_hdr_to_skb) and goes out as
// one packet with its checksum completed.
func TestKernelTSOGSOSizes(t *testing.T) {
	var cases []kcase
	for _, gso := range []int{1, 7, 536, 1220, 1448, 8948, 65000} {
		var lens []int
		switch {
		case gso <= 7:
			lens = []int{gso, gso + 1, 5 * gso, 20*gso + 3, 100}
		case gso == 65000:
			lens = []int{1000, 65000, 65001, 65535 - 40, 65535 - 40 - 40}
		default:
			lens = []int{gso - 1, gso, gso + 1, 2 * gso, 3*gso - 1, 65535 - 60 - (65535-60)%gso, 65535 - 60}
		}
		for _, n := range lens {
			for _, v6 := range []bool{false, true} {
				for _, proto := range []uint8{pkttest.ProtoTCP, pkttest.ProtoUDP} {
					hl := 20
					if proto == pkttest.ProtoUDP {
						hl = 8
					}
					if n+hl+ipHdr(v6) > 65535 || n <= 0 {
						continue
					}
					p := pkttest.Packet{V6: v6, Proto: proto, Flags: pkttest.ACK | pkttest.PSH, ID: uint16(n), Payload: pay(n, byte(gso))}
					cases = append(cases, kcase{p: p, gso: gso})
				}
			}
		}
	}
	// Zero payload with a GSO type.
	cases = append(cases, kcase{p: pkttest.Packet{Flags: pkttest.ACK}, gso: 1448, comment: "empty"})
	cases = append(cases, kcase{p: pkttest.Packet{Proto: pkttest.ProtoUDP}, gso: 1448, comment: "empty"})
	runCases(t, cases)
}

// TestKernelUSOMaxSegments: __virtio_net_hdr_to_skb refuses a UDP_L4
// frame of more than UDP_MAX_SEGMENTS (128) datagrams; 128 go through.
func TestKernelUSOMaxSegments(t *testing.T) {
	var cases []kcase
	for _, v6 := range []bool{false, true} {
		for _, n := range []int{127, 128, 129, 200} {
			cases = append(cases, kcase{p: pkttest.Packet{V6: v6, Proto: pkttest.ProtoUDP, Payload: pay(n, 7)}, gso: 1})
			cases = append(cases, kcase{p: pkttest.Packet{V6: v6, Proto: pkttest.ProtoUDP, Payload: pay(n*7-3, 7)}, gso: 7})
		}
	}
	runCases(t, cases)
}

// TestKernelChecksumCompletionGSONone: a NEEDS_CSUM frame without GSO is
// sent as it is with its checksum completed (skb_checksum_help, 0 sent as
// 0xffff); a frame without NEEDS_CSUM is passed on untouched.
func TestKernelChecksumCompletionGSONone(t *testing.T) {
	var cases []kcase
	for i, n := range []int{0, 1, 2, 3, 17, 536, 1448, 9000, 65000} {
		for _, v6 := range []bool{false, true} {
			for _, proto := range []uint8{pkttest.ProtoTCP, pkttest.ProtoUDP} {
				p := pkttest.Packet{V6: v6, Proto: proto, Flags: pkttest.ACK | pkttest.PSH, ID: uint16(i), Payload: pay(n, byte(i))}
				cases = append(cases, kcase{p: p, none: true})
				if i%3 == 0 {
					cases = append(cases, kcase{p: p, none: true, noCsum: true})
				}
			}
		}
	}
	// Payloads whose checksum comes out as 0: skb_checksum_help sends
	// 0xffff (CSUM_MANGLED_0) for any protocol; GSO's segments keep a TCP
	// 0 and mangle a UDP one.
	for _, v6 := range []bool{false, true} {
		for _, proto := range []uint8{pkttest.ProtoTCP, pkttest.ProtoUDP} {
			p := pkttest.Packet{V6: v6, Proto: proto, Flags: pkttest.ACK | pkttest.PSH, Seq: 5, ID: 3, Payload: pay(300, 9)}
			q := p
			q.Payload = zeroChecksumPayload(p)
			cases = append(cases, kcase{p: q, none: true, comment: "csum0"})
			// The first segment of a GSO frame.
			first := p
			first.Payload = p.Payload[:100]
			first.Flags &^= pkttest.PSH | pkttest.FIN
			q = p
			q.Payload = append(zeroChecksumPayload(first), p.Payload[100:]...)
			cases = append(cases, kcase{p: q, gso: 100, comment: "csum0-first"})
			// The last one.
			last := p
			last.Payload = p.Payload[200:]
			last.Seq += 200
			last.ID += 2
			q = p
			q.Payload = append(append([]byte{}, p.Payload[:200]...), zeroChecksumPayload(last)...)
			cases = append(cases, kcase{p: q, gso: 100, comment: "csum0-last"})
		}
	}
	runCases(t, cases)
}

// TestKernelGSORandomSuperPackets: a seeded random walk over everything
// above at once (family, protocol, gso_size, length, flags, ECN bit, IPv4
// ID/DF/options, IPv6 extension headers, TCP options, TOS, sequence
// numbers). Set the seed with -run and edit kernelSeed to reproduce.
func TestKernelGSORandomSuperPackets(t *testing.T) {
	const kernelSeed = 0x5eed
	r := rand.New(rand.NewPCG(kernelSeed, 1))
	gsoSizes := []int{1, 7, 536, 1220, 1448, 8948, 65000}
	var cases []kcase
	for len(cases) < 200 {
		var c kcase
		p := &c.p
		p.V6 = r.IntN(2) == 0
		udp := r.IntN(3) == 0
		if udp {
			p.Proto = pkttest.ProtoUDP
		}
		if r.IntN(4) == 0 {
			c.gso = 1 + r.IntN(9000)
		} else {
			c.gso = gsoSizes[r.IntN(len(gsoSizes))]
		}
		hdr := 0
		if p.V6 {
			if r.IntN(3) == 0 {
				p.ExtHdrs = [][]pkttest.ExtHdr{hbh8, dst16, hbhDst}[r.IntN(3)]
				for _, e := range p.ExtHdrs {
					hdr += 2 + len(e.Data)
				}
			}
			p.FlowLabel = r.Uint32() & 0xfffff
		} else {
			hdr = 20
			p.ID = uint16(r.IntN(0x10000))
			if r.IntN(3) == 0 {
				p.ID = 0xffff - uint16(r.IntN(8))
			}
			p.DF = r.IntN(2) == 0
			if r.IntN(4) == 0 {
				p.IPOptions = nops(4 * (1 + r.IntN(10)))
				hdr += len(p.IPOptions)
			}
		}
		if r.IntN(3) == 0 {
			p.TOS = uint8(r.IntN(256))
		}
		if udp {
			hdr += 8
		} else {
			hdr += 20
			p.Seq, p.Ack = r.Uint32(), r.Uint32()
			p.Flags = pkttest.ACK
			for _, f := range []uint8{pkttest.PSH, pkttest.FIN, pkttest.CWR, pkttest.ECE, pkttest.URG} {
				if r.IntN(4) == 0 {
					p.Flags |= f
				}
			}
			if p.Flags&pkttest.URG != 0 {
				p.Urgent = uint16(r.IntN(0x10000))
			}
			c.ecn = p.Flags&pkttest.CWR != 0 && r.IntN(2) == 0
			if r.IntN(2) == 0 {
				p.TCPOptions = [][]byte{tsOpt, mssSack, sack3, maxOpts}[r.IntN(4)]
				hdr += (len(p.TCPOptions) + 3) &^ 3
			}
		}
		// The whole packet within 65535 bytes: a bigger (IPv6) packet
		// exceeds the oracle's MTU when it is not segmented.
		maxPay := 65535 - hdr
		if p.V6 {
			maxPay -= 40
		}
		// Keep the segment count moderate: at most 150 segments (USO: 128).
		segs := 1 + r.IntN(150)
		if udp {
			segs = 1 + r.IntN(129)
		}
		n := min(maxPay, segs*c.gso-r.IntN(c.gso))
		if r.IntN(8) == 0 {
			n = min(maxPay, c.gso) // exactly gso_size: not GSO
		}
		if n < 1 {
			continue
		}
		p.Payload = pay(n, byte(r.IntN(256)))
		if r.IntN(10) == 0 {
			c.none, c.gso, c.ecn = true, 0, false
		}
		cases = append(cases, c)
	}
	runCases(t, cases)
}
