package afpacket

import (
	"fmt"
	"log/slog"

	"vnic/vnic/drop"
)

// Defaults.
const (
	// DefaultBatch is how many frames one recvmmsg takes at most.
	DefaultBatch = 32
)

// MergingFeatures are the interface features (kernel names, as `ethtool
// -k` lists them) Open switches off while the wire is open: each merges
// received frames into super-packets before an AF_PACKET socket sees
// them.
var MergingFeatures = []string{"rx-gro", "rx-lro", "rx-gro-hw", "rx-gro-list", "rx-udp-gro-forwarding"}

// Config describes an AF_PACKET wire.
type Config struct {
	// Dev is the interface, in the namespace Open runs in.
	Dev string
	// MTU is the NIC's MTU: at most the interface's.
	MTU int
	// Batch is how many frames one recvmmsg takes at most (default 32).
	Batch int
	// KeepFeatures leaves the interface's features as they are (for
	// tests that show what GRO on the interface does).
	KeepFeatures bool
	// Logger receives the wire's logs (default slog.Default()).
	Logger *slog.Logger
}

// Normalize fills in the defaults and checks the configuration.
func (c *Config) Normalize() error {
	if c.Dev == "" {
		return fmt.Errorf("afpacket: no interface: give one, e.g. dev:v1")
	}
	if c.Batch == 0 {
		c.Batch = DefaultBatch
	}
	if c.Batch < 1 || c.Batch > 1024 {
		return fmt.Errorf("afpacket: batch %d: between 1 and 1024", c.Batch)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// Receiver takes the frames the wire receives: the NIC's receive side
// (*nic.NIC). Inject is called from the wire's receive goroutine, one
// batch at a time; it must not keep frames nor their buffers.
type Receiver interface {
	Inject(frames [][]byte)
}

// Stats are a wire's counters. Every counter only grows.
type Stats struct {
	Dev string `json:"dev"`
	MTU int    `json:"mtu"`
	// Switched are the features Open switched off (restored on Close).
	Switched []string `json:"switched_off,omitempty"`
	// OutPackets/OutBytes count the frames sent; InPackets/InBytes the
	// frames handed to the NIC (after cutting super-packets).
	OutPackets uint64 `json:"out_packets"`
	OutBytes   uint64 `json:"out_bytes"`
	InPackets  uint64 `json:"in_packets"`
	InBytes    uint64 `json:"in_bytes"`
	// InSuper counts GSO super-packets the interface handed over and the
	// wire cut into frames; InCsum frames whose partial checksum it
	// completed.
	InSuper uint64 `json:"in_super"`
	InCsum  uint64 `json:"in_csum"`
	// SendCalls and RecvCalls count sendmmsg and recvmmsg calls.
	SendCalls uint64 `json:"send_calls"`
	RecvCalls uint64 `json:"recv_calls"`
	// Drops counts what the wire dropped, at "dev_tx" (the kernel refused
	// a send) and "dev_rx" (a frame too short, truncated, a super-packet
	// that does not cut, or dropped by the kernel for a full socket
	// queue), by reason.
	Drops []drop.Entry `json:"drops"`
}

// Places of the wire's drops.
const (
	PlaceTX = "dev_tx"
	PlaceRX = "dev_rx"
)
