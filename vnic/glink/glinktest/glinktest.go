// Package glinktest holds the helpers that tests of in-process gVisor
// topologies (the peer, the router) share: addressing a stack's NIC 1,
// dialling TCP from a stack, and waiting for a condition.
package glinktest

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// FullAddr returns a's address on NIC 1 with port, and its network
// protocol.
func FullAddr(a netip.Addr, port uint16) (tcpip.FullAddress, tcpip.NetworkProtocolNumber) {
	proto := ipv4.ProtocolNumber
	if a.Is6() {
		proto = ipv6.ProtocolNumber
	}
	return tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFromSlice(a.AsSlice()), Port: port}, proto
}

// DialTCP opens a TCP connection from s to [a]:port within 5 s, closed in
// tb's cleanup.
func DialTCP(tb testing.TB, s *stack.Stack, a netip.Addr, port uint16) *gonet.TCPConn {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	fa, proto := FullAddr(a, port)
	c, err := gonet.DialContextTCP(ctx, s, fa, proto)
	if err != nil {
		tb.Fatalf("dial [%v]:%d: %v", a, port, err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// WaitFor polls cond every millisecond until it holds, or fails tb after d.
func WaitFor(tb testing.TB, what string, d time.Duration, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(time.Millisecond)
	}
}
