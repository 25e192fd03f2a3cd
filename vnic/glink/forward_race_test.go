package glink_test

import (
	"net/netip"
	"sync"
	"testing"

	"vnic/vnic/pkttest"
)

// TestForwardingConcurrentInjectUnpooled: two forwarding stacks injected
// concurrently. With pooled chunks (UnpooledInject false) the race
// detector reports gVisor's IPv4 forwarding reading a packet header
// (forwardPacketWithRoute, h.TTL()) from a chunk another goroutine has
// already taken from gVisor's pool; with UnpooledInject it is clean.
func TestForwardingConcurrentInjectUnpooled(t *testing.T) {
	in, _ := forwarder(t, true, true)
	in2, _ := forwarder(t, true, true)
	p := pkttest.Packet{Src: netip.MustParseAddr("10.1.0.2"), Dst: netip.MustParseAddr("10.9.0.2"), Payload: make([]byte, 1400)}
	b := p.Build()
	var wg sync.WaitGroup
	for _, e := range []interface{ Inject([][]byte) }{in, in2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 2000 {
				e.Inject([][]byte{b})
			}
		}()
	}
	wg.Wait()
}
