package segment

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"

	"vnic/vnic/pkttest"
	"vnic/vnic/virtio"
)

// newBufs returns n output buffers of size bytes each and n sizes.
func newBufs(n, size int) ([][]byte, []int) {
	out := make([][]byte, n)
	for i := range out {
		out[i] = make([]byte, size)
	}
	return out, make([]int, n)
}

// run segments pkt into fresh buffers and returns the packets.
func run(t *testing.T, h virtio.Hdr, pkt []byte, opt Options) [][]byte {
	t.Helper()
	got, err := try(h, pkt, opt)
	if err != nil {
		t.Fatalf("Segment(%v, %d bytes, %+v): %v", h, len(pkt), opt, err)
	}
	return got
}

func try(h virtio.Hdr, pkt []byte, opt Options) ([][]byte, error) {
	const offset = 12 // headroom, like a virtio header in front
	out, sizes := newBufs(256, offset+65536)
	orig := append([]byte(nil), pkt...)
	n, err := Segment(h, pkt, out, sizes, offset, opt)
	if !bytes.Equal(orig, pkt) {
		panic("Segment modified its input")
	}
	if err != nil {
		return nil, err
	}
	got := make([][]byte, n)
	for i := range got {
		got[i] = out[i][offset : offset+sizes[i]]
	}
	return got, nil
}

// tsoWant builds, with pkttest, the segments the kernel's tcp_gso_segment
// makes of p at mss: payload slices, seq advanced, IDs incremented (unless
// fixedID), FIN/PSH only on the last, CWR only on the first (unless
// accECN).
func tsoWant(p pkttest.Packet, mss int, fixedID, accECN bool) [][]byte {
	payload := p.Payload
	n := (len(payload) + mss - 1) / mss
	want := make([][]byte, 0, n)
	for i := 0; i < n; i++ {
		q := p
		q.Payload = payload[i*mss : min((i+1)*mss, len(payload))]
		q.Seq = p.Seq + uint32(i*mss)
		if !fixedID {
			q.ID = p.ID + uint16(i)
		}
		if i < n-1 {
			q.Flags &^= pkttest.FIN | pkttest.PSH
		}
		if i > 0 && !accECN {
			q.Flags &^= pkttest.CWR
		}
		want = append(want, q.Build())
	}
	return want
}

// usoWant builds the datagrams __udp_gso_segment makes of p.
func usoWant(p pkttest.Packet, mss int) [][]byte {
	payload := p.Payload
	n := (len(payload) + mss - 1) / mss
	want := make([][]byte, 0, n)
	for i := 0; i < n; i++ {
		q := p
		q.Payload = payload[i*mss : min((i+1)*mss, len(payload))]
		q.ID = p.ID + uint16(i)
		want = append(want, q.Build())
	}
	return want
}

// same compares got with want packet by packet and checks every packet
// verifies.
func same(t *testing.T, got, want [][]byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d packets, want %d (sizes %v vs %v)", len(got), len(want), lens(got), lens(want))
	}
	for i := range got {
		if err := pkttest.Verify(got[i]); err != nil {
			t.Errorf("packet %d: %v", i, err)
		}
		if !bytes.Equal(got[i], want[i]) {
			t.Errorf("packet %d differs at byte %d:\n got %x\nwant %x", i, firstDiff(got[i], want[i]), head(got[i]), head(want[i]))
		}
	}
}

func lens(p [][]byte) []int {
	l := make([]int, len(p))
	for i := range p {
		l[i] = len(p[i])
	}
	return l
}

func head(b []byte) []byte { return b[:min(len(b), 96)] }

func firstDiff(a, b []byte) int {
	for i := 0; i < min(len(a), len(b)); i++ {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// l4At returns the offset of the L4 header of a complete packet, walking
// IPv6 extension headers; and the offset of its payload.
func l4At(pkt []byte) (l4, data int, proto uint8) {
	if pkt[0]>>4 == 4 {
		l4, proto = int(pkt[0]&0xf)*4, pkt[9]
	} else {
		l4, proto = 40, pkt[6]
		for proto == 0 || proto == 43 || proto == 60 || proto == 44 {
			n := (int(pkt[l4+1]) + 1) * 8
			if proto == 44 {
				n = 8
			}
			proto = pkt[l4]
			l4 += n
		}
	}
	if proto == pkttest.ProtoTCP {
		return l4, l4 + int(pkt[l4+12]>>4)*4, proto
	}
	return l4, l4 + 8, proto
}

func ipv4ID(pkt []byte) uint16 { return binary.BigEndian.Uint16(pkt[4:]) }

func tcpFlags(pkt []byte) uint8 {
	l4, _, _ := l4At(pkt)
	return pkt[l4+13]
}

func l4Checksum(pkt []byte) uint16 {
	l4, _, proto := l4At(pkt)
	if proto == pkttest.ProtoTCP {
		return binary.BigEndian.Uint16(pkt[l4+16:])
	}
	return binary.BigEndian.Uint16(pkt[l4+6:])
}

// wantErr checks err wraps sentinel, that Reason names it, and that the
// message carries each of the given fragments (the numbers).
func wantErr(t *testing.T, err error, sentinel *DropError, frags ...string) {
	t.Helper()
	if !errors.Is(err, sentinel) {
		t.Fatalf("error %v, want %v", err, sentinel)
	}
	if r := Reason(err); r != sentinel.Reason() {
		t.Errorf("Reason(%v) = %q, want %q", err, r, sentinel.Reason())
	}
	for _, f := range frags {
		if !strings.Contains(err.Error(), f) {
			t.Errorf("error %q does not mention %q", err, f)
		}
	}
}

// zeroSumTail sets the last two bytes of chunk (which must start at an even
// offset from the L4 header and have even length) so that the L4 checksum
// of the packet built from p with that chunk as its payload comes out 0
// before any CSUM_MANGLED_0: a one's complement sum of 0xffff.
func zeroSumTail(p pkttest.Packet, chunk []byte) {
	chunk[len(chunk)-2], chunk[len(chunk)-1] = 0, 0
	q := p
	q.Payload = chunk
	b := q.Build()
	// The built checksum c is ^s (or 0xffff for UDP when s == 0xffff).
	// Setting the tail word to c makes the sum s + ^s = 0xffff.
	c := l4Checksum(b)
	if q.Proto == pkttest.ProtoUDP && c == 0xffff {
		return // already zero-sum
	}
	binary.BigEndian.PutUint16(chunk[len(chunk)-2:], c)
}

// rawL4Sum returns the folded one's complement sum of a packet's L4 bytes
// with its pseudo-header (0xffff for a correct checksum).
func rawL4Sum(pkt []byte) uint16 {
	l4, _, proto := l4At(pkt)
	var ph []byte
	l := len(pkt) - l4
	if pkt[0]>>4 == 4 {
		ph = append(ph, pkt[12:20]...)
		ph = append(ph, 0, proto, byte(l>>8), byte(l))
	} else {
		ph = append(ph, pkt[8:40]...)
		ph = append(ph, 0, 0, byte(l>>8), byte(l), 0, 0, 0, proto)
	}
	return checksum.Checksum(pkt[l4:], checksum.Checksum(ph, 0))
}

func name(p pkttest.Packet) string {
	v := "v4"
	if p.V6 {
		v = "v6"
	}
	proto := "tcp"
	if p.Proto == pkttest.ProtoUDP {
		proto = "udp"
	}
	return fmt.Sprintf("%s-%s-%d", v, proto, len(p.Payload))
}
