// Package vxlan is a VXLAN wire (RFC 7348) for an Ethernet vnic NIC: the
// NIC's wire-size Ethernet frames travel in UDP datagrams from a socket in
// the daemon's own namespace (the underlay) to a far end on another
// machine — a plain Linux `ip link add vx0 type vxlan id N remote ADDR
// dstport 4789`, a containerlab vxlan link, or another vnic. It
// interoperates with Linux's drivers/net/vxlan: the same header, port and
// checks on receive (vxlan_rcv).
//
//	NIC transmit loop ──Wire.Inject(frames)──▶ VXLAN header + frame, one
//	  datagram each; runs of equal-size datagrams go out as one UDP GSO
//	  send (UDP_SEGMENT), all of a batch in one sendmmsg(2)
//	underlay socket ──recvmmsg(2), UDP GRO (UDP_GRO: the kernel hands
//	  over runs of datagrams as one buffer)──▶ split, checked (Decode),
//	  decapsulated ──Receiver.Inject(frames)──▶ the NIC's receive side
//
// That is the fast path of wireguard-go's and Tailscale's UDP sockets:
// one system call for tens of datagrams each way. Nothing is copied but
// by the kernel: a datagram is gathered from the shared 8-byte header and
// the NIC's frame (two iovecs), and a received frame is a slice of the
// receive buffer.
//
// The outer IP header is the kernel's. Like Linux's vxlan with its
// default df unset, an outer packet larger than the underlay's MTU is
// fragmented (IP_PMTUDISC_DONT), not dropped: the classic overlay MTU
// mismatch is slow, not broken, and Open says so with the numbers.
//
// Every datagram dropped on receive is counted by reason (package drop):
// too short, bad flags, reserved bits, another VNI, another source, an
// inner frame shorter than its Ethernet header, truncated, or dropped by
// the kernel for a full socket queue.
package vxlan
