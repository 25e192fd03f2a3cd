package kerneltest

import (
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"vnic/vnic/nsutil"
	"vnic/vnic/tundev"
	"vnic/vnic/virtio"
)

// Addresses of the UDP tunnel oracle: the tunnel's endpoints (the
// underlay, on `out`), the inner destinations' neighbour entry, and the
// MAC addresses of the VXLAN device and that neighbour (fixed, so the
// inner Ethernet header is the same in every run).
var (
	tunnelLocal4  = netip.MustParseAddr("198.19.0.1")
	tunnelRemote4 = netip.MustParseAddr("198.19.0.2")
	tunnelLocal6  = netip.MustParseAddr("fd01::1")
	tunnelRemote6 = netip.MustParseAddr("fd01::2")
	// TunnelInnerSrcMAC and TunnelInnerDstMAC are the inner Ethernet
	// addresses of what the oracle's VXLAN device sends.
	TunnelInnerSrcMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01}
	TunnelInnerDstMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x02}
)

// TunnelOptions configures the UDP tunnel oracle.
type TunnelOptions struct {
	// OuterV6 puts the tunnel over IPv6 (the VXLAN endpoints fd01::1 and
	// fd01::2) instead of IPv4 (198.19.0.1, 198.19.0.2).
	OuterV6 bool
	// UDPCsum gives the outer UDP header a checksum: SKB_GSO_UDP_TUNNEL_CSUM.
	//
	// Equivalent to: ip link add ... type vxlan ... udpcsum (IPv4), or
	// without udp6zerocsumtx (IPv6)
	UDPCsum bool
}

// TunnelGSO is the kernel's UDP tunnel segmentation as an oracle: a VXLAN
// device (VNI 42, UDP port 4789) whose underlay is TUN `out`. A TCP or
// UDP super-packet written into TUN `in` is forwarded into the VXLAN
// device, which encapsulates it whole (a GSO skb with SKB_GSO_UDP_TUNNEL
// or _CSUM); what `out` reads depends on its offloads:
//
//   - Encapsulate: `out` has the UDP tunnel offloads (TUN_F_UDP_TUNNEL_GSO,
//     _CSUM) and the 24-byte header, so it reads the tunnel super-packet
//     whole, described by virtio_net_hdr_tnl_from_skb (Frame.Tunnel): what
//     the kernel hands a NIC with tunnel segmentation offload.
//   - Segment: `out` has no offloads, so validate_xmit_skb segments the
//     tunnel super-packet in software (skb_udp_tunnel_segment) and
//     completes every checksum: what such a NIC must put on the wire.
//
// Not safe for concurrent use.
type TunnelGSO struct {
	p   *pair
	opt TunnelOptions
}

// tunnelOffloads are `out`'s offloads for Encapsulate.
const tunnelOffloads = tundev.All | tundev.UDPTunnel | tundev.UDPTunnelCsum

// NewTunnelGSO builds the UDP tunnel recipe in a fresh namespace; it is
// all removed in t.Cleanup. It skips the test when the kernel has no UDP
// tunnel offloads for TUN (before 6.17) — or fails it with CI=true.
//
// Equivalent to, in the namespace:
//
//	ip addr add 198.19.0.1/16 dev out
//	ip link add vxlan0 address 02:00:00:00:00:01 mtu 65000 type vxlan id 42 \
//	    local 198.19.0.1 remote 198.19.0.2 dstport 4789 dev out [udpcsum]
//	ip route add 198.18.0.0/16 dev vxlan0; ip route add fd00::/16 dev vxlan0
//	ip neigh add 198.18.0.2 lladdr 02:00:00:00:00:02 dev vxlan0 nud permanent
//	ip neigh add fd00::2 lladdr 02:00:00:00:00:02 dev vxlan0 nud permanent
func NewTunnelGSO(t testing.TB, opt TunnelOptions) *TunnelGSO {
	t.Helper()
	p := newPairWith(t, pairConfig{inOffloads: offloadsAll, outOffloads: tunnelOffloads, outHdrLen: virtio.SizeTunnel})
	if got := p.out.dev.Offloads(); got&tundev.UDPTunnel == 0 {
		RequireFeature(t, "TUN_F_UDP_TUNNEL_GSO (Linux 6.17+)")
	}
	h, err := nsutil.Handle(p.ns.Name)
	if err != nil {
		t.Fatalf("kerneltest: %v", err)
	}
	defer h.Close()
	local, remote, plen := tunnelLocal4, tunnelRemote4, 16
	if opt.OuterV6 {
		local, remote, plen = tunnelLocal6, tunnelRemote6, 64
	}
	if err := nsutil.ConfigureLink(h, "out", nsutil.LinkConfig{Addrs: []netip.Prefix{netip.PrefixFrom(local, plen)}}); err != nil {
		t.Fatalf("kerneltest: %v", err)
	}
	// netlink.Vxlan cannot say noudpcsum (it leaves IFLA_VXLAN_UDP_CSUM
	// out, and the kernel's default is a checksum), so iproute2 does it.
	args := []string{"-n", p.ns.Name, "link", "add", "vxlan0", "address", TunnelInnerSrcMAC.String(), "mtu", "65000",
		"type", "vxlan", "id", "42", "local", local.String(), "remote", remote.String(), "dstport", "4789",
		"dev", "out", "nolearning"}
	switch {
	case !opt.OuterV6 && opt.UDPCsum:
		args = append(args, "udpcsum")
	case !opt.OuterV6:
		args = append(args, "noudpcsum")
	case !opt.UDPCsum:
		args = append(args, "udp6zerocsumtx")
	}
	if b, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("kerneltest: ip %s: %v: %s", strings.Join(args, " "), err, b)
	}
	if err := nsutil.Sysctl(p.ns.Name, "net.ipv4.conf.vxlan0.rp_filter", "0"); err != nil {
		t.Fatalf("kerneltest: %v", err)
	}
	if err := nsutil.ConfigureLink(h, "vxlan0", nsutil.LinkConfig{
		Up:     true,
		Routes: []nsutil.Route{{Dst: netip.MustParsePrefix("198.18.0.0/16")}, {Dst: netip.MustParsePrefix("fd00::/16")}},
	}); err != nil {
		t.Fatalf("kerneltest: %v", err)
	}
	l, err := h.LinkByName("vxlan0")
	if err != nil {
		t.Fatalf("kerneltest: %v", err)
	}
	for _, dst := range []netip.Addr{netip.MustParseAddr("198.18.0.2"), netip.MustParseAddr("fd00::2")} {
		n := &netlink.Neigh{LinkIndex: l.Attrs().Index, IP: dst.AsSlice(), HardwareAddr: TunnelInnerDstMAC, State: netlink.NUD_PERMANENT}
		if err := h.NeighAdd(n); err != nil {
			t.Fatalf("kerneltest: ip neigh add %v dev vxlan0: %v", dst, err)
		}
	}
	return &TunnelGSO{p: p, opt: opt}
}

// Netns returns the oracle's namespace.
func (o *TunnelGSO) Netns() *Netns { return o.p.ns }

// Encapsulate writes one inner frame (h, then pkt) into `in` and returns
// what `out`, holding the UDP tunnel offloads, reads: normally one tunnel
// super-packet with its HdrTunnel (Frame.Tunnel). Frames of other flows
// (MLD) are dropped.
func (o *TunnelGSO) Encapsulate(h virtio.Hdr, pkt []byte) ([]Frame, error) {
	return o.run(tunnelOffloads, h, pkt, 0)
}

// Segment is Encapsulate with `out` holding no offloads: the wire packets
// of the tunnel super-packet, segmented and checksummed in software.
func (o *TunnelGSO) Segment(h virtio.Hdr, pkt []byte) ([]Frame, error) {
	return o.run(0, h, pkt, -1)
}

// run sets `out`'s offloads, writes the frame and collects what comes out:
// with want 0 it stops right after the first frame (segmentation happens
// inside write(2), so the tunnel super-packet is all there is), with -1
// after gsoQuiet without a frame.
func (o *TunnelGSO) run(outOffloads tundev.Offloads, h virtio.Hdr, pkt []byte, want int) ([]Frame, error) {
	if o.p.out.dev.Offloads() != outOffloads {
		if err := o.p.out.dev.SetOffloads(outOffloads); err != nil {
			return nil, fmt.Errorf("kerneltest: %w", err)
		}
	}
	o.p.out.drain()
	if err := o.p.in.write(h, pkt); err != nil {
		return nil, err
	}
	inner, _ := flowOf(pkt)
	keep := func(f Frame) bool {
		fl, ok := flowOf(innerOf(f.Pkt))
		return ok && fl == inner
	}
	fr, _, err := o.p.out.collect(gsoFirst, gsoQuiet, gsoGrace, gsoLimit, want, 0, keep)
	return fr, err
}

// innerOf returns the inner IP packet of a VXLAN packet over IPv4 or IPv6
// (outer IP header without options or extension headers, UDP, VXLAN,
// Ethernet), or nil.
func innerOf(pkt []byte) []byte {
	if len(pkt) < 1 {
		return nil
	}
	off := 20
	if pkt[0]>>4 == 6 {
		off = 40
	}
	off += 8 + 8 + 14
	if len(pkt) <= off {
		return nil
	}
	return pkt[off:]
}
