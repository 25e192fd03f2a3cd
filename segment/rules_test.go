package segment

// The accept/refuse rules of the kernel's TUN receive path and stack
// (tun_get_user, __virtio_net_hdr_to_skb, ip_rcv_core, ip6_rcv_core,
// ip_options_compile, ip6_parse_tlv), one test per rule; the same rules
// are proven against the running kernel in kernel_rules_linux_test.go.

import (
	"bytes"
	"encoding/binary"
	"testing"

	"vnic/vnic/pkttest"
	"vnic/vnic/virtio"
)

// __virtio_net_hdr_to_skb: "if (gso_size == GSO_BY_FRAGS) return -EINVAL"
// for every GSO type, whether or not the frame is too small to be GSO.
func TestGSOByFragsRefused(t *testing.T) {
	for _, n := range []int{10, 5000} {
		_, pkt, h := tcpGSO(false, n)
		h.GSOSize = 0xffff
		_, err := try(h, pkt, Options{})
		wantErr(t, err, ErrGSOByFrags, "tcpv4")
		_, upkt, uh := udpGSO(true, n, 0xffff)
		_, err = try(uh, upkt, Options{})
		wantErr(t, err, ErrGSOByFrags, "udp_l4")
		uh.GSOType = virtio.GSOUDP
		_, err = try(uh, upkt, Options{})
		wantErr(t, err, ErrGSOByFrags, "udp")
		// One less is an ordinary gso_size.
		h.GSOSize = 0xfffe
		if _, err := try(h, pkt, Options{}); err != nil {
			t.Errorf("gso_size 0xfffe: %v", err)
		}
	}
}

// __virtio_net_hdr_to_skb: a legacy UFO frame (VIRTIO_NET_HDR_GSO_UDP)
// whose UDP header and payload fit in gso_size is not really GSO: one
// packet, its checksum completed if NEEDS_CSUM; the ECN bit is not refused
// for UFO. One byte more and it would be IP-fragmented: refused.
func TestUFONotReallyGSOIsOnePacket(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		p, pkt, h := udpGSO(v6, 1000, 1008)
		h.GSOType = virtio.GSOUDP | virtio.GSOECN
		got := run(t, h, pkt, Options{})
		if len(got) != 1 || !bytes.Equal(got[0], p.Build()) {
			t.Errorf("v6=%v: %d packets, want the datagram with its checksum completed", v6, len(got))
		}
		h.GSOSize = 1007
		_, err := try(h, pkt, Options{})
		wantErr(t, err, ErrGSOType, "UFO", "1008", "1007")
	}
	// Without NEEDS_CSUM the virtio layer measures after a 20-byte IPv4
	// header, on IPv6 too.
	p := pkttest.Packet{V6: true, Proto: pkttest.ProtoUDP, Payload: pkttest.Payload(1000, 60)}
	pkt := p.Build()
	h := virtio.Hdr{GSOType: virtio.GSOUDP, GSOSize: 1028}
	if got := run(t, h, pkt, Options{}); len(got) != 1 || !bytes.Equal(got[0], pkt) {
		t.Errorf("IPv6 UFO without NEEDS_CSUM at gso_size 1028: %d packets", len(got))
	}
	h.GSOSize = 1027
	_, err := try(h, pkt, Options{})
	wantErr(t, err, ErrGSOType, "UFO")
}

// tun_get_user (__tun_vnet_hdr_get): hdr_len, raised to csum_start +
// csum_offset + 2 with NEEDS_CSUM, may not exceed what follows the first
// 10 bytes of the virtio header — the packet, plus 2 behind a 12-byte
// header — whatever the gso type.
func TestHdrLenBeyondFrameRefused(t *testing.T) {
	_, pkt, h := tcpGSO(false, 3000)
	p := pkttest.Packet{Proto: pkttest.ProtoUDP, Payload: pkttest.Payload(100, 61)}
	none := p.Build()
	for _, tc := range []struct {
		name string
		h    virtio.Hdr
		pkt  []byte
	}{{"tso", h, pkt}, {"none", virtio.Hdr{}, none}} {
		for _, hsz := range []int{0, 10, 12} {
			slack := max(hsz-10, 0)
			hh := tc.h
			hh.HdrLen = uint16(len(tc.pkt) + slack)
			if _, err := try(hh, tc.pkt, Options{VnetHdrSize: hsz}); err != nil {
				t.Errorf("%s, header %d: hdr_len %d: %v", tc.name, hsz, hh.HdrLen, err)
			}
			hh.HdrLen++
			_, err := try(hh, tc.pkt, Options{VnetHdrSize: hsz})
			wantErr(t, err, ErrHdrLen, "hdr_len", "-byte packet")
		}
	}
	// NEEDS_CSUM raises hdr_len to the end of the checksum field: a field
	// past the frame is a bad checksum offset.
	ph, hh := p.BuildPartial()
	hh.HdrLen = 0
	hh.CsumOffset = uint16(len(ph) - int(hh.CsumStart) - 1)
	_, err := try(hh, ph, Options{VnetHdrSize: 12})
	wantErr(t, err, ErrCsum)
}

// ip_rcv_core / ip6_rcv_core: a frame longer than its IP length is
// trimmed to it (pskb_trim_rcsum) — after the virtio layer decided on the
// whole frame whether it is GSO.
func TestIPLengthShorterThanFrameTrimmed(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		// GSO: the segments of the packet, the tail ignored.
		p, pkt, h := tcpGSO(v6, 5000)
		got := run(t, h, append(bytes.Clone(pkt), 1, 2, 3, 4, 5), Options{})
		same(t, got, tsoWant(p, 1448, false, false))
		// Not GSO: the packet, its checksum completed over it alone.
		q := pkttest.Packet{V6: v6, Proto: pkttest.ProtoUDP, Payload: pkttest.Payload(300, 62)}
		qp, qh := q.BuildPartial()
		got = run(t, qh, append(bytes.Clone(qp), 9, 9, 9), Options{})
		same(t, got, [][]byte{q.Build()})
		// GSO only because of the tail: tcp_gso_segment then finds the
		// trimmed payload no larger than gso_size.
		_, pkt, h = tcpGSO(v6, 1448)
		_, err := try(h, append(bytes.Clone(pkt), 0), Options{})
		wantErr(t, err, ErrGSOShort, "1448")
		// A trim that cuts the partial checksum's field off.
		short := bytes.Clone(qp)
		l4 := int(qh.CsumStart)
		if v6 {
			binary.BigEndian.PutUint16(short[4:], uint16(l4-40+7))
		} else {
			binary.BigEndian.PutUint16(short[2:], uint16(l4+7))
			fixIPv4Checksum(short)
		}
		_, err = try(qh, short, Options{})
		wantErr(t, err, ErrIPLength, "cuts off the checksum field")
	}
}

// iph_totlen: an IPv4 total length of 0 on a TCP GSO frame is BIG TCP's,
// the frame's length; anywhere else it is below the header. An IPv6
// payload length of 0 with a hop-by-hop header is a jumbogram's: the
// frame's length stands.
func TestIPLengthZero(t *testing.T) {
	p, pkt, h := tcpGSO(false, 5000)
	b := bytes.Clone(pkt)
	binary.BigEndian.PutUint16(b[2:], 0)
	fixIPv4Checksum(b)
	same(t, run(t, h, b, Options{}), tsoWant(p, 1448, false, false))
	small := pkttest.Packet{Flags: pkttest.ACK, Payload: pkttest.Payload(100, 63)}
	sp, sh := small.BuildPartial()
	binary.BigEndian.PutUint16(sp[2:], 0)
	fixIPv4Checksum(sp)
	_, err := try(sh, sp, Options{})
	wantErr(t, err, ErrIPLength, "total length 0")

	q := pkttest.Packet{V6: true, Flags: pkttest.ACK, Payload: pkttest.Payload(5000, 64),
		ExtHdrs: []pkttest.ExtHdr{{Type: pkttest.ExtHopByHop, Data: []byte{1, 4, 0, 0, 0, 0}}}}
	qp, qh := q.BuildGSO(1448, false)
	binary.BigEndian.PutUint16(qp[4:], 0)
	same(t, run(t, qh, qp, Options{}), tsoWant(q, 1448, false, false))
	q.ExtHdrs = nil
	qp, qh = q.BuildGSO(1448, false)
	binary.BigEndian.PutUint16(qp[4:], 0)
	_, err = try(qh, qp, Options{})
	wantErr(t, err, ErrIPLength, "cuts off the checksum field")
}

// ip_rcv_core: "if (unlikely(ip_fast_csum((u8 *)iph, iph->ihl))) goto
// csum_error".
func TestIPv4HeaderChecksumVerified(t *testing.T) {
	_, pkt, h := tcpGSO(false, 5000)
	b := bytes.Clone(pkt)
	b[11] ^= 1
	_, err := try(h, b, Options{})
	wantErr(t, err, ErrIPHeader, "checksum")
}

// ip_options_compile (and ip_rcv_options for source routes).
func TestIPv4OptionsCompiled(t *testing.T) {
	for _, tc := range []struct {
		opt []byte
		ok  bool
	}{
		{[]byte{1, 1, 1, 1}, true},
		{[]byte{0, 0xfe, 0xfe, 0xfe}, true}, // after the end of the list, nothing is looked at
		{[]byte{0x94, 4, 0x12, 0x34}, true},
		{[]byte{0x94, 3, 0, 0}, false},
		{[]byte{0xfe, 2, 1, 1}, true},
		{[]byte{1, 1, 0xfe, 1}, false},
		{[]byte{1, 1, 0xfe, 3}, false},
		{[]byte{1, 1, 1, 0xfe}, false},
		{[]byte{7, 3, 4, 0}, true},
		{[]byte{7, 7, 3, 0, 0, 0, 0, 0}, false},
		{[]byte{7, 7, 5, 0, 0, 0, 0, 0}, false},
		{[]byte{7, 3, 4, 7, 3, 4, 0, 0}, false},
		{[]byte{68, 4, 5, 0xe0}, true},
		{[]byte{68, 4, 5, 0xf0}, false},
		{[]byte{68, 4, 5, 0xf3}, true}, // prespecified: no overflow count
		{[]byte{68, 8, 5, 1, 0, 0, 0, 0}, false},
		{[]byte{68, 3, 5, 0}, false},
		{[]byte{0x83, 7, 4, 1, 2, 3, 4, 0}, false},
		{[]byte{0x86, 6, 0, 0, 0, 1, 0, 0}, false},
	} {
		p := pkttest.Packet{IPOptions: tc.opt, Flags: pkttest.ACK, Payload: pkttest.Payload(3000, 65)}
		pkt, h := p.BuildGSO(1000, false)
		_, err := try(h, pkt, Options{})
		switch {
		case tc.ok && err != nil:
			t.Errorf("options %x: %v", tc.opt, err)
		case !tc.ok:
			wantErr(t, err, ErrIPHeader, "IPv4")
		}
	}
}

// ipv6_parse_hopopts → ip6_parse_tlv.
func TestHopByHopOptionsParsed(t *testing.T) {
	for _, tc := range []struct {
		data []byte
		ok   bool
	}{
		{[]byte{1, 4, 0, 0, 0, 0}, true},
		{[]byte{0, 0, 0, 0, 0, 0}, true},
		{[]byte{1, 4, 0, 0, 0, 1}, false},                                  // PadN not zero
		{[]byte{0, 1, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, false},          // 9 bytes of padding
		{[]byte{1, 5, 0, 0, 0, 0}, false},                                  // past the header
		{[]byte{5, 2, 0, 0, 1, 0}, true},                                   // router alert
		{[]byte{5, 3, 0, 0, 0, 0}, false},                                  // router alert of 3 bytes
		{[]byte{0x1e, 4, 1, 2, 3, 4}, true},                                // unknown, skip
		{[]byte{0x5e, 4, 1, 2, 3, 4}, false},                               // unknown, discard
		{[]byte{0xc2, 4, 0, 1, 0, 0}, false},                               // jumbo
		{[]byte{0x07, 4, 0, 0, 0, 0}, false},                               // CALIPSO
		{[]byte{0x31, 4, 0, 0, 0, 0}, false},                               // IOAM at 42: misaligned
		{[]byte{1, 0, 0x31, 2, 0, 0}, true},                                // IOAM at 44, IOAM off
		{bytes.Repeat([]byte{0x1e, 0}, 8)[:14], true},                      // 7 options
		{append(bytes.Repeat([]byte{0x1e, 0}, 9), 1, 2, 0, 0), false},      // 9 options
		{append(bytes.Repeat([]byte{0x1e, 0}, 8), 1, 4, 0, 0, 0, 0), true}, // 8 options
	} {
		p := pkttest.Packet{V6: true, Flags: pkttest.ACK, Payload: pkttest.Payload(3000, 66),
			ExtHdrs: []pkttest.ExtHdr{{Type: pkttest.ExtHopByHop, Data: tc.data}}}
		pkt, h := p.BuildGSO(1000, false)
		_, err := try(h, pkt, Options{})
		switch {
		case tc.ok && err != nil:
			t.Errorf("hop-by-hop %x: %v", tc.data, err)
		case !tc.ok:
			wantErr(t, err, ErrIPHeader, "hop-by-hop")
		}
	}
}
