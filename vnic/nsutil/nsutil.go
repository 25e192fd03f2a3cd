package nsutil

import (
	"fmt"
	"net/netip"
	"strings"
)

// RunDir is where named network namespaces are bind-mounted, as by
// `ip netns add` (NETNS_RUN_DIR in iproute2).
const RunDir = "/run/netns"

// Route is one route through the configured link.
//
// Equivalent to: ip route add Dst [via Via] dev $dev [src Src] [metric Metric]
type Route struct {
	// Dst is the destination prefix; its host bits must be zero
	// (198.18.0.0/15, not 198.18.0.1/15). 0.0.0.0/0 or ::/0 is a default
	// route.
	Dst netip.Prefix
	// Via is the gateway; the zero Addr means none (a directly connected,
	// scope link route). Same family as Dst.
	Via netip.Addr
	// Src is the preferred source address; the zero Addr means none.
	Src netip.Addr
	// Metric is the route's priority (lower wins); 0 is the kernel default.
	Metric int
}

func (r Route) String() string {
	var b strings.Builder
	b.WriteString(r.Dst.String())
	if r.Via.IsValid() {
		b.WriteString(" via " + r.Via.String())
	}
	if r.Src.IsValid() {
		b.WriteString(" src " + r.Src.String())
	}
	if r.Metric != 0 {
		fmt.Fprintf(&b, " metric %d", r.Metric)
	}
	return b.String()
}

// LinkConfig is what ConfigureLink applies to a link. Zero fields are left
// alone.
type LinkConfig struct {
	// MTU, when non-zero: ip link set $dev mtu MTU. At least 68 (IPv4's
	// minimum), and at least 1280 when Addrs holds an IPv6 address (below
	// 1280 the kernel turns IPv6 off on the link).
	MTU int
	// Addrs are added (replaced if present): ip addr add A dev $dev, IPv6
	// ones with nodad (no duplicate address detection, so they are usable
	// at once).
	Addrs []netip.Prefix
	// Routes are added (replaced if present) after the link is up.
	Routes []Route
	// Up brings the link up: ip link set $dev up.
	Up bool
	// TxQueueLen, when non-zero: ip link set $dev txqueuelen N.
	TxQueueLen int
}

// validName reports whether name can be a named namespace: a single path
// element under RunDir.
func validName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") || len(name) > 255 {
		return fmt.Errorf("nsutil: invalid network namespace name %q: one path element, no '/'", name)
	}
	return nil
}

// validate checks c before anything is changed, so that a bad value is
// reported by name and the link is left as it was.
func (c LinkConfig) validate(dev string) error {
	if c.MTU != 0 && (c.MTU < 68 || c.MTU > 65535) {
		return fmt.Errorf("nsutil: %s: MTU %d out of range 68..65535", dev, c.MTU)
	}
	if c.TxQueueLen < 0 {
		return fmt.Errorf("nsutil: %s: negative txqueuelen %d", dev, c.TxQueueLen)
	}
	for i, p := range c.Addrs {
		if !p.IsValid() {
			return fmt.Errorf("nsutil: %s: address #%d (%v) is not a valid prefix", dev, i, p)
		}
		a := p.Addr()
		if a.Is4In6() {
			return fmt.Errorf("nsutil: %s: address %v is IPv4-mapped IPv6: write it as IPv4", dev, p)
		}
		if a.IsUnspecified() || a.IsMulticast() {
			return fmt.Errorf("nsutil: %s: address %v is not a unicast address", dev, p)
		}
		if a.Is6() && c.MTU != 0 && c.MTU < 1280 {
			return fmt.Errorf("nsutil: %s: MTU %d is below IPv6's minimum of 1280, which would disable IPv6 address %v", dev, c.MTU, p)
		}
	}
	for _, r := range c.Routes {
		if !r.Dst.IsValid() {
			return fmt.Errorf("nsutil: %s: route %v: destination is not a valid prefix", dev, r)
		}
		if m := r.Dst.Masked(); m != r.Dst {
			return fmt.Errorf("nsutil: %s: route %v: destination has host bits set (did you mean %v?)", dev, r, m)
		}
		if r.Via.IsValid() && r.Via.Is4() != r.Dst.Addr().Is4() {
			return fmt.Errorf("nsutil: %s: route %v: gateway and destination are of different IP families", dev, r)
		}
		if r.Src.IsValid() && r.Src.Is4() != r.Dst.Addr().Is4() {
			return fmt.Errorf("nsutil: %s: route %v: source and destination are of different IP families", dev, r)
		}
		if r.Metric < 0 {
			return fmt.Errorf("nsutil: %s: route %v: negative metric", dev, r)
		}
	}
	return nil
}
