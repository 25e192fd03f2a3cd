package coalesce

// A port of the kernel's GRO conformance selftest,
// tools/testing/selftests/net/gro.c (6.18): the same packets, built the way
// its create_packet / fill_*layer / send_* helpers build them, and the
// payload lengths its check_recv_pkts expects. Where the sender sleeps
// (sleep, usleep) the packets after it land in a new NAPI poll; here that
// is a new batch. The receiver reads up to the FIN that closes each case,
// so each case checks that the FIN comes out last.
//
// Not ported: the --ipip mode (the same cases inside IPv4-in-IPv4); vnic
// does not merge tunnels (TestIPIPNotMerged).

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"slices"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"

	"vnic/vnic/pkttest"
)

const (
	stPayload   = 100 // PAYLOAD_LEN
	stMSS       = 4096 - 20 - 40
	stMaxPaylod = 65535 - 20 - 40 // MAX_PAYLOAD
	stNumLarge  = stMaxPaylod / stMSS
)

var (
	stSrc4 = netip.MustParseAddr("192.168.1.200")
	stDst4 = netip.MustParseAddr("192.168.1.100")
	stSrc6 = netip.MustParseAddr("fdaa::2")
	stDst6 = netip.MustParseAddr("fdaa::1")
)

type selftest struct{ v6 bool }

// packet is create_packet: ports 1500 → 8000, TTL/hop limit 8, DF on IPv4,
// ID 0, ACK, window TCP_MAXWIN, seq/ack 100 + offset, 'a' payload.
func (s selftest) packet(seqOff, ackOff, payload int, fin bool) pkttest.Packet {
	p := pkttest.Packet{
		V6: s.v6, Src: stSrc4, Dst: stDst4,
		SrcPort: 1500, DstPort: 8000, TTL: 8, DF: !s.v6,
		Seq: uint32(100 + seqOff), Ack: uint32(100 + ackOff),
		Flags: pkttest.ACK, Window: 65535,
		Payload: bytes.Repeat([]byte{'a'}, payload),
	}
	if s.v6 {
		p.Src, p.Dst = stSrc6, stDst6
	}
	if fin {
		p.Flags |= pkttest.FIN
	}
	return p
}

func (s selftest) create(seqOff, ackOff, payload int) []byte {
	p := s.packet(seqOff, ackOff, payload, false)
	return p.Build()
}

// fin is the sender's fin_pkt.
func (s selftest) fin() []byte {
	p := s.packet(stPayload*2, 0, 0, true)
	return p.Build()
}

// sendFlags is send_flags: five segments with the flag on the third (and,
// for CWR, on the second too).
func (s selftest) sendFlags(psh, syn, rst, urg, cwr bool) []byte2 {
	payload := 0
	if psh || cwr {
		payload = stPayload
	}
	flag := [2]int{4 / 2, 4/2 - 1}
	var flagPkt [2][]byte
	for i := range flag {
		p := s.packet(flag[i]*payload, 0, payload, false)
		for _, f := range []struct {
			on  bool
			bit uint8
		}{{psh, pkttest.PSH}, {syn, pkttest.SYN}, {rst, pkttest.RST}, {urg, pkttest.URG}, {cwr, pkttest.CWR}} {
			if f.on {
				p.Flags |= f.bit
			}
		}
		flagPkt[i] = p.Build()
	}
	var out []byte2
	for i := range 5 {
		switch {
		case i == flag[0]:
			out = append(out, flagPkt[0])
		case i == flag[1] && cwr:
			out = append(out, flagPkt[1])
		default:
			out = append(out, s.create(i*stPayload, 0, stPayload))
		}
	}
	return out
}

type byte2 = []byte

// tsOptions is add_standard_tcp_options: {TS, NOP, NOP} in three orders,
// tsval written in host (little-endian) order as the selftest does.
func tsOptions(ts uint32, order int) []byte {
	tsopt := make([]byte, 10)
	tsopt[0], tsopt[1] = 8, 10
	binary.LittleEndian.PutUint32(tsopt[2:], ts)
	switch order {
	case 0:
		return append([]byte{1, 1}, tsopt...)
	case 1:
		return append(append([]byte{1}, tsopt...), 1)
	default:
		return append(tsopt, 1, 1)
	}
}

func (s selftest) withOptions(seqOff int, opts []byte) []byte {
	p := s.packet(seqOff, 0, stPayload, false)
	p.TCPOptions = opts
	return p.Build()
}

// fragment4 is send_fragment4's second packet: DF and MF set, the TCP
// header (and checksum) written for 200 bytes of payload, 100 sent.
func (s selftest) fragment4() []byte {
	p := s.packet(stPayload, 0, stPayload*2, false)
	p.MF = true
	b := p.Build()[:20+20+stPayload]
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	fixIPv4Checksum(b)
	return b
}

func fixIPv4Checksum(b []byte) {
	b[10], b[11] = 0, 0
	binary.BigEndian.PutUint16(b[10:], ^checksum.Checksum(b[:20], 0))
}

// flushID is send_flush_id_case.
func (s selftest) flushID(df [3]bool, id [3]uint16, three bool) []byte2 {
	n := 2
	if three {
		n = 3
	}
	var out []byte2
	for i := range n {
		p := s.packet(i*stPayload, 0, stPayload, false)
		p.DF, p.ID = df[i], id[i]
		out = append(out, p.Build())
	}
	return out
}

// large is send_large.
func (s selftest) large(remainder int) []byte2 {
	var out []byte2
	for i := range stNumLarge {
		out = append(out, s.create(i*stMSS, 0, stMSS))
	}
	out = append(out, s.create(stNumLarge*stMSS, 0, remainder))
	out = append(out, s.create((stNumLarge+1)*stMSS, 0, remainder))
	return out
}

// checkRecv runs the batches through e and checks the payload lengths
// received before the FIN, as check_recv_pkts does.
func checkRecv(t *testing.T, e *Engine, want []int, batches ...[]byte2) {
	t.Helper()
	var got []int
	sawFIN := false
	for _, b := range batches {
		for _, o := range run(t, e, b...) {
			if sawFIN {
				t.Errorf("packet after the FIN (payload %d)", payloadLen(o.pkt))
			}
			if isFIN(o.pkt) {
				sawFIN = true
				continue
			}
			got = append(got, payloadLen(o.pkt))
		}
	}
	if !sawFIN {
		t.Errorf("no FIN received")
	}
	if !slices.Equal(got, want) {
		t.Errorf("received payloads %v, want %v", got, want)
	}
}

func TestSelftestGRO(t *testing.T) {
	for _, fam := range []struct {
		name string
		s    selftest
	}{{"ipv4", selftest{false}}, {"ipv6", selftest{true}}} {
		s := fam.s
		t.Run(fam.name, func(t *testing.T) {
			type tc struct {
				name    string
				v4, v6  bool // restrict to one family
				want    []int
				batches [][]byte2
			}
			fin := s.fin()
			cases := []tc{
				// data
				{name: "data_same", want: []int{200}, batches: []([]byte2){{s.create(0, 0, 100), s.create(100, 0, 100), fin}}},
				{name: "data_lrg_sml", want: []int{150}, batches: []([]byte2){{s.create(0, 0, 100), s.create(100, 0, 50), fin}}},
				{name: "data_sml_lrg", want: []int{50, 100}, batches: []([]byte2){{s.create(0, 0, 50), s.create(50, 0, 100), fin}}},
				// ack: "duplicate ack and pure ack"
				{name: "ack", want: []int{0, 0, 0}, batches: []([]byte2){{s.create(0, 0, 0), s.create(0, 0, 0), s.create(0, 1, 0), fin}}},
				// flags
				{name: "flags_psh", want: []int{300, 200}, batches: []([]byte2){append(s.sendFlags(true, false, false, false, false), fin)}},
				{name: "flags_syn", want: []int{200, 0, 200}, batches: []([]byte2){append(s.sendFlags(false, true, false, false, false), fin)}},
				{name: "flags_rst", want: []int{200, 0, 200}, batches: []([]byte2){append(s.sendFlags(false, false, true, false, false), fin)}},
				{name: "flags_urg", want: []int{200, 0, 200}, batches: []([]byte2){append(s.sendFlags(false, false, false, true, false), fin)}},
				// The L4S tree's gro.c expects {100, 200, 200} (its
				// tcp_gro_receive merges CWR runs, SKB_GSO_TCP_ACCECN);
				// mainline 6.18, probed through the kernel oracle, hands
				// every CWR segment on alone.
				{name: "flags_cwr", want: []int{100, 100, 100, 200}, batches: []([]byte2){append(s.sendFlags(false, false, false, false, true), fin)}},
				// tcp
				{name: "tcp_csum", want: []int{100, 100}, batches: []([]byte2){{s.create(0, 0, 100), func() []byte {
					p := s.packet(100, 0, 100, false)
					p.BadL4Checksum = true
					return p.Build()
				}()}, {fin}}},
				{name: "tcp_seq", want: []int{100, 100}, batches: []([]byte2){{s.create(0, 0, 100), func() []byte {
					p := s.packet(100, 0, 100, false)
					p.Seq++
					return p.Build()
				}()}, {fin}}},
				{name: "tcp_ts", want: []int{200, 100, 100, 100}, batches: []([]byte2){{
					s.withOptions(0, tsOptions(0, 0)),
					s.withOptions(100, tsOptions(0, 0)),
					s.withOptions(200, tsOptions(100, 0)),
					s.withOptions(300, tsOptions(100, 1)),
					s.withOptions(400, tsOptions(100, 2)),
				}, {fin}}},
				{name: "tcp_opt", want: []int{200, 100}, batches: []([]byte2){{
					s.withOptions(0, tsOptions(0, 0)),
					s.withOptions(100, tsOptions(0, 0)),
					// send_diff_opt writes NOP + window scale at MAX_HDR_LEN,
					// which for IPv4 is 20 bytes past where recompute_packet
					// puts the options: IPv4 gets 4 zero bytes instead.
					s.withOptions(200, map[bool][]byte{true: {1, 3, 3, 0}, false: {0, 0, 0, 0}}[s.v6]),
				}, {fin}}},
				// ip
				{name: "ip_ecn", want: []int{100, 100}, batches: []([]byte2){{s.create(0, 0, 100), func() []byte {
					b := s.create(100, 0, 100)
					if s.v6 {
						b[1] ^= 0x20
					} else {
						b[1] ^= 0x2
						fixIPv4Checksum(b)
					}
					return b
				}(), fin}}},
				{name: "ip_tos", want: []int{100, 100}, batches: []([]byte2){{s.create(0, 0, 100), func() []byte {
					p := s.packet(100, 0, 100, false)
					p.TOS = map[bool]uint8{true: 0xf0, false: 1}[s.v6] // ip6h->priority = 0xf
					return p.Build()
				}(), fin}}},
				{name: "ip_ttl", v4: true, want: []int{100, 100}, batches: []([]byte2){{s.create(0, 0, 100), func() []byte {
					p := s.packet(100, 0, 100, false)
					p.TTL = 7
					return p.Build()
				}(), fin}}},
				{name: "ip_opt", v4: true, want: []int{100, 100, 100}, batches: []([]byte2){{s.create(0, 0, 100), func() []byte {
					// An IPv4 timestamp option, struct ip_timestamp (40 bytes):
					// IPOPT_TS, length, pointer 5, IPOPT_TS_TSONLY.
					p := s.packet(100, 0, 100, false)
					p.IPOptions = append([]byte{68, 40, 5, 0}, make([]byte, 36)...)
					return p.Build()
				}(), s.create(200, 0, 100)}, {fin}}},
				{name: "ip_frag4", v4: true, want: []int{100, 100}, batches: []([]byte2){{s.create(0, 0, 100), s.fragment4()}, {fin}}},
				{name: "ip_id_df1_inc", v4: true, want: []int{200}, batches: []([]byte2){s.flushID([3]bool{true, true}, [3]uint16{8, 9}, false), {fin}}},
				{name: "ip_id_df1_fixed", v4: true, want: []int{200}, batches: []([]byte2){s.flushID([3]bool{true, true}, [3]uint16{8, 8}, false), {fin}}},
				{name: "ip_id_df0_inc", v4: true, want: []int{200}, batches: []([]byte2){s.flushID([3]bool{false, false}, [3]uint16{8, 9}, false), {fin}}},
				{name: "ip_id_df0_fixed", v4: true, want: []int{200}, batches: []([]byte2){s.flushID([3]bool{false, false}, [3]uint16{8, 8}, false), {fin}}},
				{name: "ip_id_df1_inc_inc_fixed", v4: true, want: []int{200, 100}, batches: []([]byte2){s.flushID([3]bool{true, true, true}, [3]uint16{8, 9, 9}, true), {fin}}},
				{name: "ip_id_df1_fixed_fixed_inc", v4: true, want: []int{200, 100}, batches: []([]byte2){s.flushID([3]bool{true, true, true}, [3]uint16{8, 8, 9}, true), {fin}}},
				{name: "ip_frag6", v6: true, want: []int{200, 100, 100}, batches: []([]byte2){
					{s.create(0, 0, 100), s.create(100, 0, 100)},
					{func() []byte {
						p := s.packet(200, 0, 100, false)
						p.ExtHdrs = []pkttest.ExtHdr{{Type: pkttest.ExtFragment, Data: make([]byte, 6)}}
						return p.Build()
					}(), s.create(300, 0, 100)},
					{fin}}},
				{name: "ip_v6ext_same", v6: true, want: []int{200}, batches: []([]byte2){{s.dstOpts(0, 0x00), s.dstOpts(100, 0x00)}, {fin}}},
				{name: "ip_v6ext_diff", v6: true, want: []int{100, 100}, batches: []([]byte2){{s.dstOpts(0, 0x00), s.dstOpts(100, 0x11)}, {fin}}},
			}
			// large: "Shouldn't coalesce if exceed IP max pkt size", then
			// "last segment sent individually, doesn't start new segment".
			off := 0
			if !s.v6 {
				off = 20
			}
			rem := (stMaxPaylod + off) % stMSS
			cases = append(cases,
				tc{name: "large_max", want: []int{stMaxPaylod + off, rem}, batches: []([]byte2){append(s.large(rem), fin)}},
				tc{name: "large_max_plus_one", want: []int{stMaxPaylod + off - rem, rem + 1, rem + 1}, batches: []([]byte2){append(s.large(rem+1), fin)}},
			)
			for _, c := range cases {
				if (c.v4 && s.v6) || (c.v6 && !s.v6) {
					continue
				}
				t.Run(c.name, func(t *testing.T) {
					checkRecv(t, New(Options{}), c.want, c.batches...)
				})
			}
		})
	}
}

// dstOpts is send_ipv6_exthdr's packet: an 8-byte destination-options
// header with six bytes of fill before the TCP header.
func (s selftest) dstOpts(seqOff int, fill byte) []byte {
	p := s.packet(seqOff, 0, stPayload, false)
	p.ExtHdrs = []pkttest.ExtHdr{{Type: pkttest.ExtDestOpts, Data: bytes.Repeat([]byte{fill}, 6)}}
	return p.Build()
}

// TestSelftestGROTUNEgress runs the selftest cases whose GRO output a TUN
// cannot carry on 6.18 with Options.TUNEgress: what the kernel oracle's
// reading TUN sees after validate_xmit_skb segments them again.
func TestSelftestGROTUNEgress(t *testing.T) {
	s4, s6 := selftest{false}, selftest{true}
	e := func() *Engine { return New(Options{TUNEgress: true}) }
	t.Run("ipv6/flags_cwr", func(t *testing.T) {
		checkRecv(t, e(), []int{100, 100, 100, 200}, append(s6.sendFlags(false, false, false, false, true), s6.fin()))
	})
	// The selftest's IPv4 packets all carry ID 0: every merge is fixed-ID
	// (SKB_GSO_TCP_FIXEDID), which a TUN without mangleid cannot take.
	t.Run("ipv4/data_same", func(t *testing.T) {
		checkRecv(t, e(), []int{100, 100}, []byte2{s4.create(0, 0, 100), s4.create(100, 0, 100), s4.fin()})
	})
	t.Run("ipv4/ip_id_df1_inc", func(t *testing.T) {
		checkRecv(t, e(), []int{200}, s4.flushID([3]bool{true, true}, [3]uint16{8, 9}, false), []byte2{s4.fin()})
	})
	t.Run("ipv4/ip_id_df1_fixed", func(t *testing.T) {
		checkRecv(t, e(), []int{100, 100}, s4.flushID([3]bool{true, true}, [3]uint16{8, 8}, false), []byte2{s4.fin()})
	})
	t.Run("ipv4/ip_id_df0_fixed", func(t *testing.T) {
		checkRecv(t, e(), []int{100, 100}, s4.flushID([3]bool{false, false}, [3]uint16{8, 8}, false), []byte2{s4.fin()})
	})
	t.Run("ipv4/ip_id_df1_inc_inc_fixed", func(t *testing.T) {
		checkRecv(t, e(), []int{200, 100}, s4.flushID([3]bool{true, true, true}, [3]uint16{8, 9, 9}, true), []byte2{s4.fin()})
	})
	t.Run("ipv4/ip_id_df1_fixed_fixed_inc", func(t *testing.T) {
		checkRecv(t, e(), []int{100, 100, 100}, s4.flushID([3]bool{true, true, true}, [3]uint16{8, 8, 9}, true), []byte2{s4.fin()})
	})
}
