package kerneltest

import (
	"strings"
	"testing"

	"vnic/vnic/pkttest"
	"vnic/vnic/virtio"
)

func TestAfterForwardingMatchesEncoder(t *testing.T) {
	for _, p := range []pkttest.Packet{
		{TTL: 64, Payload: pkttest.Payload(100, 1)},
		{TTL: 2, IPOptions: []byte{1, 1, 1, 0}, ID: 0xffff, DF: true},
		{V6: true, TTL: 200, Proto: pkttest.ProtoUDP, Payload: pkttest.Payload(9, 2)},
	} {
		in := p.Build()
		q := p
		q.TTL--
		want := q.Build()
		got := AfterForwarding(in)
		if d := DiffPackets(want, got); d != "" {
			t.Errorf("%+v: %s", p, d)
		}
		if in[0]>>4 == 4 && in[8] != p.TTL {
			t.Errorf("AfterForwarding changed its input")
		}
	}
}

func TestCompleteChecksumVerifies(t *testing.T) {
	for _, p := range []pkttest.Packet{
		{Payload: pkttest.Payload(1000, 1), Flags: pkttest.ACK},
		{V6: true, Proto: pkttest.ProtoUDP, Payload: pkttest.Payload(33, 3),
			ExtHdrs: []pkttest.ExtHdr{{Type: pkttest.ExtHopByHop, Data: make([]byte, 6)}}},
	} {
		b, h := p.BuildPartial()
		if err := pkttest.Verify(CompleteChecksum(h, b)); err != nil {
			t.Errorf("%+v: %v", p, err)
		}
		if d := DiffPackets(p.Build(), CompleteChecksum(h, b)); d != "" {
			t.Errorf("%+v: %s", p, d)
		}
		if d := DiffPackets(b, CompleteChecksum(virtio.Hdr{}, b)); d != "" {
			t.Errorf("no NEEDS_CSUM changed the packet: %s", d)
		}
	}
}

func TestFieldAtNamesHeaders(t *testing.T) {
	v4 := (&pkttest.Packet{IPOptions: []byte{1, 1, 1, 1}, TCPOptions: []byte{1, 1, 1, 1}, Payload: []byte{1, 2, 3}}).Build()
	v6 := (&pkttest.Packet{V6: true, Proto: pkttest.ProtoUDP, Payload: []byte{1, 2, 3},
		ExtHdrs: []pkttest.ExtHdr{{Type: pkttest.ExtDestOpts, Data: make([]byte, 6)}}}).Build()
	for _, c := range []struct {
		pkt  []byte
		off  int
		want string
	}{
		{v4, 8, "IPv4 TTL"},
		{v4, 11, "IPv4 header checksum"},
		{v4, 22, "IPv4 option byte 2"},
		{v4, 24 + 13, "TCP flags"},
		{v4, 24 + 17, "TCP checksum"},
		{v4, 24 + 21, "TCP option byte 1"},
		{v4, 24 + 24 + 2, "payload byte 2"},
		{v4, len(v4), "past the end"},
		{v6, 7, "IPv6 hop limit"},
		{v6, 42, "IPv6 extension header byte 2"},
		{v6, 48 + 4, "UDP length"},
		{v6, 48 + 8, "payload byte 0"},
	} {
		if got := FieldAt(c.pkt, c.off); got != c.want {
			t.Errorf("FieldAt(%d) = %q, want %q", c.off, got, c.want)
		}
	}
	a := (&pkttest.Packet{TTL: 64}).Build()
	b := (&pkttest.Packet{TTL: 63}).Build()
	if d := DiffPackets(a, b); !strings.HasPrefix(d, "byte 8 (IPv4 TTL): kernel 0x40, ours 0x3f") {
		t.Errorf("DiffPackets = %q", d)
	}
	if d := DiffPackets(a, a[:30]); !strings.Contains(d, "lengths differ") {
		t.Errorf("DiffPackets = %q", d)
	}
	if n := PayloadLen(v6); n != 3 {
		t.Errorf("PayloadLen = %d, want 3", n)
	}
}
