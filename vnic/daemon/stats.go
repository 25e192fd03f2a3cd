package daemon

import (
	"vnic/vnic/afpacket"
	"vnic/vnic/capture"
	"vnic/vnic/nic"
	"vnic/vnic/peer"
	"vnic/vnic/vxlan"
)

// Counter is a packet and byte count.
type Counter = nic.Counter

// Stats is a snapshot of a running daemon's counters, what `vnic stat`
// prints: the NIC's (inline), the far end's, the capture's. Every counter
// only grows.
type Stats struct {
	nic.Stats
	// Wire is the far end: "peer", "netns:B", "dev:IFNAME" or
	// "vxlan:REMOTE...".
	Wire string `json:"wire"`
	// Far is the far NIC's counters (a netns: wire).
	Far *nic.Stats `json:"far_nic,omitempty"`
	// Peer is the gVisor peer's counters (the peer wire).
	Peer *peer.Stats `json:"peer,omitempty"`
	// Dev is a dev: wire's counters, its drops by reason included.
	Dev *afpacket.Stats `json:"dev,omitempty"`
	// VXLAN is a vxlan: wire's counters, its drops by reason included.
	VXLAN *vxlan.Stats `json:"vxlan,omitempty"`
	// Capture is the pcapng writer's counters (when recording).
	Capture *capture.Stats `json:"capture,omitempty"`
}
