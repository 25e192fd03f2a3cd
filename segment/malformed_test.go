package segment

import (
	"encoding/binary"
	"errors"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"

	"vnic/vnic/pkttest"
	"vnic/vnic/virtio"
)

// Each test below feeds frames the kernel refuses (or vnic's NIC model
// drops) and checks the typed error, its Reason and the numbers in the
// message. None may panic.

func tcpGSO(v6 bool, n int) (pkttest.Packet, []byte, virtio.Hdr) {
	p := pkttest.Packet{V6: v6, Flags: pkttest.ACK, Payload: pkttest.Payload(n, 50)}
	pkt, h := p.BuildGSO(1448, false)
	return p, pkt, h
}

func udpGSO(v6 bool, n, mss int) (pkttest.Packet, []byte, virtio.Hdr) {
	p := pkttest.Packet{V6: v6, Proto: pkttest.ProtoUDP, Payload: pkttest.Payload(n, 51)}
	pkt, h := p.BuildGSO(mss, false)
	return p, pkt, h
}

func TestMalformedGSOType(t *testing.T) {
	_, pkt, h := tcpGSO(false, 5000)
	_, upkt, uh := udpGSO(false, 5000, 1000)
	for _, tc := range []struct {
		name string
		typ  uint8
		pkt  []byte
		h    virtio.Hdr
		frag string
	}{
		{"ufo", virtio.GSOUDP, upkt, uh, "UFO"},
		{"unknown-2", 2, pkt, h, "0x02"},
		{"ecn-alone", virtio.GSOECN, pkt, h, "0x80"},
		{"accecn-bit", virtio.GSOTCPv4 | 0x10, pkt, h, "0x11"},
		{"udp-tunnel", virtio.GSOTCPv4 | 0x20, pkt, h, "0x21"},
		{"udp-l4-ecn", virtio.GSOUDPL4 | virtio.GSOECN, upkt, uh, "ECN"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.h.GSOType = tc.typ
			_, err := try(tc.h, tc.pkt, Options{})
			wantErr(t, err, ErrGSOType, tc.frag)
		})
	}
}

func TestMalformedGSOSizeZero(t *testing.T) {
	_, pkt, h := tcpGSO(false, 5000)
	h.GSOSize = 0
	_, err := try(h, pkt, Options{})
	wantErr(t, err, ErrGSOSizeZero, "tcpv4")
}

func TestMalformedCsumOffsets(t *testing.T) {
	_, pkt, h := tcpGSO(false, 5000)
	_, upkt, uh := udpGSO(false, 5000, 1000)
	_, pkt6, h6 := tcpGSO(true, 5000)
	opt := pkttest.Packet{IPOptions: []byte{1, 1, 1, 0}, Flags: pkttest.ACK, Payload: pkttest.Payload(5000, 52)}
	optPkt, optH := opt.BuildGSO(1448, false)
	small := pkttest.Packet{Flags: pkttest.ACK, Payload: pkttest.Payload(10, 53)}
	smallPkt, smallH := small.BuildPartial()
	for _, tc := range []struct {
		name  string
		pkt   []byte
		h     virtio.Hdr
		edit  func(*virtio.Hdr)
		frags []string
	}{
		{"start-past-end", pkt, h, func(h *virtio.Hdr) { h.CsumStart = 60000 }, []string{"60000", "5040"}},
		{"offset-past-end", smallPkt, smallH, func(h *virtio.Hdr) { h.CsumOffset = 40 }, []string{"40", "50"}},
		{"start-in-ip-header", pkt, h, func(h *virtio.Hdr) { h.CsumStart = 12 }, []string{"12", "20"}},
		{"v6-start-in-ipv6-header", pkt6, h6, func(h *virtio.Hdr) { h.CsumStart = 30 }, []string{"30", "40"}},
		{"tcp-offset-not-16", pkt, h, func(h *virtio.Hdr) { h.CsumOffset = 6 }, []string{"6", "16"}},
		{"udp-offset-not-6", upkt, uh, func(h *virtio.Hdr) { h.CsumOffset = 16 }, []string{"16", "6"}},
		{"start-disagrees-with-ihl", optPkt, optH, func(h *virtio.Hdr) { h.CsumStart = 20 }, []string{"20", "24"}},
		{"start-disagrees-v6", pkt6, h6, func(h *virtio.Hdr) { h.CsumStart = 48 }, []string{"48", "40"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hh := tc.h
			tc.edit(&hh)
			_, err := try(hh, tc.pkt, Options{})
			wantErr(t, err, ErrCsum, tc.frags...)
		})
	}
}

func TestMalformedUSOWithoutNeedsCsum(t *testing.T) {
	_, pkt, h := udpGSO(false, 5000, 1000)
	h.Flags = 0
	_, err := try(h, pkt, Options{})
	wantErr(t, err, ErrNeedsCsum, "udp_l4")
}

func TestMalformedIPVersion(t *testing.T) {
	_, pkt4, h4 := tcpGSO(false, 5000)
	_, pkt6, h6 := tcpGSO(true, 5000)
	// TCPV4 on an IPv6 packet: csum_start 40 passes the virtio layer,
	// tcp6_gso_segment refuses the type.
	h := h6
	h.GSOType = virtio.GSOTCPv4
	_, err := try(h, pkt6, Options{})
	wantErr(t, err, ErrIPVersion, "tcpv4", "IPv6")
	// TCPV6 on an IPv4 packet with csum_start 40 (inside the TCP header).
	h = h4
	h.GSOType = virtio.GSOTCPv6
	h.CsumStart = 40
	_, err = try(h, append(pkt4[:0:0], pkt4...), Options{})
	wantErr(t, err, ErrIPVersion, "tcpv6", "IPv4")
	// Neither 4 nor 6.
	bad := append([]byte(nil), pkt4...)
	bad[0] = 0x55
	_, err = try(h4, bad, Options{})
	wantErr(t, err, ErrIPVersion, "version 5")
}

func TestMalformedIPHeader(t *testing.T) {
	_, pkt, h := tcpGSO(false, 5000)
	bad := append([]byte(nil), pkt...)
	bad[0] = 0x44 // ihl 4 words
	_, err := try(h, bad, Options{})
	wantErr(t, err, ErrIPHeader, "16")
	_, err = try(virtio.Hdr{}, []byte{0x45, 0, 0}, Options{})
	wantErr(t, err, ErrIPHeader, "3")
	_, err = try(virtio.Hdr{}, nil, Options{})
	wantErr(t, err, ErrIPHeader, "empty")
	_, err = try(virtio.Hdr{}, make([]byte, 39), Options{})
	wantErr(t, err, ErrIPVersion, "0")
	v6 := make([]byte, 39)
	v6[0] = 0x60
	_, err = try(virtio.Hdr{}, v6, Options{})
	wantErr(t, err, ErrIPHeader, "39")
}

// ip_rcv_core / ip6_rcv_core: an IP length above the packet, or an IPv4
// total length below its header, is dropped.
func TestMalformedIPLength(t *testing.T) {
	_, pkt, h := tcpGSO(false, 5000)
	bad := append([]byte(nil), pkt...)
	binary.BigEndian.PutUint16(bad[2:], 5041)
	fixIPv4Checksum(bad)
	_, err := try(h, bad, Options{})
	wantErr(t, err, ErrIPLength, "5041", "5040")

	binary.BigEndian.PutUint16(bad[2:], 19)
	fixIPv4Checksum(bad)
	_, err = try(h, bad, Options{})
	wantErr(t, err, ErrIPLength, "19", "header 20")

	_, pkt6, h6 := tcpGSO(true, 5000)
	bad = append([]byte(nil), pkt6...)
	binary.BigEndian.PutUint16(bad[4:], 5021)
	_, err = try(h6, bad, Options{})
	wantErr(t, err, ErrIPLength, "payload length 5021", "5060")
}

func TestMalformedL4Proto(t *testing.T) {
	// A UDP packet announced as TCPV4.
	p := pkttest.Packet{Proto: pkttest.ProtoUDP, Payload: pkttest.Payload(5000, 54)}
	pkt, h := p.BuildGSO(1448, false)
	h.GSOType = virtio.GSOTCPv4
	h.CsumOffset = 16
	_, err := try(h, pkt, Options{})
	wantErr(t, err, ErrL4Proto, "17", "6")
	// A TCP packet announced as UDP_L4.
	_, tpkt, th := tcpGSO(true, 5000)
	th.GSOType = virtio.GSOUDPL4
	th.CsumOffset = 6
	_, err = try(th, tpkt, Options{})
	wantErr(t, err, ErrL4Proto, "protocol 6", "17")
}

// ipv6_gso_pull_exthdrs stops at a fragment header, and ipv6_gso_segment
// has no offload for protocol 44: -EPROTONOSUPPORT.
func TestMalformedIPv6FragmentHeaderInGSO(t *testing.T) {
	for _, proto := range []uint8{pkttest.ProtoTCP, pkttest.ProtoUDP} {
		p := pkttest.Packet{V6: true, Proto: proto, Flags: pkttest.ACK, Payload: pkttest.Payload(5000, 55),
			ExtHdrs: []pkttest.ExtHdr{{Type: pkttest.ExtFragment, Data: []byte{0, 0, 0, 0, 0, 1}}}}
		pkt, h := p.BuildGSO(1400, false)
		_, err := try(h, pkt, Options{})
		wantErr(t, err, ErrIPv6ExtHdr, "fragment", "40")
	}
	// A truncated extension header.
	p := pkttest.Packet{V6: true, Flags: pkttest.ACK, Payload: pkttest.Payload(1500, 56),
		ExtHdrs: []pkttest.ExtHdr{{Type: pkttest.ExtDestOpts, Data: make([]byte, 6)}}}
	pkt, h := p.BuildGSO(1400, false)
	pkt[41] = 255 // (255+1)*8 bytes
	_, err := try(h, pkt, Options{})
	wantErr(t, err, ErrIPv6ExtHdr, "2048", "1568")
}

func TestMalformedL4Header(t *testing.T) {
	_, pkt, h := tcpGSO(false, 5000)
	bad := append([]byte(nil), pkt...)
	bad[32] = 0x40 // data offset 4 words
	_, err := try(h, bad, Options{})
	wantErr(t, err, ErrL4Header, "16")
	if !errors.Is(err, virtio.ErrBadL4) {
		t.Errorf("%v does not wrap virtio.ErrBadL4", err)
	}
	// GSO without NEEDS_CSUM on a packet shorter than the minimal headers.
	short := []byte{0x45, 0, 0, 30, 0, 0, 0, 0, 64, 6, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	_, err = try(virtio.Hdr{GSOType: virtio.GSOTCPv4, GSOSize: 1}, short, Options{})
	wantErr(t, err, ErrL4Header, "30", "40")
}

func TestMalformedGSOShort(t *testing.T) {
	// Covered in depth by TestTSOPayloadFitsOnlyWithOptionsIsDropped; here
	// the largest TCP options.
	p := pkttest.Packet{Flags: pkttest.ACK, TCPOptions: make([]byte, 40), Payload: pkttest.Payload(1000, 57)}
	pkt, h := p.BuildGSO(1000, false)
	_, err := try(h, pkt, Options{})
	wantErr(t, err, ErrGSOShort, "1000 payload", "80 bytes of headers")
}

func TestMalformedUSOSegments(t *testing.T) {
	_, pkt, h := udpGSO(false, 129*10, 10)
	_, err := try(h, pkt, Options{})
	wantErr(t, err, ErrUSOSegments, "1290", "10", "128")
}

func TestMalformedTooManySegments(t *testing.T) {
	_, pkt, h := tcpGSO(false, 10000)
	out, sizes := newBufs(6, 2000)
	_, err := Segment(h, pkt, out, sizes, 0, Options{})
	wantErr(t, err, ErrTooManySegments, "7", "6")
	out, sizes = newBufs(7, 2000)
	_, err = Segment(h, pkt, out, sizes[:3], 0, Options{})
	wantErr(t, err, ErrTooManySegments, "7", "3")
	_, err = Segment(virtio.Hdr{}, pkt, nil, nil, 0, Options{})
	wantErr(t, err, ErrTooManySegments, "0")
}

func TestMalformedBufferTooSmall(t *testing.T) {
	_, pkt, h := tcpGSO(false, 10000)
	out, sizes := newBufs(7, 1500)
	_, err := Segment(h, pkt, out, sizes, 100, Options{})
	wantErr(t, err, ErrBufferTooSmall, "1500", "100", "1488")
	out[6] = make([]byte, 10)
	_, err = Segment(h, pkt, out, sizes, -1, Options{})
	wantErr(t, err, ErrBufferTooSmall, "-1")
	out, sizes = newBufs(1, 100)
	small := pkttest.Packet{Payload: pkttest.Payload(200, 58)}
	_, err = Segment(virtio.Hdr{}, small.Build(), out, sizes, 0, Options{})
	wantErr(t, err, ErrBufferTooSmall, "100", "240")
}

func TestMalformedTooBig(t *testing.T) {
	p := pkttest.Packet{Flags: pkttest.ACK, Payload: pkttest.Payload(8000, 59)}
	_, err := try(virtio.Hdr{}, p.Build(), Options{MaxPacket: 1500})
	wantErr(t, err, ErrTooBig, "8040", "1500")
}

// fixIPv4Checksum recomputes an IPv4 header checksum in place.
func fixIPv4Checksum(pkt []byte) {
	ihl := int(pkt[0]&0xf) * 4
	pkt[10], pkt[11] = 0, 0
	binary.BigEndian.PutUint16(pkt[10:], ^checksum.Checksum(pkt[:ihl], 0))
}
