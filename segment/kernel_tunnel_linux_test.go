package segment_test

// Differential tests for UDP tunnel segmentation: an inner super-packet
// goes into the kernel's VXLAN device (kerneltest.TunnelGSO); a TUN with
// the UDP tunnel offloads reads the tunnel super-packet whole
// (Encapsulate), a TUN without reads the segments the kernel's
// skb_udp_tunnel_segment made of it (Segment). The first goes through a
// segment.NewTunnelPlan; its packets must be the second's, byte for byte.
//
// Each run of the VXLAN device reserves fresh outer IPv4 IDs
// (ip_select_ident), so the tunnel super-packet is given the outer ID of
// the kernel's first segment before it is cut.

import (
	"encoding/binary"
	"fmt"
	"testing"

	"vnic/segment"
	"vnic/vnic/kerneltest"
	"vnic/vnic/pkttest"
)

type tcase struct {
	p   pkttest.Packet
	gso int
	ecn bool
}

func (c tcase) name() string {
	return fmt.Sprintf("%s-gso%d-len%d-flags%02x-ecn%v", name4(c.p), c.gso, len(c.p.Payload), c.p.Flags, c.ecn)
}

func name4(p pkttest.Packet) string {
	s := "v4"
	if p.V6 {
		s = "v6"
	}
	if p.Proto == pkttest.ProtoUDP {
		return s + "-udp"
	}
	return s + "-tcp"
}

func tunnelCompare(t *testing.T, o *kerneltest.TunnelGSO, c tcase) {
	t.Helper()
	pkt, h := c.p.BuildGSO(c.gso, c.ecn)
	enc, err := o.Encapsulate(h, pkt)
	if err != nil || len(enc) != 1 {
		t.Fatalf("kernel encapsulated %d frames, %v", len(enc), err)
	}
	kern, err := o.Segment(h, pkt)
	if err != nil || len(kern) == 0 {
		t.Fatalf("kernel segmented into %d frames, %v", len(kern), err)
	}
	th, tp := enc[0].Tunnel, enc[0].Pkt
	if tp[0]>>4 == 4 && kern[0].Pkt[0]>>4 == 4 {
		copy(tp[4:6], kern[0].Pkt[4:6])
		tp[10], tp[11] = 0, 0
		binary.BigEndian.PutUint16(tp[10:], ^sum16(tp[:int(tp[0]&0xf)*4]))
	}
	plan, err := segment.NewTunnelPlan(th, tp, segment.Options{})
	if err != nil {
		t.Fatalf("NewTunnelPlan(%v): %v", th, err)
	}
	out := make([][]byte, plan.Segments())
	sizes := make([]int, len(out))
	for i := range out {
		out[i] = make([]byte, plan.MaxSize())
	}
	if _, err := plan.Cut(out, sizes, 0); err != nil {
		t.Fatal(err)
	}
	if len(kern) != len(out) {
		t.Fatalf("kernel made %d packets, segment %d (tunnel header %v)", len(kern), len(out), th)
	}
	largest := 0
	for i := range kern {
		largest = max(largest, len(kern[i].Pkt))
		if d := kerneltest.DiffPackets(kern[i].Pkt, out[i][:sizes[i]]); d != "" {
			t.Errorf("packet %d of %d: %s (tunnel header %v)", i, len(kern), d, th)
		}
	}
	if plan.MaxSize() != largest {
		t.Errorf("MaxSize %d, the largest packet is %d bytes", plan.MaxSize(), largest)
	}
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

// TestKernelUDPTunnelSegmentation: skb_udp_tunnel_segment over VXLAN, for
// tunnels over IPv4 and IPv6, with and without the outer UDP checksum
// (SKB_GSO_UDP_TUNNEL_CSUM), inner TCP (CWR, PSH, FIN, the ECN gso bit)
// and UDP over both families, IDs across the wrap, gso_size edges.
func TestKernelUDPTunnelSegmentation(t *testing.T) {
	var cases []tcase
	for _, v6 := range []bool{false, true} {
		for _, udp := range []bool{false, true} {
			for _, gso := range []int{1, 7, 536, 1000, 1398, 1448, 8948} {
				for _, n := range []int{gso + 1, 3*gso - 1, 10000, 60000} {
					if n > 60000 || n/gso > 300 {
						continue
					}
					p := pkttest.Packet{V6: v6, Flags: pkttest.ACK | pkttest.PSH, ID: 0xfffe, Seq: 0xfffff000, Payload: pay(n, byte(gso))}
					if udp {
						p.Proto = pkttest.ProtoUDP
					}
					cases = append(cases, tcase{p: p, gso: gso})
				}
			}
			if !udp {
				for _, f := range []uint8{pkttest.ACK | pkttest.CWR | pkttest.ECE, pkttest.ACK | pkttest.FIN | pkttest.PSH, pkttest.ACK | pkttest.URG} {
					p := pkttest.Packet{V6: v6, Flags: f, Urgent: 7, TCPOptions: tsOpt, Payload: pay(5000, 3)}
					cases = append(cases, tcase{p: p, gso: 1448, ecn: f&pkttest.CWR != 0})
				}
			}
		}
	}
	for _, opt := range []kerneltest.TunnelOptions{{}, {UDPCsum: true}, {OuterV6: true}, {OuterV6: true, UDPCsum: true}} {
		t.Run(fmt.Sprintf("outer-v6-%v-csum-%v", opt.OuterV6, opt.UDPCsum), func(t *testing.T) {
			o := kerneltest.NewTunnelGSO(t, opt)
			for _, c := range cases {
				t.Run(c.name(), func(t *testing.T) { tunnelCompare(t, o, c) })
			}
		})
	}
}
