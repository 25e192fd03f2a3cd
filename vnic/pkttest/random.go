package pkttest

import "math/rand/v2"

// Random header shapes for randomized differential tests. Each returns
// bytes a router forwards unchanged and a receiving stack accepts (Linux
// 6.18's ip_options_compile, ip6_parse_tlv), unless the caller asks for a
// malformed one; every shape is written from the RFC layouts, not from
// the code under test.

// unknownIPv4Options are IPv4 option types ip_options_compile does not
// interpret (it copies them): neither end, no-op, security, stream ID,
// record route, timestamp, source routes, CIPSO nor router alert.
var unknownIPv4Options = []byte{0x0a, 0x0b, 0x0f, 0x19, 0x1e, 0x52, 0x5e, 0x8e, 0x90, 0x9e, 0xde, 0xfe}

// RandomIPv4Options returns up to 40 bytes of IPv4 options: no-ops, an
// end of list (zeros after it), router alerts, security and stream ID
// options, record route and timestamp options that are already full (a
// router leaves them alone), and option types nobody interprets. With
// malformed, one option is made one the receiving stack refuses (a
// length of 0 or 1 or past the end, a short router alert, a bad pointer,
// an overflowing timestamp, a source route, CIPSO).
func RandomIPv4Options(r *rand.Rand, malformed bool) []byte {
	var b []byte
	room := 4 * (1 + r.IntN(10))
	add := func(o ...byte) bool {
		if len(b)+len(o) > room {
			return false
		}
		b = append(b, o...)
		return true
	}
	badAt := -1
	if malformed {
		badAt = r.IntN(3)
	}
	for i := 0; len(b) < room; i++ {
		if i == badAt {
			bad := [][]byte{
				{0x1e, 0}, {0x1e, 1}, {0x1e, byte(room + 1)}, {0x94, 3, 0},
				{7, 7, 3, 0, 0, 0, 0}, {68, 4, 5, 0xf1}, {0x83, 7, 4, 198, 18, 0, 2},
				{0x86, 6, 0, 0, 0, 1},
			}[r.IntN(8)]
			if add(bad...) {
				continue
			}
			b = append(b[:0], bad...) // make room: the bad one first
			if len(b) > room {
				room = (len(b) + 3) &^ 3
			}
			continue
		}
		switch r.IntN(9) {
		case 0, 1:
			add(1)
		case 2:
			add(0) // end of list: the rest is padding
			for len(b) < room {
				b = append(b, 0)
			}
		case 3:
			add(0x94, 4, byte(r.IntN(3)), byte(r.IntN(2)))
		case 4:
			add(0x88, 4, byte(r.Uint32()), byte(r.Uint32()))
		case 5:
			n := 3 + r.IntN(9)
			o := []byte{0x82, byte(n)}
			for len(o) < n {
				o = append(o, byte(r.Uint32()))
			}
			add(o...)
		case 6:
			// Record route, full: pointer past the end.
			o := []byte{7, 7, 8, 198, 18, 0, 9}
			add(o...)
		case 7:
			// Timestamp with prespecified addresses, full.
			o := []byte{68, 12, 13, 3, 198, 18, 0, 9, 0, 0, 0, 1}
			add(o...)
		default:
			n := 2 + r.IntN(8)
			o := []byte{unknownIPv4Options[r.IntN(len(unknownIPv4Options))], byte(n)}
			for len(o) < n {
				o = append(o, byte(r.Uint32()))
			}
			add(o...)
		}
		if r.IntN(4) == 0 {
			break
		}
	}
	return b
}

// RandomTLVs returns the option area of an IPv6 hop-by-hop or
// destination-options header (everything after the next-header and length
// bytes, 2 + len a multiple of 8): Pad1 and PadN (zeros, at most 7 bytes
// of padding in a row), router alerts (hop-by-hop only) and options of
// types whose two high bits say "skip if unknown", at most 8 options. With
// malformed, one thing ip6_parse_tlv refuses is put in.
func RandomTLVs(r *rand.Rand, hopByHop, malformed bool) []byte {
	b := []byte{}
	count, pad := 0, 0
	want := 1 + r.IntN(4)
	for count < want && len(b) < 40 {
		switch r.IntN(4) {
		case 0:
			if pad < 7 {
				b = append(b, 0)
				pad++
			}
		case 1:
			n := r.IntN(6)
			if pad+2+n <= 7 {
				b = append(b, 1, byte(n))
				b = append(b, make([]byte, n)...)
				pad += 2 + n
			}
		case 2:
			if hopByHop {
				b = append(b, 5, 2, 0, byte(r.IntN(3)))
				count++
				pad = 0
				break
			}
			fallthrough
		default:
			n := r.IntN(8)
			t := []byte{0x1e, 0x11, 0x3e, 0x2a}[r.IntN(4)]
			b = append(b, t, byte(n))
			for range n {
				b = append(b, byte(r.Uint32()))
			}
			count++
			pad = 0
		}
	}
	if malformed {
		bad := [][]byte{
			{0x5e, 2, 1, 2}, {0x9e, 0}, {0xde, 1, 0}, {1, 2, 0, 1}, {5, 3, 0, 0, 0},
			{0xc2, 4, 0, 1, 0, 0}, {0x07, 2, 0, 0}, {0x1e, 200},
		}[r.IntN(8)]
		if !hopByHop && bad[0] == 5 {
			bad = []byte{0x9e, 0}
		}
		b = append(b, bad...)
	}
	// Pad to a multiple of 8 (with the two leading bytes) without running
	// past 7 bytes of padding in a row.
	for (2+len(b))%8 != 0 {
		n := (8 - (2+len(b))%8) % 8
		if pad+n > 7 {
			b = append(b, 0x1e, 0) // a skip option breaks the padding run
			pad = 0
			continue
		}
		if n == 1 {
			b = append(b, 0)
		} else {
			b = append(b, 1, byte(n-2))
			b = append(b, make([]byte, n-2)...)
		}
		pad += n
	}
	return b
}

// RandomExtHdrs returns a chain of IPv6 extension headers GSO walks and a
// router forwards: an optional hop-by-hop header first, then destination
// options and routing headers (type 0–4 with segments left 0, which a
// router never processes). With malformed, one of the option areas gets
// something ip6_parse_tlv refuses (only a hop-by-hop header's is looked
// at on the way through). With fragment, a fragment header ends the chain.
func RandomExtHdrs(r *rand.Rand, malformed, fragment bool) []ExtHdr {
	var e []ExtHdr
	if r.IntN(2) == 0 || malformed {
		e = append(e, ExtHdr{Type: ExtHopByHop, Data: RandomTLVs(r, true, malformed)})
	}
	for range r.IntN(3) {
		if r.IntN(2) == 0 {
			e = append(e, ExtHdr{Type: ExtDestOpts, Data: RandomTLVs(r, false, false)})
		} else {
			d := make([]byte, 6+8*r.IntN(3))
			d[0] = byte(r.IntN(5)) // routing type
			for i := 2; i < len(d); i++ {
				d[i] = byte(r.Uint32())
			}
			d[1] = 0 // segments left
			e = append(e, ExtHdr{Type: ExtRouting, Data: d})
		}
	}
	if fragment {
		e = append(e, ExtHdr{Type: ExtFragment, Data: []byte{0, 0, byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32())}})
	}
	return e
}

// RandomTCPOptions returns up to 40 bytes of TCP options: no-ops, MSS,
// window scale, SACK permitted, timestamps, SACK blocks, an experimental
// kind, ending early with an end of list now and then.
func RandomTCPOptions(r *rand.Rand) []byte {
	var b []byte
	for len(b) < 40 && r.IntN(5) != 0 {
		var o []byte
		switch r.IntN(8) {
		case 0:
			o = []byte{1}
		case 1:
			o = []byte{2, 4, byte(r.Uint32()), byte(r.Uint32())}
		case 2:
			o = []byte{3, 3, byte(r.IntN(15))}
		case 3:
			o = []byte{4, 2}
		case 4:
			o = []byte{8, 10}
			for range 8 {
				o = append(o, byte(r.Uint32()))
			}
		case 5:
			n := 1 + r.IntN(4)
			o = []byte{5, byte(2 + 8*n)}
			for range 8 * n {
				o = append(o, byte(r.Uint32()))
			}
		case 6:
			o = []byte{254, 4, byte(r.Uint32()), byte(r.Uint32())}
		default:
			o = []byte{0}
		}
		if len(b)+len(o) > 40 {
			break
		}
		b = append(b, o...)
		if o[0] == 0 {
			break
		}
	}
	return b
}
