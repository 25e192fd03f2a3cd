package coalesce_test

// Differential tests through TAP devices (kerneltest.NewGROTAP): Ethernet
// frames through the kernel's GRO on a TAP and through coalesce with
// Options.L2Len 14. The oracle routes what GRO made out of `out`, so its
// frames carry the router's MAC header and the forwarded IP packet: the
// engine is fed each frame with its own MAC header and the IP packet
// after forwarding (GRO compares the MAC headers as they arrived), and
// the kernel's frames are compared with ours behind the MAC header,
// virtio headers included (both count csum_start from the Ethernet
// header), under the rules of kernel_linux_test.go.

import (
	"bytes"
	"math/rand/v2"
	"net"
	"strings"
	"testing"
	"time"

	"vnic/coalesce"
	"vnic/vnic/kerneltest"
	"vnic/vnic/pkttest"
	"vnic/vnic/virtio"
)

var (
	macA = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0a}
	macB = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0b}
)

type tapOracles struct {
	t *testing.T
	o [3]*kerneltest.GRO
}

func (s *tapOracles) get(which int) *kerneltest.GRO {
	if s.o[which] == nil {
		s.o[which] = kerneltest.NewGROTAP(s.t, kerneltest.GROOptions{
			UDPGROForwarding: which == groUDP,
			DisableGRO:       which == groOff,
		})
	}
	return s.o[which]
}

// tapFrames puts each packet behind an Ethernet header to the oracle's
// `in` from src(i).
func tapFrames(wire [][]byte, src func(i int) net.HardwareAddr) [][]byte {
	out := make([][]byte, len(wire))
	for i, p := range wire {
		out[i] = kerneltest.Ether(kerneltest.TAPInMAC, src(i), p)
	}
	return out
}

func fromA(int) net.HardwareAddr { return macA }

// oursTAP runs the engine with L2Len 14 over the frames, each IP packet
// forwarded, and returns its frames behind the MAC header (virtio header
// offsets moved to the IP packet), checking that each header's offsets
// count from the Ethernet header.
func oursTAP(t *testing.T, which int, frames [][]byte) []kerneltest.Frame {
	t.Helper()
	bufs := make([][]byte, len(frames))
	for i, f := range frames {
		fwd := append(bytes.Clone(f[:14]), kerneltest.AfterForwarding(f[14:])...)
		b := make([]byte, offset+len(fwd), offset+65535+64)
		copy(b[offset:], fwd)
		bufs[i] = b
	}
	opt := engineOptions(which)
	opt.L2Len = 14
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
	return stripL2(t, out)
}

// stripL2 returns frames as TUN frames: the IP packet, the virtio
// header's offsets moved from the Ethernet header to it.
func stripL2(t *testing.T, fr []kerneltest.Frame) []kerneltest.Frame {
	t.Helper()
	out := make([]kerneltest.Frame, len(fr))
	for i, f := range fr {
		h := f.Hdr
		if h.Flags&virtio.FlagNeedsCsum != 0 {
			if h.CsumStart < 14 {
				t.Fatalf("frame %d: csum_start %d inside the MAC header", i, h.CsumStart)
			}
			h.CsumStart -= 14
		}
		if h.HdrLen >= 14 {
			h.HdrLen -= 14
		}
		out[i] = kerneltest.Frame{Hdr: h, Pkt: f.Pkt[14:]}
	}
	return out
}

// kernelTAP runs frames through the TAP oracle and returns its frames as
// TUN frames, checking each carries the router's MAC header.
func kernelTAP(t *testing.T, o *kerneltest.GRO, frames [][]byte, got []kerneltest.Frame) []kerneltest.Frame {
	t.Helper()
	agree := func(k []kerneltest.Frame) bool { return groDiff(stripL2(t, k), got) == "" }
	k, err := kernelGRO(o, frames, agree)
	if err != nil {
		t.Fatalf("kernel: %v", err)
	}
	want := kerneltest.Ether(kerneltest.TAPGatewayMAC, kerneltest.TAPOutMAC, []byte{0x45})[:12]
	for i, f := range k {
		if !bytes.Equal(f.Pkt[:12], want) {
			t.Fatalf("kernel frame %d: MAC header % x, want the router's", i, f.Pkt[:14])
		}
	}
	return stripL2(t, k)
}

// TestKernelTAPGROMergesLikeTUN: runs of TCP and UDP, both families,
// interleaved flows, merge through a TAP as coalesce merges them with
// L2Len 14, csum_start and hdr_len counted from the Ethernet header.
func TestKernelTAPGROMergesLikeTUN(t *testing.T) {
	s := &tapOracles{t: t}
	var cases []gcase
	for _, v6 := range []bool{false, true} {
		cases = append(cases,
			gcase{famName(v6) + "-tcp-run", run(tcp(v6), 14, 1448), groOn},
			gcase{famName(v6) + "-tcp-run-psh", with(run(tcp(v6), 9, 1000), func(p *pkttest.Packet) { p.Flags |= pkttest.PSH }, 5), groOn},
			gcase{famName(v6) + "-udp-run", run(udp(v6), 12, 1200), groUDP},
			gcase{famName(v6) + "-tcp-gro-off", run(tcp(v6), 5, 1448), groOff},
		)
		a, b := run(tcp(v6), 6, 1000), run(tcp(v6), 6, 1000)
		for i := range b {
			b[i].SrcPort++
		}
		var mix []pkttest.Packet
		for i := range a {
			mix = append(mix, a[i], b[i])
		}
		cases = append(cases, gcase{famName(v6) + "-two-flows", mix, groOn})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			wire := make([][]byte, len(c.pkts))
			for i := range c.pkts {
				wire[i] = c.pkts[i].Build()
			}
			frames := tapFrames(wire, fromA)
			got := oursTAP(t, c.oracle, frames)
			if d := groDiff(kernelTAP(t, s.get(c.oracle), frames, got), got); d != "" {
				t.Error(d)
			}
		})
	}
}

// TestKernelTAPGROComparesMACHeaders: segments of one TCP flow that
// arrive from two MAC addresses do not merge with each other
// (gro_list_prepare: compare_ether_header); each address's run merges
// on its own.
func TestKernelTAPGROComparesMACHeaders(t *testing.T) {
	s := &tapOracles{t: t}
	for _, v6 := range []bool{false, true} {
		for _, pattern := range []string{"alternate", "halves"} {
			t.Run(famName(v6)+"-"+pattern, func(t *testing.T) {
				pkts := run(tcp(v6), 8, 1000)
				wire := make([][]byte, len(pkts))
				for i := range pkts {
					wire[i] = pkts[i].Build()
				}
				src := func(i int) net.HardwareAddr {
					if pattern == "alternate" && i%2 == 1 || pattern == "halves" && i >= 4 {
						return macB
					}
					return macA
				}
				frames := tapFrames(wire, src)
				got := oursTAP(t, groOn, frames)
				kern := kernelTAP(t, s.get(groOn), frames, got)
				if d := groDiff(kern, got); d != "" {
					t.Error(d)
				}
				if pattern == "halves" && len(got) != 2 {
					t.Errorf("ours: %s, want the two halves merged apart", describe(got))
				}
			})
		}
	}
}

// TestKernelTAPGRORandomized is TestKernelGRORandomized's bursts through
// TAP devices, each packet from one of two MAC addresses now and then.
func TestKernelTAPGRORandomized(t *testing.T) {
	n := int(randomEnv(t, "VNIC_RANDOM_CASES", 60))
	seed := randomEnv(t, "VNIC_RANDOM_SEED", 0x7a9_5eed)
	s := &tapOracles{t: t}
	for _, which := range []int{groOn, groUDP} {
		proto := map[int]string{groOn: "TCP", groUDP: "UDP"}[which]
		r := rand.New(rand.NewPCG(seed, uint64(20+which)))
		var same, documented, bad, pkts int
		start := time.Now()
		for i := range n {
			o := which
			if r.IntN(20) == 0 {
				o = groOff
			}
			name, burst := randomBurst(r, which)
			wire, tags := wireBytes(r, burst)
			src := fromA
			if r.IntN(4) == 0 {
				macs := make([]net.HardwareAddr, len(wire))
				for j := range macs {
					macs[j] = macA
					if r.IntN(3) == 0 {
						macs[j] = macB
					}
				}
				src = func(j int) net.HardwareAddr { return macs[j] }
				tags = append(tags, "two-macs")
			}
			if len(tags) > 0 {
				name += " " + strings.Join(tags, " ")
			}
			pkts += len(wire)
			frames := tapFrames(wire, src)
			got, stack := afterStack(oursTAP(t, o, frames))
			kern := kernelTAP(t, s.get(o), frames, got)
			switch d := groDiff(kern, got); {
			case exactly(kern, got) && !stack:
				same++
			case d == "":
				documented++
			default:
				if bad++; bad <= 10 {
					t.Errorf("%s burst %d (%s, oracle %d): %s", proto, i, name, o, d)
				}
			}
		}
		t.Logf("TAP GRO %s randomized, seed %#x: %d bursts (%d packets) in %v: %d agree (%d the same, %d within the documented differences), %d mismatches",
			proto, seed, n, pkts, time.Since(start).Round(time.Millisecond), same+documented, same, documented, bad)
	}
}
