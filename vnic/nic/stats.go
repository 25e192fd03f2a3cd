package nic

import (
	"sync/atomic"

	"vnic/vnic/drop"
)

// Place is where on the NIC's path a packet was dropped.
type Place uint8

// Places.
const (
	// HostTX: a frame the host handed the NIC that the NIC refused
	// (segment's checks, the hardware MTU, a short frame).
	HostTX Place = iota
	// WireRX: a packet from the wire the NIC could not receive (larger
	// than its hardware MTU, a bad checksum).
	WireRX
	// HostRX: a frame the NIC wrote into the host that the kernel
	// refused (tun_get_user), or one the NIC could not hand on.
	HostRX
	// FarTX: a packet the far end's gVisor stack sent that its NIC (vnic's
	// segment, the far end's TSO) refused.
	FarTX
	numPlaces
)

var placeNames = [numPlaces]string{"host_tx", "wire_rx", "host_rx", "far_tx"}

// String is the place's stable snake_case name.
func (p Place) String() string {
	if p < numPlaces {
		return placeNames[p]
	}
	return "unknown"
}

// Counter is a packet and byte count.
type Counter struct {
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// Drop is one drop counter: where, why, how many.
type Drop struct {
	Place   string `json:"place"`
	Reason  string `json:"reason"`
	Packets uint64 `json:"packets"`
}

// Kernel is what the kernel counts on the NIC's interface (`ip -s link`),
// from the kernel's side: TX is what the host sent into the NIC, RX what
// the NIC handed the host. TXDropped counts packets the kernel dropped
// before the NIC could read them (its transmit queue overflowed);
// RXDropped and RXErrors frames the kernel refused from the NIC.
type Kernel struct {
	TXPackets uint64 `json:"tx_packets"`
	TXBytes   uint64 `json:"tx_bytes"`
	TXDropped uint64 `json:"tx_dropped"`
	TXErrors  uint64 `json:"tx_errors"`
	RXPackets uint64 `json:"rx_packets"`
	RXBytes   uint64 `json:"rx_bytes"`
	RXDropped uint64 `json:"rx_dropped"`
	RXErrors  uint64 `json:"rx_errors"`
}

// Stats is a snapshot of a NIC's counters. Every counter only grows.
type Stats struct {
	Name   string `json:"name"`
	Netns  string `json:"netns,omitempty"`
	Engine Engine `json:"engine"`
	Model  Model  `json:"model"`
	// Mode is tun or tap; MAC a TAP NIC's address.
	Mode Mode   `json:"mode"`
	MAC  string `json:"mac,omitempty"`
	// GRO is the interface's current `ethtool -k` generic-receive-offload,
	// as the NIC follows it.
	GRO bool `json:"gro"`
	// RXCsum is the NIC's receive checksum offload (Options.NoRxCsum);
	// RXCsumBad counts the packets whose TCP/UDP checksum failed its
	// verification (handed to the kernel unmarked, which drops them).
	RXCsum    bool   `json:"rx_csum"`
	RXCsumBad uint64 `json:"rx_csum_bad"`
	// HostTX counts frames the kernel handed the NIC (a super-packet
	// counts once, with its full length); HostTXSuper those with a gso
	// type.
	HostTX      Counter `json:"host_tx"`
	HostTXSuper uint64  `json:"host_tx_super"`
	// HostTXTunnel counts the super-packets inside a UDP tunnel (VXLAN
	// over this NIC, with the tunnel offloads), among HostTXSuper.
	HostTXTunnel uint64 `json:"host_tx_tunnel"`
	// WireOut counts packets the NIC put on the wire (after TSO); WireIn
	// packets it took off the wire.
	WireOut Counter `json:"wire_out"`
	WireIn  Counter `json:"wire_in"`
	// HostRX counts frames the NIC handed the kernel (after GRO);
	// HostRXMerged those that were GRO super-packets.
	HostRX       Counter `json:"host_rx"`
	HostRXMerged uint64  `json:"host_rx_merged"`
	// Drops counts what the NIC dropped, by place and reason (only
	// non-zero counters).
	Drops []Drop `json:"drops"`
	// Kernel is the kernel's own counters for the interface (nil when
	// they cannot be read).
	Kernel *Kernel `json:"kernel,omitempty"`
	// Coalesce is the GRO engine's counters by their stable names
	// (coalesce.Stats.Each; vnic engine only).
	Coalesce map[string]uint64 `json:"coalesce,omitempty"`
	// Uncounted names what this NIC's engine cannot count or record
	// (e.g. "host_tx" and "host_rx" for the wireguard engine).
	Uncounted []string `json:"uncounted,omitempty"`
}

// Dropped returns the drop counter for place and reason.
func (s Stats) Dropped(p Place, r drop.Reason) uint64 {
	for _, d := range s.Drops {
		if d.Place == p.String() && d.Reason == r.String() {
			return d.Packets
		}
	}
	return 0
}

// DropMap returns the drop counters keyed "place/reason" (e.g.
// "host_tx/ip_version"), for tests and logs.
func (s Stats) DropMap() map[string]uint64 {
	m := make(map[string]uint64, len(s.Drops))
	for _, d := range s.Drops {
		m[d.Place+"/"+d.Reason] += d.Packets
	}
	return m
}

// DropTotal is the sum of every drop counter.
func (s Stats) DropTotal() uint64 {
	var n uint64
	for _, d := range s.Drops {
		n += d.Packets
	}
	return n
}

type counter struct{ packets, bytes atomic.Uint64 }

func (c *counter) load() Counter { return Counter{c.packets.Load(), c.bytes.Load()} }

// tally is a counter's increments gathered on one goroutine and added to
// the shared counter once per batch (flushTo): two atomic adds per batch
// instead of per packet, and no cache line bouncing between the cores
// that run the two directions.
type tally struct{ packets, bytes uint64 }

func (t *tally) add(n int) {
	t.packets++
	t.bytes += uint64(n)
}

// addN counts n packets of bytes bytes in all.
func (t *tally) addN(n, bytes int) {
	t.packets += uint64(n)
	t.bytes += uint64(bytes)
}

func (t *tally) flushTo(c *counter) {
	if t.packets != 0 {
		c.packets.Add(t.packets)
		c.bytes.Add(t.bytes)
		*t = tally{}
	}
}

// stats are a NIC's live counters: the data path adds its per-batch
// tallies and drop.Counts to them.
type stats struct {
	hostTX, wireOut, wireIn, hostRX counter
	hostTXSuper, hostRXMerged       atomic.Uint64
	hostTXTunnel                    atomic.Uint64
	drops                           [numPlaces]drop.Counters
}

func (s *stats) snapshot() Stats {
	st := Stats{
		HostTX:       s.hostTX.load(),
		HostTXSuper:  s.hostTXSuper.Load(),
		HostTXTunnel: s.hostTXTunnel.Load(),
		WireOut:      s.wireOut.load(),
		WireIn:       s.wireIn.load(),
		HostRX:       s.hostRX.load(),
		HostRXMerged: s.hostRXMerged.Load(),
		Drops:        []Drop{},
	}
	for p := range s.drops {
		c := s.drops[p].Load()
		c.Each(func(r drop.Reason, n uint64) {
			st.Drops = append(st.Drops, Drop{Place: Place(p).String(), Reason: r.String(), Packets: n})
		})
	}
	return st
}

// addDrops adds counts to place p of the snapshot (merging with what is
// there).
func (s *Stats) addDrops(p Place, c drop.Counts) {
	c.Each(func(r drop.Reason, n uint64) {
		for i := range s.Drops {
			if s.Drops[i].Place == p.String() && s.Drops[i].Reason == r.String() {
				s.Drops[i].Packets += n
				return
			}
		}
		s.Drops = append(s.Drops, Drop{Place: p.String(), Reason: r.String(), Packets: n})
	})
}
