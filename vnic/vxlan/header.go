package vxlan

import (
	"encoding/binary"

	"vnic/vnic/drop"
)

// The VXLAN header (RFC 7348 section 5), in front of the inner Ethernet
// frame in every datagram:
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|R|R|R|R|I|R|R|R|            Reserved                           |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                VXLAN Network Identifier (VNI) |   Reserved    |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
const (
	// HeaderLen is the VXLAN header's size.
	HeaderLen = 8
	// FlagI says the VNI is valid; it must be set.
	FlagI = 0x08
	// MaxVNI is the largest VNI (24 bits).
	MaxVNI = 1<<24 - 1
	// DefaultPort is the IANA VXLAN port (Linux: dstport 4789).
	DefaultPort = 4789

	// EthHeaderLen is the inner Ethernet header's size (no VLAN tag).
	EthHeaderLen = 14
)

// Overhead is what VXLAN adds to an inner IP packet on the underlay: the
// inner Ethernet header, the VXLAN and UDP headers and the outer IP
// header — 50 bytes over IPv4, 70 over IPv6. An underlay of MTU M
// carries an inner MTU of M - Overhead without fragmenting.
func Overhead(v6 bool) int {
	ip := 20
	if v6 {
		ip = 40
	}
	return EthHeaderLen + HeaderLen + 8 + ip
}

// Encode writes a VXLAN header for vni into b[:HeaderLen]: the I flag,
// every reserved bit zero (RFC 7348: "MUST be set to zero on
// transmission").
func Encode(b []byte, vni uint32) {
	_ = b[HeaderLen-1]
	binary.BigEndian.PutUint32(b[0:], FlagI<<24)
	binary.BigEndian.PutUint32(b[4:], (vni&MaxVNI)<<8)
}

// VNI returns the VNI of the header at b[:HeaderLen].
func VNI(b []byte) uint32 { return binary.BigEndian.Uint32(b[4:]) >> 8 }

// Decode checks one datagram's payload the way Linux's vxlan_rcv does and
// returns the inner Ethernet frame (a slice of d), or the reason it is
// dropped: shorter than the VXLAN header (VXLANShort), no I flag
// (VXLANFlags), a VNI other than vni (VXLANVNI), a reserved bit set
// (VXLANReserved: Linux drops those where the RFC says ignore), an inner
// frame shorter than an Ethernet header (EtherShort). Never a panic.
func Decode(d []byte, vni uint32) ([]byte, drop.Reason) {
	if len(d) < HeaderLen {
		return nil, drop.VXLANShort
	}
	if d[0]&FlagI == 0 {
		return nil, drop.VXLANFlags
	}
	if VNI(d) != vni {
		return nil, drop.VXLANVNI
	}
	if d[0]&^FlagI != 0 || d[1]|d[2]|d[3]|d[7] != 0 {
		return nil, drop.VXLANReserved
	}
	f := d[HeaderLen:]
	if len(f) < EthHeaderLen {
		return nil, drop.EtherShort
	}
	return f, drop.None
}
