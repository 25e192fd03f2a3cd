package glink

import (
	"errors"
	"sync"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// ForwardGuard makes gVisor's IPv4 forwarding safe with pooled packet
// buffers. Get one from GuardForwarding and give it to every Endpoint of
// that stack (Options.ForwardGuard).
//
// # The race (gVisor, this version)
//
// network/ipv4/ipv4.go, forwardPacketWithRoute, keeps a slice of the
// forwarded packet's IP header across a call that frees the memory behind
// it:
//
//	h := header.IPv4(pkt.NetworkHeader().Slice())   // (2)
//	...  IPTables().CheckForward, NFTables().CheckForward
//	newPkt := pkt.DeepCopyForForwarding(...)           // (3)
//	...
//	ttl := h.TTL()                                     // (4) reads freed memory
//
// PacketHeader.Slice (stack/packet_buffer.go, headerView) is
// buffer.Buffer.PullUp (pkg/buffer/buffer.go), which is copy-on-write:
// when the view holding the header shares its chunk (refcount > 1), PullUp
// replaces the view's chunk by a fresh copy (chunk.Clone, from the chunk
// pool) and DecRefs the old one. The sharing is always there:
//
//   - (1) forwardUnicastPacket holds hView := pkt.NetworkHeader().View(), a
//     clone of the header's view, for the whole call, so at (2) PullUp
//     copies the header's chunk into a fresh pooled chunk C, owned only
//     by pkt's buffer, and h points into C.
//   - (3) DeepCopyForForwarding takes payload := BufferSince(...), a
//     shallow clone of pkt's buffer (C's refcount 2), then calls
//     pkt.NetworkHeader().Slice() again: PullUp copies C for pkt (C's
//     refcount 1, held by payload only), and `defer payload.Release()`
//     drops the last reference: C goes back to the chunk pool
//     (chunk.destroy → sync.Pool.Put).
//   - (4) h.TTL() reads C. Any goroutine that took C from the pool
//     meanwhile (another stack's Inject: NewViewWithData, or another
//     PullUp copy) may have overwritten it, and the forwarded packet
//     leaves with that byte minus one as its TTL.
//
// Not a missing IncRef on our side: the chunk freed is one gVisor made
// itself at (2), and nothing we hold (the PacketBuffer, a clone of its
// buffer taken before delivery) refers to it. Chunks above
// buffer.MaxChunkSize are not pooled (the old workaround gave every packet
// a 64 KiB+ chunk, and every copy-on-write then copied 64 KiB), and
// gVisor's buffer package cannot wrap a caller's own slice: a pooled
// chunk of the packet's size is the only kind there is. IPv6's
// forwardPacketWithRoute reads the hop limit before the deep copy and is
// not affected.
//
// # The fix
//
// The only code that runs between (2) and (3) is the stack's hooks. The
// guard installs itself as the stack's nftables (stack.NFTablesInterface,
// every verdict "accept"): its CheckForward runs after (2) and before (3),
// and takes a reference on the chunk h points into (a clone of the
// header's view: one pooled View, no copy). That reference outlives (3)
// and (4); the Endpoint drops it when DeliverNetworkPacket returns, when
// gVisor is done with the packet's header. Cost: a pooled View and a
// mutex-protected map insert and delete per forwarded IPv4 packet.
type ForwardGuard struct {
	mu   sync.Mutex
	pins map[*stack.PacketBuffer]*buffer.View
}

// GuardForwarding installs a ForwardGuard as s's nftables hooks (which
// accept everything) and returns it. Call it once, before the stack
// forwards, and pass the guard to each of the stack's Endpoints. It fails
// if s already has nftables.
func GuardForwarding(s *stack.Stack) (*ForwardGuard, error) {
	if s.NFTables() != nil || s.IsNFTablesConfigured() {
		return nil, errors.New("glink: the stack already has nftables; the forwarding guard needs its hooks")
	}
	g := &ForwardGuard{pins: make(map[*stack.PacketBuffer]*buffer.View, 16)}
	s.SetNFTables(guardHooks{g})
	s.SetNFTablesConfigured(true)
	return g, nil
}

// pin takes a reference on the chunk behind pkt's network header as it is
// now.
func (g *ForwardGuard) pin(pkt *stack.PacketBuffer) {
	v := pkt.NetworkHeader().View()
	if v == nil {
		return
	}
	g.mu.Lock()
	old := g.pins[pkt]
	g.pins[pkt] = v
	g.mu.Unlock()
	if old != nil {
		old.Release()
	}
}

// unpin drops what pin took for pkt, if anything.
func (g *ForwardGuard) unpin(pkt *stack.PacketBuffer) {
	g.mu.Lock()
	v, ok := g.pins[pkt]
	if ok {
		delete(g.pins, pkt)
	}
	g.mu.Unlock()
	if v != nil {
		v.Release()
	}
}

// guardHooks is the stack's nftables: accept everything; on the IPv4
// forward hook, pin the packet's header chunk.
type guardHooks struct{ g *ForwardGuard }

var _ stack.NFTablesInterface = guardHooks{}

func (h guardHooks) CheckPrerouting(*stack.PacketBuffer, *stack.Route, stack.AddressFamily) bool {
	return true
}

func (h guardHooks) CheckInput(*stack.PacketBuffer, *stack.Route, stack.AddressFamily) bool {
	return true
}

func (h guardHooks) CheckForward(pkt *stack.PacketBuffer, _ *stack.Route, af stack.AddressFamily) bool {
	if af == stack.IP {
		h.g.pin(pkt)
	}
	return true
}

func (h guardHooks) CheckOutput(*stack.PacketBuffer, *stack.Route, stack.AddressFamily) bool {
	return true
}

func (h guardHooks) CheckPostrouting(*stack.PacketBuffer, *stack.Route, stack.AddressFamily) bool {
	return true
}

func (h guardHooks) CheckIngress(*stack.PacketBuffer, *stack.Route, stack.AddressFamily) bool {
	return true
}

func (h guardHooks) CheckEgress(*stack.PacketBuffer, *stack.Route, stack.AddressFamily) bool {
	return true
}
