package router

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"

	"vnic/vnic/capture"
	"vnic/vnic/glink"
)

// Defaults and limits.
const (
	// DefaultMTU is an interface's MTU when Iface.MTU is 0.
	DefaultMTU = 1500
	// GROMaxSize is the largest packet the ingress GRO builds: the legacy
	// gro_max_size (65535), the most an IPv4 total length can say.
	GROMaxSize = 65535
	// NAPIBudget is how many wire packets one GRO pass (one NAPI poll)
	// sees at most: NAPI_POLL_WEIGHT. An Inject batch is cut into polls of
	// this size.
	NAPIBudget = 64
)

// GROMode is what an interface's receive path does with GRO: the router's
// `ethtool -K ethN gro on|off`, and which kernel is behind it.
type GROMode int32

const (
	// GROOff: packets are forwarded as they arrive (`gro off`).
	GROOff GROMode = iota
	// GROBuggy2014: the Debian 3.2.60 router of 2014. The ingress merges
	// each poll's segments (package coalesce) and the forwarding path
	// checks the merged length against the egress MTU: a merged DF packet
	// bigger than the egress MTU is answered with ICMP
	// fragmentation-needed (packet-too-big for IPv6) naming the egress MTU,
	// and dropped. gVisor does exactly that with a big packet (see the
	// package doc), so the merged packet is handed to it whole.
	GROBuggy2014
	// GROFixed: a kernel with the fix. The ingress merges, and the
	// forwarding path checks each segment's length (ip_exceeds_mtu →
	// skb_gso_validate_network_len) and keeps the packet whole: it leaves
	// the egress as one super-packet with a GSO header (the egress NIC's
	// TSO cuts it into the segments it was made of). Merged packets that
	// are not plain forwarded TCP are re-segmented (package segment)
	// before gVisor sees them (see the package doc).
	GROFixed
	// GRODropsMerged: a userspace router whose forwarding drops what GRO
	// merged: a merged DF packet (any merged IPv6 packet) bigger than the
	// egress MTU is dropped silently — no ICMP — and counted, as gVisor's
	// netstack did when its host coalesced on receive (google/gvisor
	// issue 14011, 2026: Docker-in-gVisor crawled at ~35 KB/s, the sender
	// advancing only through RTO retransmits of single segments).
	GRODropsMerged
)

// String returns the mode's name.
func (m GROMode) String() string {
	switch m {
	case GROOff:
		return "off"
	case GROBuggy2014:
		return "buggy-2014"
	case GROFixed:
		return "fixed"
	case GRODropsMerged:
		return "drops-merged"
	}
	return fmt.Sprintf("GROMode(%d)", int32(m))
}

// Iface is one of the router's interfaces: one end of a wire.
type Iface struct {
	// Name is the interface's name (gVisor's NIC name, and in logs and
	// Stats); "" means ethN for the N-th interface.
	Name string
	// Addrs are the router's addresses on this interface, each with its
	// on-link prefix (e.g. 10.1.0.1/24, 2001:db8:1::1/64). Each prefix is
	// routed to the interface.
	Addrs []netip.Prefix
	// MTU is the interface MTU: the egress MTU gVisor checks forwarded
	// packets against, and (unless MaxReceive) the largest packet accepted
	// from the wire. 0 means DefaultMTU; at least 1280 with an IPv6
	// address.
	MTU uint32
	// MaxReceive is the largest packet the interface accepts from the
	// wire; 0 means MTU. Set it above the MTU to model a NIC that receives
	// what a pass-through virtual switch hands it (story 4: TSO
	// super-packets that nothing segmented). At most 65535.
	MaxReceive uint32
	// GRO is the receive path's GRO mode at start; SetGRO changes it.
	GRO GROMode
	// Output receives the packets the router sends on this interface, in
	// batches, from one goroutine per interface: wire packets (complete,
	// zero virtio header), and, when an ingress runs GROFixed, TCP
	// super-packets forwarded whole, with a GSO virtio header
	// (glink.Packet.Hdr) that the consumer must act on as the egress
	// NIC's TSO does (segment.Segment). The slice and Data are only valid during
	// the call. Output may call Inject. Required.
	Output func(pkts []glink.Packet)
	// Capture records what tcpdump on this interface of the router shows:
	// what arrives after the interface's GRO, before the firewall, at
	// host-rx (ingress), and what leaves, after the firewall, before the
	// egress NIC's TSO, at host-tx (egress). Nil records nothing.
	Capture *capture.NIC
}

// Route is a static route: packets to Dst leave through interface Iface
// (an index into Options.Ifaces). On a point-to-point wire there is no
// next-hop address to resolve.
type Route struct {
	Dst   netip.Prefix
	Iface int
}

// Options configures a Router.
type Options struct {
	// Ifaces are the router's interfaces; at least one.
	Ifaces []Iface
	// Routes are static routes on top of the interfaces' on-link
	// prefixes, e.g. a default route. Longest prefix wins.
	Routes []Route
	// Firewall, if set, filters on the interfaces (see Firewall).
	Firewall *Firewall
	// Logger receives the router's logs; nil discards them.
	Logger *slog.Logger

	// gvisorOnly turns off the corrections to gVisor's forwarding (TTL 1,
	// the MTU in ICMPv6 packet-too-big), so tests can pin down what gVisor
	// does by itself.
	gvisorOnly bool
}

// Router is a gVisor netstack router with N interfaces.
type Router struct {
	log    *slog.Logger
	s      *stack.Stack
	ifs    []*iface
	fw     []*rule
	own    map[netip.Addr]struct{}
	bcast  map[netip.Addr]struct{} // directed broadcast of own IPv4 prefixes
	gvOnly bool
	guard  *glink.ForwardGuard

	closed    atomic.Bool
	closeOnce sync.Once
}

var _ io.Closer = (*Router)(nil)

// New builds the router's stack with forwarding on for IPv4 and IPv6, one
// NIC per interface, the addresses and routes, and starts the interfaces'
// output goroutines. Close releases everything.
func New(opt Options) (*Router, error) {
	if len(opt.Ifaces) == 0 {
		return nil, errors.New("router: no interfaces: set Options.Ifaces")
	}
	r := &Router{log: opt.Logger, own: map[netip.Addr]struct{}{}, bcast: map[netip.Addr]struct{}{}, gvOnly: opt.gvisorOnly}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	for i := range opt.Ifaces {
		if err := validateIface(&opt.Ifaces[i], i); err != nil {
			return nil, err
		}
	}
	for _, rt := range opt.Routes {
		if rt.Iface < 0 || rt.Iface >= len(opt.Ifaces) || !rt.Dst.IsValid() {
			return nil, fmt.Errorf("router: route %v via interface %d: no such interface or bad prefix", rt.Dst, rt.Iface)
		}
	}
	fw, err := compileFirewall(opt.Firewall, len(opt.Ifaces))
	if err != nil {
		return nil, err
	}
	r.fw = fw

	r.s = stack.New(stack.Options{
		NetworkProtocols: []stack.NetworkProtocolFactory{
			ipv4.NewProtocolWithOptions(ipv4.Options{}),
			ipv6.NewProtocolWithOptions(ipv6.Options{
				NDPConfigs: ipv6.NDPConfigurations{HandleRAs: ipv6.HandlingRAsDisabled},
				DADConfigs: stack.DADConfigurations{DupAddrDetectTransmits: 0},
			}),
		},
		// TCP and UDP so the router answers like a host: RST for a TCP
		// port, port unreachable for UDP.
		TransportProtocols: []stack.TransportProtocolFactory{
			tcp.NewProtocol, udp.NewProtocol, icmp.NewProtocol4, icmp.NewProtocol6,
		},
	})
	for _, p := range []tcpip.NetworkProtocolNumber{ipv4.ProtocolNumber, ipv6.ProtocolNumber} {
		if err := r.s.SetForwardingDefaultAndAllNICs(p, true); err != nil {
			r.s.Close()
			r.s.Wait()
			return nil, fmt.Errorf("router: turning forwarding on: %s", err)
		}
	}

	if r.guard, err = glink.GuardForwarding(r.s); err != nil {
		r.s.Close()
		r.s.Wait()
		return nil, fmt.Errorf("router: %w", err)
	}

	var routes []tcpip.Route
	for i, ifc := range opt.Ifaces {
		f, err := r.newIface(i, ifc)
		if err != nil {
			r.teardown()
			return nil, err
		}
		r.ifs = append(r.ifs, f)
		if err := r.s.CreateNICWithOptions(f.id, f.link, stack.NICOptions{Name: f.name}); err != nil {
			r.teardown()
			return nil, fmt.Errorf("router: creating NIC %s: %s", f.name, err)
		}
		for _, a := range ifc.Addrs {
			proto := ipv4.ProtocolNumber
			if a.Addr().Is6() {
				proto = ipv6.ProtocolNumber
			}
			awp := tcpip.AddressWithPrefix{Address: tcpip.AddrFromSlice(a.Addr().AsSlice()), PrefixLen: a.Bits()}
			if err := r.s.AddProtocolAddress(f.id, tcpip.ProtocolAddress{Protocol: proto, AddressWithPrefix: awp}, stack.AddressProperties{}); err != nil {
				r.teardown()
				return nil, fmt.Errorf("router: adding address %v to %s: %s", a, f.name, err)
			}
			r.own[a.Addr()] = struct{}{}
			if a.Addr().Is4() && a.Bits() < 31 {
				r.bcast[lastAddr(a.Masked())] = struct{}{}
			}
			routes = append(routes, tcpip.Route{Destination: awp.Subnet(), NIC: f.id})
		}
	}
	for _, rt := range opt.Routes {
		p := rt.Dst.Masked()
		routes = append(routes, tcpip.Route{
			Destination: tcpip.AddressWithPrefix{Address: tcpip.AddrFromSlice(p.Addr().AsSlice()), PrefixLen: p.Bits()}.Subnet(),
			NIC:         r.ifs[rt.Iface].id,
		})
	}
	// gVisor takes the first matching route: longest prefix first.
	slices.SortStableFunc(routes, func(a, b tcpip.Route) int {
		return cmp.Compare(b.Destination.Prefix(), a.Destination.Prefix())
	})
	r.s.SetRouteTable(routes)
	for _, f := range r.ifs {
		r.log.Info("router interface up", "iface", f.name, "mtu", f.mtu, "gro", f.mode(), "addrs", opt.Ifaces[f.idx].Addrs)
	}
	return r, nil
}

func validateIface(f *Iface, i int) error {
	if f.Name == "" {
		f.Name = fmt.Sprintf("eth%d", i)
	}
	if f.Output == nil {
		return fmt.Errorf("router: interface %s has no Output", f.Name)
	}
	if f.MTU == 0 {
		f.MTU = DefaultMTU
	}
	if f.MTU < header.IPv4MinimumProcessableDatagramSize || f.MTU > 65535 {
		return fmt.Errorf("router: interface %s: MTU %d out of range %d..65535", f.Name, f.MTU, header.IPv4MinimumProcessableDatagramSize)
	}
	if f.MaxReceive == 0 {
		f.MaxReceive = f.MTU
	}
	if f.MaxReceive < f.MTU || f.MaxReceive > 65535 {
		return fmt.Errorf("router: interface %s: MaxReceive %d out of range MTU (%d)..65535", f.Name, f.MaxReceive, f.MTU)
	}
	if f.GRO < GROOff || f.GRO > GRODropsMerged {
		return fmt.Errorf("router: interface %s: unknown GRO mode %d", f.Name, f.GRO)
	}
	for j, a := range f.Addrs {
		a = netip.PrefixFrom(a.Addr().Unmap(), a.Bits())
		if !a.IsValid() || a.Addr().IsUnspecified() || a.Addr().IsMulticast() {
			return fmt.Errorf("router: interface %s: address %v is not a unicast address with a prefix length", f.Name, f.Addrs[j])
		}
		if a.Addr().Is6() && f.MTU < header.IPv6MinimumMTU {
			return fmt.Errorf("router: interface %s: MTU %d below IPv6's minimum %d with address %v", f.Name, f.MTU, header.IPv6MinimumMTU, a)
		}
		f.Addrs[j] = a
	}
	return nil
}

// Stack returns the router's gVisor stack (NIC i+1 is interface i). The
// Router owns it: do not Close it.
func (r *Router) Stack() *stack.Stack { return r.s }

// Inject delivers wire packets that arrived on interface i: GRO (per the
// interface's mode), the interface's inbound firewall rules, then gVisor,
// which forwards them or takes them for itself. Each packet is copied;
// pkts may be reused when Inject returns. Inject runs synchronously and
// may be called concurrently (calls on one interface are serialised, as a
// NIC's receive queue is).
func (r *Router) Inject(i int, pkts [][]byte) {
	if i < 0 || i >= len(r.ifs) {
		return
	}
	f := r.ifs[i]
	if r.closed.Load() {
		f.cnt.dropClosed.Add(uint64(len(pkts)))
		return
	}
	f.receive(pkts)
}

// SetGRO sets interface i's GRO mode at run time: the lab's
// `ethtool -K eth1 gro off` on the router. It takes effect at the next
// Inject on that interface.
func (r *Router) SetGRO(i int, mode GROMode) error {
	if i < 0 || i >= len(r.ifs) {
		return fmt.Errorf("router: no interface %d", i)
	}
	if mode < GROOff || mode > GRODropsMerged {
		return fmt.Errorf("router: unknown GRO mode %d", mode)
	}
	f := r.ifs[i]
	f.gro.Store(int32(mode))
	r.log.Info("router GRO", "iface", f.name, "gro", mode)
	return nil
}

// Close stops the stack and the interfaces' output goroutines and waits
// for them: when it returns, no goroutine of the router is left and no
// Output is called again. Idempotent; always returns nil.
func (r *Router) Close() error {
	r.closeOnce.Do(func() {
		r.closed.Store(true)
		r.teardown()
		r.log.Info("router closed")
	})
	return nil
}

func (r *Router) teardown() {
	for _, f := range r.ifs {
		f.link.CloseInject()
	}
	// Wait for the Injects in progress on our side (GRO buffers).
	for _, f := range r.ifs {
		f.mu.Lock()
		//nolint:staticcheck // empty critical section: waits for receive.
		f.mu.Unlock()
	}
	r.s.Close()
	r.s.Wait()
	for _, f := range r.ifs {
		f.link.CloseOutput()
	}
}

// lastAddr is the last address of an IPv4 prefix (its broadcast address).
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().As4()
	v := binary.BigEndian.Uint32(b[:]) | (1<<(32-p.Bits()) - 1)
	binary.BigEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}

// isOwn reports whether a is one of the router's addresses.
func (r *Router) isOwn(a netip.Addr) bool {
	_, ok := r.own[a]
	return ok
}
