package segment

import (
	"bytes"
	"encoding/binary"
	"testing"

	"vnic/vnic/drop"
	"vnic/vnic/pkttest"
	"vnic/vnic/virtio"
)

// tsTCPOptions is NOP NOP timestamp: the 12 bytes Linux puts on every
// segment of an established connection.
var tsTCPOptions = []byte{1, 1, 8, 10, 0, 0, 0x12, 0x34, 0, 0, 0x56, 0x78}

// The kernel-oracle example (package kerneltest), seen on the 6.18 kernel: a 10,000-byte
// payload at gso_size 1448 comes out as 6 × 1448 + 1312.
func TestTSOTenThousandBytesIsSixByMSSPlusRemainder(t *testing.T) {
	p := pkttest.Packet{ID: 0x1234, DF: true, Seq: 1000, Ack: 5, Flags: pkttest.ACK | pkttest.PSH, Payload: pkttest.Payload(10000, 1)}
	pkt, h := p.BuildGSO(1448, false)
	got := run(t, h, pkt, Options{})
	want := []int{1488, 1488, 1488, 1488, 1488, 1488, 1352}
	if len(got) != 7 {
		t.Fatalf("got %d segments %v, want 7", len(got), lens(got))
	}
	for i := range got {
		if len(got[i]) != want[i] {
			t.Errorf("segment %d is %d bytes, want %d", i, len(got[i]), want[i])
		}
	}
	same(t, got, tsoWant(p, 1448, false, false))
}

// tcp_gso_segment + inet_gso_segment/ipv6_gso_segment against the
// independent encoder, over address families, header options and sizes.
func TestTSOSegmentsMatchEncoder(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    pkttest.Packet
		mss  int
	}{
		{"v4", pkttest.Packet{Seq: 1, Flags: pkttest.ACK, Payload: pkttest.Payload(5000, 2)}, 1460},
		{"v4-timestamps", pkttest.Packet{Seq: 0xfffff000, Flags: pkttest.ACK, TCPOptions: tsTCPOptions, Payload: pkttest.Payload(64000, 3)}, 1448},
		{"v4-odd-mss", pkttest.Packet{Flags: pkttest.ACK, Payload: pkttest.Payload(3001, 4)}, 999},
		{"v4-one-byte-tail", pkttest.Packet{Flags: pkttest.ACK, Payload: pkttest.Payload(2897, 5)}, 1448},
		{"v4-exact-multiple", pkttest.Packet{Flags: pkttest.ACK, Payload: pkttest.Payload(2896, 6)}, 1448},
		{"v4-tos-ttl", pkttest.Packet{TOS: 0x02, TTL: 3, DF: true, Flags: pkttest.ACK, Payload: pkttest.Payload(4000, 7)}, 1448},
		{"v6", pkttest.Packet{V6: true, Seq: 77, Flags: pkttest.ACK, Payload: pkttest.Payload(9000, 8)}, 1440},
		{"v6-flowlabel", pkttest.Packet{V6: true, TOS: 0xb8, FlowLabel: 0xabcde, Flags: pkttest.ACK, TCPOptions: tsTCPOptions, Payload: pkttest.Payload(65000, 9)}, 1428},
		{"v6-mss-1", pkttest.Packet{V6: true, Flags: pkttest.ACK, Payload: pkttest.Payload(100, 10)}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pkt, h := tc.p.BuildGSO(tc.mss, false)
			same(t, run(t, h, pkt, Options{}), tsoWant(tc.p, tc.mss, false, false))
		})
	}
}

// inet_gso_segment: iph->id = htons(id++) per segment, wrapping at 16 bits.
func TestTSOIPv4IDIncrementsPerSegment(t *testing.T) {
	for _, id := range []uint16{0, 0x1234, 0xfffe} {
		p := pkttest.Packet{ID: id, Flags: pkttest.ACK, Payload: pkttest.Payload(6000, 11)}
		pkt, h := p.BuildGSO(1448, false)
		got := run(t, h, pkt, Options{})
		for i, g := range got {
			if want := id + uint16(i); ipv4ID(g) != want {
				t.Errorf("start %#x: segment %d has ID %#x, want %#x", id, i, ipv4ID(g), want)
			}
		}
		same(t, got, tsoWant(p, 1448, false, false))
	}
}

// SKB_GSO_TCP_FIXEDID (Options.FixedID): every segment keeps the ID, with
// or without DF (6.18 dropped the DF requirement).
func TestTSOFixedIDKeepsID(t *testing.T) {
	for _, df := range []bool{true, false} {
		p := pkttest.Packet{ID: 0x4242, DF: df, Flags: pkttest.ACK, Payload: pkttest.Payload(6000, 12)}
		pkt, h := p.BuildGSO(1448, false)
		got := run(t, h, pkt, Options{FixedID: true})
		for i, g := range got {
			if ipv4ID(g) != 0x4242 {
				t.Errorf("DF=%v: segment %d has ID %#x, want 0x4242", df, i, ipv4ID(g))
			}
		}
		same(t, got, tsoWant(p, 1448, true, false))
	}
}

// tcp_gso_segment: th->fin = th->psh = 0 on every segment but the last;
// the other flags (ACK, URG, ECE) are copied to all.
func TestTSOPSHAndFINOnlyOnLast(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		p := pkttest.Packet{V6: v6, Flags: pkttest.ACK | pkttest.PSH | pkttest.FIN | pkttest.URG | pkttest.ECE, Urgent: 10, Payload: pkttest.Payload(5000, 13)}
		pkt, h := p.BuildGSO(1448, false)
		got := run(t, h, pkt, Options{})
		for i, g := range got {
			f := tcpFlags(g)
			last := i == len(got)-1
			if (f&(pkttest.PSH|pkttest.FIN) != 0) != last {
				t.Errorf("v6=%v segment %d flags %#02x: PSH/FIN must be on the last segment only", v6, i, f)
			}
			if f&(pkttest.ACK|pkttest.URG|pkttest.ECE) != pkttest.ACK|pkttest.URG|pkttest.ECE {
				t.Errorf("v6=%v segment %d flags %#02x: ACK, URG, ECE must be copied", v6, i, f)
			}
		}
		same(t, got, tsoWant(p, 1448, false, false))
	}
}

// tcp_gso_segment (6.18): th->cwr &= ecn_cwr_mask on every segment after
// the first, where ecn_cwr_mask is SKB_GSO_TCP_ACCECN only: so CWR is
// cleared whether or not the virtio ECN bit (SKB_GSO_TCP_ECN) is set.
func TestTSOCWROnlyOnFirst(t *testing.T) {
	for _, ecn := range []bool{true, false} {
		for _, v6 := range []bool{false, true} {
			p := pkttest.Packet{V6: v6, Flags: pkttest.ACK | pkttest.CWR | pkttest.ECE, Payload: pkttest.Payload(5000, 14)}
			pkt, h := p.BuildGSO(1448, ecn)
			got := run(t, h, pkt, Options{})
			for i, g := range got {
				if (tcpFlags(g)&pkttest.CWR != 0) != (i == 0) {
					t.Errorf("ecn=%v v6=%v segment %d flags %#02x: CWR must be on the first only", ecn, v6, i, tcpFlags(g))
				}
			}
			same(t, got, tsoWant(p, 1448, false, false))
		}
	}
}

// SKB_GSO_TCP_ACCECN (Options.AccECN): CWR is part of the ACE counter and
// stays on every segment.
func TestTSOAccECNKeepsCWROnAll(t *testing.T) {
	p := pkttest.Packet{Flags: pkttest.ACK | pkttest.CWR, Payload: pkttest.Payload(5000, 15)}
	pkt, h := p.BuildGSO(1448, true)
	got := run(t, h, pkt, Options{AccECN: true})
	for i, g := range got {
		if tcpFlags(g)&pkttest.CWR == 0 {
			t.Errorf("segment %d lost CWR", i)
		}
	}
	same(t, got, tsoWant(p, 1448, false, true))
}

// inet_gso_segment copies the whole IPv4 header, options included, into
// every segment and recomputes the checksum over all of it.
func TestTSOCopiesIPv4Options(t *testing.T) {
	for _, opts := range [][]byte{
		{1, 1, 1, 0},                          // NOPs, EOL
		{0x94, 4, 0, 0},                       // router alert
		{7, 11, 4, 0, 0, 0, 0, 0, 0, 0, 0, 1}, // record route, 2 slots
		make([]byte, 40),                      // the maximum
	} {
		p := pkttest.Packet{IPOptions: opts, ID: 9, Flags: pkttest.ACK, Payload: pkttest.Payload(4000, 16)}
		pkt, h := p.BuildGSO(1448, false)
		got := run(t, h, pkt, Options{})
		for i, g := range got {
			ihl := int(g[0]&0xf) * 4
			if !bytes.Equal(g[20:ihl], pkt[20:ihl]) {
				t.Errorf("options %x: segment %d options %x", opts, i, g[20:ihl])
			}
		}
		same(t, got, tsoWant(p, 1448, false, false))
	}
}

// ipv6_gso_segment: hop-by-hop, routing and destination options headers
// (ipv6_gso_pull_exthdrs) are copied into every segment; only the payload
// length changes.
func TestTSOCopiesIPv6ExtHeaders(t *testing.T) {
	hbh := pkttest.ExtHdr{Type: pkttest.ExtHopByHop, Data: []byte{1, 4, 0, 0, 0, 0}}                            // PadN
	rt := pkttest.ExtHdr{Type: pkttest.ExtRouting, Data: append([]byte{4, 0, 0, 0, 0, 0}, make([]byte, 16)...)} // type 4 (SRH) shaped, 24 bytes
	dst := pkttest.ExtHdr{Type: pkttest.ExtDestOpts, Data: []byte{1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}}
	for _, tc := range []struct {
		name string
		ext  []pkttest.ExtHdr
	}{
		{"hop-by-hop", []pkttest.ExtHdr{hbh}},
		{"routing", []pkttest.ExtHdr{rt}},
		{"dest-opts", []pkttest.ExtHdr{dst}},
		{"all-three", []pkttest.ExtHdr{hbh, dst, rt, dst}},
	} {
		for _, proto := range []uint8{pkttest.ProtoTCP, pkttest.ProtoUDP} {
			t.Run(tc.name+"-"+map[uint8]string{6: "tcp", 17: "udp"}[proto], func(t *testing.T) {
				p := pkttest.Packet{V6: true, Proto: proto, ExtHdrs: tc.ext, Flags: pkttest.ACK, Payload: pkttest.Payload(4000, 17)}
				pkt, h := p.BuildGSO(1400, false)
				got := run(t, h, pkt, Options{})
				l4, _, _ := l4At(pkt)
				for i, g := range got {
					if !bytes.Equal(g[40:l4], pkt[40:l4]) || g[6] != pkt[6] {
						t.Errorf("segment %d extension headers %x, want %x", i, g[40:l4], pkt[40:l4])
					}
				}
				if proto == pkttest.ProtoTCP {
					same(t, got, tsoWant(p, 1400, false, false))
				} else {
					same(t, got, usoWant(p, 1400))
				}
			})
		}
	}
}

// tcp_gso_segment does not recompute the pseudo-header: it adjusts the sum
// the sender left in the checksum field for each segment's length. A
// wrong sum there gives every segment a checksum wrong by the same amount.
func TestTSOChecksumFromPseudoHeaderField(t *testing.T) {
	p := pkttest.Packet{Flags: pkttest.ACK, Payload: pkttest.Payload(5000, 18)}
	pkt, h := p.BuildGSO(1448, false)
	binary.BigEndian.PutUint16(pkt[36:], binary.BigEndian.Uint16(pkt[36:])+1)
	for i, g := range run(t, h, pkt, Options{}) {
		// One more in the pseudo sum makes each checksum one less, so a
		// segment verifies to 0xfffe instead of 0xffff.
		if s := rawL4Sum(g); s != 0xfffe {
			t.Errorf("segment %d sums to %#04x, want 0xfffe", i, s)
		}
	}
}

// GSO without NEEDS_CSUM: tcp4/tcp6_gso_segment write the pseudo-header
// from the addresses (__tcp_v4_send_check) before segmenting, so whatever
// was in the checksum field does not matter.
func TestTSOWithoutNeedsCsumUsesAddresses(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		p := pkttest.Packet{V6: v6, Flags: pkttest.ACK, Payload: pkttest.Payload(5000, 19)}
		pkt, h := p.BuildGSO(1448, false)
		h.Flags = 0
		l4, _, _ := l4At(pkt)
		pkt[l4+16], pkt[l4+17] = 0xde, 0xad
		same(t, run(t, h, pkt, Options{}), tsoWant(p, 1448, false, false))
	}
}

// gso_make_checksum folds without CSUM_MANGLED_0: a TCP segment whose
// checksum is 0 keeps 0 (unlike skb_checksum_help).
func TestTSOChecksumZeroNotMangled(t *testing.T) {
	p := pkttest.Packet{Flags: pkttest.ACK, Payload: pkttest.Payload(3000, 20)}
	first := p
	first.Seq = p.Seq
	first.Flags &^= pkttest.PSH | pkttest.FIN
	zeroSumTail(first, p.Payload[:1448])
	pkt, h := p.BuildGSO(1448, false)
	got := run(t, h, pkt, Options{})
	if c := l4Checksum(got[0]); c != 0 {
		t.Fatalf("first segment checksum %#04x, want 0 (test construction)", c)
	}
	same(t, got, tsoWant(p, 1448, false, false))
}

// __udp_gso_segment: one datagram per gso_size chunk, each with its own
// UDP header, length and checksum; IPv4 ID incremented per datagram.
func TestUSOEachDatagramOwnHeader(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    pkttest.Packet
		mss  int
	}{
		{"v4", pkttest.Packet{Proto: pkttest.ProtoUDP, ID: 0xfffd, Payload: pkttest.Payload(10000, 21)}, 1472},
		{"v4-odd", pkttest.Packet{Proto: pkttest.ProtoUDP, Payload: pkttest.Payload(1001, 22)}, 333},
		{"v4-options", pkttest.Packet{Proto: pkttest.ProtoUDP, IPOptions: []byte{1, 1, 1, 1}, Payload: pkttest.Payload(5000, 23)}, 1200},
		{"v6", pkttest.Packet{V6: true, Proto: pkttest.ProtoUDP, Payload: pkttest.Payload(60000, 24)}, 1452},
		{"v6-128-segments", pkttest.Packet{V6: true, Proto: pkttest.ProtoUDP, Payload: pkttest.Payload(128*100, 25)}, 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pkt, h := tc.p.BuildGSO(tc.mss, false)
			got := run(t, h, pkt, Options{})
			for i, g := range got {
				l4, data, _ := l4At(g)
				if ul := int(binary.BigEndian.Uint16(g[l4+4:])); ul != len(g)-l4 || len(g)-data > tc.mss {
					t.Errorf("datagram %d: UDP length %d, L4 bytes %d, payload %d", i, ul, len(g)-l4, len(g)-data)
				}
				if !tc.p.V6 && ipv4ID(g) != tc.p.ID+uint16(i) {
					t.Errorf("datagram %d: ID %#x, want %#x", i, ipv4ID(g), tc.p.ID+uint16(i))
				}
			}
			same(t, got, usoWant(tc.p, tc.mss))
		})
	}
}

// __udp_gso_segment: a datagram whose checksum folds to 0 is sent with
// 0xffff (CSUM_MANGLED_0), since 0 means "no checksum" for UDP.
func TestUSOChecksumZeroSentAsFFFF(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		p := pkttest.Packet{V6: v6, Proto: pkttest.ProtoUDP, Payload: pkttest.Payload(3000, 26)}
		zeroSumTail(p, p.Payload[1000:2000])
		pkt, h := p.BuildGSO(1000, false)
		got := run(t, h, pkt, Options{})
		if c := l4Checksum(got[1]); c != 0xffff {
			t.Errorf("v6=%v: datagram 1 checksum %#04x, want 0xffff", v6, c)
		}
		same(t, got, usoWant(p, 1000))
	}
}

// __virtio_net_hdr_to_skb: "Too small packets are not really GSO ones": a
// payload no larger than gso_size is sent as is, with only the checksum
// completed; IP ID, flags (PSH, FIN, CWR) and UDP length are untouched.
func TestGSOPayloadNotLargerThanGSOSizeIsNotSegmented(t *testing.T) {
	for _, p := range []pkttest.Packet{
		{ID: 7, Flags: pkttest.ACK | pkttest.PSH | pkttest.FIN | pkttest.CWR, Payload: pkttest.Payload(1448, 27)},
		{V6: true, Flags: pkttest.ACK | pkttest.PSH, Payload: pkttest.Payload(1000, 28)},
		{Proto: pkttest.ProtoUDP, ID: 7, Payload: pkttest.Payload(1472, 29)},
		{V6: true, Proto: pkttest.ProtoUDP, Payload: pkttest.Payload(1, 30)},
		{Flags: pkttest.ACK, Payload: nil},
	} {
		t.Run(name(p), func(t *testing.T) {
			mss := max(len(p.Payload), 1)
			pkt, h := p.BuildGSO(mss, true && p.Proto != pkttest.ProtoUDP)
			same(t, run(t, h, pkt, Options{}), [][]byte{p.Build()})
		})
	}
}

// The virtio layer decides "GSO or not" on the payload after a 20-byte TCP
// header; tcp_gso_segment then measures after the real one and returns
// -EINVAL when what is left fits in gso_size: the kernel drops the frame.
func TestTSOPayloadFitsOnlyWithOptionsIsDropped(t *testing.T) {
	p := pkttest.Packet{Flags: pkttest.ACK, TCPOptions: tsTCPOptions, Payload: pkttest.Payload(1440, 31)}
	pkt, h := p.BuildGSO(1448, false)
	_, err := try(h, pkt, Options{})
	wantErr(t, err, ErrGSOShort, "1440", "52", "1448")
	// Twelve bytes less and the virtio layer does not call it GSO at all.
	p.Payload = p.Payload[:1428]
	pkt, h = p.BuildGSO(1448, false)
	same(t, run(t, h, pkt, Options{}), [][]byte{p.Build()})
}

// skb_checksum_help: a NEEDS_CSUM packet that is not segmented gets the
// folded sum from csum_start to the end (the field holds the
// pseudo-header sum) and nothing else changes.
func TestChecksumCompletion(t *testing.T) {
	for _, p := range []pkttest.Packet{
		{Flags: pkttest.ACK, Payload: pkttest.Payload(100, 32)},
		{V6: true, Flags: pkttest.ACK | pkttest.PSH, TCPOptions: tsTCPOptions, Payload: pkttest.Payload(1371, 33)},
		{Proto: pkttest.ProtoUDP, IPOptions: []byte{1, 1, 1, 0}, Payload: pkttest.Payload(513, 34)},
		{V6: true, Proto: pkttest.ProtoUDP, ExtHdrs: []pkttest.ExtHdr{{Type: pkttest.ExtDestOpts, Data: make([]byte, 6)}}, Payload: pkttest.Payload(0, 35)},
		{Proto: pkttest.ProtoUDP, Payload: pkttest.Payload(65535-28, 36)},
	} {
		t.Run(name(p), func(t *testing.T) {
			pkt, h := p.BuildPartial()
			same(t, run(t, h, pkt, Options{}), [][]byte{p.Build()})
		})
	}
}

// skb_checksum_help: "csum_fold(csum) ?: CSUM_MANGLED_0" for every
// protocol: a TCP checksum of 0 is sent as 0xffff on this path (while TSO
// segments keep 0, see TestTSOChecksumZeroNotMangled).
func TestChecksumCompletionMangledZero(t *testing.T) {
	for _, proto := range []uint8{pkttest.ProtoTCP, pkttest.ProtoUDP} {
		p := pkttest.Packet{Proto: proto, Flags: pkttest.ACK, Payload: pkttest.Payload(600, 37)}
		zeroSumTail(p, p.Payload)
		pkt, h := p.BuildPartial()
		got := run(t, h, pkt, Options{})
		if c := l4Checksum(got[0]); c != 0xffff {
			t.Errorf("proto %d: checksum %#04x, want 0xffff", proto, c)
		}
		if err := pkttest.Verify(got[0]); err != nil {
			t.Error(err)
		}
	}
}

// GSO_NONE without NEEDS_CSUM: the packet is already complete and is
// copied byte for byte, even with a wrong checksum.
func TestNoCsumCopiedAsIs(t *testing.T) {
	p := pkttest.Packet{Flags: pkttest.ACK, Payload: pkttest.Payload(1000, 38), BadL4Checksum: true}
	pkt := p.Build()
	same2 := run(t, virtio.Hdr{}, pkt, Options{})
	if len(same2) != 1 || !bytes.Equal(same2[0], pkt) {
		t.Fatalf("not copied as is")
	}
}

// hdr_len is never trusted: 0, the whole packet (what GRO hands out), or
// anything up to the packet's length give the same segments (only hdr_len
// past the frame is refused: TestHdrLenBeyondFrameRefused).
func TestHdrLenIgnored(t *testing.T) {
	p := pkttest.Packet{Flags: pkttest.ACK, TCPOptions: tsTCPOptions, Payload: pkttest.Payload(8000, 39)}
	pkt, h := p.BuildGSO(1448, false)
	want := tsoWant(p, 1448, false, false)
	for _, hl := range []uint16{0, 1, 40, 1500, uint16(len(pkt))} {
		h.HdrLen = hl
		same(t, run(t, h, pkt, Options{}), want)
	}
}

// Options.MaxPacket (vnic's NIC model, a hardware MTU below the interface
// MTU): TSO cuts at min(gso_size, MaxPacket - headers).
func TestHardwareMTUCap(t *testing.T) {
	for _, tc := range []struct {
		p       pkttest.Packet
		gso     int
		max     int
		wantMSS int
	}{
		{pkttest.Packet{Flags: pkttest.ACK, Payload: pkttest.Payload(30000, 40)}, 8948, 1500, 1460},
		{pkttest.Packet{Flags: pkttest.ACK, TCPOptions: tsTCPOptions, Payload: pkttest.Payload(30000, 41)}, 8936, 1500, 1448},
		{pkttest.Packet{V6: true, Flags: pkttest.ACK, Payload: pkttest.Payload(30000, 42)}, 8928, 1500, 1440},
		{pkttest.Packet{Flags: pkttest.ACK, Payload: pkttest.Payload(30000, 43)}, 1000, 1500, 1000}, // gso_size already smaller
	} {
		t.Run(name(tc.p), func(t *testing.T) {
			pkt, h := tc.p.BuildGSO(tc.gso, false)
			got := run(t, h, pkt, Options{MaxPacket: tc.max})
			for i, g := range got {
				if len(g) > tc.max {
					t.Errorf("segment %d is %d bytes, MaxPacket %d", i, len(g), tc.max)
				}
			}
			same(t, got, tsoWant(tc.p, tc.wantMSS, false, false))
		})
	}
}

// What the NIC cannot cut to its hardware MTU it drops: an unsegmented
// packet, or USO datagrams (their size is the application's), larger than
// MaxPacket.
func TestHardwareMTUDropsWhatItCannotCut(t *testing.T) {
	big := pkttest.Packet{Proto: pkttest.ProtoUDP, Payload: pkttest.Payload(3000, 44)}
	pkt, h := big.BuildPartial()
	_, err := try(h, pkt, Options{MaxPacket: 1500})
	wantErr(t, err, ErrTooBig, "3028", "1500")

	pkt, h = big.BuildGSO(1600, false)
	_, err = try(h, pkt, Options{MaxPacket: 1500})
	wantErr(t, err, ErrTooBig, "1628", "1500")

	// A USO datagram that fits is fine.
	pkt, h = big.BuildGSO(1472, false)
	same(t, run(t, h, pkt, Options{MaxPacket: 1500}), usoWant(big, 1472))

	// Headers alone fill MaxPacket.
	tcp := pkttest.Packet{Flags: pkttest.ACK, Payload: pkttest.Payload(3000, 45)}
	pkt, h = tcp.BuildGSO(1448, false)
	_, err = try(h, pkt, Options{MaxPacket: 40})
	wantErr(t, err, ErrTooBig, "40")
}

// Packets land at out[i][offset:], leaving the headroom alone.
func TestOffsetHeadroomUntouched(t *testing.T) {
	p := pkttest.Packet{Flags: pkttest.ACK, Payload: pkttest.Payload(5000, 46)}
	pkt, h := p.BuildGSO(1448, false)
	out, sizes := newBufs(8, 2000)
	for i := range out {
		for j := range out[i] {
			out[i][j] = 0xee
		}
	}
	n, err := Segment(h, pkt, out, sizes, 10, Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := tsoWant(p, 1448, false, false)
	for i := 0; i < n; i++ {
		if !bytes.Equal(out[i][:10], bytes.Repeat([]byte{0xee}, 10)) {
			t.Errorf("headroom of buffer %d written", i)
		}
		if !bytes.Equal(out[i][10:10+sizes[i]], want[i]) {
			t.Errorf("segment %d wrong", i)
		}
	}
}

func TestReason(t *testing.T) {
	if r := Reason(nil); r != drop.None {
		t.Errorf("Reason(nil) = %v", r)
	}
	if r := Reason(bytes.ErrTooLarge); r != drop.Internal {
		t.Errorf("Reason(foreign) = %v", r)
	}
	seen := map[drop.Reason]bool{}
	for _, e := range []*DropError{ErrGSOType, ErrGSOSizeZero, ErrGSOByFrags, ErrHdrLen, ErrCsum, ErrNeedsCsum, ErrIPVersion, ErrIPHeader,
		ErrIPLength, ErrL4Proto, ErrIPv6ExtHdr, ErrL4Header, ErrGSOShort, ErrUSOSegments, ErrTooBig,
		ErrTooManySegments, ErrBufferTooSmall} {
		r := e.Reason()
		if r == drop.None || r == drop.Internal || seen[r] {
			t.Errorf("%v: reason %v is none, internal or repeated", e, r)
		}
		seen[r] = true
	}
	if r := Reason(errf(ErrCsum, "csum_start %d", 3)); r != drop.CsumOffsets || r.String() != "csum_offsets" {
		t.Errorf("Reason = %v", r)
	}
}

// Steady state: no allocation per super-packet.
func TestSegmentNoAllocs(t *testing.T) {
	tcp := pkttest.Packet{Flags: pkttest.ACK, TCPOptions: tsTCPOptions, Payload: pkttest.Payload(64000, 47)}
	udp := pkttest.Packet{V6: true, Proto: pkttest.ProtoUDP, Payload: pkttest.Payload(64000, 48)}
	small := pkttest.Packet{Flags: pkttest.ACK, Payload: pkttest.Payload(500, 49)}
	out, sizes := newBufs(64, 65536)
	for _, tc := range []struct {
		p   pkttest.Packet
		gso int
	}{{tcp, 1448}, {udp, 1452}, {small, 0}} {
		var pkt []byte
		var h virtio.Hdr
		if tc.gso > 0 {
			pkt, h = tc.p.BuildGSO(tc.gso, false)
		} else {
			pkt, h = tc.p.BuildPartial()
		}
		allocs := testing.AllocsPerRun(100, func() {
			if _, err := Segment(h, pkt, out, sizes, 0, Options{MaxPacket: 9000}); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocations per run", name(tc.p), allocs)
		}
	}
}
