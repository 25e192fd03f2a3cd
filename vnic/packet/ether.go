package packet

import "encoding/binary"

// Ethernet (IEEE 802.3 / DIX): two addresses, the EtherType, up to two
// VLAN tags (802.1ad outer, 802.1Q inner) in front of it.
//
//	 0           6           12     14          16     18
//	+-----------+-----------+------+-----------+------+---
//	| dst MAC   | src MAC   | TPID | TCI       | type | payload
//	+-----------+-----------+------+-----------+------+---
//	                        (a VLAN tag, when TPID is 0x8100 or 0x88a8)
const (
	EthHeader  = 14
	VLANTagLen = 4
	// EthMaxHeader is an Ethernet header with two VLAN tags.
	EthMaxHeader = EthHeader + 2*VLANTagLen

	EtherTypeIPv4 = 0x0800
	EtherTypeARP  = 0x0806
	EtherTypeIPv6 = 0x86dd
	EtherTypeQ    = 0x8100 // 802.1Q VLAN tag
	EtherTypeAD   = 0x88a8 // 802.1ad (QinQ) outer tag
)

// EthernetHeader returns the length of frame's Ethernet header, VLAN tags
// included (at most two), and the EtherType behind them; n is 0 when the
// frame is shorter than its header. No allocation.
func EthernetHeader(frame []byte) (n int, etherType uint16) {
	n = EthHeader
	for {
		if len(frame) < n {
			return 0, 0
		}
		t := binary.BigEndian.Uint16(frame[n-2:])
		if (t != EtherTypeQ && t != EtherTypeAD) || n == EthMaxHeader {
			return n, t
		}
		n += VLANTagLen
	}
}

// EthernetIP returns the IPv4 or IPv6 packet an Ethernet frame carries,
// or ok false for a frame that carries something else (ARP) or is too
// short.
func EthernetIP(frame []byte) (ip []byte, ok bool) {
	n, t := EthernetHeader(frame)
	if n == 0 || (t != EtherTypeIPv4 && t != EtherTypeIPv6) {
		return nil, false
	}
	return frame[n:], true
}
