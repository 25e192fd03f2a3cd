package segment

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"

	"vnic/vnic/drop"
	"vnic/vnic/pkttest"
	"vnic/vnic/virtio"
)

// vxlanWrap puts an inner super-packet (as pkttest builds it, with its
// virtio header) into VXLAN over IPv4 or IPv6 the way the kernel's VXLAN
// device hands it to a TUN with the UDP tunnel offloads: outer IP, UDP to
// port 4789 (its checksum field holding the pseudo-header sum with csum,
// 0 without), the 8-byte VXLAN header, an inner Ethernet header.
func vxlanWrap(inner []byte, ih virtio.Hdr, outerV6, csum bool, id uint16) (virtio.HdrTunnel, []byte) {
	ipLen := 20
	if outerV6 {
		ipLen = 40
	}
	innerNH := ipLen + 8 + 8 + 14
	b := make([]byte, innerNH+len(inner))
	n := len(b)
	if outerV6 {
		b[0] = 0x60
		binary.BigEndian.PutUint16(b[4:], uint16(n-40))
		b[6], b[7] = 17, 64
		b[8], b[9], b[23] = 0xfd, 0x01, 1
		b[24], b[25], b[39] = 0xfd, 0x01, 2
	} else {
		b[0] = 0x45
		binary.BigEndian.PutUint16(b[2:], uint16(n))
		binary.BigEndian.PutUint16(b[4:], id)
		b[8], b[9] = 64, 17
		copy(b[12:], []byte{198, 19, 0, 1, 198, 19, 0, 2})
		binary.BigEndian.PutUint16(b[10:], ^checksum.Checksum(b[:20], 0))
	}
	uh := b[ipLen:]
	binary.BigEndian.PutUint16(uh[0:], 0xe45c)
	binary.BigEndian.PutUint16(uh[2:], 4789)
	binary.BigEndian.PutUint16(uh[4:], uint16(n-ipLen))
	if csum {
		var ps uint16
		if outerV6 {
			ps = checksum.Checksum(b[8:40], 0)
		} else {
			ps = checksum.Checksum(b[12:20], 0)
		}
		ps = checksum.Combine(ps, 17)
		ps = checksum.Combine(ps, uint16(n-ipLen))
		binary.BigEndian.PutUint16(uh[6:], ps)
	}
	uh[8] = 0x08
	uh[14] = 42 // VNI
	eth := uh[16:]
	copy(eth, []byte{2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1})
	if inner[0]>>4 == 6 {
		eth[12], eth[13] = 0x86, 0xdd
	} else {
		eth[12], eth[13] = 0x08, 0x00
	}
	copy(b[innerNH:], inner)
	h := virtio.HdrTunnel{Hdr: ih, OuterTHOffset: uint16(ipLen), InnerNHOffset: uint16(innerNH)}
	h.CsumStart += uint16(innerNH)
	h.HdrLen = uint16(n)
	if outerV6 {
		h.GSOType |= virtio.GSOUDPTunnelIPv6
	} else {
		h.GSOType |= virtio.GSOUDPTunnelIPv4
	}
	if csum {
		h.Flags |= virtio.FlagUDPTunnelCsum
	}
	return h, b
}

// checkTunnelSegments checks the packets cut from a VXLAN super-packet:
// outer lengths and IPv4 header checksum right, outer UDP checksum
// verifying (or 0 without csum), inner packets verifying, and their
// payloads together the inner super-packet's.
func checkTunnelSegments(t *testing.T, got [][]byte, innerNH int, outerV6, csum bool, wantPayload []byte) {
	t.Helper()
	var joined []byte
	for i, g := range got {
		ipLen := 20
		if outerV6 {
			ipLen = 40
			if int(binary.BigEndian.Uint16(g[4:]))+40 != len(g) {
				t.Fatalf("segment %d: outer payload length", i)
			}
		} else if int(binary.BigEndian.Uint16(g[2:])) != len(g) || checksum.Checksum(g[:20], 0) != 0xffff {
			t.Fatalf("segment %d: outer IPv4 length or checksum", i)
		}
		uh := g[ipLen:]
		if int(binary.BigEndian.Uint16(uh[4:])) != len(uh) {
			t.Fatalf("segment %d: outer UDP length", i)
		}
		if csum {
			if err := pkttest.Verify(g); err != nil {
				t.Fatalf("segment %d: outer: %v", i, err)
			}
		} else if uh[6] != 0 || uh[7] != 0 {
			t.Fatalf("segment %d: outer UDP checksum %x, want 0", i, uh[6:8])
		}
		inner := g[innerNH:]
		if err := pkttest.Verify(inner); err != nil {
			t.Fatalf("segment %d: inner: %v", i, err)
		}
		_, data, _ := l4At(inner)
		joined = append(joined, inner[data:]...)
	}
	if !bytes.Equal(joined, wantPayload) {
		t.Fatalf("inner payloads join to %d bytes, want %d", len(joined), len(wantPayload))
	}
}

func TestTunnelSegmentsVerify(t *testing.T) {
	for _, outerV6 := range []bool{false, true} {
		for _, csum := range []bool{false, true} {
			for _, p := range []pkttest.Packet{
				{Flags: pkttest.ACK | pkttest.PSH, Payload: pkttest.Payload(10000, 70)},
				{V6: true, Proto: pkttest.ProtoUDP, Payload: pkttest.Payload(5000, 71)},
			} {
				inner, ih := p.BuildGSO(1400, false)
				h, pkt := vxlanWrap(inner, ih, outerV6, csum, 0xfffe)
				plan, err := NewTunnelPlan(h, pkt, Options{})
				if err != nil {
					t.Fatal(err)
				}
				out, sizes := newBufs(plan.Segments(), plan.MaxSize())
				if _, err := plan.Cut(out, sizes, 0); err != nil {
					t.Fatal(err)
				}
				segs := make([][]byte, len(out))
				for i := range out {
					segs[i] = out[i][:sizes[i]]
				}
				checkTunnelSegments(t, segs, int(h.InnerNHOffset), outerV6, csum, p.Payload)
			}
		}
	}
}

// Steady state: a tunnel plan and its cut allocate nothing.
func TestTunnelPlanNoAllocs(t *testing.T) {
	p := pkttest.Packet{Flags: pkttest.ACK, Payload: pkttest.Payload(60000, 72)}
	inner, ih := p.BuildGSO(1398, false)
	h, pkt := vxlanWrap(inner, ih, false, true, 1)
	out, sizes := newBufs(64, 2048)
	allocs := testing.AllocsPerRun(100, func() {
		plan, err := NewTunnelPlan(h, pkt, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := plan.Cut(out, sizes, virtio.SizeTunnel); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per run", allocs)
	}
}

// Options.MaxPacket caps the outer packets: the inner MSS shrinks by the
// outer headers.
func TestTunnelHardwareMTUCap(t *testing.T) {
	p := pkttest.Packet{Flags: pkttest.ACK, Payload: pkttest.Payload(20000, 73)}
	inner, ih := p.BuildGSO(8948, false)
	h, pkt := vxlanWrap(inner, ih, false, true, 1)
	plan, err := NewTunnelPlan(h, pkt, Options{MaxPacket: 1500})
	if err != nil {
		t.Fatal(err)
	}
	if plan.MaxSize() != 1500 {
		t.Errorf("MaxSize %d, want 1500", plan.MaxSize())
	}
	out, sizes := newBufs(plan.Segments(), plan.MaxSize())
	if _, err := plan.Cut(out, sizes, 0); err != nil {
		t.Fatal(err)
	}
	segs := make([][]byte, len(out))
	for i := range out {
		segs[i] = out[i][:sizes[i]]
	}
	checkTunnelSegments(t, segs, int(h.InnerNHOffset), false, true, p.Payload)
	if _, err := NewTunnelPlan(h, pkt, Options{MaxPacket: 50}); !errors.Is(err, ErrTooBig) {
		t.Errorf("MaxPacket 50: %v, want ErrTooBig", err)
	}
}

// FuzzTunnelSegment: arbitrary tunnel headers and bytes never panic and
// fail only with typed errors; a valid VXLAN super-packet built from the
// inputs is refused only for a reason a valid one can have, or cut into
// packets whose outer and inner headers verify and whose inner payloads
// join to the original.
func FuzzTunnelSegment(f *testing.F) {
	for i, p := range []pkttest.Packet{
		{Flags: pkttest.ACK | pkttest.PSH, Payload: pkttest.Payload(5000, 1)},
		{V6: true, Proto: pkttest.ProtoUDP, Payload: pkttest.Payload(3000, 2)},
	} {
		inner, ih := p.BuildGSO(1000+i*100, false)
		h, pkt := vxlanWrap(inner, ih, i == 1, i == 0, 7)
		var hb [virtio.SizeTunnel]byte
		_ = h.Encode(hb[:])
		f.Add(hb[:], pkt, uint8(i), uint16(5000), uint16(1000))
	}
	out, sizes := newBufs(160, 65536)
	f.Fuzz(func(t *testing.T, hb, raw []byte, kind uint8, size, gso uint16) {
		var h virtio.HdrTunnel
		var b [virtio.SizeTunnel]byte
		copy(b[:], hb)
		_ = h.Decode(b[:])
		if plan, err := NewTunnelPlan(h, raw, Options{}); err == nil {
			if plan.Segments() <= len(out) {
				if _, err := plan.Cut(out, sizes, 0); err != nil {
					t.Fatalf("Cut: %v", err)
				}
			}
		} else if Reason(err) == drop.Internal {
			t.Fatalf("untyped error %v", err)
		}

		p := pkttest.Packet{
			V6: kind&1 != 0, Flags: pkttest.ACK | kind&(pkttest.PSH|pkttest.FIN|pkttest.CWR),
			ID: size * 7, Seq: uint32(gso) << 8, Payload: pkttest.Payload(int(size)%60000, kind),
		}
		if kind&2 != 0 {
			p.Proto = pkttest.ProtoUDP
		}
		mss := max(int(gso), 1)
		inner, ih := p.BuildGSO(mss, false)
		outerV6, csum := kind&4 != 0, kind&8 != 0
		th, pkt := vxlanWrap(inner, ih, outerV6, csum, size)
		plan, err := NewTunnelPlan(th, pkt, Options{})
		if err != nil {
			switch {
			case errors.Is(err, ErrUSOSegments):
			case errors.Is(err, ErrGSOShort) && len(p.Payload) <= mss:
			default:
				t.Fatalf("valid %s in VXLAN (outer v6 %v, csum %v) at gso_size %d: %v", name(p), outerV6, csum, mss, err)
			}
			return
		}
		if plan.Segments() > len(out) {
			return
		}
		n, err := plan.Cut(out, sizes, 0)
		if err != nil {
			t.Fatal(err)
		}
		segs := make([][]byte, n)
		for i := range segs {
			segs[i] = out[i][:sizes[i]]
		}
		checkTunnelSegments(t, segs, int(th.InnerNHOffset), outerV6, csum, p.Payload)
	})
}

// TestNewTunnelPlanRefuses: the checks of virtio_net_hdr_tnl_to_skb.
func TestNewTunnelPlanRefuses(t *testing.T) {
	base := virtio.HdrTunnel{Hdr: virtio.Hdr{Flags: virtio.FlagNeedsCsum, GSOType: virtio.GSOTCPv4 | virtio.GSOUDPTunnelIPv4,
		GSOSize: 1000, CsumStart: 70, CsumOffset: 16}, OuterTHOffset: 20, InnerNHOffset: 50}
	pkt := make([]byte, 3090)
	pkt[0] = 0x45
	binary.BigEndian.PutUint16(pkt[2:], 3090)
	for _, c := range []struct {
		name string
		edit func(h *virtio.HdrTunnel)
	}{
		{"both-tunnel-bits", func(h *virtio.HdrTunnel) { h.GSOType |= virtio.GSOUDPTunnel }},
		{"no-inner-type", func(h *virtio.HdrTunnel) { h.GSOType = virtio.GSOUDPTunnelIPv4 }},
		{"ufo-inside", func(h *virtio.HdrTunnel) { h.GSOType = virtio.GSOUDP | virtio.GSOUDPTunnelIPv4 }},
		{"no-needs-csum", func(h *virtio.HdrTunnel) { h.Flags = 0 }},
		{"outer-th-in-ip", func(h *virtio.HdrTunnel) { h.OuterTHOffset = 19 }},
		{"inner-nh-in-udp", func(h *virtio.HdrTunnel) { h.InnerNHOffset = 27 }},
		{"inner-th-in-ip", func(h *virtio.HdrTunnel) { h.CsumStart = 69 }},
		{"hdr-len-past-end", func(h *virtio.HdrTunnel) { h.HdrLen = 3091 }},
		{"wrong-outer-family", func(h *virtio.HdrTunnel) {
			h.GSOType = virtio.GSOTCPv4 | virtio.GSOUDPTunnelIPv6
			h.OuterTHOffset = 40
			h.InnerNHOffset = 70
			h.CsumStart = 90
		}},
	} {
		h := base
		c.edit(&h)
		if _, err := NewTunnelPlan(h, pkt, Options{}); err == nil {
			t.Errorf("%s: accepted", c.name)
		} else if Reason(err).String() == "internal" {
			t.Errorf("%s: untyped error %v", c.name, err)
		}
	}
}
