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
// kernel leaves for a NIC in a CHECKSUM_PARTIAL skb — and CompletePartial
// gives the very bytes Segment writes without the option (which the
// kernel-oracle tests prove). Frames without NEEDS_CSUM are not affected.
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
				CompletePartial(got, l4, off-l4)
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

// TestCompleteZeroSum: when the sum comes out 0, tcp_gso_segment stores
// 0x0000 in a TCP segment while __udp_gso_segment and skb_checksum_help
// store 0xffff (CSUM_MANGLED_0): CompletePartial follows the first two,
// CompleteChecksum the third.
func TestCompleteZeroSum(t *testing.T) {
	for _, udp := range []bool{false, true} {
		p := pkttest.Packet{Flags: pkttest.ACK, Payload: pkttest.Payload(100, 3)}
		off := 16
		if udp {
			p.Proto, off = pkttest.ProtoUDP, 6
		}
		pkt, h := p.BuildPartial()
		cs := int(h.CsumStart)
		// Make the complemented sum 0: add the current checksum into the
		// last payload word (one's complement arithmetic).
		c := ^checksum.Checksum(pkt[cs:], 0)
		w := binary.BigEndian.Uint16(pkt[len(pkt)-2:])
		binary.BigEndian.PutUint16(pkt[len(pkt)-2:], checksum.Combine(w, c))
		if ^checksum.Checksum(pkt[cs:], 0) != 0 {
			t.Fatal("could not make the sum 0")
		}
		a, b := bytes.Clone(pkt), bytes.Clone(pkt)
		CompletePartial(a, cs, off)
		CompleteChecksum(b, cs, off)
		wantPartial := uint16(0)
		if udp {
			wantPartial = 0xffff
		}
		if got := binary.BigEndian.Uint16(a[cs+off:]); got != wantPartial {
			t.Errorf("udp=%v: CompletePartial stored %#04x, want %#04x", udp, got, wantPartial)
		}
		if got := binary.BigEndian.Uint16(b[cs+off:]); got != 0xffff {
			t.Errorf("udp=%v: CompleteChecksum stored %#04x, want 0xffff", udp, got)
		}
	}
}
