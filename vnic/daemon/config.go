package daemon

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"strings"
)

// Engines: who does the NIC's work.
const (
	// EngineVNIC is vnic's own segment/coalesce.
	EngineVNIC = "vnic"
	// EngineWireGuard is wireguard-go's tun package doing its own GSO
	// split on read and GRO on write: the reference engine.
	EngineWireGuard = "wireguard"
)

// Default addresses: the first two of 198.18.0.0/15 (reserved for network
// benchmarks, RFC 2544) and of fd00::/64.
var (
	DefaultAddrs = []netip.Prefix{
		netip.MustParsePrefix("198.18.0.1/15"),
		netip.MustParsePrefix("fd00::1/64"),
	}
)

// Config is everything `vnic up` needs. The zero value of every field but
// Name is a sensible default (see Normalize).
type Config struct {
	// Name is the interface name (default "vnic0").
	Name string
	// Netns is the named network namespace (as `ip netns` names them) to
	// put the interface in; "" is the current one. Created if missing and
	// removed on exit if this daemon created it.
	Netns string
	// Addrs are the interface's addresses with their prefixes (default
	// 198.18.0.1/15 and fd00::1/64).
	Addrs []netip.Prefix
	// Peer are the gVisor peer host's addresses; default: for each of
	// Addrs, the next address in its subnet.
	Peer []netip.Addr
	// MTU is the interface MTU, which is also the wire MTU (default 1500).
	MTU int
	// HWMTU is the NIC's hardware MTU: the largest IP packet it puts on
	// the wire (0: the same as MTU). Below MTU it models the forcedeth NIC
	// of docs/stories.md: TCP is cut to fit by TSO, anything else larger is
	// dropped.
	HWMTU int
	// Pcap is a pcapng file to record host-tx, wire and host-rx into; ""
	// records nothing.
	Pcap string
	// Snaplen is how many bytes of each packet Pcap records, as tcpdump's
	// -s: 0 (default) records whole packets; 128 keeps the IP and TCP
	// headers of every packet at a fraction of the cost. A cut packet
	// keeps its original length in the file.
	Snaplen int
	// Engine is EngineVNIC (default) or EngineWireGuard.
	Engine string
	// PeerGSO lets the peer's TCP hand its NIC super-packets (default on;
	// NoPeerGSO turns it off).
	NoPeerGSO bool
	// Control is the path of the control socket `vnic stat` reads
	// (default /run/vnic/<netns>.<name>.sock, or /run/vnic/<name>.sock).
	Control string
	// Batch is how many frames one read or write moves at most (default 64).
	Batch int
	// Logger receives the daemon's logs (default slog.Default()).
	Logger *slog.Logger
}

// RunDir holds the control sockets and namespace ownership marks.
const RunDir = "/run/vnic"

// ControlPath returns the default control socket path for an interface.
func ControlPath(netns, name string) string {
	if netns != "" {
		return filepath.Join(RunDir, netns+"."+name+".sock")
	}
	return filepath.Join(RunDir, name+".sock")
}

// ErrConfig is wrapped by every configuration error.
var ErrConfig = errors.New("bad configuration")

func cfgErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, args...))
}

// Normalize fills in defaults and checks the configuration, returning an
// error that says what is wrong and what to do.
func (c *Config) Normalize() error {
	if c.Name == "" {
		c.Name = "vnic0"
	}
	if len(c.Name) > 15 || strings.ContainsAny(c.Name, "/: \t\n") || c.Name == "." || c.Name == ".." {
		return cfgErr("interface name %q: at most 15 characters, no '/', ':' or spaces", c.Name)
	}
	if strings.ContainsAny(c.Netns, "/ \t\n") || c.Netns == "." || c.Netns == ".." {
		return cfgErr("namespace name %q: no '/' or spaces", c.Netns)
	}
	if len(c.Addrs) == 0 {
		c.Addrs = DefaultAddrs
	}
	if c.MTU == 0 {
		c.MTU = 1500
	}
	hasV6 := false
	for _, a := range c.Addrs {
		if !a.IsValid() {
			return cfgErr("address %v is not valid: use ADDR/PREFIX, e.g. 198.18.0.1/15", a)
		}
		if a.Addr().Is6() {
			hasV6 = true
		}
		if a.Bits() >= a.Addr().BitLen()-1 {
			return cfgErr("address %v: the prefix leaves no room for the peer; use /%d or shorter", a, a.Addr().BitLen()-2)
		}
	}
	min := 68
	if hasV6 {
		min = 1280
	}
	if c.MTU < min || c.MTU > 65535 {
		return cfgErr("MTU %d: must be between %d and 65535 (IPv6 needs at least 1280)", c.MTU, min)
	}
	if c.HWMTU == 0 {
		c.HWMTU = c.MTU
	}
	if c.HWMTU < 576 || c.HWMTU > c.MTU {
		return cfgErr("hardware MTU %d: must be between 576 and the MTU %d", c.HWMTU, c.MTU)
	}
	if len(c.Peer) == 0 {
		for _, a := range c.Addrs {
			p := a.Addr().Next()
			if !a.Contains(p) {
				return cfgErr("address %v is the last of its subnet: no room for the peer; pass --peer", a)
			}
			c.Peer = append(c.Peer, p)
		}
	}
	for _, p := range c.Peer {
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
	switch c.Engine {
	case "":
		c.Engine = EngineVNIC
	case EngineVNIC, EngineWireGuard:
	default:
		return cfgErr("engine %q: use %q or %q", c.Engine, EngineVNIC, EngineWireGuard)
	}
	if c.Engine == EngineWireGuard && c.HWMTU != c.MTU {
		return cfgErr("--hw-mtu is a vnic-engine NIC model; the wireguard engine has none")
	}
	if c.Control == "" {
		c.Control = ControlPath(c.Netns, c.Name)
	}
	if c.Snaplen < 0 {
		return cfgErr("snaplen %d: give the number of bytes to record of each packet (e.g. 128 for the headers), or 0 for whole packets", c.Snaplen)
	}
	if c.Batch == 0 {
		c.Batch = 64
	}
	if c.Batch < 1 || c.Batch > 1024 {
		return cfgErr("batch %d: between 1 and 1024", c.Batch)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// peerPrefixes returns the peer's addresses with the prefix of the
// interface subnet each lies in.
func (c *Config) peerPrefixes() []netip.Prefix {
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
