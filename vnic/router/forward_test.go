package router_test

import (
	"bytes"
	"encoding/binary"
	"io"
	"net/netip"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"vnic/vnic/pkttest"
	"vnic/vnic/router"
)

// TestForwarding: TCP echo through the router, IPv4 and IPv6.
func TestForwarding(t *testing.T) {
	tp := newTopo(t, topoOpts{})
	for _, a := range []netip.Addr{server4, server6} {
		c := tp.dial(t, a, 7)
		msg := pkttest.Payload(200_000, 1)
		go c.Write(msg)
		got := make([]byte, len(msg))
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadFull(c, got); err != nil {
			t.Fatalf("%v: echo: %v", a, err)
		}
		if !bytes.Equal(got, msg) {
			t.Fatalf("%v: echo differs", a)
		}
	}
	st := tp.r.Stats()
	if st.Ifaces[0].Link.OutForwarded == 0 || st.Ifaces[1].Link.OutForwarded == 0 {
		t.Errorf("nothing counted as forwarded: %+v", st.Ifaces)
	}
	if st.ICMP != (router.ICMPStats{}) {
		t.Errorf("router sent ICMP: %+v", st.ICMP)
	}
}

// newCaptureRouter is a router whose two interfaces are captured; tests
// inject hand-built packets.
func newCaptureRouter(t *testing.T, mtu0, mtu1 uint32, fw *router.Firewall, maxReceive0 uint32) (*router.Router, *capture, *capture) {
	t.Helper()
	c0, c1 := &capture{}, &capture{}
	r, err := router.New(router.Options{
		Ifaces: []router.Iface{
			{Addrs: eth0Addrs, MTU: mtu0, MaxReceive: maxReceive0, Output: c0.output},
			{Addrs: eth1Addrs, MTU: mtu1, Output: c1.output},
		},
		Firewall: fw,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r, c0, c1
}

func udpPacket(src, dst netip.Addr, ttl uint8, size int, df bool) []byte {
	hl := 20
	if src.Is6() {
		hl = 40
	}
	p := pkttest.Packet{V6: src.Is6(), Proto: pkttest.ProtoUDP, Src: src, Dst: dst, TTL: ttl, DF: df, ID: 0x1234,
		SrcPort: 5000, DstPort: 9, Payload: pkttest.Payload(size-hl-8, 3)}
	return p.Build()
}

// icmpOf returns the ICMP message in b (IPv4 or IPv6, no extension
// headers) after checking every checksum.
func icmpOf(t *testing.T, b []byte) []byte {
	t.Helper()
	if b[0]>>4 == 4 {
		h := header.IPv4(b)
		if h.Protocol() != 1 {
			t.Fatalf("not ICMP: protocol %d", h.Protocol())
		}
		if checksum.Checksum(b[:h.HeaderLength()], 0) != 0xffff {
			t.Error("bad IPv4 header checksum")
		}
		ic := b[h.HeaderLength():h.TotalLength()]
		if checksum.Checksum(ic, 0) != 0xffff {
			t.Error("bad ICMP checksum")
		}
		return ic
	}
	h := header.IPv6(b)
	if h.NextHeader() != 58 {
		t.Fatalf("not ICMPv6: next header %d", h.NextHeader())
	}
	ic := b[40 : 40+h.PayloadLength()]
	if header.ICMPv6Checksum(header.ICMPv6ChecksumParams{Header: ic, Src: h.SourceAddress(), Dst: h.DestinationAddress()}) != header.ICMPv6(ic).Checksum() {
		t.Error("bad ICMPv6 checksum")
	}
	return ic
}

func srcOf(b []byte) netip.Addr {
	if b[0]>>4 == 4 {
		return netip.AddrFrom4(header.IPv4(b).SourceAddress().As4())
	}
	return netip.AddrFrom16(header.IPv6(b).SourceAddress().As16())
}

// TestTTLExceeded: a packet that arrives with TTL (hop limit) 1 is
// answered with time-exceeded from the ingress address and not forwarded;
// one with 2 leaves with 1 (RFC 1812 §5.3.1, RFC 4443 §3.3).
func TestTTLExceeded(t *testing.T) {
	r, c0, c1 := newCaptureRouter(t, 1500, 1500, nil, 0)
	for i, tc := range []struct {
		src, dst, from netip.Addr
		typ            uint8
	}{
		{client4, server4, eth0v4, 11},
		{client6, server6, eth0v6, 3},
	} {
		r.Inject(0, [][]byte{udpPacket(tc.src, tc.dst, 1, 200, true)})
		got := c0.wait(t, i+1)[i]
		if srcOf(got) != tc.from {
			t.Errorf("time exceeded from %v, want %v", srcOf(got), tc.from)
		}
		if ic := icmpOf(t, got); ic[0] != tc.typ || ic[1] != 0 {
			t.Errorf("ICMP type %d code %d, want %d/0", ic[0], ic[1], tc.typ)
		}
		r.Inject(0, [][]byte{udpPacket(tc.src, tc.dst, 2, 200, true)})
		fwd := c1.wait(t, i+1)[i]
		ttl := fwd[8]
		if tc.src.Is6() {
			ttl = fwd[7]
		}
		if ttl != 1 {
			t.Errorf("forwarded with TTL %d, want 1", ttl)
		}
		if err := pkttest.Verify(fwd); err != nil {
			t.Errorf("forwarded packet: %v", err)
		}
	}
	time.Sleep(20 * time.Millisecond)
	if n := len(c1.all()); n != 2 {
		t.Errorf("%d packets forwarded, want 2 (the TTL 1 ones must not be)", n)
	}
	st := r.Stats()
	if st.ICMP.TimeExceeded != 2 || st.Forwarding.ExhaustedTTL != 2 || st.Ifaces[0].TTLFixed != 1 {
		t.Errorf("ICMP %+v, forwarding %+v, TTLFixed %d", st.ICMP, st.Forwarding, st.Ifaces[0].TTLFixed)
	}
}

// TestDFTooBig: a DF packet (any IPv6 packet) bigger than the egress MTU is
// dropped and answered with ICMP fragmentation-needed / packet-too-big
// naming the egress MTU (RFC 1191 §4, RFC 4443 §3.2), quoting the packet.
func TestDFTooBig(t *testing.T) {
	r, c0, c1 := newCaptureRouter(t, 1500, 1280, nil, 0)
	for i, tc := range []struct {
		src, dst netip.Addr
		typ      uint8
		code     uint8
	}{
		{client4, server4, 3, 4},
		{client6, server6, 2, 0},
	} {
		pkt := udpPacket(tc.src, tc.dst, 64, 1400, true)
		r.Inject(0, [][]byte{pkt})
		got := c0.wait(t, i+1)[i]
		ic := icmpOf(t, got)
		if ic[0] != tc.typ || ic[1] != tc.code {
			t.Fatalf("ICMP type %d code %d, want %d/%d", ic[0], ic[1], tc.typ, tc.code)
		}
		var mtu uint32
		if tc.src.Is6() {
			mtu = binary.BigEndian.Uint32(ic[4:])
		} else {
			mtu = uint32(binary.BigEndian.Uint16(ic[6:]))
		}
		if mtu != 1280 {
			t.Errorf("%v: MTU in the ICMP %d, want 1280", tc.src, mtu)
		}
		// The quote starts with the original header (TTL as it arrived).
		if q := ic[8:]; !bytes.Equal(q[12:20], pkt[12:20]) && !tc.src.Is6() || tc.src.Is6() && !bytes.Equal(q[8:40], pkt[8:40]) {
			t.Errorf("quoted header differs from the packet's")
		}
	}
	if n := len(c1.all()); n != 0 {
		t.Errorf("%d packets forwarded, want 0", n)
	}
	st := r.Stats()
	if st.ICMP.FragNeeded != 1 || st.ICMP.PacketTooBig != 1 || st.Forwarding.PacketTooBig != 2 || st.Ifaces[0].PTBFixed != 1 {
		t.Errorf("ICMP %+v, forwarding %+v, PTBFixed %d", st.ICMP, st.Forwarding, st.Ifaces[0].PTBFixed)
	}
}

// TestPMTUDiscoveryThroughRouter: the router's eth1 has MTU 1280 while
// both hosts have 1500 (so the MSS they agree on does not fit the path):
// the client's TCP learns the path MTU from the router's ICMP and a
// 1 MB upload completes, IPv4 and IPv6.
func TestPMTUDiscoveryThroughRouter(t *testing.T) {
	tp := newTopo(t, topoOpts{mtu1: 1280, serverMTU: 1500})
	const n = 1 << 20
	total := uint64(0)
	for _, a := range []netip.Addr{server4, server6} {
		c := tp.dial(t, a, 9)
		if _, err := c.Write(pkttest.Payload(n, 2)); err != nil {
			t.Fatal(err)
		}
		total += n
		waitFor(t, "upload discarded", 20*time.Second, func() bool { return tp.server.Stats().Discarded >= total })
	}
	st := tp.r.Stats()
	if st.ICMP.FragNeeded == 0 || st.ICMP.PacketTooBig == 0 {
		t.Errorf("no PMTU signal sent: %+v", st.ICMP)
	}
	t.Logf("router ICMP %+v", st.ICMP)
}

// TestFragmentNonDF: an IPv4 packet without DF bigger than the egress MTU
// is fragmented by the router; the server reassembles it (its echo reply
// proves it), and the reply's fragments come back.
func TestFragmentNonDF(t *testing.T) {
	tp := newTopo(t, topoOpts{mtu0: 9000, captureEth0: true})
	payload := pkttest.Payload(4000, 5)
	req := make([]byte, 20+8+len(payload))
	ip := header.IPv4(req)
	ip.Encode(&header.IPv4Fields{TotalLength: uint16(len(req)), ID: 77, TTL: 64, Protocol: 1,
		SrcAddr: tcpipAddr(client4), DstAddr: tcpipAddr(server4)})
	ip.SetChecksum(^ip.CalculateChecksum())
	ic := header.ICMPv4(req[20:])
	ic.SetType(header.ICMPv4Echo)
	ic.SetIdent(1)
	ic.SetSequence(1)
	copy(ic[8:], payload)
	ic.SetChecksum(^checksum.Checksum(ic, 0))
	tp.r.Inject(0, [][]byte{req})

	waitFor(t, "echo reply", 5*time.Second, func() bool { return tp.server.Stats().Stack.ICMPEchoReplies == 1 })
	if f := tp.r.Stats().Ifaces[1].Link.OutFragments; f != 3 {
		t.Errorf("router made %d fragments of a 4028-byte packet at MTU 1500, want 3", f)
	}
	frags := tp.eth0.wait(t, 3)
	var re []byte
	for _, f := range frags {
		h := header.IPv4(f)
		if int(h.FragmentOffset()) != len(re) {
			t.Fatalf("fragment at offset %d, want %d", h.FragmentOffset(), len(re))
		}
		re = append(re, f[h.HeaderLength():h.TotalLength()]...)
	}
	if len(re) != 8+len(payload) || re[0] != 0 || !bytes.Equal(re[8:], payload) {
		t.Errorf("reassembled reply: %d bytes, type %d", len(re), re[0])
	}
	if st := tp.r.Stats(); st.Ifaces[0].Link.OutFragments != 0 {
		t.Errorf("router refragmented the reply's fragments: %+v", st.Ifaces[0].Link)
	}
}

// TestOversizeFromWire: a packet longer than the interface accepts is
// dropped by the NIC and counted.
func TestOversizeFromWire(t *testing.T) {
	r, _, c1 := newCaptureRouter(t, 1500, 9000, nil, 0)
	r.Inject(0, [][]byte{udpPacket(client4, server4, 64, 2000, true)})
	if st := r.Stats(); st.Ifaces[0].Drops.Oversize != 1 || len(c1.all()) != 0 {
		t.Errorf("%+v", st.Ifaces[0].Drops)
	}
}

// TestRouterOwnTraffic: the router answers ping itself, and its own TCP
// RST leaves with a complete checksum although its links claim TX checksum
// offload (see glink's package doc).
func TestRouterOwnTraffic(t *testing.T) {
	r, c0, _ := newCaptureRouter(t, 1500, 1500, nil, 0)
	req := make([]byte, 20+8+32)
	ip := header.IPv4(req)
	ip.Encode(&header.IPv4Fields{TotalLength: uint16(len(req)), TTL: 64, Protocol: 1, SrcAddr: tcpipAddr(client4), DstAddr: tcpipAddr(eth0v4)})
	ip.SetChecksum(^ip.CalculateChecksum())
	ic := header.ICMPv4(req[20:])
	ic.SetType(header.ICMPv4Echo)
	ic.SetChecksum(^checksum.Checksum(ic, 0))
	syn := pkttest.Packet{Src: client4, Dst: eth0v4, Flags: pkttest.SYN, DstPort: 22}
	r.Inject(0, [][]byte{req, syn.Build()})
	pkts := c0.wait(t, 2)
	if rep := icmpOf(t, pkts[0]); rep[0] != 0 {
		t.Errorf("ICMP type %d, want echo reply", rep[0])
	}
	if err := pkttest.Verify(pkts[1]); err != nil || header.TCP(pkts[1][20:]).Flags()&header.TCPFlagRst == 0 {
		t.Errorf("RST: %v, flags %v", err, header.TCP(pkts[1][20:]).Flags())
	}
	if st := r.Stats(); st.ICMP.EchoReply != 1 {
		t.Errorf("%+v", st.ICMP)
	}
}
