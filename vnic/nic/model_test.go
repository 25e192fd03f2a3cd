package nic

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"

	"vnic/vnic/drop"
	"vnic/vnic/packet"
	"vnic/vnic/pkttest"
	"vnic/vnic/virtio"
)

// modelNIC is a NIC of the given model whose wire is recorded.
func modelNIC(t *testing.T, model Model) (*NIC, *recorder) {
	t.Helper()
	n, _ := newTestNIC(t, Options{Model: model})
	r := &recorder{}
	n.Connect(r)
	return n, r
}

func TestModelTSOPassthrough(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		n, r := modelNIC(t, ModelTSOPassthrough)
		p, b, h := superPacket(v6)
		transmit(n, frame(h, b))
		got := r.got()
		if len(got) != 1 {
			t.Fatalf("v6=%v: %d wire packets, want the super-packet whole", v6, len(got))
		}
		w := got[0]
		if want := p.Build(); !bytes.Equal(w, want) {
			t.Fatalf("v6=%v: wire packet (%d bytes) is not the completed super-packet (%d bytes)", v6, len(w), len(want))
		}
		if err := pkttest.Verify(w); err != nil {
			t.Fatalf("v6=%v: %v", v6, err)
		}
		if !v6 && binary.BigEndian.Uint16(w[6:])&0x4000 == 0 {
			t.Fatalf("DF lost")
		}
		// A plain partial packet is completed as by the standard NIC.
		small := pkttest.Packet{V6: v6, Payload: pkttest.Payload(100, 1)}
		sb, sh := small.BuildPartial()
		n2, r2 := modelNIC(t, ModelTSOPassthrough)
		transmit(n2, frame(sh, sb))
		if got := r2.got(); len(got) != 1 || pkttest.Verify(got[0]) != nil {
			t.Fatalf("v6=%v: small packet: %d packets", v6, len(got))
		}
	}
}

func TestModelNoCsum(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		n, r := modelNIC(t, ModelNoCsum)
		_, b, h := superPacket(v6)
		transmit(n, frame(h, b))
		got := r.got()
		if len(got) != 10 {
			t.Fatalf("v6=%v: %d wire packets, want 10 segments", v6, len(got))
		}
		for i, w := range got {
			if err := pkttest.Verify(w); err == nil {
				t.Fatalf("v6=%v: segment %d has a complete checksum", v6, i)
			}
			cs := int(h.CsumStart)
			if f := binary.BigEndian.Uint16(w[cs+16:]); f != packet.PseudoSum(w, packet.ProtoTCP, len(w)-cs) {
				t.Fatalf("v6=%v: segment %d: checksum field %#04x is not the pseudo-header sum", v6, i, f)
			}
		}
		// What the kernel checksummed itself (tx off) passes unchanged.
		p := pkttest.Packet{V6: v6, Payload: pkttest.Payload(1000, 2)}
		full := p.Build()
		n2, r2 := modelNIC(t, ModelNoCsum)
		transmit(n2, frame(virtio.Hdr{}, full))
		if got := r2.got(); len(got) != 1 || !bytes.Equal(got[0], full) {
			t.Fatalf("v6=%v: complete packet changed", v6)
		}
	}
}

func TestModelStandardCompletes(t *testing.T) {
	n, r := modelNIC(t, ModelStandard)
	_, b, h := superPacket(false)
	transmit(n, frame(h, b))
	got := r.got()
	if len(got) != 10 {
		t.Fatalf("%d wire packets, want 10", len(got))
	}
	for i, w := range got {
		if err := pkttest.Verify(w); err != nil {
			t.Fatalf("segment %d: %v", i, err)
		}
	}
}

// The forcedeth NIC (hardware MTU 1500 under an MTU of 9000): a TCP
// packet the kernel did not mark GSO, larger than the hardware MTU, is
// cut by the NIC's hidden TSO; a UDP datagram that large is dropped and
// counted.
func TestModelHardwareMTU(t *testing.T) {
	n, r := newTestNIC(t, Options{MTU: 9000, HWMTU: 1500})
	rec := &recorder{}
	n.Connect(rec)
	_ = r
	tcp := pkttest.Packet{DF: true, Flags: pkttest.ACK, Payload: pkttest.Payload(8948, 5)}
	b, h := tcp.BuildPartial()
	transmit(n, frame(h, b))
	got := rec.got()
	if len(got) < 6 {
		t.Fatalf("a 9000-byte TCP packet made %d wire packets, want it cut to fit 1500", len(got))
	}
	total := 0
	for i, w := range got {
		if len(w) > 1500 {
			t.Errorf("wire packet %d: %d bytes > hardware MTU 1500", i, len(w))
		}
		if err := pkttest.Verify(w); err != nil {
			t.Errorf("wire packet %d: %v", i, err)
		}
		total += payloadLen(t, w)
	}
	if total != 8948 {
		t.Errorf("%d payload bytes on the wire, want 8948", total)
	}
	udp := pkttest.Packet{Proto: pkttest.ProtoUDP, Payload: pkttest.Payload(3000, 6)}
	ub, uh := udp.BuildPartial()
	transmit(n, frame(uh, ub))
	if len(rec.got()) != len(got) {
		t.Errorf("a 3028-byte UDP datagram went on the wire of a NIC with hardware MTU 1500")
	}
	if s := n.Stats(); s.Dropped(HostTX, drop.ExceedsMTU) != 1 {
		t.Errorf("drops %v, want host_tx exceeds_mtu 1", s.Drops)
	}
	// And it cannot receive what its hardware cannot hold.
	big := (&pkttest.Packet{Proto: pkttest.ProtoUDP, Payload: pkttest.Payload(2000, 7)}).Build()
	n.Inject([][]byte{big})
	if s := n.Stats(); s.Dropped(WireRX, drop.RXExceedsHWMTU) != 1 || s.WireIn.Packets != 1 {
		t.Errorf("wire in %+v, drops %v: want the 2028-byte packet counted and dropped (wire_rx rx_exceeds_hw_mtu)", s.WireIn, s.Drops)
	}
}

func TestOptionsNormalize(t *testing.T) {
	for _, m := range []Model{"", ModelStandard, ModelTSOPassthrough, ModelNoCsum} {
		o := Options{Model: m}
		if err := o.Normalize(); err != nil {
			t.Errorf("model %q: %v", m, err)
		}
	}
	for _, o := range []Options{
		{Model: "bogus"},
		{MTU: 9000, HWMTU: 9001},
		{MTU: 1000, HWMTU: 500},
		{Name: "a-name-longer-than-15"},
		{Name: "a/b"},
		{Engine: "dpdk"},
		{Engine: EngineWireGuard, Model: ModelNoCsum},
		{Batch: 5000},
		{MTU: 1200, Addrs: []netip.Prefix{netip.MustParsePrefix("fd00::1/64")}},
	} {
		if err := o.Normalize(); err == nil || !errors.Is(err, ErrConfig) {
			t.Errorf("%+v: accepted (%v)", o, err)
		}
	}
}

// payloadLen is the TCP/UDP payload length of an IP packet.
func payloadLen(t *testing.T, pkt []byte) int {
	t.Helper()
	p, err := packet.Parse(pkt)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	if p.L4Len == 0 {
		return 0
	}
	return len(pkt) - p.Payload()
}

// TestRxChecksumOffload: a NIC with rx-checksumming reports what it
// verified (DATA_VALID on an unmerged packet with a good checksum), hands
// on a packet whose checksum fails unmarked and counts it; with the
// offload off it marks nothing (the kernel verifies); the lying model
// vouches for a corrupted packet, and the kernel believes it.
func TestRxChecksumOffload(t *testing.T) {
	good := (&pkttest.Packet{Flags: pkttest.ACK | pkttest.PSH, Payload: pkttest.Payload(700, 3)}).Build()
	bad := bytes.Clone(good)
	bad[len(bad)-1] ^= 0x55 // corrupted on the wire
	for _, c := range []struct {
		name             string
		opt              Options
		wantGood, wantBd uint8 // header flags of each
		bad              uint64
	}{
		{"rx-checksumming on", Options{}, virtio.FlagDataValid, 0, 1},
		// GRO still checks what it would merge (skb_gro_checksum_validate),
		// and counts the failure, but reports nothing as verified.
		{"rx-checksumming off", Options{NoRxCsum: true}, 0, 0, 1},
		// The liar vouches for both the one way a TUN listens: as
		// CHECKSUM_PARTIAL (NEEDS_CSUM), which the kernel never verifies.
		{"rx-csum-trusting", Options{Model: ModelRxCsumTrusting}, virtio.FlagNeedsCsum, virtio.FlagNeedsCsum, 0},
	} {
		n, dev := newTestNIC(t, c.opt)
		n.Inject([][]byte{good})
		n.Inject([][]byte{bad})
		fs := dev.frames()
		if len(fs) != 2 {
			t.Fatalf("%s: %d frames to the host", c.name, len(fs))
		}
		var hg, hb virtio.Hdr
		_ = hg.Decode(fs[0])
		_ = hb.Decode(fs[1])
		if hg.Flags != c.wantGood || hb.Flags != c.wantBd {
			t.Errorf("%s: flags good %#x bad %#x, want %#x %#x", c.name, hg.Flags, hb.Flags, c.wantGood, c.wantBd)
		}
		if s := n.Stats(); s.RXCsumBad != c.bad || s.RXCsum == c.opt.NoRxCsum {
			t.Errorf("%s: rx_csum %v, rx_csum_bad %d, want %d", c.name, s.RXCsum, s.RXCsumBad, c.bad)
		}
	}
}
