package kerneltest

import (
	"bytes"
	"net"
	"testing"

	"vnic/vnic/pkttest"
	"vnic/vnic/virtio"
)

var hostMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x42}

// TestKernelTAPTSOExample is the segmentation recipe (README, "Proof:
// the kernel is the oracle": TAP in with offloads → forwarding → TAP out
// without) on one 10,000-byte super-packet with gso_size 1448:
// csum_start counts from the Ethernet header, and the 7 segments come out
// as through TUN devices, each behind the router's MAC header.
func TestKernelTAPTSOExample(t *testing.T) {
	o := NewGSOTAP(t)
	p := pkttest.Packet{ID: 0x1234, Seq: 1000, Flags: pkttest.ACK | pkttest.PSH, Payload: pkttest.Payload(10000, 1)}
	b, h := p.BuildGSO(1448, false)
	h.CsumStart += ethHeaderLen
	h.HdrLen += ethHeaderLen
	fr, err := o.SegmentFrames(h, Ether(TAPInMAC, hostMAC, b))
	if err != nil {
		t.Fatal(err)
	}
	want := wireRun(pkttest.Packet{ID: 0x1234, Seq: 1000, TTL: 63, Flags: pkttest.ACK | pkttest.PSH}, 10000, 1448)
	if len(fr) != 7 {
		t.Fatalf("%d segments, want 7", len(fr))
	}
	for i, f := range fr {
		if f.Hdr != (virtio.Hdr{}) {
			t.Errorf("segment %d: header %v, want all zero", i, f.Hdr)
		}
		if !bytes.Equal(f.Pkt[:14], Ether(TAPGatewayMAC, TAPOutMAC, want[i])[:14]) {
			t.Errorf("segment %d: MAC header % x", i, f.Pkt[:14])
		}
		if d := DiffPackets(f.Pkt[14:], want[i]); d != "" {
			t.Errorf("segment %d: %s", i, d)
		}
	}
}

// TestKernelTAPGRODesignExample: the 7 segments merge into one frame
// through a TAP as through a TUN; csum_start counts from the Ethernet
// header.
func TestKernelTAPGRODesignExample(t *testing.T) {
	o := NewGROTAP(t, GROOptions{})
	var in [][]byte
	for _, s := range wireRun(pkttest.Packet{ID: 0x1234, Seq: 1000, Flags: pkttest.ACK | pkttest.PSH}, 10000, 1448) {
		in = append(in, Ether(TAPInMAC, hostMAC, s))
	}
	fr, err := o.Coalesce(in)
	if err != nil {
		t.Fatal(err)
	}
	if len(fr) != 1 {
		t.Fatalf("%d frames, want 1", len(fr))
	}
	f := fr[0]
	// 20 bytes of IPv4 and 20 of TCP header; hdr_len is the whole first
	// frame (skb_headlen), Ethernet header included.
	if len(f.Pkt) != 14+10040 || f.Hdr.HdrLen != 14+1488 || f.Hdr.CsumStart != 34 || f.Hdr.GSOType != virtio.GSOTCPv4 || f.Hdr.GSOSize != 1448 {
		t.Errorf("merged frame %d bytes, %v", len(f.Pkt), f.Hdr)
	}
}
