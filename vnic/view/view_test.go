package view

import (
	"bytes"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"vnic/vnic/capture"
	"vnic/vnic/pkttest"
	"vnic/vnic/virtio"
)

func byPoint(pkts []Packet, ifname string, pt capture.Point) []Packet {
	var out []Packet
	for _, p := range pkts {
		if p.Ifname == ifname && p.Point == pt {
			out = append(out, p)
		}
	}
	return out
}

func TestDecodeStory1(t *testing.T) {
	pkts := Decode(story1(t, true))
	tx := byPoint(pkts, "a0", capture.HostTX)
	if len(tx) != 3 {
		t.Fatalf("a0@host-tx: %d packets, want 3", len(tx))
	}
	var got []string
	for _, p := range tx[1:] {
		if !p.Super() || p.VNet.GSOSize != 1448 || p.Csum != CsumPartial {
			t.Errorf("host-tx #%d: super %v vnet %+v csum %v; want a GSO super-packet, gso_size 1448, partial checksum", p.Num, p.Super(), p.VNet, p.Csum)
		}
		got = append(got, fmt.Sprintf("%d:%d/%d", p.RelSeq, p.RelEnd, p.Payload))
	}
	if s := strings.Join(got, " "); s != "1:7241/7240 7241:10001/2760" {
		t.Errorf("host-tx ranges %s, want 1:7241/7240 7241:10001/2760", s)
	}
	got = nil
	for _, p := range byPoint(pkts, "a0", capture.Wire)[1:] {
		if p.Csum != CsumComplete || p.Origin.Kind != capture.FromHostTX || !p.DF || p.IPLen > 1500 {
			t.Errorf("wire %s: csum %v origin %+v DF %v IP len %d", Summary(&p), p.Csum, p.Origin, p.DF, p.IPLen)
		}
		got = append(got, fmt.Sprint(p.Payload))
	}
	if s := strings.Join(got, " "); s != "1448 1448 1448 1448 1448 1448 1312" {
		t.Errorf("wire payloads %s, want 6 × 1448 + 1312", s)
	}
	rx := byPoint(pkts, "b0", capture.HostRX)
	if last := rx[len(rx)-1]; last.Merged != 7 || last.Payload != 10000 || last.Num != 2 || last.Csum != CsumPartial {
		t.Errorf("b0 host-rx: merged %d payload %d num %d csum %v; want 7, 10000, #2, partial", last.Merged, last.Payload, last.Num, last.Csum)
	}
	if syn := tx[0]; FlagString(syn.Flags) != "S" || syn.RelSeq != 0 || syn.RelEnd != 1 {
		t.Errorf("SYN: flags %s range %d:%d", FlagString(syn.Flags), syn.RelSeq, syn.RelEnd)
	}
}

func TestSideBySideStory1(t *testing.T) {
	pkts := Decode(story1(t, true))
	var b bytes.Buffer
	opt := TextOptions{Sender: "a0", Receiver: "b0", Width: 160}
	if err := SideBySide(&b, pkts, opt); err != nil {
		t.Fatal(err)
	}
	if err := WriteSummary(&b, pkts, opt); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"0.100 | P. 1:7241 len 7240 gso 1448 ",
		"| P. 7241:10001 len 2760 gso 1448 ",
		"| > . 1:1449 len 1448 [1/5] ",
		"| > P. 8689:10001 len 1312 [2/2] ",
		"| P. 1:10001 len 10000 gro 7",
		"a0@host-tx               sender's tcpdump       3    7292    2    2    -  -",
		"a0@wire                  the wire               8    1500    0    0    -  -",
		"b0@host-rx               receiver's tcpdump     2   10052    1    1    -  -",
		"did not arrive: nothing",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in\n%s", want, out)
		}
	}
	for i, l := range strings.Split(out, "\n") {
		if n := len([]rune(l)); n > 160 {
			t.Errorf("line %d is %d columns: %q", i, n, l)
		}
	}
	golden(t, "story1.txt", out)
}

// A host-rx packet covers the wire segments inside its sequence range even
// when their comments do not say so (the daemon records inbound wire
// packets without an origin).
func TestGROLinkBySequence(t *testing.T) {
	for _, comments := range []bool{true, false} {
		t.Run(fmt.Sprint("comments=", comments), func(t *testing.T) {
			pkts := Decode(story1(t, comments))
			lo := buildLayout(pkts, &TextOptions{Sender: "a0", Receiver: "b0", Wires: []string{"b0"}})
			rx := lo.lanes[2].pkts
			if got := len(lo.up[rx[len(rx)-1]]); got != 7 {
				t.Errorf("the merged host-rx packet is linked to %d wire packets, want 7", got)
			}
			if got := len(lo.up[rx[0]]); got != 1 {
				t.Errorf("the SYN at host-rx is linked to %d wire packets, want 1", got)
			}
			// a0's host-tx and b0's wire are matched by content.
			if got := len(lo.down[lo.lanes[0].pkts[1]]); got != 5 {
				t.Errorf("host-tx #2 is linked to %d of b0's wire packets, want 5", got)
			}
			if len(lo.groups) != 2 {
				t.Errorf("%d groups, want 2 (the SYN; the data)", len(lo.groups))
			}
		})
	}
}

func TestICMPFragNeeded(t *testing.T) {
	pkts := Decode(story3(t))
	var icmp *Packet
	for i := range pkts {
		if pkts[i].ICMP != nil && pkts[i].Point == capture.HostRX {
			icmp = &pkts[i]
		}
	}
	if icmp == nil {
		t.Fatal("no ICMP at host-rx")
	}
	m := icmp.ICMP
	if !m.Error || m.MTU != 1500 || m.Text != "frag needed, mtu 1500" || icmp.Csum != CsumComplete {
		t.Errorf("ICMP %+v csum %v", m, icmp.Csum)
	}
	if q := m.Quote; q == nil || q.IPLen != 2948 || q.RelSeq != 0 || !q.DF || q.Proto != ProtoTCP {
		t.Errorf("quote %+v, want the 2948-byte DF TCP packet at relative seq 0", q)
	}
	if s := Summary(icmp); s != "!! ICMP frag needed, mtu 1500 (for seq 0 IP len 2948)" {
		t.Errorf("Summary: %q", s)
	}
	var b bytes.Buffer
	if err := SideBySide(&b, pkts, TextOptions{Sender: "a0", Receiver: "a0", Checksums: true, Width: 160}); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"!! ICMP frag needed, mtu 1500",
		"| P. 0:2896 len 2896 gso 1448, csum partial",
		"✗ > . 2896:2996 len 100, DROP",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in\n%s", want, out)
		}
	}
	golden(t, "story3.txt", out)
	var dropped int
	for _, p := range pkts {
		if p.Dropped == "ttl exceeded" && p.Note == "dropped: ttl exceeded" && p.Origin.Kind == capture.FromHostTX {
			dropped++
		}
	}
	if dropped != 1 {
		t.Errorf("%d packets with the drop note parsed, want 1", dropped)
	}
}

func TestChecksumStates(t *testing.T) {
	tcp := pkttest.Packet{Payload: []byte("hello"), Flags: pkttest.ACK}
	partial, _ := tcp.BuildPartial()
	bad := tcp
	bad.BadL4Checksum = true
	udp0 := pkttest.Packet{Proto: pkttest.ProtoUDP, Payload: []byte("x")}
	u := udp0.Build()
	u[26], u[27] = 0, 0
	v6 := pkttest.Packet{V6: true, Proto: pkttest.ProtoUDP, Payload: []byte("hello6")}
	for _, tc := range []struct {
		name string
		pkt  []byte
		want Csum
	}{
		{"complete", tcp.Build(), CsumComplete},
		{"partial", partial, CsumPartial},
		{"bad", bad.Build(), CsumBad},
		{"udp without checksum", u, CsumNone},
		{"udp6 complete", v6.Build(), CsumComplete},
		{"fragment", (&pkttest.Packet{MF: true, Payload: []byte("abc")}).Build(), CsumUnknown},
		{"cut by snaplen", tcp.Build()[:30], CsumUnknown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := Decode([]capture.Record{{Point: capture.Wire, Data: tc.pkt, Len: len(tc.pkt)}})[0]
			if p.Csum != tc.want {
				t.Errorf("csum %v, want %v (valid %v %s)", p.Csum, tc.want, p.Valid, p.Err)
			}
		})
	}
}

func TestICMPv6PacketTooBig(t *testing.T) {
	orig := (&pkttest.Packet{V6: true, Payload: make([]byte, 1400), Flags: pkttest.ACK}).Build()
	src, dst := netip.MustParseAddr("fd00::fe"), pkttest.DefaultSrc6
	body := append([]byte{2, 0, 0, 0, 0, 0, 0x05, 0x00}, orig[:1232]...)
	b := make([]byte, 40+len(body))
	b[0] = 0x60
	b[4], b[5] = byte(len(body)>>8), byte(len(body))
	b[6], b[7] = ProtoICMPv6, 64
	s, d := src.As16(), dst.As16()
	copy(b[8:], s[:])
	copy(b[24:], d[:])
	copy(b[40:], body)
	p := Decode([]capture.Record{{Point: capture.Wire, Data: b, Len: len(b)}})[0]
	if p.ICMP == nil || p.ICMP.MTU != 1280 || p.ICMP.Text != "packet too big, mtu 1280" || p.ICMP.Quote == nil || p.ICMP.Quote.IPLen != 1460 {
		t.Errorf("ICMPv6 %+v valid %v %s", p.ICMP, p.Valid, p.Err)
	}
}

func TestFlagString(t *testing.T) {
	for f, want := range map[uint8]string{
		0: "none", FlagSYN: "S", FlagSYN | FlagACK: "S.", FlagPSH | FlagACK: "P.", FlagFIN | FlagPSH | FlagACK: "FP.",
		FlagRST: "R", FlagACK: ".", FlagURG | FlagACK: ".U", FlagECE | FlagCWR | FlagSYN: "SEW",
	} {
		if got := FlagString(f); got != want {
			t.Errorf("FlagString(%#x) = %q, want %q", f, got, want)
		}
	}
}

func TestParseComment(t *testing.T) {
	for _, tc := range []struct {
		c    string
		want string
	}{
		{"host-tx #17: gso=tcpv4|ecn gso_size=1448 hdr_len=66 csum_start=20 csum_offset=16 needs_csum", "num 17 vnet gso=tcpv4|ecn gso_size=1448 hdr_len=66 csum_start=20 csum_offset=16 needs_csum merged 0 origin {0 0 0 0 } note \"\" drop \"\""},
		{"host-rx #9: merged 45 wire packets; gso=udp_l4 gso_size=1400 hdr_len=28 csum_start=20 csum_offset=6 data_valid", "num 9 vnet gso=udp_l4 gso_size=1400 hdr_len=28 csum_start=20 csum_offset=6 data_valid merged 45 origin {0 0 0 0 } note \"\" drop \"\""},
		{"out: segment 2/7 of host-tx #17", "num 0 vnet <nil> merged 0 origin {1 17 1 7 } note \"\" drop \"\""},
		{"in: merged into host-rx #9 (3/45)", "num 0 vnet <nil> merged 0 origin {2 9 2 45 } note \"\" drop \"\""},
		{"out: segment 1/1 of host-tx #3; dropped: rx_exceeds_hw_mtu", "num 0 vnet <nil> merged 0 origin {1 3 0 1 } note \"dropped: rx_exceeds_hw_mtu\" drop \"rx_exceeds_hw_mtu\""},
		{"in: dropped: ttl exceeded", "num 0 vnet <nil> merged 0 origin {0 0 0 0 } note \"dropped: ttl exceeded\" drop \"ttl exceeded\""},
		{"something else\nhost-tx #x: y", "num 0 vnet <nil> merged 0 origin {0 0 0 0 } note \"something else; host-tx #x: y\" drop \"\""},
	} {
		var p Packet
		parseComment(&p, tc.c)
		vnet := "<nil>"
		if p.VNet != nil {
			vnet = p.VNet.String()
		}
		got := fmt.Sprintf("num %d vnet %s merged %d origin %v note %q drop %q", p.Num, vnet, p.Merged, p.Origin, p.Note, p.Dropped)
		if got != tc.want {
			t.Errorf("%q:\n got %s\nwant %s", tc.c, got, tc.want)
		}
	}
	h := virtio.Hdr{Flags: virtio.FlagNeedsCsum, GSOType: virtio.GSOTCPv6, GSOSize: 1428, HdrLen: 72, CsumStart: 40, CsumOffset: 16}
	var p Packet
	parseComment(&p, "host-tx #1: "+h.String())
	if p.VNet == nil || *p.VNet != h {
		t.Errorf("round trip of %v: %v", h, p.VNet)
	}
}

func TestDecodeUndecodable(t *testing.T) {
	for _, b := range [][]byte{nil, {0x45}, {0x60, 0, 0}, {0x20, 1, 2, 3}, append([]byte{0x4f}, make([]byte, 30)...)} {
		p := Decode([]capture.Record{{Data: b, Len: len(b)}})[0]
		if p.Valid || p.Err == "" {
			t.Errorf("%x: valid %v err %q", b, p.Valid, p.Err)
		}
		if s := Summary(&p); !strings.HasPrefix(s, "?? undecodable") {
			t.Errorf("%x: summary %q", b, s)
		}
	}
}

func FuzzDecode(f *testing.F) {
	for _, r := range story1(f, true) {
		f.Add(r.Data, r.Comment)
	}
	for _, r := range story3(f) {
		f.Add(r.Data, r.Comment)
	}
	f.Fuzz(func(t *testing.T, data []byte, comment string) {
		recs := []capture.Record{
			{Point: capture.HostTX, Ifname: "a0", Data: data, Len: len(data), Comment: comment, Dir: capture.Out},
			{Point: capture.Wire, Ifname: "a0", Data: data, Len: len(data), Comment: comment, Dir: capture.In},
			{Point: capture.HostRX, Ifname: "a0", Data: data, Len: len(data) + 10, Comment: comment, Dir: capture.In},
		}
		pkts := Decode(recs)
		for _, p := range pkts {
			if p.Valid == (p.Err != "") {
				t.Fatalf("valid %v err %q", p.Valid, p.Err)
			}
			if p.Valid && (p.HdrLen > len(data) || p.Payload < 0) {
				t.Fatalf("header %d of %d bytes, payload %d", p.HdrLen, len(data), p.Payload)
			}
			_ = Summary(&p)
		}
		var b bytes.Buffer
		if err := SideBySide(&b, pkts, TextOptions{Sender: "a0", Receiver: "a0", Checksums: true}); err != nil {
			t.Fatal(err)
		}
		if err := WriteHTML(&b, Report{Steps: []Step{{Packets: pkts, View: TextOptions{Sender: "a0", Receiver: "a0"}}}}); err != nil {
			t.Fatal(err)
		}
	})
}

// TestPathHops: the interfaces between sender and receiver are found in
// the capture, ingress (host-rx of the sender's packets) before egress
// (host-tx), whatever the host is: a gVisor router's, or a router host's
// vnic NICs.
func TestPathHops(t *testing.T) {
	mk := func(ifname string, pt capture.Point, us int, src string) capture.Record {
		p := pkttest.Packet{Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr("198.18.2.2"), Payload: []byte("x")}
		b := p.Build()
		return capture.Record{Ifname: ifname, Point: pt, TS: at(us), Data: b, Len: len(b)}
	}
	pkts := Decode([]capture.Record{
		mk("web.eth0", capture.HostTX, 0, "198.18.1.2"),
		mk("web.eth0", capture.Wire, 0, "198.18.1.2"),
		mk("rtr.eth1", capture.HostRX, 5, "198.18.1.2"),
		mk("rtr.eth1", capture.HostTX, 6, "198.18.1.1"), // the router's own ICMP back
		mk("rtr.eth0", capture.HostTX, 7, "198.18.1.2"),
		mk("client.eth0", capture.HostRX, 9, "198.18.1.2"),
	})
	got := PathHops(pkts, "web.eth0", "client.eth0")
	want := []Hop{{"rtr.eth1", true}, {"rtr.eth0", false}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("PathHops = %v, want %v", got, want)
	}
}

// TestLinkSplitAfterHop: a router host's egress NIC sends a super-packet
// that its TSO cuts and the receiver's GRO merges again along other
// boundaries (the wire between them not drawn): each received packet lies
// inside the one sent, so it is linked to it and nothing is "lost" —
// found in gro-router's Linux router step, which drew 10 false drops.
func TestLinkSplitAfterHop(t *testing.T) {
	data := pkttest.Payload(5000, 3)
	mk := func(ifname string, pt capture.Point, us int, off, n int) capture.Record {
		p := pkttest.Packet{Src: netip.MustParseAddr("198.18.1.2"), Dst: netip.MustParseAddr("198.18.2.2"), SrcPort: 80, DstPort: 40000,
			Seq: isn + 1 + uint32(off), Ack: 1, Flags: pkttest.ACK, DF: true, Payload: data[off : off+n]}
		b := p.Build()
		return capture.Record{Ifname: ifname, Point: pt, TS: at(us), Data: b, Len: len(b)}
	}
	pkts := Decode([]capture.Record{
		mk("rtr.eth1", capture.HostTX, 100, 0, 5000),
		// Stamped a little before the router's: each point takes its
		// clock at its own moment.
		mk("c0", capture.HostRX, 90, 0, 2000),
		mk("c0", capture.HostRX, 90, 2000, 3000),
	})
	lo := buildLayout(pkts, &TextOptions{Hops: []Hop{{"rtr.eth1", false}}, Receiver: "c0"})
	if len(lo.losses) != 0 {
		for _, l := range lo.losses {
			t.Errorf("lost: %s", l.Text())
		}
	}
	for _, ln := range lo.lanes {
		if ln.title == "rtr.eth1" && len(ln.pkts) == 1 {
			if got := len(lo.down[ln.pkts[0]]); got != 2 {
				t.Errorf("the router's super-packet is linked to %d received packets, want 2", got)
			}
			return
		}
	}
	t.Errorf("no lane rtr.eth1 with the super-packet")
}
