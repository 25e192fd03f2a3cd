package packet_test

import (
	"errors"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"

	"vnic/vnic/packet"
	"vnic/vnic/pkttest"
)

// TestParse reads packets built by the independent encoder: offsets,
// protocol, ports, flags and fragment fields as built.
func TestParse(t *testing.T) {
	for _, c := range []struct {
		name    string
		p       pkttest.Packet
		l4      int
		proto   uint8
		l4len   int
		frag    bool
		fragOff int
	}{
		{"IPv4 TCP", pkttest.Packet{Flags: pkttest.ACK | pkttest.PSH, Payload: make([]byte, 100)}, 20, packet.ProtoTCP, 20, false, 0},
		{"IPv4 options, TCP options", pkttest.Packet{IPOptions: []byte{1, 1, 1, 1}, TCPOptions: []byte{1, 1, 8, 10, 1, 2, 3, 4, 5, 6, 7, 8}, Payload: make([]byte, 10)}, 24, packet.ProtoTCP, 32, false, 0},
		{"IPv4 UDP", pkttest.Packet{Proto: pkttest.ProtoUDP, Payload: make([]byte, 33)}, 20, packet.ProtoUDP, 8, false, 0},
		{"IPv4 first fragment", pkttest.Packet{Proto: pkttest.ProtoUDP, MF: true, Payload: make([]byte, 64)}, 20, packet.ProtoUDP, 8, true, 0},
		{"IPv4 later fragment", pkttest.Packet{Proto: pkttest.ProtoUDP, FragOff: 8, Payload: make([]byte, 64)}, 20, packet.ProtoUDP, 0, true, 64},
		{"IPv6 TCP", pkttest.Packet{V6: true, Payload: make([]byte, 100)}, 40, packet.ProtoTCP, 20, false, 0},
		{"IPv6 hop-by-hop and destination options", pkttest.Packet{V6: true, Proto: pkttest.ProtoUDP,
			ExtHdrs: []pkttest.ExtHdr{{Type: packet.ExtHopByHop, Data: make([]byte, 6)}, {Type: packet.ExtDestOpts, Data: make([]byte, 14)}},
			Payload: make([]byte, 10)}, 40 + 8 + 16, packet.ProtoUDP, 8, false, 0},
	} {
		b := c.p.Build()
		p, err := packet.Parse(b)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if p.L4 != c.l4 || p.Proto != c.proto || p.L4Len != c.l4len || p.Frag != c.frag || p.FragOff != c.fragOff {
			t.Errorf("%s: %+v; want l4 %d proto %d l4len %d frag %v off %d", c.name, p, c.l4, c.proto, c.l4len, c.frag, c.fragOff)
		}
		if p.IPLen != len(b) {
			t.Errorf("%s: IPLen %d, packet %d bytes", c.name, p.IPLen, len(b))
		}
		if c.l4len > 0 && (p.SrcPort != 40000 || p.DstPort != 9) {
			t.Errorf("%s: ports %d → %d", c.name, p.SrcPort, p.DstPort)
		}
		if c.proto == packet.ProtoTCP && p.TCPFlags != c.p.Flags && c.p.Flags != 0 {
			t.Errorf("%s: TCP flags %#x, want %#x", c.name, p.TCPFlags, c.p.Flags)
		}
	}
}

// TestParseMalformed: every truncation is an error wrapping
// ErrMalformed, never a panic; a truncated L4 header is not an error.
func TestParseMalformed(t *testing.T) {
	v6 := (&pkttest.Packet{V6: true, ExtHdrs: []pkttest.ExtHdr{{Type: packet.ExtHopByHop, Data: make([]byte, 6)}}, Payload: make([]byte, 8)}).Build()
	v4 := (&pkttest.Packet{IPOptions: []byte{1, 1, 1, 1}}).Build()
	for _, b := range [][]byte{nil, {0x45}, v4[:19], v4[:22], v6[:39], v6[:44], {0x75, 0, 0, 0}} {
		if _, err := packet.Parse(b); !errors.Is(err, packet.ErrMalformed) {
			t.Errorf("% x…: %v, want ErrMalformed", b[:min(len(b), 4)], err)
		}
	}
	for n := range len(v4) {
		_, _ = packet.Parse(v4[:n]) // never a panic
	}
	for n := range len(v6) {
		_, _ = packet.Parse(v6[:n])
	}
	if p, err := packet.Parse(v4[:30]); err != nil || p.L4Len != 0 {
		t.Errorf("a TCP header cut short: %+v, %v; want no L4 header and no error", p, err)
	}
}

// TestPseudoSum: the pseudo-header sum PseudoSum gives, folded into the
// L4 bytes, verifies the checksum the encoder computed (IPv4 and IPv6,
// TCP and UDP).
func TestPseudoSum(t *testing.T) {
	for _, c := range []pkttest.Packet{{}, {V6: true}, {Proto: pkttest.ProtoUDP}, {V6: true, Proto: pkttest.ProtoUDP}} {
		c.Payload = pkttest.Payload(333, 5)
		b := c.Build()
		p, err := packet.Parse(b)
		if err != nil {
			t.Fatal(err)
		}
		if got := checksum.Checksum(b[p.L4:], packet.PseudoSum(b, p.Proto, len(b)-p.L4)); got != 0xffff {
			t.Errorf("v6 %v proto %d: the L4 bytes with PseudoSum sum to %#x, want 0xffff", c.V6, p.Proto, got)
		}
	}
}
