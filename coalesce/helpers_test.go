package coalesce

import (
	"encoding/binary"
	"testing"

	"vnic/vnic/pkttest"
	"vnic/vnic/virtio"
)

// testOffset is the headroom the tests use: more than virtio.Size, so a
// header written at the wrong place shows.
const testOffset = 16

// batch copies packets into buffers with testOffset headroom (filled with
// 0xee, so a header that is not written shows) and room for a 64 KiB
// super-packet.
func batch(pkts ...[]byte) [][]byte {
	bufs := make([][]byte, len(pkts))
	for i, p := range pkts {
		b := make([]byte, testOffset+len(p), testOffset+65535)
		for j := range testOffset {
			b[j] = 0xee
		}
		copy(b[testOffset:], p)
		bufs[i] = b
	}
	return bufs
}

// output is one frame Coalesce handed on.
type output struct {
	idx int
	hdr virtio.Hdr
	pkt []byte
}

// run runs one batch through e and decodes what comes out, checking that
// every input is accounted for exactly once.
func run(t testing.TB, e *Engine, pkts ...[]byte) []output {
	t.Helper()
	bufs := batch(pkts...)
	idx, err := e.Coalesce(bufs, testOffset, nil)
	if err != nil {
		t.Fatalf("Coalesce: %v", err)
	}
	return decode(t, bufs, idx)
}

func decode(t testing.TB, bufs [][]byte, idx []int) []output {
	t.Helper()
	seen := make(map[int]bool)
	var outs []output
	for _, i := range idx {
		if seen[i] {
			t.Fatalf("buffer %d handed on twice", i)
		}
		seen[i] = true
		var h virtio.Hdr
		if err := h.Decode(bufs[i][testOffset-virtio.Size:]); err != nil {
			t.Fatal(err)
		}
		outs = append(outs, output{idx: i, hdr: h, pkt: bufs[i][testOffset:]})
	}
	return outs
}

// l4Info returns the L4 offset, protocol and header length of a packet the
// tests built (walking IPv6 extension headers like pkttest.Verify).
func l4Info(b []byte) (l4 int, proto uint8, hl int) {
	if b[0]>>4 == 4 {
		l4, proto = int(b[0]&0xf)*4, b[9]
	} else {
		l4, proto = 40, b[6]
		for proto == 0 || proto == 43 || proto == 60 || proto == 44 {
			n := (int(b[l4+1]) + 1) * 8
			if proto == 44 {
				n = 8
			}
			proto = b[l4]
			l4 += n
		}
	}
	hl = 8
	if proto == pkttest.ProtoTCP {
		hl = int(b[l4+12]>>4) * 4
	}
	return l4, proto, hl
}

// payloadLen is what the selftest's check_recv_pkts computes: the L4
// payload of a received packet.
func payloadLen(b []byte) int {
	l4, _, hl := l4Info(b)
	return len(b) - l4 - hl
}

func isFIN(b []byte) bool {
	l4, proto, _ := l4Info(b)
	return proto == pkttest.ProtoTCP && b[l4+13]&pkttest.FIN != 0
}

func tcpFlags(b []byte) uint8 {
	l4, _, _ := l4Info(b)
	return b[l4+13]
}

func be16(b []byte) uint16 { return binary.BigEndian.Uint16(b) }
