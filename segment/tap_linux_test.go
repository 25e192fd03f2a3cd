package segment_test

// Differential tests through TAP devices (kerneltest.NewGSOTAP): the same
// frames as through TUN, each behind an Ethernet header, csum_start and
// hdr_len counted from it, against segment with Options.L2Len 14. The
// oracle routes, so segment is fed kerneltest.AfterRouting(frame): the
// router's MAC header and the forwarded IP packet; the outputs must then
// be identical, MAC headers included.

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"vnic/segment"
	"vnic/vnic/kerneltest"
	"vnic/vnic/pkttest"
	"vnic/vnic/virtio"
)

var hostMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x42}

// onTAP returns the frame a TAP device carries for h, pkt: pkt behind an
// Ethernet header to the oracle's `in`, the header's offsets moved by it.
func onTAP(h virtio.Hdr, pkt []byte) (virtio.Hdr, []byte) {
	if h.Flags&virtio.FlagNeedsCsum != 0 {
		h.CsumStart += 14
	}
	if h.HdrLen != 0 {
		h.HdrLen += 14
	}
	return h, kerneltest.Ether(kerneltest.TAPInMAC, hostMAC, pkt)
}

// tapVerdict puts one TAP frame through the kernel and through a Plan
// with L2Len 14.
func tapVerdict(o *kerneltest.GSO, h virtio.Hdr, frame []byte) (int, string) {
	kf, kerr := o.SegmentFrames(h, frame)
	plan, err := segment.NewPlan(h, kerneltest.AfterRouting(frame), segment.Options{L2Len: 14})
	var ours [][]byte
	if err == nil {
		out := make([][]byte, plan.Segments())
		sizes := make([]int, len(out))
		for i := range out {
			out[i] = make([]byte, plan.MaxSize())
		}
		if _, cerr := plan.Cut(out, sizes, 0); cerr != nil {
			return mismatch, "Cut: " + cerr.Error()
		}
		for i := range out {
			ours = append(ours, out[i][:sizes[i]])
		}
	}
	kernelRefused := kerr != nil || len(kf) == 0
	if err == nil && plan.MaxSize()-14 > kerneltest.TAPMTU {
		return documented, "a packet above the TAP oracle's MTU leaves unsegmented: forwarding drops or fragments it"
	}
	switch {
	case kernelRefused && err != nil:
		return sameRefused, ""
	case kernelRefused:
		return mismatch, fmt.Sprintf("kernel refused (%v); segment made %d frames", kerr, len(ours))
	case err != nil:
		if h.GSOType&^virtio.GSOECN == virtio.GSOUDP {
			return documented, "UFO above gso_size: the kernel IP-fragments it"
		}
		return mismatch, fmt.Sprintf("kernel made %d frames; segment refused: %v", len(kf), err)
	}
	if len(kf) != len(ours) {
		return mismatch, fmt.Sprintf("kernel made %d frames, segment %d", len(kf), len(ours))
	}
	largest := 0
	for i, k := range kf {
		largest = max(largest, len(k.Pkt))
		if !bytes.Equal(k.Pkt[:14], ours[i][:14]) {
			return mismatch, fmt.Sprintf("frame %d: MAC header % x, ours % x", i, k.Pkt[:14], ours[i][:14])
		}
		if !bytes.Equal(k.Pkt, ours[i]) {
			return mismatch, fmt.Sprintf("frame %d of %d: %s", i, len(kf), kerneltest.DiffPackets(k.Pkt[14:], ours[i][14:]))
		}
	}
	if plan.Segments() != len(kf) || plan.MaxSize() != largest {
		return mismatch, fmt.Sprintf("Plan said %d frames of up to %d bytes; %d of up to %d", plan.Segments(), plan.MaxSize(), len(kf), largest)
	}
	return samePackets, ""
}

// TestKernelTAPSegmentsLikeTUN: TSO, USO and checksum completion of
// frames behind an Ethernet header, with IPv4 options and IPv6 extension
// headers, come out of the kernel as segment cuts them, each segment
// behind a copy of the MAC header; frames whose offsets point into the MAC
// header, or whose EtherType is not their IP version's, are refused by
// both.
func TestKernelTAPSegmentsLikeTUN(t *testing.T) {
	o := kerneltest.NewGSOTAP(t)
	cases := []kcase{
		{p: pkttest.Packet{ID: 0x1234, Flags: pkttest.ACK | pkttest.PSH, Payload: pay(10000, 1)}, gso: 1448},
		{p: pkttest.Packet{V6: true, Flags: pkttest.ACK | pkttest.CWR | pkttest.FIN, TCPOptions: tsOpt, Payload: pay(9000, 2)}, gso: 1428, ecn: true},
		{p: pkttest.Packet{Proto: pkttest.ProtoUDP, ID: 0xfffe, Payload: pay(6000, 3)}, gso: 1472},
		{p: pkttest.Packet{V6: true, Proto: pkttest.ProtoUDP, Payload: pay(4000, 4)}, gso: 1000},
		{p: pkttest.Packet{IPOptions: append(routerAlert, nops(4)...), Flags: pkttest.ACK, Payload: pay(3500, 5)}, gso: 1000},
		{p: pkttest.Packet{V6: true, ExtHdrs: hbhDst, Flags: pkttest.ACK, Payload: pay(3500, 6)}, gso: 1000},
		{p: pkttest.Packet{Flags: pkttest.ACK, Payload: pay(800, 7)}, gso: 1448, comment: "not-really-gso"},
		{p: pkttest.Packet{Proto: pkttest.ProtoUDP, Payload: pay(700, 8)}, none: true},
		{p: pkttest.Packet{V6: true, Flags: pkttest.ACK, Payload: pay(900, 9)}, none: true},
		{p: pkttest.Packet{Flags: pkttest.ACK, Payload: pay(900, 10)}, none: true, noCsum: true},
	}
	for _, c := range cases {
		t.Run(c.name(), func(t *testing.T) {
			h, pkt := c.build()
			th, frame := onTAP(h, pkt)
			if v, why := tapVerdict(o, th, frame); v != samePackets {
				t.Errorf("%s", why)
			}
		})
	}
	t.Run("csum_start inside the MAC header", func(t *testing.T) {
		h, pkt := cases[0].build()
		th, frame := onTAP(h, pkt)
		th.CsumStart = 10
		if v, why := tapVerdict(o, th, frame); v != sameRefused {
			t.Errorf("verdict %d: %s", v, why)
		}
	})
	t.Run("IPv4 behind the IPv6 EtherType", func(t *testing.T) {
		h, pkt := cases[0].build()
		th, frame := onTAP(h, pkt)
		frame[12], frame[13] = 0x86, 0xdd
		if v, why := tapVerdict(o, th, frame); v != sameRefused {
			t.Errorf("verdict %d: %s", v, why)
		}
	})
}

// TestKernelTAPGSORandomized is TestKernelGSORandomized's frames through
// TAP devices.
func TestKernelTAPGSORandomized(t *testing.T) {
	n := randomCount(t, 300)
	seed := randomSeed(t, 0x7a9_5eed)
	o := kerneltest.NewGSOTAP(t)
	r := rand.New(rand.NewPCG(seed, 5))
	var counts [4]int
	start := time.Now()
	bad := 0
	for i := range n {
		name, h, pkt := randomFrame(r)
		th, frame := onTAP(h, pkt)
		v, why := tapVerdict(o, th, frame)
		counts[v]++
		if v == mismatch {
			if bad++; bad <= 20 {
				t.Errorf("case %d %s (header %v, %d bytes): %s", i, name, th, len(frame), why)
			}
		}
	}
	t.Logf("TAP GSO randomized, seed %#x: %d frames in %v: %d agree (%d both refused, %d same frames), %d documented differences (UFO fragmentation, above the TAP MTU), %d mismatches",
		seed, n, time.Since(start).Round(time.Millisecond), counts[sameRefused]+counts[samePackets], counts[sameRefused], counts[samePackets], counts[documented], counts[mismatch])
}

// TestKernelTAPNotReallyGSOCountsTheMACHeader: __virtio_net_hdr_to_skb
// decides whether a GSO frame without NEEDS_CSUM is "really GSO" by what
// follows nh_min_len + thlen bytes from the start of the frame — on a TAP,
// from the Ethernet header. So a TCP frame whose payload is exactly
// gso_size is GSO there (14 bytes more than through a TUN), and
// tcp_gso_segment then refuses it; with NEEDS_CSUM (measured from
// csum_start) it is one packet, as through a TUN.
func TestKernelTAPNotReallyGSOCountsTheMACHeader(t *testing.T) {
	o := kerneltest.NewGSOTAP(t)
	for _, v6 := range []bool{false, true} {
		for _, n := range []int{986, 1000, 1001} {
			for _, csum := range []bool{false, true} {
				p := pkttest.Packet{V6: v6, Flags: pkttest.ACK, Payload: pay(n, 1)}
				b, h := p.BuildGSO(1000, false)
				if !csum {
					h.Flags, h.CsumStart, h.CsumOffset = 0, 0, 0
					b = p.Build()
				}
				th, frame := onTAP(h, b)
				want := samePackets
				if !csum && n == 1000 {
					want = sameRefused
				}
				if v, why := tapVerdict(o, th, frame); v != want {
					t.Errorf("v6 %v, payload %d, needs_csum %v: verdict %d, want %d: %s", v6, n, csum, v, want, why)
				}
			}
		}
	}
}
