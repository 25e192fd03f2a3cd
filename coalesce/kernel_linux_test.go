package coalesce_test

// Differential tests: the same run of wire packets through the running
// kernel's GRO (kerneltest.GRO: TUN with IFF_NAPI and a held flush →
// forwarding → TUN with CSUM|TSO4|TSO6|TSO_ECN|USO4|USO6, written as one
// batch, one NAPI cycle) and through coalesce.Engine, compared frame by
// frame.
//
// The kernel forwards, so its frames have the TTL/hop limit one lower (and
// the IPv4 header checksum adjusted): the engine is fed
// kerneltest.AfterForwarding of each packet. The engine runs with the
// options that model the oracle: MaxHeld 8 (a single-queue TUN leaves
// skb->hash 0, so every flow shares one GRO bucket of MAX_GRO_SKBS),
// TUNEgress (what validate_xmit_skb does to GRO output a TUN cannot take)
// and MarkValid (the oracle's `out` reports CHECKSUM_UNNECESSARY as
// DATA_VALID: virtio_net_hdr_from_skb with has_data_valid).
//
// Compared: the number and order of frames, every packet byte, and every
// virtio header field but hdr_len. The kernel's hdr_len is untrusted (it is
// skb_headlen, the whole first packet); ours must be csum_start plus the L4
// header. One difference is deliberate and accepted, nothing else:
//
//   - A run the kernel merged but a TUN cannot carry (fixed IPv4 IDs:
//     SKB_GSO_TCP_FIXEDID needs NETIF_F_TSO_MANGLEID) is segmented again
//     by validate_xmit_skb before `out`; the segments stay
//     CHECKSUM_PARTIAL because `out` has NETIF_F_HW_CSUM, so they come
//     with NEEDS_CSUM and the pseudo-header sum in the checksum field. The
//     engine (TUNEgress) hands the original packets on with complete
//     checksums and DATA_VALID (it verified them): accepted when the
//     kernel's packet with its checksum completed
//     (kerneltest.CompleteChecksum, what the receiver does) equals ours
//     byte for byte.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"vnic/coalesce"
	"vnic/vnic/kerneltest"
	"vnic/vnic/pkttest"
	"vnic/vnic/virtio"
)

// Oracle setups.
const (
	groOn  = iota // GRO on, TCP only (the kernel's default)
	groUDP        // plus rx-udp-gro-forwarding
	groOff        // ethtool -K in gro off
)

type gcase struct {
	name   string
	pkts   []pkttest.Packet
	oracle int
}

type oracles struct {
	t *testing.T
	o [3]*kerneltest.GRO
}

func (s *oracles) get(which int) *kerneltest.GRO {
	if s.o[which] == nil {
		s.o[which] = kerneltest.NewGRO(s.t, kerneltest.GROOptions{
			UDPGROForwarding: which == groUDP,
			DisableGRO:       which == groOff,
		})
	}
	return s.o[which]
}

func engineOptions(which int) coalesce.Options {
	return coalesce.Options{
		Disabled:  which == groOff,
		UDP:       which == groUDP,
		MaxHeld:   8,
		TUNEgress: true,
		MarkValid: true,
	}
}

const offset = 16

// ours runs the engine over the forwarded packets and returns its frames.
func ours(t *testing.T, which int, wire [][]byte) []kerneltest.Frame {
	return oursWith(t, which, wire, coalesce.Options{})
}

// oursWith is ours with extra options or-ed into the oracle's model
// (TrustChecksums).
func oursWith(t *testing.T, which int, wire [][]byte, extra coalesce.Options) []kerneltest.Frame {
	t.Helper()
	bufs := make([][]byte, len(wire))
	for i, p := range wire {
		fwd := kerneltest.AfterForwarding(p)
		b := make([]byte, offset+len(fwd), offset+65535+64)
		copy(b[offset:], fwd)
		bufs[i] = b
	}
	opt := engineOptions(which)
	opt.TrustChecksums = extra.TrustChecksums
	e := coalesce.New(opt)
	idx, err := e.Coalesce(bufs, offset, nil)
	if err != nil {
		t.Fatalf("Coalesce: %v", err)
	}
	out := make([]kerneltest.Frame, len(idx))
	for j, i := range idx {
		out[j].Hdr.Decode(bufs[i][offset-virtio.Size : offset])
		out[j].Pkt = bufs[i][offset:]
	}
	return out
}

func describe(fr []kerneltest.Frame) string {
	var s []string
	for _, f := range fr {
		d := fmt.Sprintf("%dB", len(f.Pkt))
		if f.Hdr.GSOType != virtio.GSONone {
			d += "/" + virtio.GSOName(f.Hdr.GSOType) + fmt.Sprintf("@%d", f.Hdr.GSOSize)
		}
		if f.Hdr.Flags&virtio.FlagNeedsCsum != 0 {
			d += "/needs_csum"
		}
		if f.Hdr.Flags&virtio.FlagDataValid != 0 {
			d += "/data_valid"
		}
		s = append(s, d)
	}
	return "[" + strings.Join(s, " ") + "]"
}

// compareFrame checks one frame pair under the rules in the file comment.
func compareFrame(k, o kerneltest.Frame) string {
	kh, oh := k.Hdr, o.Hdr
	switch {
	case kh.GSOType == virtio.GSONone && kh.Flags == virtio.FlagNeedsCsum && (oh == (virtio.Hdr{Flags: virtio.FlagDataValid}) || oh == (virtio.Hdr{})):
		// Deliberate: the kernel's re-segmented run, checksum left partial.
		if d := kerneltest.DiffPackets(kerneltest.CompleteChecksum(kh, k.Pkt), o.Pkt); d != "" {
			return "with the kernel's checksum completed: " + d
		}
		return ""
	}
	if oh.GSOType != virtio.GSONone {
		want, err := virtio.RecomputeHdrLen(o.Pkt, &oh)
		if err != nil || int(oh.HdrLen) != want {
			return fmt.Sprintf("our hdr_len %d, want csum_start + L4 header = %d (%v)", oh.HdrLen, want, err)
		}
	}
	kh.HdrLen, oh.HdrLen = 0, 0
	if kh != oh {
		return fmt.Sprintf("virtio header: kernel {%v}, ours {%v} (hdr_len not compared)", k.Hdr, o.Hdr)
	}
	return kerneltest.DiffPackets(k.Pkt, o.Pkt)
}

func groCompare(t *testing.T, s *oracles, c gcase) {
	t.Helper()
	wire := make([][]byte, len(c.pkts))
	for i := range c.pkts {
		wire[i] = c.pkts[i].Build()
	}
	got := ours(t, c.oracle, wire)
	kern, err := kernelGRO(s.get(c.oracle), wire, func(k []kerneltest.Frame) bool { return groDiff(k, got) == "" })
	if err != nil {
		t.Fatalf("kernel: %v", err)
	}
	if d := groDiff(kern, got); d != "" {
		t.Error(d)
	}
}

// kernelGRO runs a batch through the kernel's GRO. When the result does
// not satisfy agree (it differs from ours), the batch is run again, until
// the kernel gives the same result twice in a row (up to 5 runs): a
// jiffy tick or a late softirq on a busy machine splits a batch now and
// then, a real difference repeats. The result is the kernel's either
// way; agree only decides whether to ask again.
func kernelGRO(o *kerneltest.GRO, wire [][]byte, agree func([]kerneltest.Frame) bool) ([]kerneltest.Frame, error) {
	kern, err := o.Coalesce(wire)
	if err != nil || agree(kern) {
		return kern, err
	}
	for range 4 {
		again, err := o.Coalesce(wire)
		if err != nil {
			return again, err
		}
		if sameFrames(again, kern) {
			return kern, nil
		}
		kern = again
	}
	return kern, nil
}

func sameFrames(a, b []kerneltest.Frame) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Hdr != b[i].Hdr || !bytes.Equal(a[i].Pkt, b[i].Pkt) {
			return false
		}
	}
	return true
}

// groDiff compares the kernel's frames with ours under the rules in the
// file comment and describes the first differences ("" when none).
func groDiff(kern, got []kerneltest.Frame) string {
	if len(kern) != len(got) {
		return fmt.Sprintf("kernel %d frames %s, ours %d frames %s", len(kern), describe(kern), len(got), describe(got))
	}
	var b strings.Builder
	for i := range kern {
		if d := compareFrame(kern[i], got[i]); d != "" {
			fmt.Fprintf(&b, "frame %d of %d: %s\n  kernel %s\n  ours   %s\n", i, len(kern), d, describe(kern), describe(got))
		}
	}
	return b.String()
}

func runGRO(t *testing.T, cases []gcase) {
	s := &oracles{t: t}
	start := time.Now()
	seen := map[string]int{}
	for _, c := range cases {
		name := c.name
		if seen[name]++; seen[name] > 1 {
			name = fmt.Sprintf("%s#%d", name, seen[name])
		}
		t.Run(name, func(t *testing.T) { groCompare(t, s, c) })
	}
	retries, late := 0, 0
	for _, o := range s.o {
		if o != nil {
			retries += o.Retries()
			late += o.LateFlushes()
		}
	}
	t.Logf("%d cases in %v (%d batches redone after a tick split them, %d left the kernel's GRO late)", len(cases), time.Since(start).Round(time.Millisecond), retries, late)
}

// run returns n wire segments of one flow as a sender with MSS mss makes
// them: sequence numbers contiguous, IPv4 IDs incrementing.
func run(base pkttest.Packet, n, mss int) []pkttest.Packet {
	out := make([]pkttest.Packet, n)
	for i := range out {
		p := base
		p.ID = base.ID + uint16(i)
		p.Seq = base.Seq + uint32(i*mss)
		p.Payload = pkttest.Payload(mss, byte(i))
		out[i] = p
	}
	return out
}

func famName(v6 bool) string {
	if v6 {
		return "v6"
	}
	return "v4"
}

func tcp(v6 bool) pkttest.Packet {
	return pkttest.Packet{V6: v6, Flags: pkttest.ACK, Seq: 1000, Ack: 5000, ID: 100}
}

func udp(v6 bool) pkttest.Packet {
	return pkttest.Packet{V6: v6, Proto: pkttest.ProtoUDP, ID: 100}
}

var (
	tsOpt  = []byte{1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2}
	hbh8   = []pkttest.ExtHdr{{Type: pkttest.ExtHopByHop, Data: []byte{1, 4, 0, 0, 0, 0}}}
	dst8   = []pkttest.ExtHdr{{Type: pkttest.ExtDestOpts, Data: []byte{1, 4, 0, 0, 0, 0}}}
	dst8b  = []pkttest.ExtHdr{{Type: pkttest.ExtDestOpts, Data: []byte{1, 4, 1, 1, 1, 1}}}
	ipNops = []byte{1, 1, 1, 1}
)

// with applies f to the packets at the given indices (negative counts
// from the end) and returns the run.
func with(pkts []pkttest.Packet, f func(p *pkttest.Packet), at ...int) []pkttest.Packet {
	for _, i := range at {
		if i < 0 {
			i += len(pkts)
		}
		f(&pkts[i])
	}
	return pkts
}

func all(pkts []pkttest.Packet, f func(p *pkttest.Packet)) []pkttest.Packet {
	for i := range pkts {
		f(&pkts[i])
	}
	return pkts
}

// TestKernelGROMergesSameSize: tcp_gro_receive merges contiguous segments
// of one flow carrying gso_size bytes each, up to 64 KiB
// (skb_gro_receive -E2BIG), for every MSS; inet_gro_flush wants the IPv4
// ID to increment by one (wrapping) per segment.
func TestKernelGROMergesSameSize(t *testing.T) {
	var cases []gcase
	for _, v6 := range []bool{false, true} {
		for _, mss := range []int{1, 7, 536, 1000, 1220, 1448, 8948} {
			for _, n := range []int{2, 3, 8, 20, 45} {
				if n*mss > 200000 {
					continue
				}
				base := tcp(v6)
				cases = append(cases, gcase{name: fmt.Sprintf("%s-mss%d-n%d", famName(v6), mss, n), pkts: run(base, n, mss)})
			}
		}
		cases = append(cases, gcase{name: famName(v6) + "-tsopt-mss1448-n7", pkts: all(run(tcp(v6), 7, 1448), func(p *pkttest.Packet) { p.TCPOptions = tsOpt })})
		cases = append(cases, gcase{name: famName(v6) + "-64k-boundary-mss1000-n70", pkts: run(tcp(v6), 70, 1000)})
		cases = append(cases, gcase{name: famName(v6) + "-64k-exact-mss65475", pkts: run(tcp(v6), 2, 65535-60)})
		cases = append(cases, gcase{name: famName(v6) + "-seq-wraps", pkts: all(run(tcp(v6), 6, 1000), func(p *pkttest.Packet) { p.Seq -= 3000 + 1000 })})
		cases = append(cases, gcase{name: famName(v6) + "-tos-ect0-all", pkts: all(run(tcp(v6), 5, 1000), func(p *pkttest.Packet) { p.TOS = 0x02 })})
		cases = append(cases, gcase{name: famName(v6) + "-ce-all", pkts: all(run(tcp(v6), 5, 1000), func(p *pkttest.Packet) { p.TOS = 0x03 })})
	}
	for _, id := range []uint16{0xfffd, 0xffff, 0} {
		for _, df := range []bool{false, true} {
			b := tcp(false)
			b.ID, b.DF = id, df
			cases = append(cases, gcase{name: fmt.Sprintf("v4-id%04x-df%v-n5", id, df), pkts: run(b, 5, 1000)})
		}
	}
	cases = append(cases, gcase{name: "v6-flowlabel-all", pkts: all(run(tcp(true), 5, 1000), func(p *pkttest.Packet) { p.FlowLabel = 0x12345 })})
	runGRO(t, cases)
}

// TestKernelGROSegmentSizeRules: a segment shorter than gso_size is merged
// and ends the packet; a longer one does not merge and starts a new one
// (tcp_gro_receive: "(len - 1) >= mss" flush, "len < mss" end).
func TestKernelGROSegmentSizeRules(t *testing.T) {
	var cases []gcase
	for _, v6 := range []bool{false, true} {
		for _, proto := range []string{"tcp", "udp"} {
			base, which := tcp(v6), groOn
			if proto == "udp" {
				base, which = udp(v6), groUDP
			}
			mk := func(name string, sizes ...int) {
				var pkts []pkttest.Packet
				seq := base.Seq
				for i, n := range sizes {
					p := base
					p.ID = base.ID + uint16(i)
					p.Seq = seq
					p.Payload = pkttest.Payload(n, byte(i))
					seq += uint32(n)
					pkts = append(pkts, p)
				}
				cases = append(cases, gcase{name: fmt.Sprintf("%s-%s-%s", famName(v6), proto, name), pkts: pkts, oracle: which})
			}
			mk("short-last", 1000, 1000, 1000, 500)
			mk("short-middle", 1000, 1000, 500, 1000, 1000)
			mk("short-first", 500, 1000, 1000)
			mk("bigger-after", 1000, 1000, 1200, 1200)
			mk("bigger-second", 1000, 1001)
			mk("one-byte-last", 1448, 1448, 1)
			mk("shrinking", 1000, 900, 800, 700)
		}
	}
	runGRO(t, cases)
}

// TestKernelGROFlagsEndOrBreakMerge: PSH and FIN are merged and end the
// packet (or-ed into its head); URG, RST, SYN end it too; CWR is a flag
// that must match (6.18), so a CWR segment breaks the run; any other
// difference in the flag word, window, ack or TCP options breaks it.
func TestKernelGROFlagsEndOrBreakMerge(t *testing.T) {
	var cases []gcase
	type mut struct {
		name string
		f    func(p *pkttest.Packet)
	}
	muts := []mut{
		{"psh", func(p *pkttest.Packet) { p.Flags |= pkttest.PSH }},
		{"fin", func(p *pkttest.Packet) { p.Flags |= pkttest.FIN }},
		{"psh-fin", func(p *pkttest.Packet) { p.Flags |= pkttest.PSH | pkttest.FIN }},
		{"urg", func(p *pkttest.Packet) { p.Flags |= pkttest.URG; p.Urgent = 10 }},
		{"rst", func(p *pkttest.Packet) { p.Flags |= pkttest.RST }},
		{"syn", func(p *pkttest.Packet) { p.Flags |= pkttest.SYN }},
		{"cwr", func(p *pkttest.Packet) { p.Flags |= pkttest.CWR }},
		{"ece", func(p *pkttest.Packet) { p.Flags |= pkttest.ECE }},
		{"window", func(p *pkttest.Packet) { p.Window = 1000 }},
		{"ack", func(p *pkttest.Packet) { p.Ack += 1 }},
		{"tsopt", func(p *pkttest.Packet) { p.TCPOptions = tsOpt }},
		{"no-ack-flag", func(p *pkttest.Packet) { p.Flags &^= pkttest.ACK }},
	}
	for _, v6 := range []bool{false, true} {
		for _, m := range muts {
			for _, at := range []int{0, 1, 2, 4} {
				cases = append(cases, gcase{name: fmt.Sprintf("%s-%s-at%d-of5", famName(v6), m.name, at), pkts: with(run(tcp(v6), 5, 1000), m.f, at)})
			}
			cases = append(cases, gcase{name: fmt.Sprintf("%s-%s-on-all-5", famName(v6), m.name), pkts: all(run(tcp(v6), 5, 1000), m.f)})
		}
		cases = append(cases, gcase{name: famName(v6) + "-cwr-at1-and-2", pkts: with(run(tcp(v6), 5, 1000), muts[6].f, 1, 2)})
	}
	runGRO(t, cases)
}

// TestKernelGROIPHeaderMustMatch: inet_gro_flush/ipv6_gro_flush want TTL,
// TOS and DF equal and the IPv4 ID incrementing or fixed (6.18: DF or
// not); inet_gro_receive passes IPv4 with options (IHL != 5) unmerged
// without validating it; IPv6 extension headers must be identical.
func TestKernelGROIPHeaderMustMatch(t *testing.T) {
	var cases []gcase
	for _, v6 := range []bool{false, true} {
		f := famName(v6)
		for _, at := range []int{1, 3} {
			cases = append(cases,
				gcase{name: fmt.Sprintf("%s-ttl-at%d", f, at), pkts: with(run(tcp(v6), 5, 1000), func(p *pkttest.Packet) { p.TTL = 30 }, at)},
				gcase{name: fmt.Sprintf("%s-tos-at%d", f, at), pkts: with(run(tcp(v6), 5, 1000), func(p *pkttest.Packet) { p.TOS = 0xb8 }, at)},
				gcase{name: fmt.Sprintf("%s-ecn-ce-at%d", f, at), pkts: with(run(tcp(v6), 5, 1000), func(p *pkttest.Packet) { p.TOS = 0x03 }, at)},
			)
			if v6 {
				cases = append(cases,
					gcase{name: fmt.Sprintf("%s-flowlabel-at%d", f, at), pkts: with(run(tcp(v6), 5, 1000), func(p *pkttest.Packet) { p.FlowLabel = 7 }, at)},
					gcase{name: fmt.Sprintf("%s-dstopts-differ-at%d", f, at), pkts: with(all(run(tcp(v6), 5, 1000), func(p *pkttest.Packet) { p.ExtHdrs = dst8 }), func(p *pkttest.Packet) { p.ExtHdrs = dst8b }, at)},
					gcase{name: fmt.Sprintf("%s-hbh-at%d", f, at), pkts: with(run(tcp(v6), 5, 1000), func(p *pkttest.Packet) { p.ExtHdrs = hbh8 }, at)},
				)
			} else {
				cases = append(cases,
					gcase{name: fmt.Sprintf("%s-df-at%d", f, at), pkts: with(run(tcp(v6), 5, 1000), func(p *pkttest.Packet) { p.DF = true }, at)},
					gcase{name: fmt.Sprintf("%s-id-jump-at%d", f, at), pkts: with(run(tcp(v6), 5, 1000), func(p *pkttest.Packet) { p.ID += 10 }, at)},
					gcase{name: fmt.Sprintf("%s-ipopt-at%d", f, at), pkts: with(run(tcp(v6), 5, 1000), func(p *pkttest.Packet) { p.IPOptions = ipNops }, at)},
				)
			}
		}
		if v6 {
			cases = append(cases,
				gcase{name: f + "-hbh-all", pkts: all(run(tcp(v6), 5, 1000), func(p *pkttest.Packet) { p.ExtHdrs = hbh8 })},
				gcase{name: f + "-dstopts-all", pkts: all(run(tcp(v6), 5, 1000), func(p *pkttest.Packet) { p.ExtHdrs = dst8 })},
				gcase{name: f + "-udp-dstopts-all", oracle: groUDP, pkts: all(run(udp(v6), 5, 1000), func(p *pkttest.Packet) { p.ExtHdrs = dst8 })},
				gcase{name: f + "-udp-hbh-all", oracle: groUDP, pkts: all(run(udp(v6), 5, 1000), func(p *pkttest.Packet) { p.ExtHdrs = hbh8 })},
			)
			continue
		}
		for _, df := range []bool{false, true} {
			cases = append(cases,
				gcase{name: fmt.Sprintf("%s-fixed-id-df%v", f, df), pkts: all(run(tcp(v6), 5, 1000), func(p *pkttest.Packet) { p.ID, p.DF = 7, df })},
				gcase{name: fmt.Sprintf("%s-fixed-id-df%v-then-increment", f, df), pkts: with(all(run(tcp(v6), 5, 1000), func(p *pkttest.Packet) { p.ID, p.DF = 7, df }), func(p *pkttest.Packet) { p.ID = 8 }, 3, 4)},
				gcase{name: fmt.Sprintf("%s-udp-fixed-id-df%v", f, df), oracle: groUDP, pkts: all(run(udp(v6), 5, 1000), func(p *pkttest.Packet) { p.ID, p.DF = 7, df })},
			)
		}
		cases = append(cases,
			gcase{name: f + "-ipopt-all", pkts: all(run(tcp(v6), 5, 1000), func(p *pkttest.Packet) { p.IPOptions = ipNops })},
			gcase{name: f + "-id-decrement", pkts: all(run(tcp(v6), 5, 1000), func(p *pkttest.Packet) { p.ID = 200 - p.ID })},
		)
	}
	runGRO(t, cases)
}

// TestKernelGROFlowsAndOrder: one held packet per flow; a sequence gap,
// reordering or a duplicate breaks the run; interleaved flows merge
// separately; a ninth flow evicts the oldest held packet (MAX_GRO_SKBS 8,
// one bucket on a TUN); pure ACKs pass alone.
func TestKernelGROFlowsAndOrder(t *testing.T) {
	var cases []gcase
	for _, v6 := range []bool{false, true} {
		f := famName(v6)
		r := run(tcp(v6), 6, 1000)
		cases = append(cases,
			gcase{name: f + "-seq-gap", pkts: []pkttest.Packet{r[0], r[1], r[3], r[4]}},
			gcase{name: f + "-reordered", pkts: []pkttest.Packet{r[0], r[2], r[1], r[3]}},
			gcase{name: f + "-duplicate", pkts: []pkttest.Packet{r[0], r[1], r[1], r[2]}},
			gcase{name: f + "-pure-ack-between", pkts: []pkttest.Packet{r[0], r[1], {V6: v6, Flags: pkttest.ACK, Seq: r[2].Seq, Ack: 5000}, r[2], r[3]}},
			gcase{name: f + "-pure-acks", pkts: []pkttest.Packet{{V6: v6, Flags: pkttest.ACK}, {V6: v6, Flags: pkttest.ACK}}},
		)
		for _, nflows := range []int{2, 8, 9, 12} {
			var pkts []pkttest.Packet
			runs := make([][]pkttest.Packet, nflows)
			for j := range runs {
				b := tcp(v6)
				b.SrcPort = uint16(41000 + j)
				runs[j] = run(b, 3, 1000)
			}
			for i := 0; i < 3; i++ {
				for j := range runs {
					pkts = append(pkts, runs[j][i])
				}
			}
			cases = append(cases, gcase{name: fmt.Sprintf("%s-%d-flows-interleaved", f, nflows), pkts: pkts})
		}
		// A flow that differs only in address.
		b := tcp(v6)
		if v6 {
			b.Dst = pkttest.DefaultDst6.Next()
		} else {
			b.Dst = pkttest.DefaultDst4.Next()
		}
		o := run(b, 3, 1000)
		cases = append(cases, gcase{name: f + "-two-destinations", pkts: []pkttest.Packet{r[0], o[0], r[1], o[1], r[2], o[2]}})
		// Mixed families.
		o6 := run(tcp(!v6), 3, 1000)
		cases = append(cases, gcase{name: f + "-mixed-family", pkts: []pkttest.Packet{r[0], o6[0], r[1], o6[1], r[2], o6[2]}})
	}
	runGRO(t, cases)
}

// TestKernelGROChecksumValidated: GRO validates the L4 checksum first
// (skb_gro_checksum_validate); a bad one passes alone, unvalidated, and
// ends the flow's held packet; a UDP checksum of 0 never merges.
func TestKernelGROChecksumValidated(t *testing.T) {
	var cases []gcase
	bad := func(p *pkttest.Packet) { p.BadL4Checksum = true }
	for _, v6 := range []bool{false, true} {
		f := famName(v6)
		for _, at := range []int{0, 2, 4} {
			cases = append(cases,
				gcase{name: fmt.Sprintf("%s-tcp-bad-csum-at%d", f, at), pkts: with(run(tcp(v6), 5, 1000), bad, at)},
				gcase{name: fmt.Sprintf("%s-udp-bad-csum-at%d", f, at), oracle: groUDP, pkts: with(run(udp(v6), 5, 1000), bad, at)},
			)
		}
		cases = append(cases, gcase{name: f + "-tcp-bad-csum-single", pkts: with(run(tcp(v6), 1, 1000), bad, 0)})
	}
	runGRO(t, cases)
}

// TestKernelGROUDPForwarding: with rx-udp-gro-forwarding, udp_gro_receive
// merges same-size datagrams into UDP_L4 packets (a shorter one ends it, a
// bigger one does not merge, at most UDP_GRO_CNT_MAX 64 per packet);
// without it nothing merges.
func TestKernelGROUDPForwarding(t *testing.T) {
	var cases []gcase
	for _, v6 := range []bool{false, true} {
		f := famName(v6)
		for _, mss := range []int{1, 7, 536, 1000, 1448, 8948} {
			for _, n := range []int{2, 5, 20, 64} {
				if n*mss > 70000 {
					continue
				}
				cases = append(cases, gcase{name: fmt.Sprintf("%s-udp-fwd-mss%d-n%d", f, mss, n), oracle: groUDP, pkts: run(udp(v6), n, mss)})
			}
		}
		cases = append(cases,
			gcase{name: f + "-udp-fwd-70-datagrams", oracle: groUDP, pkts: run(udp(v6), 70, 100)},
			gcase{name: f + "-udp-fwd-64k-boundary", oracle: groUDP, pkts: run(udp(v6), 70, 1000)},
			gcase{name: f + "-udp-no-fwd", oracle: groOn, pkts: run(udp(v6), 5, 1000)},
			gcase{name: f + "-udp-two-ports", oracle: groUDP, pkts: func() []pkttest.Packet {
				a := run(udp(v6), 3, 1000)
				b := udp(v6)
				b.DstPort = 10
				c := run(b, 3, 1000)
				return []pkttest.Packet{a[0], c[0], a[1], c[1], a[2], c[2]}
			}()},
			gcase{name: f + "-udp-ttl-differs", oracle: groUDP, pkts: with(run(udp(v6), 4, 1000), func(p *pkttest.Packet) { p.TTL = 9 }, 2)},
			gcase{name: f + "-tcp-with-udp-fwd", oracle: groUDP, pkts: run(tcp(v6), 5, 1000)},
		)
	}
	runGRO(t, cases)
}

// TestKernelGROOffPassesEverything: with `ethtool -K in gro off` every
// packet is delivered alone, unvalidated (zero header).
func TestKernelGROOffPassesEverything(t *testing.T) {
	var cases []gcase
	for _, v6 := range []bool{false, true} {
		f := famName(v6)
		cases = append(cases,
			gcase{name: f + "-tcp-run", oracle: groOff, pkts: run(tcp(v6), 5, 1000)},
			gcase{name: f + "-udp-run", oracle: groOff, pkts: run(udp(v6), 5, 1000)},
			gcase{name: f + "-tcp-bad-csum", oracle: groOff, pkts: with(run(tcp(v6), 3, 1000), func(p *pkttest.Packet) { p.BadL4Checksum = true }, 1)},
		)
	}
	runGRO(t, cases)
}

// TestKernelGRORandomRuns: a seeded random mix of everything above: runs
// of one or two flows with random MSS, length and perturbations.
func TestKernelGRORandomRuns(t *testing.T) {
	const kernelSeed = 0x6e0
	r := rand.New(rand.NewPCG(kernelSeed, 2))
	msses := []int{1, 7, 536, 1000, 1220, 1448, 8948}
	var cases []gcase
	for i := 0; i < 120; i++ {
		v6 := r.IntN(2) == 0
		isUDP := r.IntN(4) == 0
		base := tcp(v6)
		which := groOn
		if isUDP {
			base, which = udp(v6), groUDP
		}
		if r.IntN(10) == 0 {
			which = groOff
		}
		base.Seq, base.Ack = r.Uint32(), r.Uint32()
		base.ID = uint16(r.IntN(0x10000))
		if !v6 {
			base.DF = r.IntN(2) == 0
		} else {
			base.FlowLabel = r.Uint32() & 0xfffff
			if r.IntN(5) == 0 {
				base.ExtHdrs = dst8
			}
		}
		if r.IntN(4) == 0 {
			base.TOS = uint8(r.IntN(256))
		}
		if !isUDP && r.IntN(2) == 0 {
			base.TCPOptions = tsOpt
		}
		mss := msses[r.IntN(len(msses))]
		if r.IntN(4) == 0 {
			mss = 1 + r.IntN(3000)
		}
		n := 1 + r.IntN(min(40, 70000/mss+1))
		pkts := run(base, n, mss)
		var muts []string
		for k := r.IntN(3); k > 0; k-- {
			at := r.IntN(n)
			p := &pkts[at]
			switch m := r.IntN(10); {
			case m == 0 && !isUDP:
				p.Flags |= pkttest.PSH
				muts = append(muts, fmt.Sprintf("psh@%d", at))
			case m == 1 && !isUDP:
				p.Flags |= pkttest.CWR
				muts = append(muts, fmt.Sprintf("cwr@%d", at))
			case m == 2:
				p.Payload = p.Payload[:len(p.Payload)/2]
				muts = append(muts, fmt.Sprintf("short@%d", at))
			case m == 3:
				p.TTL = 10
				muts = append(muts, fmt.Sprintf("ttl@%d", at))
			case m == 4 && !v6:
				p.ID += 3
				muts = append(muts, fmt.Sprintf("idjump@%d", at))
			case m == 5:
				p.BadL4Checksum = true
				muts = append(muts, fmt.Sprintf("badcsum@%d", at))
			case m == 6 && !isUDP:
				p.Seq += 1
				muts = append(muts, fmt.Sprintf("seqgap@%d", at))
			case m == 7 && !isUDP:
				p.Flags |= pkttest.FIN
				muts = append(muts, fmt.Sprintf("fin@%d", at))
			}
		}
		// Sequence numbers after a shortened segment follow it.
		if !isUDP {
			seq := pkts[0].Seq
			for j := range pkts {
				gap := pkts[j].Seq - (base.Seq + uint32(j*mss))
				pkts[j].Seq = seq + gap
				seq += uint32(len(pkts[j].Payload))
			}
		}
		if r.IntN(4) == 0 {
			b := base
			b.SrcPort++
			other := run(b, 1+r.IntN(5), mss)
			mixed := make([]pkttest.Packet, 0, len(pkts)+len(other))
			for len(pkts)+len(other) > 0 {
				if len(other) == 0 || len(pkts) > 0 && r.IntN(2) == 0 {
					mixed, pkts = append(mixed, pkts[0]), pkts[1:]
				} else {
					mixed, other = append(mixed, other[0]), other[1:]
				}
			}
			pkts = mixed
			muts = append(muts, "2flows")
		}
		proto := "tcp"
		if isUDP {
			proto = "udp"
		}
		name := fmt.Sprintf("%s-%s-%s-mss%d-n%d", famName(v6), proto, []string{"gro", "udpfwd", "grooff"}[which], mss, n)
		if len(muts) > 0 {
			name += "-" + strings.Join(muts, "-")
		}
		cases = append(cases, gcase{name: name, pkts: pkts, oracle: which})
	}
	runGRO(t, cases)
}

// TestKernelGROCWRHeldUntilNextSegmentOrPollEnd: tcp_gro_receive never
// merges a segment carrying CWR, but its out_check_final (mss reset to 1)
// does not flush it, so dev_gro_receive holds it as a new head in one of
// the MAX_GRO_SKBS slots: it leaves when the next segment of its flow
// comes (which cannot merge with it: 6.18 compares CWR in the flag word)
// or at the end of the poll, after packets of other flows held before it.
// With PSH (or no payload) it is flushed at once.
func TestKernelGROCWRHeldUntilNextSegmentOrPollEnd(t *testing.T) {
	var cases []gcase
	cwr := func(p *pkttest.Packet) { p.Flags |= pkttest.CWR }
	for _, v6 := range []bool{false, true} {
		f := famName(v6)
		a := run(tcp(v6), 4, 1000)
		bb := tcp(v6)
		bb.SrcPort = 41000
		b := run(bb, 4, 1000)
		with(a, cwr, 1)
		cases = append(cases,
			gcase{name: f + "-other-flow-held-before", pkts: []pkttest.Packet{b[0], a[0], a[1], b[1]}},
			gcase{name: f + "-other-flow-held-after", pkts: []pkttest.Packet{a[0], a[1], b[0], b[1]}},
			gcase{name: f + "-interleaved", pkts: []pkttest.Packet{a[0], b[0], a[1], b[1], a[2], b[2], a[3], b[3]}},
			gcase{name: f + "-cwr-last", pkts: []pkttest.Packet{b[0], a[0], b[1], a[1]}},
			gcase{name: f + "-cwr-first", pkts: with(run(tcp(v6), 4, 1000), cwr, 0)},
			gcase{name: f + "-cwr-psh", pkts: with(run(tcp(v6), 4, 1000), func(p *pkttest.Packet) { p.Flags |= pkttest.CWR | pkttest.PSH }, 1)},
			gcase{name: f + "-cwr-short", pkts: with(run(tcp(v6), 4, 1000), func(p *pkttest.Packet) { p.Flags |= pkttest.CWR; p.Payload = p.Payload[:10] }, 1)},
		)
		// Slots: seven flows held, then a CWR segment, an eighth flow and
		// the first flow's second segment.
		var pkts []pkttest.Packet
		var seconds []pkttest.Packet
		for j := 0; j < 8; j++ {
			fb := tcp(v6)
			fb.SrcPort = uint16(42000 + j)
			r := run(fb, 2, 1000)
			if j < 7 {
				pkts = append(pkts, r[0])
			}
			seconds = append(seconds, r[1])
			if j == 7 {
				seconds[7] = r[0]
			}
		}
		c := tcp(v6)
		c.SrcPort = 43000
		c.Flags |= pkttest.CWR
		pkts = append(pkts, run(c, 1, 1000)[0], seconds[7], seconds[0])
		cases = append(cases, gcase{name: f + "-cwr-takes-a-slot", pkts: pkts})
	}
	runGRO(t, cases)
}

// TestKernelGROMarksValidWhatItVerified: the kernel's GRO validates the
// TCP or UDP checksum of what reaches tcp4/6_gro_receive or
// udp4/6_gro_receive without the IP layer's flush
// (skb_gro_checksum_validate, before it looks at the TCP header or at
// whether UDP GRO applies; a UDP checksum of 0 counts as verified), and a
// packet it validated but did not merge leaves CHECKSUM_UNNECESSARY:
// DATA_VALID in the header tun writes. Packets it did not validate — a
// bad checksum, IPv4 options or fragments, a length the IP layer flags,
// GRO off — leave with a zero header. Options.MarkValid reports the same.
// A TUN ignores DATA_VALID in a frame written to it (tun_get_user never
// looks at the flag): such frames are validated like any other, a bad
// checksum is not merged.
func TestKernelGROMarksValidWhatItVerified(t *testing.T) {
	var cases []gcase
	bad := func(p *pkttest.Packet) { p.BadL4Checksum = true }
	for _, v6 := range []bool{false, true} {
		f := famName(v6)
		ack := tcp(v6)
		cases = append(cases,
			gcase{name: f + "-tcp-single", pkts: run(tcp(v6), 1, 1000)},
			gcase{name: f + "-pure-ack", pkts: []pkttest.Packet{ack}},
			gcase{name: f + "-tcp-bad-csum", pkts: with(run(tcp(v6), 3, 1000), bad, 1)},
			gcase{name: f + "-udp-no-fwd", pkts: run(udp(v6), 3, 1000)},
			gcase{name: f + "-udp-no-fwd-bad-csum", pkts: with(run(udp(v6), 3, 1000), bad, 1)},
			gcase{name: f + "-udp-fwd-single", oracle: groUDP, pkts: run(udp(v6), 1, 1000)},
			gcase{name: f + "-gro-off", oracle: groOff, pkts: run(tcp(v6), 3, 1000)},
			gcase{name: f + "-udp-gro-off", oracle: groOff, pkts: run(udp(v6), 3, 1000)},
		)
		if !v6 {
			cases = append(cases,
				gcase{name: f + "-ipopt", pkts: all(run(tcp(v6), 3, 1000), func(p *pkttest.Packet) { p.IPOptions = ipNops })},
				gcase{name: f + "-mf", pkts: with(run(tcp(v6), 3, 1000), func(p *pkttest.Packet) { p.MF = true }, 1)},
			)
		}
	}
	runGRO(t, cases)

	// Raw bytes pkttest cannot express: UDP checksum 0, a TCP header the
	// GRO cannot pull (checksum correct), with and without UDP GRO.
	s := &oracles{t: t}
	for _, v6 := range []bool{false, true} {
		for _, which := range []int{groOn, groUDP} {
			for _, name := range []string{"udp-csum0", "tcp-doff4", "tcp-truncated"} {
				t.Run(fmt.Sprintf("%s-%s-%d", famName(v6), name, which), func(t *testing.T) {
					var wire [][]byte
					switch name {
					case "udp-csum0":
						for _, p := range run(udp(v6), 3, 1000) {
							b := p.Build()
							l4 := len(b) - 1008
							b[l4+6], b[l4+7] = 0, 0
							wire = append(wire, b)
						}
					default:
						for _, p := range run(tcp(v6), 2, 1000) {
							b := p.Build()
							l4 := len(b) - 1020
							if name == "tcp-doff4" {
								b[l4+12] = 0x40
							} else {
								b = truncateIP(b, l4+12)
							}
							fixL4Sum(b, l4)
							wire = append(wire, b)
						}
					}
					rawCompare(t, s, which, wire, coalesce.Options{})
				})
			}
		}
	}

	// Frames written with DATA_VALID and bad checksums: validated all the
	// same (not TrustChecksums).
	for _, v6 := range []bool{false, true} {
		for _, which := range []int{groOn, groUDP} {
			t.Run(fmt.Sprintf("%s-tun-ignores-data-valid-%d", famName(v6), which), func(t *testing.T) {
				base := tcp(v6)
				if which == groUDP {
					base = udp(v6)
				}
				var wire [][]byte
				for _, p := range with(run(base, 4, 1000), bad, 1, 2) {
					wire = append(wire, p.Build())
				}
				in := make([]kerneltest.Frame, len(wire))
				for i := range wire {
					in[i] = kerneltest.Frame{Hdr: virtio.Hdr{Flags: virtio.FlagDataValid}, Pkt: wire[i]}
				}
				o := s.get(which)
				got := ours(t, which, wire)
				kern, err := o.CoalesceFrames(in)
				if err != nil {
					t.Fatal(err)
				}
				if d := groDiff(kern, got); d != "" {
					t.Error(d)
				}
			})
		}
	}
}

// rawCompare is groCompare for packets given as bytes, with extra engine
// options.
func rawCompare(t *testing.T, s *oracles, which int, wire [][]byte, extra coalesce.Options) {
	t.Helper()
	got := oursWith(t, which, wire, extra)
	kern, err := kernelGRO(s.get(which), wire, func(k []kerneltest.Frame) bool { return groDiff(k, got) == "" })
	if err != nil {
		t.Fatalf("kernel: %v", err)
	}
	if d := groDiff(kern, got); d != "" {
		t.Error(d)
	}
}

// truncateIP cuts an IP packet to n bytes and fixes its length field (and
// IPv4 header checksum).
func truncateIP(b []byte, n int) []byte {
	b = b[:n]
	if b[0]>>4 == 6 {
		binary.BigEndian.PutUint16(b[4:], uint16(n-40))
		return b
	}
	binary.BigEndian.PutUint16(b[2:], uint16(n))
	b[10], b[11] = 0, 0
	binary.BigEndian.PutUint16(b[10:], ^sum16(b[:20]))
	return b
}

// fixL4Sum makes the L4 checksum of b (L4 header at l4, TCP) verify by
// adjusting its checksum field, or the last even word when the field is
// cut off.
func fixL4Sum(b []byte, l4 int) {
	off := l4 + 16
	if off+2 > len(b) {
		off = l4 + (len(b)-l4-2)&^1
	}
	b[off], b[off+1] = 0, 0
	n := len(b) - l4
	var ph []byte
	if b[0]>>4 == 4 {
		ph = append(append(ph, b[12:20]...), 0, b[9], byte(n>>8), byte(n))
	} else {
		ph = append(append(ph, b[8:40]...), 0, 0, byte(n>>8), byte(n), 0, 0, 0, b[6])
	}
	s := sum16(append(append([]byte{}, ph...), b[l4:]...))
	binary.BigEndian.PutUint16(b[off:], ^s)
}
