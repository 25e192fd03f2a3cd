package virtio

import (
	"bytes"
	"errors"
	"testing"
)

func TestHdrRoundTrip(t *testing.T) {
	for _, h := range []Hdr{
		{},
		{Flags: FlagNeedsCsum, GSOType: GSOTCPv4, HdrLen: 66, GSOSize: 1448, CsumStart: 20, CsumOffset: 16},
		{Flags: FlagNeedsCsum, GSOType: GSOTCPv6 | GSOECN, HdrLen: 74, GSOSize: 1428, CsumStart: 40, CsumOffset: 16},
		{Flags: FlagNeedsCsum, GSOType: GSOUDPL4, HdrLen: 28, GSOSize: 1472, CsumStart: 20, CsumOffset: 6},
		{Flags: FlagDataValid, GSOType: GSONone, HdrLen: 0xffff, GSOSize: 0xfffe, CsumStart: 0x1234, CsumOffset: 0x8765},
	} {
		var b [Size]byte
		if err := h.Encode(b[:]); err != nil {
			t.Fatal(err)
		}
		var g Hdr
		if err := g.Decode(b[:]); err != nil {
			t.Fatal(err)
		}
		if g != h {
			t.Errorf("round trip: got %+v, want %+v", g, h)
		}
		m := HdrMrg{Hdr: h, NumBuffers: 1}
		var mb [SizeMrg]byte
		if err := m.Encode(mb[:]); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(mb[:Size], b[:]) {
			t.Errorf("mrg header prefix %x differs from plain %x", mb[:Size], b[:])
		}
		var gm HdrMrg
		if err := gm.Decode(mb[:]); err != nil || gm != m {
			t.Errorf("mrg round trip: got %+v %v, want %+v", gm, err, m)
		}
	}
}

// The kernel's virtio_net_hdr on a TUN is little-endian
// (virtio16_to_cpu with TUNSETVNETBE off): gso_size 1448 = 0x05a8 is a8 05.
func TestHdrIsLittleEndian(t *testing.T) {
	h := Hdr{Flags: FlagNeedsCsum, GSOType: GSOTCPv4, HdrLen: 0x0042, GSOSize: 0x05a8, CsumStart: 0x0014, CsumOffset: 0x0010}
	var b [Size]byte
	if err := h.Encode(b[:]); err != nil {
		t.Fatal(err)
	}
	want := []byte{0x01, 0x01, 0x42, 0x00, 0xa8, 0x05, 0x14, 0x00, 0x10, 0x00}
	if !bytes.Equal(b[:], want) {
		t.Fatalf("encoded % x, want % x", b[:], want)
	}
}

func TestHdrShortBuffer(t *testing.T) {
	var h Hdr
	if err := h.Decode(make([]byte, Size-1)); !errors.Is(err, ErrShort) {
		t.Errorf("Decode short: %v", err)
	}
	if err := h.Encode(make([]byte, Size-1)); !errors.Is(err, ErrShort) {
		t.Errorf("Encode short: %v", err)
	}
	var m HdrMrg
	if err := m.Decode(make([]byte, Size)); !errors.Is(err, ErrShort) {
		t.Errorf("HdrMrg.Decode short: %v", err)
	}
}

func TestHdrString(t *testing.T) {
	h := Hdr{Flags: FlagNeedsCsum, GSOType: GSOTCPv4, HdrLen: 66, GSOSize: 1448, CsumStart: 20, CsumOffset: 16}
	if got, want := h.String(), "gso=tcpv4 gso_size=1448 hdr_len=66 csum_start=20 csum_offset=16 needs_csum"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if got := GSOName(GSOTCPv6 | GSOECN); got != "tcpv6|ecn" {
		t.Errorf("GSOName = %q", got)
	}
}

// hdr_len from the kernel is not trusted: on the GRO → forward → TUN path it
// is skb_headlen, the whole first packet (1500), not 20+32.
func TestRecomputeHdrLenIgnoresKernelHdrLen(t *testing.T) {
	pkt := make([]byte, 1500)
	pkt[0] = 0x45
	pkt[20+12] = 8 << 4 // TCP data offset 32 bytes
	h := Hdr{Flags: FlagNeedsCsum, GSOType: GSOTCPv4, HdrLen: 1500, GSOSize: 1448, CsumStart: 20, CsumOffset: 16}
	n, err := RecomputeHdrLen(pkt, &h)
	if err != nil || n != 52 {
		t.Fatalf("RecomputeHdrLen = %d, %v; want 52", n, err)
	}
	h.GSOType = GSOUDPL4
	h.CsumOffset = 6
	if n, err := RecomputeHdrLen(pkt, &h); err != nil || n != 28 {
		t.Fatalf("UDP RecomputeHdrLen = %d, %v; want 28", n, err)
	}
	for _, bad := range []uint16{1500, 1490, 0xffff} {
		h := Hdr{GSOType: GSOTCPv4, CsumStart: bad, CsumOffset: 16}
		if _, err := RecomputeHdrLen(pkt, &h); !errors.Is(err, ErrBadL4) {
			t.Errorf("csum_start %d: err %v, want ErrBadL4", bad, err)
		}
	}
	pkt[20+12] = 4 << 4 // data offset 16 < 20
	if _, err := RecomputeHdrLen(pkt, &Hdr{GSOType: GSOTCPv4, CsumStart: 20, CsumOffset: 16}); !errors.Is(err, ErrBadL4) {
		t.Errorf("data offset 16: err %v, want ErrBadL4", err)
	}
}

func FuzzHdr(f *testing.F) {
	f.Add([]byte{1, 1, 66, 0, 0xa8, 5, 20, 0, 16, 0, 0, 0}, []byte{0x45})
	f.Add([]byte{}, []byte{})
	f.Fuzz(func(t *testing.T, hb, pkt []byte) {
		var h Hdr
		if err := h.Decode(hb); err != nil {
			if len(hb) >= Size {
				t.Fatalf("Decode of %d bytes failed: %v", len(hb), err)
			}
			return
		}
		var b [Size]byte
		if err := h.Encode(b[:]); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b[:], hb[:Size]) {
			t.Fatalf("re-encoded % x, decoded from % x", b, hb[:Size])
		}
		_ = h.String()
		if n, err := RecomputeHdrLen(pkt, &h); err == nil && (n <= int(h.CsumStart) || n > len(pkt)) {
			t.Fatalf("RecomputeHdrLen = %d outside (csum_start %d, len %d]", n, h.CsumStart, len(pkt))
		}
	})
}

// struct virtio_net_hdr_v1_hash_tunnel: the 12-byte header, hash_value
// (4), hash_report (2), padding (2), outer_th_offset, inner_nh_offset;
// all little-endian.
func TestHdrTunnelLayout(t *testing.T) {
	h := HdrTunnel{
		Hdr: Hdr{Flags: FlagNeedsCsum | FlagUDPTunnelCsum, GSOType: GSOTCPv4 | GSOUDPTunnelIPv4,
			HdrLen: 0x5e, GSOSize: 0x05a8, CsumStart: 0x0032, CsumOffset: 0x0010},
		NumBuffers: 1, HashValue: 0x01020304, HashReport: 7, OuterTHOffset: 0x14, InnerNHOffset: 0x1e,
	}
	var b [SizeTunnel]byte
	if err := h.Encode(b[:]); err != nil {
		t.Fatal(err)
	}
	want := []byte{0x09, 0x21, 0x5e, 0, 0xa8, 0x05, 0x32, 0, 0x10, 0, 1, 0, 4, 3, 2, 1, 7, 0, 0, 0, 0x14, 0, 0x1e, 0}
	if !bytes.Equal(b[:], want) {
		t.Fatalf("encoded % x\nwant    % x", b[:], want)
	}
	var g HdrTunnel
	if err := g.Decode(b[:]); err != nil || g != h {
		t.Errorf("round trip: %+v %v, want %+v", g, err, h)
	}
	if err := g.Decode(b[:SizeTunnel-1]); !errors.Is(err, ErrShort) {
		t.Errorf("Decode short: %v", err)
	}
	if s := h.String(); s != "gso=tcpv4|tunnel4 gso_size=1448 hdr_len=94 csum_start=50 csum_offset=16 needs_csum udp_tunnel_csum outer_th=20 inner_nh=30" {
		t.Errorf("String = %q", s)
	}
	for typ, want := range map[uint8]string{
		GSOTCPv6 | GSOUDPTunnelIPv6 | GSOECN: "tcpv6|ecn|tunnel6",
		GSOUDPL4 | GSOUDPTunnelIPv4:          "udp_l4|tunnel4",
		GSOTCPv4 | GSOUDPTunnel:              "0x61",
		GSOTCPv4:                             "tcpv4",
	} {
		if got := GSOName(typ); got != want {
			t.Errorf("GSOName(%#02x) = %q, want %q", typ, got, want)
		}
	}
}
