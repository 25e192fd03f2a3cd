package kerneltest

import (
	"testing"

	"vnic/vnic/pkttest"
	"vnic/vnic/virtio"
)

// TestKernelTunnelOracleEncapsulatesAndSegments: the VXLAN recipe hands a
// TUN with the UDP tunnel offloads one tunnel super-packet (gso type with
// the tunnel bit of the underlay's family, outer_th after the outer IP
// header, inner_nh after UDP, VXLAN and Ethernet, csum_start at the inner
// TCP header, UDP_TUNNEL_CSUM exactly when the outer UDP checksum is on),
// and a TUN without offloads the segments.
func TestKernelTunnelOracleEncapsulatesAndSegments(t *testing.T) {
	for _, opt := range []TunnelOptions{{}, {UDPCsum: true}, {OuterV6: true}, {OuterV6: true, UDPCsum: true}} {
		o := NewTunnelGSO(t, opt)
		p := pkttest.Packet{Flags: pkttest.ACK | pkttest.PSH, Payload: pkttest.Payload(3000, 1)}
		b, h := p.BuildGSO(1000, false)
		enc, err := o.Encapsulate(h, b)
		if err != nil || len(enc) != 1 {
			t.Fatalf("%+v: encapsulate: %d frames, %v", opt, len(enc), err)
		}
		th := enc[0].Tunnel
		ip, tnl := 20, virtio.GSOUDPTunnelIPv4
		if opt.OuterV6 {
			ip, tnl = 40, virtio.GSOUDPTunnelIPv6
		}
		want := virtio.HdrTunnel{Hdr: virtio.Hdr{Flags: virtio.FlagNeedsCsum, GSOType: virtio.GSOTCPv4 | tnl,
			HdrLen: th.HdrLen, GSOSize: 1000, CsumStart: uint16(ip + 50), CsumOffset: 16},
			OuterTHOffset: uint16(ip), InnerNHOffset: uint16(ip + 30)}
		if opt.UDPCsum {
			want.Flags |= virtio.FlagUDPTunnelCsum
		}
		if th != want {
			t.Errorf("%+v: tunnel header %v, want %v", opt, th, want)
		}
		seg, err := o.Segment(h, b)
		if err != nil || len(seg) != 3 {
			t.Errorf("%+v: segment: %d frames, %v", opt, len(seg), err)
		}
		for i, f := range seg {
			if opt.UDPCsum {
				if err := pkttest.Verify(f.Pkt); err != nil {
					t.Errorf("%+v: segment %d: %v", opt, i, err)
				}
			}
			if err := pkttest.Verify(innerOf(f.Pkt)); err != nil {
				t.Errorf("%+v: segment %d inner: %v", opt, i, err)
			}
		}
	}
}

// TestKernelTUNRefusesItsOwnTunnelFrames pins a 6.18 quirk: a TUN (an IP
// device, no Ethernet header) refuses on write the very tunnel frames it
// hands out on read. virtio_net_hdr_tnl_to_skb wants outer_th_offset at
// least ETH_HLEN plus the outer IP header (34 over IPv4, 54 over IPv6),
// which only a TAP frame can meet; a TUN frame's outer UDP header is at
// 20 or 40. So GRO output with the tunnel header cannot be written into a
// TUN, only the decapsulated or plain forms.
func TestKernelTUNRefusesItsOwnTunnelFrames(t *testing.T) {
	for _, opt := range []TunnelOptions{{}, {OuterV6: true}} {
		o := NewTunnelGSO(t, opt)
		p := pkttest.Packet{Flags: pkttest.ACK, Payload: pkttest.Payload(3000, 1)}
		b, h := p.BuildGSO(1000, false)
		enc, err := o.Encapsulate(h, b)
		if err != nil || len(enc) != 1 {
			t.Fatalf("encapsulate: %d frames, %v", len(enc), err)
		}
		write := func(th uint16) error {
			ht := enc[0].Tunnel
			ht.OuterTHOffset, ht.HdrLen = th, 0
			frame := make([]byte, virtio.SizeTunnel+len(enc[0].Pkt))
			ht.Encode(frame)
			copy(frame[virtio.SizeTunnel:], enc[0].Pkt)
			return o.p.out.writeRaw(frame)
		}
		eth := uint16(34)
		if opt.OuterV6 {
			eth = 54
		}
		if err := write(enc[0].Tunnel.OuterTHOffset); err == nil {
			t.Errorf("outer v6 %v: the TUN took its own tunnel frame (outer_th %d): the ETH_HLEN check is gone", opt.OuterV6, enc[0].Tunnel.OuterTHOffset)
		}
		if err := write(eth); err != nil {
			t.Errorf("outer v6 %v: outer_th %d refused too: %v", opt.OuterV6, eth, err)
		}
	}
}
