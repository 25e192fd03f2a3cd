package coalesce

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"

	"vnic/vnic/pkttest"
	"vnic/vnic/virtio"
)

// flowGen builds consecutive segments of one flow the way a Linux sender
// (or vnic's segmenter) puts them on the wire: sequence numbers contiguous,
// IPv4 IDs incrementing, DF set.
type flowGen struct {
	tmpl pkttest.Packet
	seq  uint32
	id   uint16
	off  int // payload offset so far, for pkttest.Payload content
	data []byte
}

func newFlow(v6, udp bool, sport uint16) *flowGen {
	g := &flowGen{tmpl: pkttest.Packet{V6: v6, SrcPort: sport, DstPort: 5201, DF: true, Flags: pkttest.ACK, Ack: 7}, seq: 1000, id: 300}
	if udp {
		g.tmpl.Proto = pkttest.ProtoUDP
		g.tmpl.Flags = 0
	}
	g.data = pkttest.Payload(70000, byte(sport))
	return g
}

// next returns the next segment with n payload bytes and extra TCP flags.
func (g *flowGen) next(n int, flags uint8) []byte {
	p := g.tmpl
	p.Seq, p.ID = g.seq, g.id
	p.Flags |= flags
	p.Payload = g.data[g.off : g.off+n]
	g.seq += uint32(n)
	g.id++
	g.off += n
	return p.Build()
}

// merged returns what GRO should make of segments [from, from+len(sizes))
// starting at seq/id/off: the whole payload in one packet with the first
// packet's ID and the pseudo-header sum in the checksum field, and the
// virtio header, as pkttest builds a GSO super-packet.
func (g *flowGen) expect(seq uint32, id uint16, off, n, mss int, flags uint8) ([]byte, virtio.Hdr) {
	p := g.tmpl
	p.Seq, p.ID = seq, id
	p.Flags |= flags
	p.Payload = g.data[off : off+n]
	return p.BuildGSO(mss, false)
}

func TestMergedHeaderBytes(t *testing.T) {
	for _, c := range []struct {
		name    string
		v6, udp bool
		ext     []pkttest.ExtHdr
		opts    []byte
	}{
		{name: "tcpv4"},
		{name: "tcpv6", v6: true},
		{name: "tcpv4_timestamps", opts: []byte{1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2}},
		{name: "tcpv6_dstopts_routing", v6: true, ext: []pkttest.ExtHdr{{Type: pkttest.ExtRouting, Data: make([]byte, 6)}, {Type: pkttest.ExtDestOpts, Data: make([]byte, 14)}}},
		{name: "udpv4", udp: true},
		{name: "udpv6", v6: true, udp: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := newFlow(c.v6, c.udp, 40001)
			g.tmpl.TOS = 0x02 // ECT(0): must survive
			g.tmpl.ExtHdrs = c.ext
			g.tmpl.TCPOptions = c.opts
			g.tmpl.FlowLabel = 0x12345
			mss := 1448
			var pkts [][]byte
			last := uint8(0)
			if !c.udp {
				last = pkttest.PSH
			}
			for i := range 5 {
				f := uint8(0)
				n := mss
				if i == 4 {
					f, n = last, 1000
				}
				pkts = append(pkts, g.next(n, f))
			}
			e := New(Options{UDP: true})
			outs := run(t, e, pkts...)
			if len(outs) != 1 {
				t.Fatalf("%d packets out, want 1", len(outs))
			}
			want, wantHdr := g.expect(1000, 300, 0, 4*mss+1000, mss, last)
			if !bytes.Equal(outs[0].pkt, want) {
				t.Errorf("merged packet differs\n got %x\nwant %x", outs[0].pkt[:80], want[:80])
			}
			if outs[0].hdr != wantHdr {
				t.Errorf("header %v, want %v", outs[0].hdr, wantHdr)
			}
			if hl, err := virtio.RecomputeHdrLen(outs[0].pkt, &outs[0].hdr); err != nil || hl != int(outs[0].hdr.HdrLen) {
				t.Errorf("hdr_len %d, recomputed %d (%v)", outs[0].hdr.HdrLen, hl, err)
			}
			st := e.Stats()
			if st.SuperPackets != 1 || st.SegmentsMerged != 5 || st.PacketsIn != 5 || st.PacketsOut != 1 {
				t.Errorf("stats %+v", st)
			}
		})
	}
}

// TestFINMerged: FIN is or-ed into the head and ends the packet, like PSH.
func TestFINMerged(t *testing.T) {
	g := newFlow(false, false, 1)
	pkts := [][]byte{g.next(100, 0), g.next(100, 0), g.next(100, pkttest.FIN|pkttest.PSH)}
	outs := run(t, New(Options{}), pkts...)
	if len(outs) != 1 || tcpFlags(outs[0].pkt) != pkttest.ACK|pkttest.FIN|pkttest.PSH {
		t.Fatalf("got %d packets, flags %#x", len(outs), tcpFlags(outs[0].pkt))
	}
}

func TestUDPGRO(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		t.Run(fmt.Sprintf("v6=%v", v6), func(t *testing.T) {
			cases := []struct {
				name  string
				sizes []int
				want  []int // payload lengths out
			}{
				{"same_size", []int{1200, 1200, 1200}, []int{3600}},
				{"shorter_ends_run", []int{1200, 1200, 500, 1200}, []int{2900, 1200}},
				{"bigger_flushes", []int{500, 500, 1200, 1200}, []int{1000, 2400}},
			}
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					g := newFlow(v6, true, 2000)
					var pkts [][]byte
					for _, n := range c.sizes {
						pkts = append(pkts, g.next(n, 0))
					}
					var got []int
					for _, o := range run(t, New(Options{UDP: true}), pkts...) {
						got = append(got, payloadLen(o.pkt))
						if len(o.pkt) > 1500 && (o.hdr.GSOType != virtio.GSOUDPL4 || o.hdr.CsumOffset != 6) {
							t.Errorf("header %v", o.hdr)
						}
					}
					if !slices.Equal(got, c.want) {
						t.Errorf("got %v, want %v", got, c.want)
					}
				})
			}
			t.Run("max_64_segments", func(t *testing.T) {
				g := newFlow(v6, true, 2001)
				var pkts [][]byte
				for range 70 {
					pkts = append(pkts, g.next(100, 0))
				}
				var got []int
				for _, o := range run(t, New(Options{UDP: true}), pkts...) {
					got = append(got, payloadLen(o.pkt))
				}
				if !slices.Equal(got, []int{6400, 600}) {
					t.Errorf("got %v, want [6400 600] (UDP_GRO_CNT_MAX)", got)
				}
			})
			t.Run("zero_checksum_never_merges", func(t *testing.T) {
				g := newFlow(v6, true, 2002)
				a, b, c := g.next(100, 0), g.next(100, 0), g.next(100, 0)
				l4, _, _ := l4Info(b)
				b[l4+6], b[l4+7] = 0, 0
				e := New(Options{UDP: true})
				outs := run(t, e, a, b, c)
				// b goes out at once, before the held a. c does not merge
				// with a either: its IPv4 ID is two past a's (b took one),
				// which is neither incrementing by one nor fixed.
				want := []int{1, 0, 2}
				if v6 {
					want = []int{1, 0} // no IDs in IPv6: a and c merge
				}
				var got []int
				for _, o := range outs {
					got = append(got, o.idx)
				}
				if !slices.Equal(got, want) {
					t.Fatalf("order %v, want %v", got, want)
				}
				if e.Stats().Passed[PassUDPZeroChecksum] != 1 {
					t.Errorf("stats %+v", e.Stats())
				}
			})
			t.Run("udp_off", func(t *testing.T) {
				g := newFlow(v6, true, 2003)
				e := New(Options{})
				if outs := run(t, e, g.next(100, 0), g.next(100, 0)); len(outs) != 2 || e.Stats().Passed[PassUDPOff] != 2 {
					t.Fatalf("%d out, stats %+v", len(outs), e.Stats())
				}
			})
		})
	}
}

func TestDisabled(t *testing.T) {
	g := newFlow(false, false, 3)
	pkts := [][]byte{g.next(100, 0), g.next(100, 0), g.next(100, 0)}
	e := New(Options{Disabled: true})
	check := func(wantOut int) {
		t.Helper()
		outs := run(t, e, pkts...)
		if len(outs) != wantOut {
			t.Fatalf("%d out, want %d", len(outs), wantOut)
		}
		if wantOut == 3 {
			for i, o := range outs {
				if o.idx != i || o.hdr != (virtio.Hdr{}) || !bytes.Equal(o.pkt, pkts[i]) {
					t.Errorf("packet %d changed: %v", i, o.hdr)
				}
			}
		}
	}
	check(3)
	e.SetDisabled(false)
	check(1)
	e.SetDisabled(true)
	check(3)
}

// TestOrderWithinFlow: a flow's bytes come out in sequence order, also when
// a segment cannot merge and starts a new packet, and across other flows.
func TestOrderWithinFlow(t *testing.T) {
	a, b := newFlow(false, false, 10), newFlow(true, false, 11)
	pkts := [][]byte{
		a.next(1000, 0), b.next(1000, 0), a.next(1000, 0), b.next(1000, 0),
		a.next(500, 0), // ends a's first packet
		a.next(1000, 0), b.next(1000, pkttest.PSH), a.next(1000, 0),
		b.next(1000, 0), a.next(0, 0), // a pure ACK completes a's second packet
	}
	outs := run(t, New(Options{}), pkts...)
	seqs := map[bool][]uint32{}
	var got []string
	for _, o := range outs {
		l4, _, _ := l4Info(o.pkt)
		v6 := o.pkt[0]>>4 == 6
		seqs[v6] = append(seqs[v6], be32(o.pkt[l4+4:]))
		got = append(got, fmt.Sprintf("v6=%v:%d", v6, payloadLen(o.pkt)))
	}
	want := []string{"v6=false:2500", "v6=true:3000", "v6=false:2000", "v6=false:0", "v6=true:1000"}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	for v6, s := range seqs {
		if !slices.IsSorted(s) {
			t.Errorf("v6=%v: sequence numbers out of order: %v", v6, s)
		}
	}
}

func be32(b []byte) uint32 { return uint32(be16(b))<<16 | uint32(be16(b[2:])) }

func TestInterleavedFlows(t *testing.T) {
	var flows []*flowGen
	for i := range 5 {
		flows = append(flows, newFlow(i%2 == 1, i == 4, uint16(100+i)))
	}
	var pkts [][]byte
	for range 6 {
		for _, f := range flows {
			pkts = append(pkts, f.next(1400, 0))
		}
	}
	outs := run(t, New(Options{UDP: true}), pkts...)
	if len(outs) != 5 {
		t.Fatalf("%d out, want 5", len(outs))
	}
	for k, o := range outs {
		if o.idx != k || payloadLen(o.pkt) != 6*1400 || o.hdr.GSOSize != 1400 {
			t.Errorf("out %d: idx %d payload %d hdr %v", k, o.idx, payloadLen(o.pkt), o.hdr)
		}
	}
}

// TestMaxHeld: a new flow beyond MaxHeld completes the oldest held packet
// (gro_flush_oldest); with 8, what a single-queue TUN does.
func TestMaxHeld(t *testing.T) {
	var flows []*flowGen
	for i := range 3 {
		flows = append(flows, newFlow(false, false, uint16(200+i)))
	}
	var pkts [][]byte
	for range 2 {
		for _, f := range flows {
			pkts = append(pkts, f.next(1000, 0))
		}
	}
	e := New(Options{MaxHeld: 2})
	outs := run(t, e, pkts...)
	if len(outs) != 6 {
		t.Fatalf("%d out, want 6 (round robin over 3 flows with 2 slots merges nothing)", len(outs))
	}
	if n := e.Stats().Flushed[FlushEvicted]; n != 4 {
		t.Errorf("evictions %d, want 4", n)
	}
	e = New(Options{MaxHeld: 3})
	if outs := run(t, e, pkts...); len(outs) != 3 {
		t.Errorf("%d out, want 3", len(outs))
	}
}

func TestMaxSize(t *testing.T) {
	g := newFlow(false, false, 5)
	var pkts [][]byte
	for range 10 {
		pkts = append(pkts, g.next(1000, 0))
	}
	e := New(Options{MaxSize: 40 + 3000})
	var got []int
	for _, o := range run(t, e, pkts...) {
		got = append(got, payloadLen(o.pkt))
		if len(o.pkt) > 3040 {
			t.Errorf("packet of %d bytes above MaxSize", len(o.pkt))
		}
	}
	if !slices.Equal(got, []int{3000, 3000, 3000, 1000}) {
		t.Errorf("got %v", got)
	}
	if e.Stats().Flushed[FlushMaxSize] != 3 {
		t.Errorf("stats %+v", e.Stats().Flushed)
	}
}

func TestNoRoom(t *testing.T) {
	g := newFlow(false, false, 6)
	pkts := [][]byte{g.next(1000, 0), g.next(1000, 0), g.next(1000, 0), g.next(1000, 0)}
	bufs := batch(pkts...)
	bufs[0] = bufs[0][:len(bufs[0]):len(bufs[0])]             // no room: cannot be a head
	bufs[1] = bufs[1][: len(bufs[1]) : len(bufs[1])+1000+500] // room for one more segment
	e := New(Options{})
	idx, err := e.Coalesce(bufs, testOffset, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []int
	for _, o := range decode(t, bufs, idx) {
		got = append(got, payloadLen(o.pkt))
	}
	if !slices.Equal(got, []int{1000, 2000, 1000}) {
		t.Errorf("got %v, want [1000 2000 1000]", got)
	}
	st := e.Stats()
	if st.Passed[PassNoRoom] != 1 || st.Flushed[FlushNoRoom] != 1 {
		t.Errorf("stats %+v %+v", st.Passed, st.Flushed)
	}
}

func TestTrustChecksums(t *testing.T) {
	g := newFlow(false, false, 7)
	a, b := g.next(100, 0), g.next(100, 0)
	l4, _, _ := l4Info(b)
	b[l4+16] ^= 0xff
	if outs := run(t, New(Options{}), a, b); len(outs) != 2 {
		t.Errorf("bad checksum merged by default")
	}
	if outs := run(t, New(Options{TrustChecksums: true}), a, b); len(outs) != 1 {
		t.Errorf("TrustChecksums did not merge")
	}
}

// TestCWR: a segment carrying CWR completes its flow's held packet and is
// never merged; what follows merges. Consecutive CWR segments do not merge
// either (probed on the 6.18 kernel oracle).
func TestCWR(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		g := newFlow(v6, false, 8)
		pkts := [][]byte{g.next(100, 0), g.next(100, 0), g.next(100, pkttest.CWR), g.next(100, 0), g.next(100, 0),
			g.next(100, pkttest.CWR), g.next(100, pkttest.CWR), g.next(100, 0)}
		for _, opt := range []Options{{}, {TUNEgress: true}} {
			e := New(opt)
			var got []int
			for _, o := range run(t, e, pkts...) {
				got = append(got, payloadLen(o.pkt))
				if o.hdr.GSOType&virtio.GSOECN != 0 {
					t.Errorf("ECN bit set")
				}
			}
			if want := []int{200, 100, 200, 100, 100, 100}; !slices.Equal(got, want) {
				t.Errorf("v6=%v %+v: got %v, want %v", v6, opt, got, want)
			}
			// CWR completed [0,1], [3,4] and the CWR segment 5; the
			// flag word completed CWR segments 2 and 6.
			if st := e.Stats(); st.Flushed[FlushCWR] != 3 || st.Flushed[FlushTCPFlags] != 2 {
				t.Errorf("stats %+v %+v", st.Passed, st.Flushed)
			}
		}
	}
}

// TestCWRHeldUntilNextSegmentOrPollEnd: tcp_gro_receive does not merge a
// CWR segment, but out_check_final (mss 1) does not flush it either, so
// dev_gro_receive holds it as a new head: it leaves when the next segment
// of its flow comes or at the end of the poll, after packets of other
// flows held before it, and it takes one of the MAX_GRO_SKBS slots.
func TestCWRHeldUntilNextSegmentOrPollEnd(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		// Order: B1 A1 A2(CWR) B2 → A1, B1+B2, A2 (the held list in age
		// order at the end of the poll).
		a, b := newFlow(v6, false, 20), newFlow(v6, false, 21)
		b1, a1, a2, b2 := b.next(100, 0), a.next(100, 0), a.next(100, pkttest.CWR), b.next(100, 0)
		var got []string
		for _, o := range run(t, New(Options{}), b1, a1, a2, b2) {
			got = append(got, fmt.Sprintf("%d:%d", o.idx, payloadLen(o.pkt)))
		}
		if want := []string{"1:100", "0:200", "2:100"}; !slices.Equal(got, want) {
			t.Errorf("v6=%v: got %v, want %v", v6, got, want)
		}

		// Slots: seven flows held, a CWR segment takes the eighth slot,
		// so an eighth flow evicts the oldest (flow 0), whose second
		// segment then starts anew and evicts flow 1.
		var flows []*flowGen
		var pkts [][]byte
		for j := 0; j < 8; j++ {
			flows = append(flows, newFlow(v6, false, uint16(30+j)))
		}
		for j := 0; j < 7; j++ {
			pkts = append(pkts, flows[j].next(100, 0))
		}
		c := newFlow(v6, false, 40)
		pkts = append(pkts, c.next(100, pkttest.CWR), flows[7].next(100, 0), flows[0].next(100, 0))
		got = got[:0]
		e := New(Options{MaxHeld: 8})
		for _, o := range run(t, e, pkts...) {
			got = append(got, fmt.Sprint(o.idx))
		}
		want := []string{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}
		if !slices.Equal(got, want) {
			t.Errorf("v6=%v: order %v, want %v", v6, got, want)
		}
		if st := e.Stats(); st.Flushed[FlushEvicted] != 2 || st.SuperPackets != 0 {
			t.Errorf("v6=%v: %d evicted, %d merged; want 2, 0", v6, st.Flushed[FlushEvicted], st.SuperPackets)
		}
	}
}

func TestWindowChangeFlushes(t *testing.T) {
	g := newFlow(false, false, 9)
	a := g.next(100, 0)
	g.tmpl.Window = 1000
	b := g.next(100, 0)
	e := New(Options{})
	if outs := run(t, e, a, b); len(outs) != 2 || e.Stats().Flushed[FlushTCPFlags] != 1 {
		t.Errorf("window change merged")
	}
}

// TestIPv6ExtHeaders: 6.18's ipv6_gro_pull_exthdrs walks hop-by-hop,
// routing and destination-options headers (hop-by-hop seen merging on the
// kernel oracle); they must be byte-identical within a flow, and packets
// whose headers differ are different flows. A fragment header ends GRO.
func TestIPv6ExtHeaders(t *testing.T) {
	hbh := func(fill byte) []pkttest.ExtHdr {
		return []pkttest.ExtHdr{{Type: pkttest.ExtHopByHop, Data: []byte{1, 4, fill, fill, fill, fill}}}
	}
	mk := func(ext []pkttest.ExtHdr, n int) [][]byte {
		g := newFlow(true, false, 12)
		g.tmpl.ExtHdrs = ext
		var pkts [][]byte
		for range n {
			pkts = append(pkts, g.next(100, 0))
		}
		return pkts
	}
	e := New(Options{})
	if outs := run(t, e, mk(hbh(0), 3)...); len(outs) != 1 || payloadLen(outs[0].pkt) != 300 {
		t.Errorf("same hop-by-hop: %d out", len(outs))
	}
	a, b := mk(hbh(0), 2), mk(hbh(1), 2)
	if outs := run(t, e, a[0], b[1]); len(outs) != 2 {
		t.Errorf("different hop-by-hop merged")
	}
	e = New(Options{})
	if outs := run(t, e, mk([]pkttest.ExtHdr{{Type: pkttest.ExtFragment, Data: make([]byte, 6)}}, 2)...); len(outs) != 2 || e.Stats().Passed[PassIPv6ExtHdr] != 2 {
		t.Errorf("fragment header merged")
	}
}

// TestIPIPNotMerged: the selftest's --ipip mode. The kernel merges the
// inner TCP flow, but a TUN cannot carry SKB_GSO_IPXIP4 and virtio has no
// type for it; vnic passes tunnels on.
func TestIPIPNotMerged(t *testing.T) {
	g := newFlow(false, false, 13)
	var pkts [][]byte
	for range 3 {
		inner := g.next(100, 0)
		outer := pkttest.Packet{Proto: 4, Payload: inner, DF: true}
		b := outer.Build()
		pkts = append(pkts, b)
	}
	e := New(Options{})
	if outs := run(t, e, pkts...); len(outs) != 3 || e.Stats().Passed[PassNotTCPUDP] != 3 {
		t.Errorf("%d out, stats %+v", len(outs), e.Stats().Passed)
	}
}

func TestMalformed(t *testing.T) {
	g := newFlow(false, false, 14)
	good := g.next(100, 0)
	g6 := newFlow(true, false, 15)
	good6 := g6.next(100, 0)
	mod := func(b []byte, f func([]byte) []byte) []byte { return f(slices.Clone(b)) }
	for _, c := range []struct {
		name string
		pkt  []byte
		want PassReason
	}{
		{"empty", nil, PassTruncated},
		{"not_ip", []byte{0x20, 1, 2, 3}, PassNotIP},
		{"v4_truncated_header", good[:19], PassTruncated},
		{"v6_truncated_header", good6[:39], PassTruncated},
		// tcp4_gro_receive validates the checksum before
		// tcp_gro_pull_header looks at the header: these verify.
		{"tcp_truncated", mod(good, func(b []byte) []byte {
			b = b[:30]
			b[2], b[3] = 0, 30
			fixIPv4Checksum(b)
			fixL4Checksum(b, 20+16)
			return b
		}), PassTruncated},
		{"tcp_doff_small", mod(good, func(b []byte) []byte { b[20+12] = 0x40; fixL4Checksum(b, 20+16); return b }), PassBadTCPHeader},
		{"tcp_doff_past_end", mod(good, func(b []byte) []byte {
			b = b[:44]
			b[2], b[3] = 0, 44
			fixIPv4Checksum(b)
			b[32] = 0xf0
			fixL4Checksum(b, 20+16)
			return b
		}), PassTruncated},
		{"tcp_doff_small_bad_checksum", mod(good, func(b []byte) []byte { b[20+12] = 0x40; return b }), PassBadL4Checksum},
		{"v4_total_length_short", mod(good, func(b []byte) []byte { b[3] -= 10; fixIPv4Checksum(b); return b }), PassIPLength},
		{"v4_total_length_long", mod(good, func(b []byte) []byte { b[3] += 10; fixIPv4Checksum(b); return b }), PassIPLength},
		{"v6_payload_length", mod(good6, func(b []byte) []byte { b[5]++; return b }), PassIPLength},
		{"v4_bad_header_checksum", mod(good, func(b []byte) []byte { b[10] ^= 1; return b }), PassBadIPChecksum},
		{"v4_ihl_short", mod(good, func(b []byte) []byte { b[0] = 0x44; return b }), PassIPv4Options},
		{"v4_reserved_bit", mod(good, func(b []byte) []byte { b[6] |= 0x80; fixIPv4Checksum(b); return b }), PassIPLength},
		{"icmp", mod(good, func(b []byte) []byte { b[9] = 1; fixIPv4Checksum(b); return b }), PassNotTCPUDP},
		{"v6_ext_truncated", mod(good6, func(b []byte) []byte { b[6] = 60; b[41] = 200; return b }), PassTruncated},
		{"v6_no_next_header", mod(good6, func(b []byte) []byte { b[6] = 59; return b }), PassNotTCPUDP},
		{"bad_tcp_checksum", mod(good, func(b []byte) []byte { b[len(b)-1] ^= 1; return b }), PassBadL4Checksum},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := New(Options{UDP: true})
			outs := run(t, e, c.pkt)
			if len(outs) != 1 || outs[0].hdr != (virtio.Hdr{}) || !bytes.Equal(outs[0].pkt, c.pkt) {
				t.Fatalf("not passed through unchanged: %+v", outs)
			}
			if n := e.Stats().Passed[c.want]; n != 1 {
				t.Errorf("reason %v not counted: %+v", c.want, e.Stats().Passed)
			}
		})
	}
}

// TestFlushByMalformedOfFlow: a packet the IP layer flags (length
// mismatch) still ends its flow's held packet, before it goes out itself;
// one GRO drops before the lookup (bad checksum) overtakes it.
func TestFlushByMalformedOfFlow(t *testing.T) {
	g := newFlow(false, false, 16)
	a, b := g.next(100, 0), g.next(100, 0)
	padded := append(slices.Clone(b), 0, 0, 0, 0)
	outs := run(t, New(Options{}), a, padded)
	if len(outs) != 2 || outs[0].idx != 0 || outs[1].idx != 1 {
		t.Errorf("padded: %+v", outs)
	}
	bad := slices.Clone(b)
	bad[len(bad)-1] ^= 1
	outs = run(t, New(Options{}), a, bad)
	if len(outs) != 2 || outs[0].idx != 1 || outs[1].idx != 0 {
		t.Errorf("bad checksum: %+v", outs)
	}
}

func TestErrors(t *testing.T) {
	e := New(Options{})
	if _, err := e.Coalesce([][]byte{make([]byte, 20)}, 4, nil); !errors.Is(err, ErrOffset) {
		t.Errorf("offset 4: %v", err)
	}
	if _, err := e.Coalesce([][]byte{make([]byte, 5)}, 10, nil); !errors.Is(err, ErrShortBuffer) {
		t.Errorf("short buffer: %v", err)
	}
}

func TestStatsNames(t *testing.T) {
	var s Stats
	names := map[string]bool{}
	s.Each(func(name string, _ uint64) {
		if names[name] || name == "" || bytes.Contains([]byte(name), []byte("unknown")) {
			t.Errorf("bad or duplicate name %q", name)
		}
		names[name] = true
	})
}

// TestCoalesceNoAllocs: a steady-state batch allocates nothing.
func TestCoalesceNoAllocs(t *testing.T) {
	b := newBench(false, 4, 12, 1448)
	e := New(Options{UDP: true, MarkValid: true})
	toWrite := make([]int, 0, len(b.bufs))
	allocs := testing.AllocsPerRun(100, func() {
		b.restore()
		var err error
		toWrite, err = e.Coalesce(b.bufs, testOffset, toWrite[:0])
		if err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per batch", allocs)
	}
	if len(toWrite) != 4 {
		t.Errorf("%d out, want 4", len(toWrite))
	}
}

// fixL4Checksum makes the TCP/UDP checksum of an IPv4 packet (options-free)
// verify, whatever its bytes, by setting the 16-bit word at off (which may
// be past the end of a truncated header: then the last word is used).
func fixL4Checksum(b []byte, off int) {
	if off+2 > len(b) {
		off = len(b) - 2
	}
	b[off], b[off+1] = 0, 0
	l4len := len(b) - 20
	ph := []byte{b[12], b[13], b[14], b[15], b[16], b[17], b[18], b[19], 0, b[9], byte(l4len >> 8), byte(l4len)}
	s := checksum.Checksum(b[20:], checksum.Checksum(ph, 0))
	binary.BigEndian.PutUint16(b[off:], ^s)
}

// TestMarkValidReportsWhatWasVerified: with MarkValid, an unmerged packet
// whose checksum the engine verified (skb_gro_checksum_validate: TCP, and
// UDP even with UDP GRO off; a UDP checksum of 0 counts) gets DATA_VALID,
// as the kernel's GRO leaves it CHECKSUM_UNNECESSARY; merged packets keep
// their NEEDS_CSUM header; what was not verified (a bad checksum, IPv4
// options, a length the IP layer flags, GRO off) and everything without
// MarkValid gets a zero header.
func TestMarkValidReportsWhatWasVerified(t *testing.T) {
	dv := virtio.Hdr{Flags: virtio.FlagDataValid}
	for _, v6 := range []bool{false, true} {
		g := newFlow(v6, false, 50)
		single := g.next(100, 0)
		ack := g.next(0, 0)
		gap := newFlow(v6, false, 51)
		a, _, c := gap.next(100, 0), gap.next(100, 0), gap.next(100, 0)
		u := newFlow(v6, true, 52)
		u1, u2 := u.next(100, 0), u.next(100, 0)
		bad := slices.Clone(u2)
		bad[len(bad)-1] ^= 1
		zero := slices.Clone(u2)
		l4, _, _ := l4Info(zero)
		zero[l4+6], zero[l4+7] = 0, 0
		tail := append(slices.Clone(single), 0, 0)
		m := newFlow(v6, false, 53)
		m1, m2 := m.next(100, 0), m.next(100, 0)
		for _, c := range []struct {
			name string
			opt  Options
			pkts [][]byte
			want []virtio.Hdr // the headers, hdr_len and gso fields aside
		}{
			{"single", Options{MarkValid: true}, [][]byte{single}, []virtio.Hdr{dv}},
			{"pure-ack", Options{MarkValid: true}, [][]byte{ack}, []virtio.Hdr{dv}},
			{"gap", Options{MarkValid: true}, [][]byte{a, c}, []virtio.Hdr{dv, dv}},
			{"merged", Options{MarkValid: true}, [][]byte{m1, m2}, []virtio.Hdr{{Flags: virtio.FlagNeedsCsum}}},
			{"udp-gro-off", Options{MarkValid: true}, [][]byte{u1, bad, zero}, []virtio.Hdr{dv, {}, dv}},
			{"udp-gro-on", Options{MarkValid: true, UDP: true}, [][]byte{u1, bad, zero}, []virtio.Hdr{{}, dv, dv}},
			{"ip-length-flagged", Options{MarkValid: true}, [][]byte{tail}, []virtio.Hdr{{}}},
			{"gro-off", Options{MarkValid: true, Disabled: true}, [][]byte{single, m1, m2}, []virtio.Hdr{{}, {}, {}}},
			{"not-marked", Options{}, [][]byte{single, a, c}, []virtio.Hdr{{}, {}, {}}},
			{"trusted", Options{MarkValid: true, TrustChecksums: true}, [][]byte{bad}, []virtio.Hdr{dv}},
		} {
			e := New(c.opt)
			outs := run(t, e, c.pkts...)
			var got []virtio.Hdr
			for _, o := range outs {
				h := virtio.Hdr{Flags: o.hdr.Flags}
				got = append(got, h)
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("v6=%v %s: headers %v, want %v", v6, c.name, got, c.want)
			}
		}
		if !v6 {
			opt := pkttest.Packet{IPOptions: []byte{1, 1, 1, 1}, Flags: pkttest.ACK, Payload: pkttest.Payload(100, 1)}
			if outs := run(t, New(Options{MarkValid: true}), opt.Build()); outs[0].hdr != (virtio.Hdr{}) {
				t.Errorf("IPv4 options: header %v, want zero", outs[0].hdr)
			}
		}
		// Per batch: SetMarkValid(false) says "not verified".
		e := New(Options{MarkValid: true})
		e.SetMarkValid(false)
		if outs := run(t, e, single); outs[0].hdr != (virtio.Hdr{}) {
			t.Errorf("SetMarkValid(false): header %v", outs[0].hdr)
		}
		e.SetMarkValid(true)
		if outs := run(t, e, single); outs[0].hdr != dv {
			t.Errorf("SetMarkValid(true): header %v", outs[0].hdr)
		}
		if n := e.Stats().Passed[PassBadL4Checksum]; n != 0 {
			t.Errorf("bad checksums counted: %d", n)
		}
		e = New(Options{MarkValid: true})
		run(t, e, u1, bad)
		if n := e.Stats().Passed[PassBadL4Checksum]; n != 1 {
			t.Errorf("a bad UDP checksum with UDP GRO off: counted %d times, want 1", n)
		}
	}
}
