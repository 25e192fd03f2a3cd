package coalesce_test

// The randomized differential run for GRO: random bursts in shapes the
// table tests do not have — several interleaved flows of both families,
// any MSS, flag mixes, pure ACKs, gaps, duplicates and reordering, IPv4
// ID patterns, header changes mid-run, IPv4 options and IPv6 extension
// headers, and bad fields (L4 and IPv4 header checksums, lengths, UDP
// checksum 0) — through the kernel's GRO (kerneltest.GRO) and through
// coalesce, TCP with GRO on and UDP with rx-udp-gro-forwarding.
//
// What the kernel's stack does after GRO, before the packets reach the
// oracle's reader, is applied to ours first (afterStack): a packet
// ip_rcv/ip6_rcv drops is dropped, one longer than its IP length trimmed
// — the receiving kernel does the same to what vnic writes into its TUN.
// Then the frames must be the same, or differ only as the file comment of
// kernel_linux_test.go allows; bursts that needed either are counted as
// agreeing within the documented differences (coalesce's package doc).
//
// VNIC_RANDOM_CASES sets the number of bursts per protocol (default 150);
// VNIC_RANDOM_SEED the seed (default fixed; logged).

import (
	"encoding/binary"
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

func randomEnv(t *testing.T, name string, def uint64) uint64 {
	if s := os.Getenv(name); s != "" {
		n, err := strconv.ParseUint(s, 0, 64)
		if err != nil {
			t.Fatalf("%s=%q: want a number", name, s)
		}
		return n
	}
	return def
}

var msses = []int{1, 2, 7, 8, 100, 536, 1000, 1220, 1400, 1428, 1440, 1448, 1460, 1472, 8948, 9000, 16000}

// randomBurst makes one burst for the oracle setup which (groOn: TCP, or
// groUDP: mostly UDP) and says what it is.
func randomBurst(r *rand.Rand, which int) (string, []pkttest.Packet) {
	var tags []string
	tag := func(f string, a ...any) { tags = append(tags, fmt.Sprintf(f, a...)) }
	nflows := 1 + r.IntN(3)
	if r.IntN(5) == 0 {
		nflows = 4 + r.IntN(8) // pressure on the 8 GRO slots
	}
	total := 2 + r.IntN(40)
	if r.IntN(4) == 0 {
		total = 40 + r.IntN(25)
	}
	tag("flows%d-pkts%d", nflows, total)
	var runs [][]pkttest.Packet
	for f := range nflows {
		var b pkttest.Packet
		b.V6 = r.IntN(2) == 0
		udp := which == groUDP && r.IntN(6) != 0
		if udp {
			b.Proto = pkttest.ProtoUDP
		}
		b.SrcPort, b.DstPort = uint16(40000+f), uint16(5000+r.IntN(3))
		b.TTL = byte(2 + r.IntN(250))
		if r.IntN(3) == 0 {
			b.TOS = byte(r.Uint32())
		}
		if b.V6 {
			b.FlowLabel = r.Uint32() & 0xfffff
			if r.IntN(6) == 0 {
				b.ExtHdrs = pkttest.RandomExtHdrs(r, false, false)
				tag("f%d-ext", f)
			}
		} else {
			b.ID = uint16(r.Uint32())
			b.DF = r.IntN(2) == 0
			if r.IntN(20) == 0 {
				b.IPOptions = pkttest.RandomIPv4Options(r, false)
				tag("f%d-ipopt", f)
			}
		}
		if !udp {
			b.Seq, b.Ack = r.Uint32(), r.Uint32()
			b.Flags = pkttest.ACK
			b.Window = uint16(1 + r.IntN(65535))
			if r.IntN(2) == 0 {
				b.TCPOptions = []byte{1, 1, 8, 10, byte(r.Uint32()), 0, 0, 1, 0, 0, 0, 2}
			}
		}
		mss := msses[r.IntN(len(msses))]
		if r.IntN(3) == 0 {
			mss = 1 + r.IntN(3000)
		}
		n := max(1, total/nflows+r.IntN(3)-1)
		// Within 64 KiB per flow's burst, mostly.
		n = min(n, max(1, 70000/mss))
		fixedID := !b.V6 && r.IntN(6) == 0
		run := make([]pkttest.Packet, n)
		for i := range run {
			p := b
			if !fixedID {
				p.ID = b.ID + uint16(i)
			}
			p.Payload = pkttest.Payload(mss, byte(f*31+i))
			run[i] = p
		}
		desc := fmt.Sprintf("f%d-%s-mss%d-n%d", f, map[bool]string{false: "v4", true: "v6"}[b.V6], mss, n)
		if udp {
			desc += "-udp"
		}
		if fixedID {
			desc += "-fixedid"
		}
		tag("%s", desc)
		// Mutations.
		for i := range run {
			if r.IntN(10) != 0 {
				continue
			}
			p := &run[i]
			m := r.IntN(26)
			switch {
			case m == 0 && !udp:
				p.Flags |= pkttest.PSH
			case m == 1 && !udp:
				p.Flags |= pkttest.FIN
			case m == 2 && !udp:
				p.Flags |= pkttest.CWR
			case m == 3 && !udp:
				p.Flags |= pkttest.ECE
			case m == 4 && !udp:
				p.Flags |= []uint8{pkttest.URG, pkttest.RST, pkttest.SYN}[r.IntN(3)]
				p.Urgent = uint16(r.IntN(100))
			case m == 5:
				p.Payload = p.Payload[:r.IntN(len(p.Payload)+1)]
			case m == 6:
				p.Payload = pkttest.Payload(len(p.Payload)+1+r.IntN(100), byte(i))
			case m == 7 && !udp:
				p.Payload = nil // a pure ACK
			case m == 8:
				p.TTL--
			case m == 9:
				p.TOS ^= byte(1 + r.IntN(255))
			case m == 10 && !p.V6:
				p.ID += uint16(1 + r.IntN(5))
			case m == 11 && !p.V6:
				p.DF = !p.DF
			case m == 12 && p.V6:
				p.FlowLabel ^= 1
			case m == 13 && !udp:
				p.Window ^= 1
			case m == 14 && !udp:
				p.Ack++
			case m == 15:
				p.BadL4Checksum = true
			case m == 16 && !p.V6:
				p.IPOptions = []byte{1, 1, 1, 1}
			case m == 17 && p.V6:
				p.ExtHdrs = []pkttest.ExtHdr{{Type: pkttest.ExtDestOpts, Data: []byte{0x1e, 4, byte(i), 0, 0, 0}}}
			case m == 18 && !p.V6:
				p.MF = true
			case m == 19 && !udp && len(p.TCPOptions) > 0:
				p.TCPOptions = []byte{1, 1, 8, 10, 9, 9, 9, 9, 0, 0, 0, 2}
			default:
				continue
			}
			tag("f%d-m%d@%d", f, m, i)
		}
		// Sequence numbers follow the (possibly changed) lengths, with
		// now and then a gap or a repeat.
		seq := b.Seq
		for i := range run {
			if !udp && r.IntN(40) == 0 {
				seq += uint32(r.IntN(3)) - 1
				tag("f%d-seq@%d", f, i)
			}
			run[i].Seq = seq
			seq += uint32(len(run[i].Payload))
		}
		runs = append(runs, run)
	}
	// Interleave, keeping each flow's order but for a swap now and then.
	var pkts []pkttest.Packet
	for {
		var live []int
		for f, run := range runs {
			if len(run) > 0 {
				live = append(live, f)
			}
		}
		if len(live) == 0 {
			break
		}
		f := live[r.IntN(len(live))]
		pkts = append(pkts, runs[f][0])
		runs[f] = runs[f][1:]
	}
	if len(pkts) > 2 && r.IntN(10) == 0 {
		i := r.IntN(len(pkts) - 1)
		pkts[i], pkts[i+1] = pkts[i+1], pkts[i]
		tag("swap@%d", i)
	}
	return strings.Join(tags, " "), pkts
}

// wireBytes builds the burst's packets and applies the bad fields pkttest
// cannot express: a tail past the IP length, a bad IPv4 header checksum,
// a UDP checksum or length of 0.
func wireBytes(r *rand.Rand, pkts []pkttest.Packet) ([][]byte, []string) {
	var tags []string
	wire := make([][]byte, len(pkts))
	for i := range pkts {
		b := pkts[i].Build()
		if r.IntN(40) == 0 {
			l4, udp := l4Of(b)
			switch m := r.IntN(5); {
			case m == 0:
				b = append(b, pkttest.Payload(1+r.IntN(40), 3)...)
				tags = append(tags, fmt.Sprintf("tail@%d", i))
			case m == 1 && b[0]>>4 == 4:
				b[11] ^= 1
				tags = append(tags, fmt.Sprintf("ipcsum@%d", i))
			case m == 2 && udp:
				b[l4+6], b[l4+7] = 0, 0
				tags = append(tags, fmt.Sprintf("udpcsum0@%d", i))
			case m == 3 && udp:
				binary.BigEndian.PutUint16(b[l4+4:], uint16(r.IntN(len(b)-l4+2)))
				tags = append(tags, fmt.Sprintf("udplen@%d", i))
			case m == 4:
				if b[0]>>4 == 4 {
					binary.BigEndian.PutUint16(b[2:], binary.BigEndian.Uint16(b[2:])+1)
					b[10], b[11] = 0, 0
					binary.BigEndian.PutUint16(b[10:], ^sum16(b[:int(b[0]&0xf)*4]))
				} else {
					binary.BigEndian.PutUint16(b[4:], binary.BigEndian.Uint16(b[4:])+1)
				}
				tags = append(tags, fmt.Sprintf("iplen+1@%d", i))
			}
		}
		wire[i] = b
	}
	return wire, tags
}

func l4Of(b []byte) (int, bool) {
	if b[0]>>4 == 4 {
		return int(b[0]&0xf) * 4, b[9] == pkttest.ProtoUDP
	}
	next, off := b[6], 40
	for next == 0 || next == 43 || next == 60 {
		next, off = b[off], off+(int(b[off+1])+1)*8
	}
	return off, next == pkttest.ProtoUDP
}

func sum16(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return uint16(s)
}

// afterStack applies to our frames what the kernel's stack does to GRO's
// output before forwarding it: drop what ip_rcv_core/ip6_rcv_core (and
// the option parsers) drop, trim what is longer than its IP length. The
// rules are segment's receive checks, proven against the kernel by
// segment's own differential tests.
// It also reports whether it changed anything.
func afterStack(fr []kerneltest.Frame) ([]kerneltest.Frame, bool) {
	var out []kerneltest.Frame
	changed := false
	for _, f := range fr {
		h := f.Hdr
		plan, err := segment.NewPlan(h, f.Pkt, segment.Options{})
		if err != nil {
			changed = true
			continue
		}
		if h.GSOType == virtio.GSONone && h.Flags&virtio.FlagNeedsCsum == 0 && plan.Segments() == 1 && plan.MaxSize() < len(f.Pkt) {
			f.Pkt = f.Pkt[:plan.MaxSize()]
			changed = true
		}
		out = append(out, f)
	}
	return out, changed
}

// exactly reports whether the kernel's frames and ours are the same in
// every byte and header field (hdr_len aside: the kernel's is the whole
// first packet).
func exactly(kern, got []kerneltest.Frame) bool {
	if len(kern) != len(got) {
		return false
	}
	for i := range kern {
		kh, oh := kern[i].Hdr, got[i].Hdr
		kh.HdrLen, oh.HdrLen = 0, 0
		if kh != oh || kerneltest.DiffPackets(kern[i].Pkt, got[i].Pkt) != "" {
			return false
		}
	}
	return true
}

// TestKernelGRORandomized is the randomized differential run for GRO (see
// the file comment).
func TestKernelGRORandomized(t *testing.T) {
	n := int(randomEnv(t, "VNIC_RANDOM_CASES", 150))
	seed := randomEnv(t, "VNIC_RANDOM_SEED", 0x6e0_5eed)
	s := &oracles{t: t}
	for _, which := range []int{groOn, groUDP} {
		proto := map[int]string{groOn: "TCP", groUDP: "UDP"}[which]
		r := rand.New(rand.NewPCG(seed, uint64(10+which)))
		var same, documented, stacked, bad, pkts int
		start := time.Now()
		for i := range n {
			o := which
			if r.IntN(20) == 0 {
				o = groOff
			}
			name, burst := randomBurst(r, which)
			wire, tags := wireBytes(r, burst)
			if len(tags) > 0 {
				name += " " + strings.Join(tags, " ")
			}
			pkts += len(wire)
			got, stack := afterStack(ours(t, o, wire))
			kern, err := kernelGRO(s.get(o), wire, func(k []kerneltest.Frame) bool { return groDiff(k, got) == "" })
			if err != nil {
				t.Fatalf("kernel: %v", err)
			}
			switch d := groDiff(kern, got); {
			case exactly(kern, got) && !stack:
				same++
			case d == "":
				documented++
				if stack {
					stacked++
				}
			default:
				if bad++; bad <= 10 {
					t.Errorf("%s burst %d (%s, oracle %d): %s", proto, i, name, o, d)
				}
			}
		}
		t.Logf("GRO %s randomized, seed %#x: %d bursts (%d packets) in %v: %d agree (%d the same, %d within the documented differences: %d the stack after GRO, %d TUN egress re-segmenting), %d mismatches",
			proto, seed, n, pkts, time.Since(start).Round(time.Millisecond), same+documented, same, documented, stacked, documented-stacked, bad)
	}
	retries := 0
	for _, o := range s.o {
		if o != nil {
			retries += o.Retries()
		}
	}
	t.Logf("%d bursts redone after a tick split them", retries)
}
