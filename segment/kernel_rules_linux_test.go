package segment_test

// Differential tests for the rules by which the kernel accepts or refuses
// a frame written into a TUN device on its way to software GSO: the
// virtio header (tun_get_user, __virtio_net_hdr_to_skb) and the IP header
// as the receiving stack checks and trims it (ip_rcv_core, ip6_rcv_core,
// ip_options_compile, ip6_parse_tlv). Each case goes through the kernel
// and through a segment.Plan (kernelCompare): both must refuse, or both
// must make the same packets.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"testing"

	"vnic/segment"
	"vnic/vnic/kerneltest"
	"vnic/vnic/pkttest"
	"vnic/vnic/virtio"
)

// setIPLen writes an IP length field (IPv4 total length, IPv6 payload
// length) and fixes the IPv4 header checksum.
func setIPLen(pkt []byte, n int) {
	if pkt[0]>>4 == 6 {
		binary.BigEndian.PutUint16(pkt[4:], uint16(n))
		return
	}
	binary.BigEndian.PutUint16(pkt[2:], uint16(n))
	fixIPv4Checksum(pkt)
}

func fixIPv4Checksum(pkt []byte) {
	ihl := int(pkt[0]&0xf) * 4
	pkt[10], pkt[11] = 0, 0
	var s uint32
	for i := 0; i < ihl; i += 2 {
		s += uint32(pkt[i])<<8 | uint32(pkt[i+1])
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	binary.BigEndian.PutUint16(pkt[10:], ^uint16(s))
}

// shapes returns, for one address family, a TSO, a USO, a GSO_NONE with
// NEEDS_CSUM and a GSO_NONE complete frame of n payload bytes at gso_size
// gso (the last two with gso 0).
func shapes(v6 bool, n, gso int) []kcase {
	tcp := pkttest.Packet{V6: v6, Flags: pkttest.ACK | pkttest.PSH, ID: 7, Payload: pay(n, 11)}
	udp := pkttest.Packet{V6: v6, Proto: pkttest.ProtoUDP, ID: 9, Payload: pay(n, 12)}
	return []kcase{
		{p: tcp, gso: gso},
		{p: udp, gso: gso},
		{p: tcp, none: true},
		{p: udp, none: true, noCsum: true},
	}
}

func withEdit(cs []kcase, comment string, edit func(h *virtio.Hdr, pkt []byte) []byte) []kcase {
	out := make([]kcase, len(cs))
	for i, c := range cs {
		c.comment, c.edit = comment, edit
		out[i] = c
	}
	return out
}

// TestKernelGSOByFragsRefused: __virtio_net_hdr_to_skb refuses gso_size
// 0xffff (GSO_BY_FRAGS) for every GSO type, before it decides whether the
// frame is too small to be GSO; 0xfffe is an ordinary gso_size.
func TestKernelGSOByFragsRefused(t *testing.T) {
	var cases []kcase
	for _, v6 := range []bool{false, true} {
		for _, n := range []int{100, 3000, 65000} {
			for _, gso := range []int{0xffff, 0xfffe} {
				for _, c := range shapes(v6, n, gso)[:2] {
					cases = append(cases, c)
					if c.p.Proto == pkttest.ProtoUDP {
						c.comment, c.edit = "ufo", func(h *virtio.Hdr, pkt []byte) []byte { h.GSOType = virtio.GSOUDP; return pkt }
						cases = append(cases, c)
					}
				}
			}
		}
	}
	runCases(t, cases)
}

// TestKernelUFONotReallyGSOIsOnePacket: a legacy UFO frame
// (VIRTIO_NET_HDR_GSO_UDP) whose UDP header and payload fit in gso_size
// is "not really GSO" (__virtio_net_hdr_to_skb) and goes out as one
// packet, its checksum completed if NEEDS_CSUM, with or without NEEDS_CSUM
// and with the ECN bit (which UFO does not refuse, unlike UDP_L4).
// Without NEEDS_CSUM the virtio layer measures after a 20-byte IPv4
// header on IPv6 too, so an IPv6 datagram that fits only with its real
// header is GSO, and udp6_ufo_fragment finds it too short: dropped.
func TestKernelUFONotReallyGSOIsOnePacket(t *testing.T) {
	var cases []kcase
	for _, v6 := range []bool{false, true} {
		for _, n := range []int{1, 1000, 1472, 9000} {
			for _, extra := range []int{0, 1, 20, 200} {
				for _, csum := range []bool{true, false} {
					for _, ecn := range []bool{false, true} {
						p := pkttest.Packet{V6: v6, Proto: pkttest.ProtoUDP, ID: 3, Payload: pay(n, 13)}
						c := kcase{p: p, gso: 8 + n + extra, noCsum: !csum, comment: fmt.Sprintf("ufo-csum%v-ecn%v", csum, ecn)}
						c.edit = func(h *virtio.Hdr, pkt []byte) []byte {
							h.GSOType = virtio.GSOUDP
							if ecn {
								h.GSOType |= virtio.GSOECN
							}
							if !csum {
								h.Flags = 0
								return (&p).Build()
							}
							return pkt
						}
						cases = append(cases, c)
					}
				}
			}
		}
	}
	runCases(t, cases)
}

// TestKernelUFOLargerThanGSOSizeIsFragmented pins the one difference left
// for UFO: the kernel IP-fragments a UFO datagram larger than gso_size
// (udp4_ufo_fragment, udp6_ufo_fragment); segment refuses it
// (ErrGSOType).
func TestKernelUFOLargerThanGSOSizeIsFragmented(t *testing.T) {
	o := kerneltest.NewGSO(t)
	for _, v6 := range []bool{false, true} {
		p := pkttest.Packet{V6: v6, Proto: pkttest.ProtoUDP, Payload: pay(3000, 14)}
		pkt, h := p.BuildGSO(1000, false)
		h.GSOType = virtio.GSOUDP
		kern, err := o.Segment(h, pkt)
		if err != nil || len(kern) != 4 {
			t.Errorf("v6=%v: kernel made %d packets, %v; want 4 IP fragments", v6, len(kern), err)
		}
		if _, err := segment.NewPlan(h, kerneltest.AfterForwarding(pkt), segment.Options{}); !errors.Is(err, segment.ErrGSOType) {
			t.Errorf("v6=%v: NewPlan: %v, want ErrGSOType", v6, err)
		}
	}
}

// TestKernelHdrLenBeyondFrameRefused: tun_get_user (__tun_vnet_hdr_get)
// fails the write when hdr_len — raised to csum_start + csum_offset + 2
// with NEEDS_CSUM — is larger than what follows the first 10 bytes of
// the virtio header, for every gso type, GSO_NONE included; hdr_len up to
// the packet's length is ignored. Behind a 12-byte header (num_buffers)
// that is the packet plus 2 bytes.
func TestKernelHdrLenBeyondFrameRefused(t *testing.T) {
	for _, hsz := range []int{10, 12} {
		t.Run(fmt.Sprintf("vnet_hdr_%d", hsz), func(t *testing.T) {
			var cases []kcase
			for _, v6 := range []bool{false, true} {
				for _, c := range shapes(v6, 3000, 1000) {
					for _, d := range []int{-3000, -1, 0, 1, 2, 3, 1000} {
						cases = append(cases, withEdit([]kcase{c}, fmt.Sprintf("hdr_len%+d", d), func(h *virtio.Hdr, pkt []byte) []byte {
							h.HdrLen = uint16(max(0, len(pkt)+d))
							return pkt
						})...)
					}
					cases = append(cases, withEdit([]kcase{c}, "hdr_len0xffff", func(h *virtio.Hdr, pkt []byte) []byte {
						h.HdrLen = 0xffff
						return pkt
					})...)
				}
				// A partial checksum's field that ends 1 or 2 bytes past
				// the packet: hdr_len is raised past it, then
				// virtio_net_hdr_to_skb's pskb_may_pull fails anyway.
				small := pkttest.Packet{V6: v6, Proto: pkttest.ProtoUDP, Payload: pay(10, 15)}
				for _, d := range []int{1, 2} {
					cases = append(cases, withEdit([]kcase{{p: small, none: true}}, fmt.Sprintf("csum-field-past-end%+d", d), func(h *virtio.Hdr, pkt []byte) []byte {
						h.CsumOffset = uint16(len(pkt) - int(h.CsumStart) - 2 + d)
						return pkt
					})...)
				}
			}
			runCasesWith(t, kerneltest.GSOOptions{VnetHdrSize: hsz}, cases)
		})
	}
}

// TestKernelIPLengthTrimmed: ip_rcv_core and ip6_rcv_core trim a frame
// longer than its IP length to it (pskb_trim_rcsum), after the virtio
// layer decided on the untrimmed frame whether it is GSO; a frame shorter
// than its IP length, an IPv4 total length below the header, or a trim
// that cuts a partial checksum's field off are dropped. An IPv4 total
// length of 0 on a TCP GSO frame is BIG TCP's (iph_totlen: the skb's
// length); an IPv6 payload length of 0 stands for the frame's length only
// with a hop-by-hop header (a jumbogram's), else it trims to the header.
func TestKernelIPLengthTrimmed(t *testing.T) {
	var cases []kcase
	for _, v6 := range []bool{false, true} {
		ip := 20
		if v6 {
			ip = 40
		}
		for _, c := range shapes(v6, 3000, 1000) {
			for _, tail := range []int{1, 7, 8, 100, 2000} {
				cases = append(cases, withEdit([]kcase{c}, fmt.Sprintf("tail%d", tail), func(h *virtio.Hdr, pkt []byte) []byte {
					return append(pkt, pay(tail, 16)...)
				})...)
			}
			// The IP length field changed, the frame not: the first
			// bytes of the frame are the packet.
			for _, l := range []int{0, 1, ip - 1, ip, ip + 7, ip + 8, ip + 19, ip + 20, ip + 28, ip + 29, ip + 1000, ip + 1008, ip + 1020, ip + 1021, ip + 2999, 3000 + ip + 7, 3000 + ip + 20, 3000 + ip + 21} {
				cases = append(cases, withEdit([]kcase{c}, fmt.Sprintf("iplen%d", l), func(h *virtio.Hdr, pkt []byte) []byte {
					if !v6 {
						l += 0 // IPv4 total length includes the header
					} else {
						l -= ip // IPv6 payload length does not
					}
					if l < 0 {
						return pkt
					}
					setIPLen(pkt, l)
					return pkt
				})...)
			}
		}
		if v6 {
			// Payload length 0 with a hop-by-hop header.
			for _, c := range shapes(v6, 3000, 1000) {
				c.p.ExtHdrs = hbh8
				cases = append(cases, withEdit([]kcase{c}, "hbh-payload-len0", func(h *virtio.Hdr, pkt []byte) []byte {
					setIPLen(pkt, 0)
					return pkt
				})...)
			}
		}
	}
	// A frame whose tail makes it GSO that its IP length does not.
	for _, v6 := range []bool{false, true} {
		for _, c := range shapes(v6, 1000, 1000)[:2] {
			cases = append(cases, withEdit([]kcase{c}, "gso-only-with-tail", func(h *virtio.Hdr, pkt []byte) []byte {
				return append(pkt, pay(100, 17)...)
			})...)
		}
	}
	runCases(t, cases)
}

// TestKernelIPv4HeaderChecksumVerified: ip_rcv_core drops an IPv4 packet
// whose header checksum does not verify, GSO or not; every other header
// error it checks (ihl below 5) likewise.
func TestKernelIPv4HeaderChecksumVerified(t *testing.T) {
	var cases []kcase
	for _, c := range shapes(false, 3000, 1000) {
		for _, flip := range []uint16{1, 0x100, 0xffff} {
			cases = append(cases, withEdit([]kcase{c}, fmt.Sprintf("ipcsum^%#x", flip), func(h *virtio.Hdr, pkt []byte) []byte {
				binary.BigEndian.PutUint16(pkt[10:], binary.BigEndian.Uint16(pkt[10:])^flip)
				return pkt
			})...)
		}
		cases = append(cases, withEdit([]kcase{c}, "ihl4", func(h *virtio.Hdr, pkt []byte) []byte {
			pkt[0] = 0x44
			fixIPv4Checksum(pkt)
			return pkt
		})...)
	}
	runCases(t, cases)
}

// TestKernelIPv4OptionsCompiled: ip_options_compile, on receive, refuses
// an option shorter than 2 bytes or running past the header, a router
// alert shorter than 4, record route and timestamp with a bad pointer or
// length, a repeated record route or timestamp; the stack drops a source
// route (accept_source_route 0) and CIPSO (no DOI). Everything else —
// NOPs, end of list, a router alert with any value, unknown and security
// options — is copied into every segment. (Options a router changes,
// record route and timestamp with room left, are not among the accepted
// cases: a NIC does not fill them in.)
func TestKernelIPv4OptionsCompiled(t *testing.T) {
	opts := [][]byte{
		{1, 1, 1, 1}, {0, 0, 0, 0}, {1, 0, 0, 0},
		{0x94, 4, 0, 0}, {0x94, 4, 0x12, 0x34}, {0x94, 3, 0, 0, 1, 1, 1, 1}, {0x94, 5, 0, 0},
		{0x94, 6, 0, 0, 0, 0, 1, 1},
		{1, 1, 0xfe, 2}, {1, 1, 0xfe, 1}, {1, 1, 0xfe, 3}, {1, 1, 1, 0xfe}, {0xfe, 40},
		{0x88, 4, 0, 1}, {0x82, 11, 0, 0, 0, 0, 0, 0, 0, 0, 0},
		{0x1e, 2, 0x5e, 2}, {0x1e, 0},
		// record route: pointer past the end (full: left alone), bad
		// pointers and lengths, twice.
		{7, 3, 4, 0}, {7, 7, 8, 0, 0, 0, 0, 0}, {7, 2, 4, 0}, {7, 7, 3, 0, 0, 0, 0, 0}, {7, 7, 5, 0, 0, 0, 0, 0},
		{7, 3, 4, 7, 3, 4, 0, 0},
		// timestamp: bad length, pointer, overflow 15.
		{68, 3, 5, 0}, {68, 4, 4, 0}, {68, 4, 5, 0xf0}, {68, 8, 6, 0, 0, 0, 0, 0}, {68, 8, 5, 1, 0, 0, 0, 0},
		// source routes and CIPSO.
		{0x83, 3, 4, 0}, {0x89, 7, 4, 198, 18, 0, 9, 0}, {0x83, 2, 0, 0},
		{0x86, 6, 0, 0, 0, 1, 0, 0},
	}
	var cases []kcase
	for i, o := range opts {
		for _, c := range shapes(false, 3000, 1000) {
			c.p.IPOptions = o
			c.comment = fmt.Sprintf("opt%d-%x", i, o)
			cases = append(cases, c)
		}
	}
	runCases(t, cases)
}

// TestKernelHopByHopOptionsParsed: ipv6_parse_hopopts (ip6_parse_tlv)
// drops a hop-by-hop header whose options run past it, more than 7 bytes
// of padding in a row or PadN with non-zero bytes, more than 8 options, a
// router alert whose length is not 2, a jumbo payload option (it needs a
// packet above 64 KiB), a misaligned IOAM option, and an unknown option
// whose type says discard; it skips unknown options of type 00xxxxxx.
func TestKernelHopByHopOptionsParsed(t *testing.T) {
	hbh := func(b ...byte) []pkttest.ExtHdr {
		return []pkttest.ExtHdr{{Type: pkttest.ExtHopByHop, Data: b}}
	}
	exts := [][]pkttest.ExtHdr{
		hbh(1, 4, 0, 0, 0, 0),
		hbh(0, 0, 0, 0, 0, 0),
		hbh(1, 4, 0, 0, 0, 1),
		hbh(1, 2, 0, 0, 0, 0),
		hbh(1, 5, 0, 0, 0, 0),
		hbh(5, 2, 0, 0, 1, 0),
		hbh(5, 2, 0, 1, 1, 0),
		hbh(5, 3, 0, 0, 0, 0),
		hbh(0x1e, 4, 1, 2, 3, 4),
		hbh(0x5e, 4, 1, 2, 3, 4),
		hbh(0x9e, 4, 1, 2, 3, 4),
		hbh(0xde, 4, 1, 2, 3, 4),
		hbh(0xc2, 4, 0, 1, 0, 0),
		hbh(0x07, 4, 0, 0, 0, 0),
		hbh(0x31, 4, 0, 0, 0, 0),
		hbh(1, 0, 0x31, 2, 0, 0),
		hbh(0x1e, 0, 0x1e, 0, 0x1e, 0),
		hbh(0x1e, 0, 0x1e, 0, 0x1e, 0, 0x1e, 0, 0x1e, 0, 0x1e, 0, 0x1e, 0, 0x1e, 0, 0x1e, 0, 1, 0, 0, 0, 0, 0),
		hbh(0x1e, 0, 0x1e, 0, 0x1e, 0, 0x1e, 0, 0x1e, 0, 0x1e, 0, 0x1e, 0, 0x1e, 0, 1, 4, 0, 0, 0, 0, 0, 0),
		hbh(0, 1, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0),
		hbh(1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0),
		hbh(0x1e, 9, 0, 0, 0, 0),
		{{Type: pkttest.ExtHopByHop, Data: []byte{1, 4, 0, 0, 0, 0}}, {Type: pkttest.ExtDestOpts, Data: []byte{0x9e, 4, 1, 2, 3, 4}}},
	}
	var cases []kcase
	for i, e := range exts {
		for _, c := range shapes(true, 3000, 1000) {
			c.p.ExtHdrs = e
			c.comment = fmt.Sprintf("hbh%d", i)
			cases = append(cases, c)
		}
	}
	runCases(t, cases)
}
