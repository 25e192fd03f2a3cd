package glink_test

import (
	"net/netip"
	"os"
	"sync"
	"testing"

	"vnic/vnic/pkttest"
)

// TestForwardingConcurrentInject: two forwarding stacks injected
// concurrently, with pooled chunks (gVisor's own buffers). With the
// ForwardGuard the race detector is quiet and every packet leaves with TTL
// 63. Without it (GLINK_SHOW_RACE=1 go test -race -run
// TestForwardingConcurrentInject ./vnic/glink/) the race detector reports
// gVisor's IPv4 forwarding reading the header (forwardPacketWithRoute,
// h.TTL()) from a chunk it has given back to the pool and another
// goroutine took (see ForwardGuard).
func TestForwardingConcurrentInject(t *testing.T) {
	guarded := os.Getenv("GLINK_SHOW_RACE") == ""
	if !guarded {
		t.Log("without the forwarding guard: -race should fail this test")
	}
	in, out := forwarder(t, true, guarded)
	in2, out2 := forwarder(t, true, guarded)
	p := pkttest.Packet{Src: netip.MustParseAddr("10.1.0.2"), Dst: netip.MustParseAddr("10.9.0.2"), Payload: make([]byte, 1400)}
	b := p.Build()
	const n = 2000
	var wg sync.WaitGroup
	for _, e := range []interface{ Inject([][]byte) }{in, in2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range n {
				e.Inject([][]byte{b})
			}
		}()
	}
	wg.Wait()
	for _, o := range []*rec{out, out2} {
		o.waitN(t, n)
		o.mu.Lock()
		for _, f := range o.pkts {
			if f[8] != 63 {
				t.Errorf("forwarded with TTL %d, want 63", f[8])
				break
			}
		}
		o.mu.Unlock()
	}
}
