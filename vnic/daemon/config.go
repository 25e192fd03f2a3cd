package daemon

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"

	"vnic/vnic/nic"
	"vnic/vnic/nsutil"
	"vnic/vnic/vxlan"
)

// Engines: who does the NIC's work (nic.Engine).
const (
	EngineVNIC      = nic.EngineVNIC
	EngineWireGuard = nic.EngineWireGuard
)

// Far ends of the wire (Config.Wire).
const (
	// WirePeer is the gVisor peer host (the default).
	WirePeer = "peer"
	// WireNetnsPrefix introduces a second vnic NIC in another namespace:
	// "netns:B" (a name, created if missing, or a path).
	WireNetnsPrefix = "netns:"
	// WireDevPrefix introduces an existing Linux interface in the
	// daemon's namespace as the wire (a TAP NIC only): "dev:IFNAME".
	WireDevPrefix = "dev:"
	// WireVXLANPrefix introduces a VXLAN tunnel from the daemon's
	// namespace (a TAP NIC only): "vxlan:REMOTE[,vni=N][,port=P][,local=ADDR]".
	WireVXLANPrefix = "vxlan:"
)

// Modes of the NIC (Config.Mode).
const (
	ModeTUN = nic.ModeTUN
	ModeTAP = nic.ModeTAP
)

// DefaultAddrs are the default addresses: the first of 198.18.0.0/15
// (reserved for network benchmarks, RFC 2544) and of fd00::/64.
var DefaultAddrs = []netip.Prefix{
	netip.MustParsePrefix("198.18.0.1/15"),
	netip.MustParsePrefix("fd00::1/64"),
}

// ErrConfig is wrapped by every configuration error.
var ErrConfig = nic.ErrConfig

func cfgErr(format string, args ...any) error { return nic.ConfigError(format, args...) }

// Config is everything `vnic up` needs. The zero value of every field is
// a sensible default (see Normalize).
type Config struct {
	// Name is the interface name (default "vnic0"); with a netns: wire,
	// the far NIC has the same name in its namespace.
	Name string
	// Netns is the network namespace to put the interface in: a name (as
	// `ip netns` names them), created if missing; or a path to a namespace
	// file (/proc/PID/ns/net, /run/netns/NAME), never created or removed.
	// "" is the current namespace. A named namespace vnic created is
	// removed when the last vnic daemon using it exits (after a kill -9, by
	// the next one); one vnic did not create is never removed (nsutil.Use).
	Netns string
	// Wire is the far end of the NIC's wire: "peer" (default), the gVisor
	// peer host; or "netns:B", a second vnic NIC in namespace B (a name or
	// a path, handled as Netns is) with the Peer addresses; and for a TAP
	// NIC "dev:IFNAME", an existing interface in the daemon's own
	// namespace (package afpacket), or
	// "vxlan:REMOTE[,vni=N][,port=P][,local=ADDR]", a VXLAN tunnel from a
	// UDP socket in the daemon's namespace to REMOTE (package vxlan).
	Wire string
	// Mode is ModeTUN (default, an IP interface) or ModeTAP (an Ethernet
	// interface: a TAP device with a MAC address).
	Mode nic.Mode
	// MAC is a TAP NIC's hardware address (default: derived from Netns and
	// Name, nic.DefaultMAC). The far NIC of a netns: wire always gets its
	// own derived address.
	MAC net.HardwareAddr
	// Addrs are the interface's addresses with their prefixes (default
	// 198.18.0.1/15 and fd00::1/64).
	Addrs []netip.Prefix
	// Peer are the far end's addresses (the gVisor peer's, or the far
	// NIC's); default: for each of Addrs, the next address in its subnet.
	Peer []netip.Addr
	// MTU is the interface MTU, which is also the wire MTU (default 1500).
	MTU int
	// HWMTU is the NIC's hardware MTU: the largest IP packet it puts on
	// the wire (0: the same as MTU). Below MTU it models the forcedeth
	// NIC: TCP is cut to fit by TSO, anything else larger is dropped.
	HWMTU int
	// Pcap is a pcapng file to record host-tx, wire and host-rx into (of
	// both NICs with a netns: wire); "" records nothing.
	Pcap string
	// Snaplen is how many bytes of each packet Pcap records, as tcpdump's
	// -s: 0 (default) records whole packets; 128 keeps the IP and TCP
	// headers of every packet at a fraction of the cost. A cut packet
	// keeps its original length in the file.
	Snaplen int
	// Engine is EngineVNIC (default) or EngineWireGuard.
	Engine nic.Engine
	// NoPeerGSO makes the gVisor peer's TCP send MTU-sized packets
	// instead of super-packets.
	NoPeerGSO bool
	// Control is the path of the control socket `vnic stat` reads
	// (default ControlPath(Netns, Name)).
	Control string
	// NoRxCsum turns the NIC's receive checksum offload off (nic.Options.
	// NoRxCsum): the kernel verifies every checksum itself.
	NoRxCsum bool
	// Batch is how many frames one read moves at most (default 64).
	Batch int
	// Logger receives the daemon's logs (default slog.Default()).
	Logger *slog.Logger

	// farNetns is B of a "netns:B" wire.
	farNetns string
	// dev is IFNAME of a "dev:IFNAME" wire.
	dev string
	// vxlan is the configuration of a "vxlan:" wire.
	vxlan *vxlan.Config
}

// RunDir holds the control sockets and namespace ownership marks.
const RunDir = "/run/vnic"

// ControlPath returns the default control socket path for an interface
// in a namespace (a name or a path).
func ControlPath(netns, name string) string {
	switch {
	case netns == "":
		return filepath.Join(RunDir, name+".sock")
	case nsutil.IsPath(netns):
		// A namespace given by path: named by its identity, so that every
		// path to it finds the same socket.
		if dev, ino, err := nsutil.Identity(netns); err == nil {
			return filepath.Join(RunDir, fmt.Sprintf("netns-%x-%d.%s.sock", dev, ino, name))
		}
		return filepath.Join(RunDir, "netns-"+strings.ReplaceAll(strings.Trim(netns, "/"), "/", "_")+"."+name+".sock")
	}
	return filepath.Join(RunDir, netns+"."+name+".sock")
}

// FarNetns returns B of a "netns:B" wire ("" for the peer).
func (c *Config) FarNetns() string { return c.farNetns }

// Dev returns IFNAME of a "dev:IFNAME" wire ("" for any other).
func (c *Config) Dev() string { return c.dev }

// VXLAN returns the configuration of a "vxlan:" wire (nil for any
// other).
func (c *Config) VXLAN() *vxlan.Config { return c.vxlan }

// ParseVXLAN parses the part of a --wire vxlan: after the prefix:
// REMOTE[,vni=N][,port=P][,local=ADDR].
func ParseVXLAN(s string) (*vxlan.Config, error) {
	const use = "use vxlan:REMOTE[,vni=N][,port=P][,local=ADDR], e.g. vxlan:198.19.0.2,vni=42"
	parts := strings.Split(s, ",")
	remote, err := netip.ParseAddr(strings.TrimSpace(parts[0]))
	if err != nil {
		return nil, cfgErr("--wire vxlan:%s: REMOTE %q is not an IP address; %s", s, parts[0], use)
	}
	c := &vxlan.Config{Remote: remote}
	for _, kv := range parts[1:] {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok {
			return nil, cfgErr("--wire vxlan:%s: %q is not KEY=VALUE; %s", s, kv, use)
		}
		switch k {
		case "vni":
			n, err := strconv.ParseUint(v, 10, 32)
			if err != nil || n == 0 || n > vxlan.MaxVNI {
				return nil, cfgErr("--wire vxlan:%s: vni=%s: a number from 1 to %d (Linux's `id`)", s, v, vxlan.MaxVNI)
			}
			c.VNI = uint32(n)
		case "port":
			n, err := strconv.ParseUint(v, 10, 16)
			if err != nil || n == 0 {
				return nil, cfgErr("--wire vxlan:%s: port=%s: a UDP port from 1 to 65535 (Linux's `dstport`; 4789 by default)", s, v)
			}
			c.Port = uint16(n)
		case "local":
			a, err := netip.ParseAddr(v)
			if err != nil {
				return nil, cfgErr("--wire vxlan:%s: local=%s is not an IP address", s, v)
			}
			c.Local = a
		default:
			return nil, cfgErr("--wire vxlan:%s: unknown option %q; %s", s, k, use)
		}
	}
	return c, nil
}

// Normalize fills in defaults and checks the configuration, returning an
// error that says what is wrong and what to do.
func (c *Config) Normalize() error {
	if c.Name == "" {
		c.Name = nic.DefaultName
	}
	if err := nic.ValidName(c.Name); err != nil {
		return err
	}
	if err := checkNetns("namespace", c.Netns); err != nil {
		return err
	}
	switch {
	case c.Wire == "" || c.Wire == WirePeer:
		c.Wire = WirePeer
	case strings.HasPrefix(c.Wire, WireNetnsPrefix):
		c.farNetns = strings.TrimPrefix(c.Wire, WireNetnsPrefix)
		if c.farNetns == "" {
			return cfgErr("--wire %q: name the far namespace, e.g. --wire netns:vnic-b", c.Wire)
		}
		if err := checkNetns("far namespace", c.farNetns); err != nil {
			return err
		}
		if sameNetns(c.Netns, c.farNetns) {
			return cfgErr("--wire %s: the far NIC must be in another namespace than --netns %q (both ends of a wire in one namespace would route locally, never over the wire)", c.Wire, c.Netns)
		}
	case strings.HasPrefix(c.Wire, WireDevPrefix):
		c.dev = strings.TrimPrefix(c.Wire, WireDevPrefix)
		if err := nic.ValidName(c.dev); err != nil {
			return cfgErr("--wire %q: name an interface of this namespace, e.g. --wire dev:v1", c.Wire)
		}
	case strings.HasPrefix(c.Wire, WireVXLANPrefix):
		v, err := ParseVXLAN(strings.TrimPrefix(c.Wire, WireVXLANPrefix))
		if err != nil {
			return err
		}
		c.vxlan = v
	default:
		return cfgErr("--wire %q: use peer (the gVisor peer host), netns:NAME (a second vnic NIC in namespace NAME, or netns:/proc/PID/ns/net), dev:IFNAME (an interface of this namespace; --mode tap) or vxlan:REMOTE[,vni=N][,port=P][,local=ADDR] (a VXLAN tunnel; --mode tap)", c.Wire)
	}
	switch c.Mode {
	case "":
		c.Mode = ModeTUN
	case ModeTUN, ModeTAP:
	default:
		return cfgErr("--mode %q: use tun (an IP interface, the default) or tap (an Ethernet interface with a MAC address)", c.Mode)
	}
	if (c.dev != "" || c.vxlan != nil) && c.Mode != ModeTAP {
		return cfgErr("--wire %s carries Ethernet frames: add --mode tap", c.Wire)
	}
	if c.MAC != nil && c.Mode != ModeTAP {
		return cfgErr("--mac %v: a TUN NIC has no MAC address; add --mode tap", c.MAC)
	}
	if (c.dev != "" || c.vxlan != nil) && len(c.Peer) > 0 {
		return cfgErr("--peer has no meaning with --wire %s: the hosts on that wire have their own addresses (give the NIC its own with --addr)", c.Wire)
	}
	if len(c.Addrs) == 0 {
		c.Addrs = DefaultAddrs
	}
	for _, a := range c.Addrs {
		if !a.IsValid() {
			return cfgErr("address %v is not valid: use ADDR/PREFIX, e.g. 198.18.0.1/15", a)
		}
		if a.Bits() >= a.Addr().BitLen()-1 {
			return cfgErr("address %v: the prefix leaves no room for the far end; use /%d or shorter", a, a.Addr().BitLen()-2)
		}
	}
	o := c.nicOptions()
	if err := o.Normalize(); err != nil {
		return err
	}
	c.MTU, c.HWMTU, c.Engine, c.Batch, c.MAC = o.MTU, o.HWMTU, o.Engine, o.Batch, o.MAC
	if c.vxlan != nil {
		c.vxlan.MTU = c.MTU
		if err := c.vxlan.Normalize(); err != nil {
			return fmt.Errorf("%w: --wire %s: %w", ErrConfig, c.Wire, err)
		}
	}
	if c.dev == "" && c.vxlan == nil && len(c.Peer) == 0 {
		for _, a := range c.Addrs {
			p := a.Addr().Next()
			if !a.Contains(p) {
				return cfgErr("address %v is the last of its subnet: no room for the far end; pass --peer", a)
			}
			c.Peer = append(c.Peer, p)
		}
	}
	for _, p := range c.Peer {
		if c.dev != "" || c.vxlan != nil {
			break
		}
		ok := false
		for _, a := range c.Addrs {
			if a.Contains(p) && p != a.Addr() {
				ok = true
			}
		}
		if !ok {
			return cfgErr("peer %v is not inside any of the interface's subnets %v (and must not be the interface's own address)", p, c.Addrs)
		}
	}
	if c.Control == "" {
		c.Control = ControlPath(c.Netns, c.Name)
	}
	if c.Snaplen < 0 {
		return cfgErr("snaplen %d: give the number of bytes to record of each packet (e.g. 128 for the headers), or 0 for whole packets", c.Snaplen)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// checkNetns checks a namespace name or path.
func checkNetns(what, ns string) error {
	if nsutil.IsPath(ns) {
		if !filepath.IsAbs(ns) {
			return cfgErr("%s %q: give a name (as `ip netns` knows it) or an absolute path such as /proc/PID/ns/net", what, ns)
		}
		return nil
	}
	if strings.ContainsAny(ns, " \t\n") || ns == "." || ns == ".." {
		return cfgErr("%s name %q: no spaces; a name as `ip netns` knows it, or a path such as /proc/PID/ns/net", what, ns)
	}
	return nil
}

// sameNetns reports whether a and b name one namespace: the same name,
// or files with the same identity.
func sameNetns(a, b string) bool {
	if a == b {
		return true
	}
	if a == "" || b == "" {
		// "" is the daemon's own namespace; compare identities.
		if a == "" {
			a = "/proc/self/ns/net"
		} else {
			b = "/proc/self/ns/net"
		}
	}
	da, ia, err1 := nsutil.Identity(a)
	db, ib, err2 := nsutil.Identity(b)
	return err1 == nil && err2 == nil && da == db && ia == ib
}

// nicOptions are the options of the daemon's (first) NIC.
func (c *Config) nicOptions() nic.Options {
	return nic.Options{Name: c.Name, Netns: c.Netns, Addrs: c.Addrs, MTU: c.MTU, HWMTU: c.HWMTU,
		Engine: c.Engine, Batch: c.Batch, NoRxCsum: c.NoRxCsum, Mode: c.Mode, MAC: c.MAC, Logger: c.Logger}
}

// farPrefixes returns the far end's addresses with the prefix of the
// interface subnet each lies in.
func (c *Config) farPrefixes() []netip.Prefix {
	var out []netip.Prefix
	for _, p := range c.Peer {
		for _, a := range c.Addrs {
			if a.Contains(p) {
				out = append(out, netip.PrefixFrom(p, a.Bits()))
				break
			}
		}
	}
	return out
}
