package daemon

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"

	"vnic/vnic/pkttest"
	"vnic/vnic/virtio"
)

// modelEngine is an engine of the given model whose wire is recorded.
func modelEngine(t *testing.T, model string) (*engine, *[][]byte) {
	t.Helper()
	var got [][]byte
	e := newEngine(nil, nil, nil, newStats(), 4, 1500, 1500)
	e.setModel(model)
	e.far = InjectFunc(func(pkts [][]byte) {
		for _, p := range pkts {
			got = append(got, bytes.Clone(p))
		}
	})
	return e, &got
}

func frame(h virtio.Hdr, pkt []byte) []byte {
	f := make([]byte, virtio.Size+len(pkt))
	if err := h.Encode(f); err != nil {
		panic(err)
	}
	copy(f[virtio.Size:], pkt)
	return f
}

func superPacket(v6 bool) (pkttest.Packet, []byte, virtio.Hdr) {
	mss := 1448
	if v6 {
		mss = 1428
	}
	p := pkttest.Packet{V6: v6, DF: !v6, Seq: 1000, Flags: 0x18, Payload: pkttest.Payload(10*mss, 3)}
	b, h := p.BuildGSO(mss, false)
	return p, b, h
}

func TestModelTSOPassthrough(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		e, got := modelEngine(t, ModelTSOPassthrough)
		p, b, h := superPacket(v6)
		e.inject(e.transmit(frame(h, b), time.Now(), 0))
		if len(*got) != 1 {
			t.Fatalf("v6=%v: %d wire packets, want the super-packet whole", v6, len(*got))
		}
		w := (*got)[0]
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
		*got = nil
		e.inject(e.transmit(frame(sh, sb), time.Now(), 0))
		if len(*got) != 1 || pkttest.Verify((*got)[0]) != nil {
			t.Fatalf("v6=%v: small packet: %d packets", v6, len(*got))
		}
	}
}

func TestModelNoCsum(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		e, got := modelEngine(t, ModelNoCsum)
		_, b, h := superPacket(v6)
		e.inject(e.transmit(frame(h, b), time.Now(), 0))
		if len(*got) != 10 {
			t.Fatalf("v6=%v: %d wire packets, want 10 segments", v6, len(*got))
		}
		for i, w := range *got {
			if err := pkttest.Verify(w); err == nil {
				t.Fatalf("v6=%v: segment %d has a complete checksum", v6, i)
			}
			cs := int(h.CsumStart)
			if f := binary.BigEndian.Uint16(w[cs+16:]); f != pseudoSum(w, len(w)-cs) {
				t.Fatalf("v6=%v: segment %d: checksum field %#04x is not the pseudo-header sum", v6, i, f)
			}
		}
		// What the kernel checksummed itself (tx off) passes unchanged.
		p := pkttest.Packet{V6: v6, Payload: pkttest.Payload(1000, 2)}
		full := p.Build()
		*got = nil
		e.inject(e.transmit(frame(virtio.Hdr{}, full), time.Now(), 0))
		if len(*got) != 1 || !bytes.Equal((*got)[0], full) {
			t.Fatalf("v6=%v: complete packet changed", v6)
		}
	}
}

func TestModelStandardCompletes(t *testing.T) {
	e, got := modelEngine(t, ModelStandard)
	_, b, h := superPacket(false)
	e.inject(e.transmit(frame(h, b), time.Now(), 0))
	if len(*got) != 10 {
		t.Fatalf("%d wire packets, want 10", len(*got))
	}
	for i, w := range *got {
		if err := pkttest.Verify(w); err != nil {
			t.Fatalf("segment %d: %v", i, err)
		}
	}
}

func TestModelConfig(t *testing.T) {
	for _, m := range []string{"", ModelStandard, ModelTSOPassthrough, ModelNoCsum} {
		c := NICConfig{Model: m}
		if err := c.normalize(); err != nil {
			t.Errorf("model %q: %v", m, err)
		}
	}
	c := NICConfig{Model: "bogus"}
	if err := c.normalize(); err == nil {
		t.Errorf("model bogus accepted")
	}
}
