package daemon

import (
	"sync/atomic"

	"vnic/coalesce"
	"vnic/vnic/capture"
	"vnic/vnic/drop"
	"vnic/vnic/peer"
)

// Drop reasons the daemon itself adds to segment's (segment.Reasons()).
const (
	// DropTUNWrite: the kernel refused a frame written into the TUN.
	DropTUNWrite = "tun_write_refused"
	// DropRXOverHWMTU: a wire packet from the peer larger than the NIC's
	// hardware MTU (a NIC cannot receive what its hardware cannot hold).
	DropRXOverHWMTU = "rx_exceeds_hw_mtu"
	// DropShortFrame: a frame read from the TUN shorter than its virtio
	// header.
	DropShortFrame = "short_frame"
	// DropPeerSegment: a packet the peer sent that its NIC could not
	// segment (counted with this prefix and segment's reason).
	dropPeerPrefix = "peer_"
)

// Counter is a packet and byte count.
type Counter struct {
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

type counter struct{ packets, bytes atomic.Uint64 }

func (c *counter) add(n int) {
	c.packets.Add(1)
	c.bytes.Add(uint64(n))
}

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

func (t *tally) flushTo(c *counter) {
	if t.packets != 0 {
		c.packets.Add(t.packets)
		c.bytes.Add(t.bytes)
		*t = tally{}
	}
}

// Stats is a snapshot of a running daemon's counters, what `vnic stat`
// prints. Every counter only grows.
type Stats struct {
	Name   string `json:"name"`
	Netns  string `json:"netns,omitempty"`
	Engine string `json:"engine"`
	// GRO is the receiving side's current `ethtool -k` generic-receive-offload.
	GRO bool `json:"gro"`
	// HostTX counts frames the kernel handed the NIC (a super-packet
	// counts once, with its full length); HostTXSuper those with a gso type.
	HostTX      Counter `json:"host_tx"`
	HostTXSuper uint64  `json:"host_tx_super"`
	// WireOut counts packets put on the wire towards the peer (after TSO);
	// WireIn packets from the peer's NIC (after its TSO).
	WireOut Counter `json:"wire_out"`
	WireIn  Counter `json:"wire_in"`
	// HostRX counts frames the NIC handed the kernel (after GRO);
	// HostRXMerged those that were GRO super-packets.
	HostRX       Counter `json:"host_rx"`
	HostRXMerged uint64  `json:"host_rx_merged"`
	// Drops counts, by reason, what the NIC dropped.
	Drops map[string]uint64 `json:"drops"`
	// Coalesce is the GRO engine's own counters (vnic engine only).
	Coalesce *coalesce.Stats `json:"coalesce,omitempty"`
	// Peer is the gVisor peer's counters.
	Peer peer.Stats `json:"peer"`
	// Capture is the pcapng writer's counters (when recording).
	Capture *capture.Stats `json:"capture,omitempty"`
}

// stats are the live counters; the data path only does atomic adds.
type stats struct {
	hostTX, wireOut, wireIn, hostRX counter
	hostTXSuper, hostRXMerged       atomic.Uint64
	reasons                         []string
	drops                           []atomic.Uint64
	index                           map[string]int
	peerIndex                       map[string]int // segment reason → index of "peer_"+reason
}

func newStats() *stats {
	s := &stats{index: map[string]int{}, peerIndex: map[string]int{}}
	add := func(r string) {
		if _, ok := s.index[r]; !ok {
			s.index[r] = len(s.reasons)
			s.reasons = append(s.reasons, r)
		}
	}
	for r := drop.GSOType; r <= drop.BufferSmall; r++ {
		add(r.String())
	}
	for r := drop.GSOType; r <= drop.BufferSmall; r++ {
		add(dropPeerPrefix + r.String())
		s.peerIndex[r.String()] = s.index[dropPeerPrefix+r.String()]
	}
	add(DropTUNWrite)
	add(DropRXOverHWMTU)
	add(DropShortFrame)
	add("other")
	s.drops = make([]atomic.Uint64, len(s.reasons))
	return s
}

// drop counts one drop; reason must be one of the names newStats knows
// (anything else is counted as "other"). A map lookup, no allocation.
func (s *stats) drop(reason string) {
	i, ok := s.index[reason]
	if !ok {
		i = s.index["other"]
	}
	s.drops[i].Add(1)
}

// dropPeer counts a packet of the peer's that its NIC could not segment,
// by segment's reason.
func (s *stats) dropPeer(reason string) {
	i, ok := s.peerIndex[reason]
	if !ok {
		i = s.index["other"]
	}
	s.drops[i].Add(1)
}

func (s *stats) snapshot() Stats {
	st := Stats{
		HostTX:       s.hostTX.load(),
		HostTXSuper:  s.hostTXSuper.Load(),
		WireOut:      s.wireOut.load(),
		WireIn:       s.wireIn.load(),
		HostRX:       s.hostRX.load(),
		HostRXMerged: s.hostRXMerged.Load(),
		Drops:        map[string]uint64{},
	}
	for i, r := range s.reasons {
		if v := s.drops[i].Load(); v != 0 {
			st.Drops[r] = v
		}
	}
	return st
}
