package segment_test

// The randomized differential run for segmentation: thousands of random
// frames in shapes the table tests do not have — any gso_size (the edge
// values often), flag mixes, IPv4 options and IPv6 extension headers,
// TCP options, IDs, lengths, and now and then a bad field — through the
// kernel (kerneltest.GSO) and through a segment.Plan. Both must refuse,
// or both must make the same packets; the only difference allowed is the
// one the package documents (legacy UFO above gso_size, which the kernel
// IP-fragments).
//
// VNIC_RANDOM_CASES sets the number of frames (default 600, a few seconds);
// VNIC_RANDOM_SEED the seed (default fixed, so CI runs the same frames;
// the seed is logged).

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"vnic/segment"
	"vnic/vnic/kerneltest"
	"vnic/vnic/pkttest"
	"vnic/vnic/virtio"
)

// randomCount returns VNIC_RANDOM_CASES, or def.
func randomCount(t *testing.T, def int) int {
	if s := os.Getenv("VNIC_RANDOM_CASES"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			t.Fatalf("VNIC_RANDOM_CASES=%q: want a count", s)
		}
		return n
	}
	return def
}

// randomSeed returns VNIC_RANDOM_SEED, or def.
func randomSeed(t *testing.T, def uint64) uint64 {
	if s := os.Getenv("VNIC_RANDOM_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 0, 64)
		if err != nil {
			t.Fatalf("VNIC_RANDOM_SEED=%q: want a number", s)
		}
		return n
	}
	return def
}

// gsoEdges are gso_size values worth hitting often.
var gsoEdges = []int{1, 2, 7, 8, 9, 63, 64, 500, 536, 1000, 1220, 1228, 1428, 1440, 1447, 1448, 1449, 1452,
	1460, 1472, 1480, 1500, 4096, 8948, 9000, 16384, 32767, 32768, 65000, 65487, 65534, 0xfffe, 0xffff}

// randomFrame makes one random frame and says what it is.
func randomFrame(r *rand.Rand) (string, virtio.Hdr, []byte) {
	var tags []string
	tag := func(f string, a ...any) { tags = append(tags, fmt.Sprintf(f, a...)) }
	var p pkttest.Packet
	p.V6 = r.IntN(2) == 0
	kind := []string{"tso", "tso", "tso", "tso", "tso", "tso", "tso", "tso", "uso", "uso", "uso", "uso", "ufo", "none-csum", "none-csum", "none", "none", "none"}[r.IntN(18)]
	udp := kind == "uso" || kind == "ufo" || kind != "tso" && r.IntN(3) == 0
	if udp {
		p.Proto = pkttest.ProtoUDP
	}
	tag("%s-%s", map[bool]string{false: "v4", true: "v6"}[p.V6], kind)
	if udp {
		tag("udp")
	}

	// IP.
	p.TTL = byte(2 + r.IntN(254))
	if r.IntN(3) == 0 {
		p.TOS = byte(r.Uint32())
	}
	hdr := 20
	if p.V6 {
		hdr = 40
		p.FlowLabel = r.Uint32() & 0xfffff
		if r.IntN(3) == 0 {
			bad, frag := r.IntN(15) == 0, r.IntN(20) == 0
			p.ExtHdrs = pkttest.RandomExtHdrs(r, bad, frag)
			for _, e := range p.ExtHdrs {
				hdr += 2 + len(e.Data)
			}
			tag("ext%d", len(p.ExtHdrs))
			if bad {
				tag("badtlv")
			}
			if frag {
				tag("frag")
			}
		}
	} else {
		p.ID = uint16(r.Uint32())
		if r.IntN(4) == 0 {
			p.ID = 0xffff - uint16(r.IntN(4))
		}
		p.DF = r.IntN(2) == 0
		if r.IntN(30) == 0 {
			p.MF, p.FragOff = r.IntN(2) == 0, uint16(r.IntN(4))
			tag("frag")
		}
		if r.IntN(4) == 0 {
			bad := r.IntN(10) == 0
			p.IPOptions = pkttest.RandomIPv4Options(r, bad)
			hdr += (len(p.IPOptions) + 3) &^ 3
			tag("ipopt%d", (len(p.IPOptions)+3)&^3)
			if bad {
				tag("badopt")
			}
		}
	}

	// L4.
	if udp {
		hdr += 8
		p.SrcPort, p.DstPort = uint16(1+r.IntN(65535)), uint16(1+r.IntN(65535))
	} else {
		hdr += 20
		p.Seq, p.Ack = r.Uint32(), r.Uint32()
		p.Flags = byte(r.Uint32())
		if r.IntN(2) == 0 {
			p.Flags = pkttest.ACK | byte(r.Uint32())&(pkttest.PSH|pkttest.FIN|pkttest.CWR|pkttest.ECE|pkttest.URG)
		}
		p.Window = uint16(r.Uint32())
		p.Urgent = uint16(r.Uint32())
		if r.IntN(2) == 0 {
			p.TCPOptions = pkttest.RandomTCPOptions(r)
			hdr += (len(p.TCPOptions) + 3) &^ 3
		}
		tag("flags%02x", p.Flags)
	}

	// gso_size and payload.
	gso := gsoEdges[r.IntN(len(gsoEdges))]
	if r.IntN(3) == 0 {
		gso = 1 + r.IntN(65535)
	}
	maxPay := 65535 - hdr
	var n int
	switch r.IntN(10) {
	case 0:
		n = r.IntN(2)
	case 1:
		n = r.IntN(200)
	case 2:
		n = gso - 1 + r.IntN(3) // around gso_size
	case 3:
		n = gso + r.IntN(25) - 12 // around gso_size, the headers' difference
	case 4:
		n = maxPay - r.IntN(3)
	default:
		segs := 1 + r.IntN(150)
		if r.IntN(10) == 0 {
			segs = 120 + r.IntN(20) // around UDP_MAX_SEGMENTS
		}
		n = segs*gso - r.IntN(gso)
	}
	if kind == "ufo" && r.IntN(2) == 0 {
		gso = n + 8 + r.IntN(30) // a datagram that fits: not GSO
	}
	// At most 2000 wire packets, within 65535 bytes in all.
	n = max(0, min(n, maxPay, 2000*gso))
	p.Payload = pkttest.Payload(n, byte(r.Uint32()))
	tag("gso%d-len%d", gso, n)

	var h virtio.Hdr
	var pkt []byte
	ecn := !udp && r.IntN(3) == 0 || udp && r.IntN(40) == 0
	switch kind {
	case "tso", "uso":
		pkt, h = p.BuildGSO(gso, ecn)
	case "ufo":
		pkt, h = p.BuildGSO(gso, ecn)
		h.GSOType = virtio.GSOUDP | h.GSOType&virtio.GSOECN
		if r.IntN(3) == 0 {
			pkt, h.Flags, h.CsumStart, h.CsumOffset = p.Build(), 0, 0, 0
			tag("nocsum")
		}
	case "none-csum":
		pkt, h = p.BuildPartial()
	default:
		pkt = p.Build()
	}
	if ecn {
		tag("ecn")
	}
	if kind == "tso" && r.IntN(6) == 0 {
		// A TCP GSO frame without NEEDS_CSUM: complete checksum.
		pkt, h.Flags, h.CsumStart, h.CsumOffset = p.Build(), 0, 0, 0
		tag("nocsum")
	}
	if r.IntN(2) == 0 {
		h.HdrLen = 0
	}

	// Now and then one bad field.
	if r.IntN(4) == 0 {
		switch r.IntN(16) {
		case 0:
			h.HdrLen = uint16(len(pkt) - 2 + r.IntN(5))
			tag("hdrlen%+d", int(h.HdrLen)-len(pkt))
		case 1:
			h.HdrLen = uint16(r.Uint32())
			tag("hdrlen%d", h.HdrLen)
		case 2:
			h.GSOType = byte(r.Uint32())
			tag("gsotype%02x", h.GSOType)
		case 3:
			if h.GSOType&^virtio.GSOECN == virtio.GSOTCPv4 {
				h.GSOType ^= virtio.GSOTCPv4 ^ virtio.GSOTCPv6
			} else if h.GSOType&^virtio.GSOECN == virtio.GSOTCPv6 {
				h.GSOType ^= virtio.GSOTCPv4 ^ virtio.GSOTCPv6
			}
			tag("family")
		case 4:
			h.CsumStart = uint16(int(h.CsumStart) + r.IntN(9) - 4)
			tag("csumstart%d", h.CsumStart)
		case 5:
			h.CsumOffset = uint16(r.IntN(24))
			tag("csumoff%d", h.CsumOffset)
		case 6:
			h.Flags ^= virtio.FlagNeedsCsum
			tag("flags%d", h.Flags)
		case 7:
			h.Flags |= virtio.FlagDataValid
			tag("datavalid")
		case 8:
			pkt = append(pkt, pkttest.Payload(1+r.IntN(3000), 7)...)
			tag("tail%d", len(pkt))
		case 9:
			d := r.IntN(200) - 100
			setIPLen(pkt, max(0, ipLenField(pkt)+d))
			tag("iplen%+d", d)
		case 10:
			setIPLen(pkt, 0)
			tag("iplen0")
		case 11:
			if !p.V6 {
				pkt[10] ^= byte(1 + r.IntN(255))
				tag("ipcsum")
			}
		case 12:
			if l4, ok := l4Of(pkt); ok && !udp {
				pkt[l4+12] = byte(r.IntN(16)) << 4
				tag("doff%d", pkt[l4+12]>>4)
			}
		case 13:
			if l4, ok := l4Of(pkt); ok && udp {
				binary.BigEndian.PutUint16(pkt[l4+4:], uint16(r.IntN(len(pkt)+10)))
				tag("udplen")
			}
		case 14:
			// gso_size 0, or 1 or 2 where that makes at most 2000 packets.
			h.GSOSize = uint16(r.IntN(3))
			if len(pkt) > 2000 {
				h.GSOSize = 0
			}
			tag("gsosize%d", h.GSOSize)
		case 15:
			if l4, ok := l4Of(pkt); ok {
				off := 16
				if udp {
					off = 6
				}
				binary.BigEndian.PutUint16(pkt[l4+off:], uint16(r.Uint32()))
				tag("l4csum")
			}
		}
	}
	return strings.Join(tags, "-"), h, pkt
}

func ipLenField(pkt []byte) int {
	if pkt[0]>>4 == 6 {
		return int(binary.BigEndian.Uint16(pkt[4:]))
	}
	return int(binary.BigEndian.Uint16(pkt[2:]))
}

// l4Of finds the L4 header of a packet pkttest built.
func l4Of(pkt []byte) (int, bool) {
	if pkt[0]>>4 == 4 {
		return int(pkt[0]&0xf) * 4, true
	}
	next, off := pkt[6], 40
	for next == 0 || next == 43 || next == 60 || next == 44 {
		if off+8 > len(pkt) {
			return 0, false
		}
		n := (int(pkt[off+1]) + 1) * 8
		if next == 44 {
			n = 8
		}
		next, off = pkt[off], off+n
	}
	return off, off+20 <= len(pkt)
}

// Verdicts of one differential comparison.
const (
	sameRefused = iota // both refused
	samePackets        // the same packets
	documented         // a difference the package documents
	mismatch
)

// gsoVerdict puts one frame through the kernel and through a Plan.
func gsoVerdict(o *kerneltest.GSO, h virtio.Hdr, pkt []byte) (int, string) {
	kern, kerr := o.Segment(h, pkt)
	fwd := kerneltest.AfterForwarding(pkt)
	plan, err := segment.NewPlan(h, fwd, segment.Options{})
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
	kernelRefused := kerr != nil || len(kern) == 0
	switch {
	case kernelRefused && err != nil:
		return sameRefused, ""
	case kernelRefused:
		return mismatch, fmt.Sprintf("kernel refused (%v); segment made %d packets", kerr, len(ours))
	case err != nil:
		if errors.Is(err, segment.ErrGSOType) && h.GSOType&^virtio.GSOECN == virtio.GSOUDP {
			return documented, "UFO above gso_size: the kernel IP-fragments it"
		}
		return mismatch, fmt.Sprintf("kernel made %d packets; segment refused: %v", len(kern), err)
	}
	if len(kern) != len(ours) {
		return mismatch, fmt.Sprintf("kernel made %d packets, segment %d", len(kern), len(ours))
	}
	for i := range kern {
		if !bytes.Equal(kern[i], ours[i]) {
			return mismatch, fmt.Sprintf("packet %d of %d: %s", i, len(kern), kerneltest.DiffPackets(kern[i], ours[i]))
		}
	}
	largest := 0
	for _, k := range kern {
		largest = max(largest, len(k))
	}
	if plan.Segments() != len(kern) || plan.MaxSize() != largest {
		return mismatch, fmt.Sprintf("Plan said %d packets of up to %d bytes; %d of up to %d", plan.Segments(), plan.MaxSize(), len(kern), largest)
	}
	return samePackets, ""
}

// TestKernelGSORandomized is the randomized differential run for
// segmentation (see the file comment).
func TestKernelGSORandomized(t *testing.T) {
	n := randomCount(t, 600)
	seed := randomSeed(t, 0x6e0_5eed)
	o := kerneltest.NewGSO(t)
	r := rand.New(rand.NewPCG(seed, 3))
	var counts [4]int
	start := time.Now()
	bad := 0
	for i := range n {
		name, h, pkt := randomFrame(r)
		v, why := gsoVerdict(o, h, pkt)
		counts[v]++
		if v == mismatch {
			if bad++; bad <= 20 {
				t.Errorf("case %d %s (header %v, %d bytes): %s", i, name, h, len(pkt), why)
			}
		}
	}
	t.Logf("GSO randomized, seed %#x: %d frames in %v: %d agree (%d both refused, %d same packets), %d documented differences (UFO fragmentation), %d mismatches",
		seed, n, time.Since(start).Round(time.Millisecond), counts[sameRefused]+counts[samePackets], counts[sameRefused], counts[samePackets], counts[documented], counts[mismatch])
}
