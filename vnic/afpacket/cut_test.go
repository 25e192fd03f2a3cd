package afpacket

import (
	"bytes"
	"testing"

	"vnic/segment"
	"vnic/vnic/drop"
	"vnic/vnic/pkttest"
	"vnic/vnic/virtio"
)

var macs = []byte{2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2}

// TestCutCopiesTheEthernetHeaderIntoEverySegment: a TCP super-packet in
// an Ethernet frame (plain, one VLAN tag, two) comes out as segment makes
// the IP packet's segments, each behind a copy of the frame's L2 header,
// csum_start counted from the Ethernet header as the kernel counts it.
func TestCutCopiesTheEthernetHeaderIntoEverySegment(t *testing.T) {
	p := pkttest.Packet{Flags: pkttest.ACK | pkttest.PSH, Payload: pkttest.Payload(10000, 1)}
	pkt, h := p.BuildGSO(1448, false)
	want := make([][]byte, 8)
	sizes := make([]int, 8)
	for i := range want {
		want[i] = make([]byte, 1500)
	}
	n, err := segment.Segment(h, pkt, want, sizes, 0, segment.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, l2 := range [][]byte{
		append(macs, 0x08, 0x00),
		append(macs, 0x81, 0x00, 0x00, 0x64, 0x08, 0x00),
		append(macs, 0x88, 0xa8, 0x00, 0x0a, 0x81, 0x00, 0x00, 0x64, 0x08, 0x00),
	} {
		frame := append(bytes.Clone(l2), pkt...)
		fh := h
		fh.CsumStart += uint16(len(l2))
		fh.HdrLen = 60000 // skb_headlen: never trusted
		c := newCutter()
		out, full, r := c.cut(fh, frame, nil)
		if full || r != drop.None || len(out) != n {
			t.Fatalf("L2 %d bytes: %d frames, full %v, %v; want %d", len(l2), len(out), full, r, n)
		}
		for i, f := range out {
			if !bytes.Equal(f[:len(l2)], l2) || !bytes.Equal(f[len(l2):], want[i][:sizes[i]]) {
				t.Errorf("L2 %d bytes, frame %d differs", len(l2), i)
			}
		}
	}
}

func TestCutRefusesWhatSegmentRefuses(t *testing.T) {
	c := newCutter()
	if _, _, r := c.cut(virtio.Hdr{Flags: virtio.FlagNeedsCsum, CsumStart: 4, CsumOffset: 16}, make([]byte, 100), nil); r != drop.CsumOffsets {
		t.Errorf("csum_start inside the MAC header: %v", r)
	}
	if _, _, r := c.cut(virtio.Hdr{GSOType: virtio.GSOTCPv4, GSOSize: 100}, make([]byte, 10), nil); r != drop.EtherShort {
		t.Errorf("a 10-byte frame: %v", r)
	}
	if _, _, r := c.cut(virtio.Hdr{GSOType: virtio.GSOTCPv4, GSOSize: 100}, make([]byte, 200), nil); r == drop.None {
		t.Errorf("zeros as a TCP super-packet: %v", r)
	}
}
