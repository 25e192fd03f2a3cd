package vxlan

import (
	"fmt"
	"log/slog"
	"net/netip"

	"vnic/vnic/drop"
)

// Defaults.
const (
	// DefaultVNI is the VNI when Config.VNI is 0.
	DefaultVNI = 1
	// DefaultMTU is the inner (the NIC's) MTU when Config.MTU is 0.
	DefaultMTU = 1500
	// DefaultBatch is how many receive buffers (64 KiB each: one UDP GRO
	// run) one recvmmsg fills at most.
	DefaultBatch = 16
)

// Config describes a VXLAN wire. Remote is required; every other field's
// zero value is a sensible default.
type Config struct {
	// Remote is the far end's underlay address (vxlan:REMOTE). Datagrams
	// go there, and only datagrams from there are taken.
	Remote netip.Addr
	// Port is the UDP port the wire sends to and listens on (default
	// 4789, DefaultPort; Linux's `dstport`).
	Port uint16
	// Local is the underlay address to listen on (default: every address
	// of Remote's family).
	Local netip.Addr
	// VNI is the VXLAN network identifier, 1 to 2^24-1 (default 1; Linux's
	// `id`).
	VNI uint32
	// MTU is the NIC's (the inner IP) MTU (default 1500): Open checks the
	// underlay can carry it.
	MTU int
	// Batch is how many receive buffers one recvmmsg fills at most
	// (default 16).
	Batch int
	// NoGSO sends every datagram on its own (no UDP_SEGMENT); NoGRO
	// receives every datagram on its own (no UDP_GRO). For comparisons.
	NoGSO, NoGRO bool
	// Logger receives the wire's logs (default slog.Default()).
	Logger *slog.Logger
}

// Normalize fills in the defaults and checks the configuration.
func (c *Config) Normalize() error {
	if !c.Remote.IsValid() || c.Remote.IsUnspecified() || c.Remote.IsMulticast() {
		return fmt.Errorf("vxlan: REMOTE %v: give the far end's unicast underlay address, e.g. vxlan:198.19.0.2", c.Remote)
	}
	c.Remote = c.Remote.Unmap()
	if c.Local.IsValid() {
		c.Local = c.Local.Unmap()
		if c.Local.Is4() != c.Remote.Is4() {
			return fmt.Errorf("vxlan: local %v and REMOTE %v are of different families", c.Local, c.Remote)
		}
	}
	if c.Port == 0 {
		c.Port = DefaultPort
	}
	if c.VNI == 0 {
		c.VNI = DefaultVNI
	}
	if c.VNI > MaxVNI {
		return fmt.Errorf("vxlan: vni %d: between 1 and %d", c.VNI, MaxVNI)
	}
	if c.MTU == 0 {
		c.MTU = DefaultMTU
	}
	if max := MaxMTU(c.Remote.Is6()); c.MTU < 68 || c.MTU > max {
		return fmt.Errorf("vxlan: MTU %d cannot travel in VXLAN over IPv%d: one datagram carries an inner IP packet of at most %d bytes; use --mtu %d or less",
			c.MTU, ipVersion(c.Remote.Is6()), max, max)
	}
	if c.Batch == 0 {
		c.Batch = DefaultBatch
	}
	if c.Batch < 1 || c.Batch > 1024 {
		return fmt.Errorf("vxlan: batch %d: between 1 and 1024", c.Batch)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// MaxMTU is the largest inner MTU one VXLAN datagram can carry: the
// 65535-byte outer IP packet less the overhead.
func MaxMTU(v6 bool) int {
	if v6 {
		return 65535 + 40 - Overhead(true) // the IPv6 payload length excludes its header
	}
	return 65535 - Overhead(false)
}

func ipVersion(v6 bool) int {
	if v6 {
		return 6
	}
	return 4
}

// Receiver takes the frames the wire receives: the NIC's receive side
// (*nic.NIC). Inject is called from the wire's receive goroutine, one
// batch at a time; it must not keep frames nor their buffers.
type Receiver interface {
	Inject(frames [][]byte)
}

// Underlay is what Open found out about the path to Remote.
type Underlay struct {
	// Dev is the interface the route to Remote leaves by, MTU its MTU (or
	// the route's, when the route has one).
	Dev string `json:"dev"`
	MTU int    `json:"mtu"`
	// Need is the outer packet size the NIC's MTU makes (MTU + Overhead).
	Need int `json:"need"`
}

// Fits reports whether the underlay carries the NIC's packets without
// fragmenting.
func (u Underlay) Fits() bool { return u.MTU >= u.Need }

// Stats are a wire's counters. Every counter only grows.
type Stats struct {
	Remote string `json:"remote"`
	Port   uint16 `json:"port"`
	VNI    uint32 `json:"vni"`
	// Underlay is the path Open found.
	Underlay Underlay `json:"underlay"`
	// GSO and GRO say whether UDP_SEGMENT and UDP_GRO are in use.
	GSO bool `json:"gso"`
	GRO bool `json:"gro"`
	// OutPackets/OutBytes count the frames the wire sent (inner Ethernet
	// frames, one datagram each); InPackets/InBytes the frames it handed
	// the NIC.
	OutPackets uint64 `json:"out_packets"`
	OutBytes   uint64 `json:"out_bytes"`
	InPackets  uint64 `json:"in_packets"`
	InBytes    uint64 `json:"in_bytes"`
	// SendCalls and RecvCalls count sendmmsg and recvmmsg calls;
	// GSOSends the messages sent as one UDP GSO run, GRORecvs the messages
	// received as one UDP GRO run of more than one datagram.
	SendCalls uint64 `json:"send_calls"`
	RecvCalls uint64 `json:"recv_calls"`
	GSOSends  uint64 `json:"gso_sends"`
	GRORecvs  uint64 `json:"gro_recvs"`
	// Drops counts what the wire dropped: at "underlay_tx" (the kernel
	// refused a send) and "underlay_rx" (a datagram that did not decode,
	// came from elsewhere, or that the kernel dropped for a full socket
	// queue), by reason.
	Drops []drop.Entry `json:"drops"`
}

// Places of the wire's drops.
const (
	PlaceTX = "underlay_tx"
	PlaceRX = "underlay_rx"
)
