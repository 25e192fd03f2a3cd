package kerneltest

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"testing"

	"github.com/vishvananda/netlink"

	"vnic/vnic/nsutil"
)

// The TAP oracles (NewGSOTAP, NewGROTAP) are the GSO and GRO recipes with
// TAP devices: every frame is the virtio header and an Ethernet frame, as
// on the daemon's device in --mode tap. A frame written into `in` must be
// addressed to TAPInMAC (eth_type_trans: PACKET_HOST, so ip_rcv takes
// it); the namespace routes 198.18.0.0/15 and fd00::/8 via a gateway that
// is a permanent neighbour of `out`, so what `out` emits is addressed to
// TAPGatewayMAC from TAPOutMAC — the MAC header a router writes. The IP
// part is forwarded as in the TUN recipes (AfterRouting turns an input
// frame into what a pure-Go engine's output must then equal). `out`
// carries 198.19.255.1/24 and fd00:ff::1/64; the gateway is
// 198.19.255.2 / fd00:ff::2 (both inside the test ranges).
var (
	TAPInMAC      = net.HardwareAddr{0x02, 0x76, 0x6e, 0x00, 0x00, 0x01}
	TAPOutMAC     = net.HardwareAddr{0x02, 0x76, 0x6e, 0x00, 0x00, 0x02}
	TAPGatewayMAC = net.HardwareAddr{0x02, 0x76, 0x6e, 0x00, 0x00, 0x03}
)

var (
	tapOut4 = netip.MustParsePrefix("198.19.255.1/24")
	tapOut6 = netip.MustParsePrefix("fd00:ff::1/64")
	tapGW4  = netip.MustParseAddr("198.19.255.2")
	tapGW6  = netip.MustParseAddr("fd00:ff::2")
)

// ethHeaderLen is an Ethernet header without VLAN tags.
const ethHeaderLen = 14

// TAPMTU is the MTU of the TAP oracles' devices: the largest a TAP takes
// (MAX_MTU less its 14-byte hard_header_len). A packet larger than that
// that leaves unsegmented is dropped or fragmented by forwarding, so
// differential tests keep those out of their comparisons.
const TAPMTU = 65535 - ethHeaderLen

const tapMTU = TAPMTU

// ipPart returns the IP packet of a frame whose link-layer header is l2
// bytes (nil for a frame shorter than that).
func ipPart(frame []byte, l2 int) []byte {
	if len(frame) < l2 {
		return nil
	}
	return frame[l2:]
}

// NewGSOTAP is NewGSO with TAP devices: SegmentFrames takes an Ethernet
// frame addressed to TAPInMAC, with csum_start and hdr_len counted from
// its first byte, and returns the Ethernet frames `out` emits.
func NewGSOTAP(t testing.TB) *GSO {
	t.Helper()
	return &GSO{p: newPairWith(t, pairConfig{inOffloads: offloadsAll, tap: true})}
}

// NewGROTAP is NewGRO with TAP devices: CoalesceFrames takes Ethernet
// frames addressed to TAPInMAC and returns the Ethernet frames `out`
// emits, their virtio headers' offsets counted from the Ethernet header.
func NewGROTAP(t testing.TB, opt GROOptions) *GRO {
	t.Helper()
	return newGRO(t, pairConfig{inNAPI: true, outOffloads: offloadsAll, tap: true}, opt)
}

// Ether returns pkt behind an Ethernet header from src to dst with the
// EtherType of its IP version.
func Ether(dst, src net.HardwareAddr, pkt []byte) []byte {
	b := make([]byte, ethHeaderLen+len(pkt))
	copy(b, dst)
	copy(b[6:], src)
	b[12], b[13] = 0x08, 0x00
	if len(pkt) > 0 && pkt[0]>>4 == 6 {
		b[12], b[13] = 0x86, 0xdd
	}
	copy(b[ethHeaderLen:], pkt)
	return b
}

// AfterRouting returns a copy of an Ethernet frame as the TAP oracles'
// router sends it on: addressed from TAPOutMAC to TAPGatewayMAC, the IP
// packet through AfterForwarding.
func AfterRouting(frame []byte) []byte {
	if len(frame) < ethHeaderLen {
		return bytes.Clone(frame)
	}
	b := append(bytes.Clone(frame[:ethHeaderLen]), AfterForwarding(frame[ethHeaderLen:])...)
	copy(b, TAPGatewayMAC)
	copy(b[6:], TAPOutMAC)
	return b
}

// tapLinkConfig adapts the link configuration of the TAP pair: the
// largest MTU a TAP takes, `out`'s addresses and routes via the gateway.
func tapLinkConfig(name string, c *nsutil.LinkConfig) {
	c.MTU = tapMTU
	if name == "out" {
		c.Addrs = []netip.Prefix{tapOut4, tapOut6}
		c.Routes = []nsutil.Route{{Dst: route4, Via: tapGW4}, {Dst: route6, Via: tapGW6}}
	}
}

// configureTAPs gives the TAPs their addresses and `out` its permanent
// neighbours, before the links come up.
//
// Equivalent to: ip link set in address TAPInMAC; ip link set out address
// TAPOutMAC; ip neigh add GW lladdr TAPGatewayMAC dev out nud permanent
func configureTAPs(h *netlink.Handle) error {
	for name, mac := range map[string]net.HardwareAddr{"in": TAPInMAC, "out": TAPOutMAC} {
		l, err := h.LinkByName(name)
		if err != nil {
			return err
		}
		if err := h.LinkSetHardwareAddr(l, mac); err != nil {
			return fmt.Errorf("ip link set %s address %v: %w", name, mac, err)
		}
	}
	out, err := h.LinkByName("out")
	if err != nil {
		return err
	}
	for _, gw := range []netip.Addr{tapGW4, tapGW6} {
		n := &netlink.Neigh{LinkIndex: out.Attrs().Index, State: netlink.NUD_PERMANENT, IP: gw.AsSlice(), HardwareAddr: TAPGatewayMAC}
		if err := h.NeighAdd(n); err != nil {
			return fmt.Errorf("ip neigh add %v lladdr %v dev out nud permanent: %w", gw, TAPGatewayMAC, err)
		}
	}
	return nil
}
