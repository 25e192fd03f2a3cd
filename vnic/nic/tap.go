package nic

import (
	"crypto/sha256"
	"net"
	"time"

	"vnic/segment"
	"vnic/vnic/drop"
	"vnic/vnic/packet"
	"vnic/vnic/virtio"
)

// Mode is what the host sees of the NIC.
type Mode string

// Modes.
const (
	// ModeTUN (the default) is an IP interface, a TUN device: every frame
	// is an IP packet, the far end an IP point-to-point wire.
	ModeTUN Mode = "tun"
	// ModeTAP is an Ethernet interface, a TAP device with the same
	// offloads: the kernel sees a NIC with a MAC address (Options.MAC),
	// does ARP and IPv6 neighbour discovery itself, and every frame is an
	// Ethernet frame — on the wire too, so the far end is an Ethernet
	// segment (the peer with gVisor's ARP, another TAP NIC, a Linux
	// interface, a VXLAN tunnel). segment and coalesce take the MAC header
	// in front of the IP packet (their L2Len); frames that are not IP
	// (ARP) cross as they are.
	ModeTAP Mode = "tap"
)

// Ethernet sizes and types (package packet's).
const (
	ethHeader = packet.EthHeader
	// maxL2 is the longest Ethernet header a frame may have: two VLAN
	// tags (802.1ad, 802.1Q).
	maxL2     = packet.EthMaxHeader
	etherIPv4 = packet.EtherTypeIPv4
	etherIPv6 = packet.EtherTypeIPv6
)

// DefaultMAC is the MAC address of a TAP NIC that is given none: a stable,
// locally administered unicast address derived from the namespace and
// the interface name, so that the same `vnic up` gets the same address
// every time and the two ends of a netns: wire (same name) differ.
func DefaultMAC(netns, name string) net.HardwareAddr {
	s := sha256.Sum256([]byte("vnic\x00" + netns + "\x00" + name))
	mac := net.HardwareAddr(s[:6])
	mac[0] = mac[0]&^0x01 | 0x02 // unicast, locally administered
	return mac
}

// isIP reports whether an EtherType carries IPv4 or IPv6.
func isIP(t uint16) bool { return t == etherIPv4 || t == etherIPv6 }

// l2 returns the Ethernet header length of a TAP NIC's frame (0 for a
// TUN's), and whether the frame is an IP packet segment and coalesce
// take; ok false for a frame too short for its header.
func (e *vnicEngine) l2(frame []byte) (l2 int, ip, ok bool) {
	if !e.tap {
		return 0, true, true
	}
	n, t := packet.EthernetHeader(frame)
	return n, isIP(t), n > 0
}

// transmitRaw puts a frame that is not IP (ARP, LLDP) on the wire as it
// is, its checksum completed if the host left one to the NIC; a GSO
// frame that is not IP cannot be cut and is dropped.
func (e *vnicEngine) transmitRaw(h virtio.Hdr, frame []byte, id uint64, now time.Time) {
	if h.GSOType != virtio.GSONone {
		e.txDrops.Add(drop.IPVersion)
		return
	}
	if len(frame)-ethHeader > e.hwMTU {
		e.txDrops.Add(drop.ExceedsMTU)
		return
	}
	if len(e.txQueue) == wireBufs {
		e.flushWire()
	}
	e.wireBuffers()
	w := len(e.txQueue)
	wp := e.txWire[w][:len(frame)]
	copy(wp, frame)
	if h.Flags&virtio.FlagNeedsCsum != 0 {
		segment.CompleteChecksum(wp, int(h.CsumStart), int(h.CsumOffset))
	}
	e.sent(h, wp, id, 0, 1, now)
	if d := e.direct; d != nil {
		// A direct wire takes it at once, in order with what was cut
		// into its batch before.
		e.txOne[0] = wp
		d.copyIn(e.txOne[:], 0, false, now)
		e.txOne[0] = nil
		return
	}
	e.txQueue = append(e.txQueue, wp)
	e.txChecked = false
}
