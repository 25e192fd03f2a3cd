package segment

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"

	"vnic/vnic/pkttest"
	"vnic/vnic/virtio"
)

// TestPartialChecksumCompletesToTheSame: with Options.PartialChecksum
// every packet cut from a NEEDS_CSUM frame carries, in its TCP/UDP
// checksum field, the pseudo-header sum of its own length — what the
// kernel leaves for a NIC in a CHECKSUM_PARTIAL skb — and completing it as
// skb_checksum_help does (sum from csum_start, complement) gives the very
// bytes Segment writes without the option (which the kernel-oracle tests
// prove). Frames without NEEDS_CSUM are not affected.
func TestPartialChecksumCompletesToTheSame(t *testing.T) {
	type tc struct {
		name string
		pkt  []byte
		h    virtio.Hdr
	}
	var cases []tc
	for _, v6 := range []bool{false, true} {
		for _, mss := range []int{1, 7, 536, 1448, 9000} {
			for _, n := range []int{1, 100, 1448, 10000, 65000 - 80} {
				p := pkttest.Packet{V6: v6, DF: !v6, ID: 0xfffe, Seq: 0xfffffff0, Flags: pkttest.ACK | pkttest.PSH,
					TCPOptions: tsTCPOptions, Payload: pkttest.Payload(n, byte(mss+n))}
				if mss*256 < n || n <= mss {
					continue // too many segments for try's buffers, or not a GSO frame
				}
				b, h := p.BuildGSO(mss, false)
				cases = append(cases, tc{fmt.Sprintf("tcp v6=%v mss=%d n=%d", v6, mss, n), b, h})
				u := pkttest.Packet{V6: v6, Proto: pkttest.ProtoUDP, Payload: pkttest.Payload(min(n, 64*mss), byte(n))}
				b, h = u.BuildGSO(mss, false)
				cases = append(cases, tc{fmt.Sprintf("udp v6=%v mss=%d n=%d", v6, mss, n), b, h})
			}
		}
		p := pkttest.Packet{V6: v6, Flags: pkttest.ACK, Payload: pkttest.Payload(700, 9)}
		b, h := p.BuildPartial()
		cases = append(cases, tc{fmt.Sprintf("single NEEDS_CSUM v6=%v", v6), b, h})
		b = p.Build()
		cases = append(cases, tc{fmt.Sprintf("complete, no NEEDS_CSUM v6=%v", v6), b, virtio.Hdr{}})
	}
	for _, c := range cases {
		full, err := try(c.h, c.pkt, Options{})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		part, err := try(c.h, c.pkt, Options{PartialChecksum: true})
		if err != nil {
			t.Fatalf("%s partial: %v", c.name, err)
		}
		if len(full) != len(part) {
			t.Fatalf("%s: %d packets, partial %d", c.name, len(full), len(part))
		}
		for i := range full {
			got := bytes.Clone(part[i])
			if c.h.Flags&virtio.FlagNeedsCsum != 0 {
				l4, _, proto := l4At(got)
				off := l4 + 16
				if proto == pkttest.ProtoUDP {
					off = l4 + 6
				}
				if want := pseudo(got, l4, proto); binary.BigEndian.Uint16(got[off:]) != want {
					t.Fatalf("%s packet %d: partial field %#04x, want the pseudo-header sum %#04x", c.name, i, binary.BigEndian.Uint16(got[off:]), want)
				}
				cs := ^checksum.Checksum(got[l4:], 0)
				if cs == 0 && proto == pkttest.ProtoUDP {
					cs = 0xffff
				}
				binary.BigEndian.PutUint16(got[off:], cs)
			}
			if !bytes.Equal(got, full[i]) {
				t.Fatalf("%s packet %d: completed partial packet differs at byte %d", c.name, i, firstDiff(got, full[i]))
			}
		}
	}
}

// pseudo is the folded, uncomplemented pseudo-header sum of the packet's
// L4 part, computed independently of segment.
func pseudo(pkt []byte, l4 int, proto uint8) uint16 {
	var b []byte
	if pkt[0]>>4 == 4 {
		b = append(b, pkt[12:20]...)
		b = append(b, 0, proto)
		b = binary.BigEndian.AppendUint16(b, uint16(len(pkt)-l4))
	} else {
		b = append(b, pkt[8:40]...)
		b = binary.BigEndian.AppendUint32(b, uint32(len(pkt)-l4))
		b = append(b, 0, 0, 0, proto)
	}
	return checksum.Checksum(b, 0)
}
