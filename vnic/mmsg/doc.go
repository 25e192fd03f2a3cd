// Package mmsg moves batches of datagrams through one socket with
// recvmmsg(2) and sendmmsg(2): one system call for many packets, the
// caller's buffers, no allocation. It is what vnic's far ends that leave
// the process use — the VXLAN wire's UDP socket (package vxlan) and the
// AF_PACKET socket on a Linux interface (package afpacket).
//
// A Conn wraps a non-blocking socket registered with Go's netpoller, as
// package tundev does for a TUN device: a Recv waits without a thread of
// its own, a Send that finds the socket buffer full waits for room, and
// Close wakes both. The message headers (Hdr, the kernel's struct
// mmsghdr) are the caller's: it points them at its buffers once and
// reuses them batch after batch.
package mmsg
