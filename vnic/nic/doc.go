// Package nic is vnic's NIC: one type that `vnic up`, `vnic lab` and the
// benchmarks all build the same way — a host-side Device (a TUN with
// virtio-net header offloads, or with Options.Mode ModeTAP a TAP: an
// Ethernet NIC with a MAC address), an engine doing in software what NIC
// hardware does, and a far end (the "wire") that can be anything: the
// gVisor peer host, another NIC (a direct wire between two namespaces), a
// router interface, a wire with impairments, and for a TAP NIC an existing
// Linux interface (afpacket.Wire) or a VXLAN tunnel (vxlan.Wire).
//
// On a TAP NIC every frame is an Ethernet frame, host side and wire side:
// segment and coalesce take its MAC header (their L2Len), csum_start and
// hdr_len count from it, and frames that are not IP (ARP, neighbour
// discovery is IPv6) cross as they are.
//
// Read this first. The path of a frame:
//
//	transmit (one goroutine per NIC: txLoop)
//	  host kernel ──TUN read (a batch of up to Options.Batch frames)──▶
//	    virtio_net_hdr + super-packet (up to 64 KiB)        capture host-tx
//	    segment.NewPlan: every check __virtio_net_hdr_to_skb makes;
//	      refused → drop (host_tx, reason)
//	    NIC model: hardware MTU (TCP cut to fit, forcedeth), tso-passthrough,
//	      no-csum
//	    Plan.Cut: wire-size packets, checksums completed  capture wire (out)
//	  ──▶ far end (WireEnd.Inject), once per batch
//
//	receive (on the far end's goroutine: a gVisor stack's output, a wire's,
//	or on a direct wire the other NIC's transmit loop)
//	  wire packets (Inject) or a gVisor stack's packets (Output, cut by the
//	  far end's TSO here) ──▶ a receive batch (one NAPI poll)
//	                                                      capture wire (in)
//	    larger than the hardware MTU → drop (wire_rx)
//	  batch full, or the far end's burst over ──▶ coalesce (GRO, honouring
//	    `ethtool -K gro`) ──▶ super-packets + virtio header  capture host-rx
//	  ──TUN write──▶ host kernel (refusals counted: host_rx, reason)
//
// On a direct wire (the far end is another *NIC with vnic's engine) the
// transmitting NIC cuts each frame straight into the receiving NIC's
// batch — one copy of every byte instead of two — and, when nothing
// records the wire, leaves the checksums partial for GRO to merge; only
// what GRO hands on alone gets its checksum completed.
//
// Who owns what. The transmit goroutine owns the frame buffers, the wire
// buffers and the transmit counters; the receive side is owned by
// whichever goroutine calls Inject or Output (one at a time), and so are
// the receive batches it fills, which come from a small process-wide free
// list (an idle NIC holds none). Counters are gathered per batch on the
// owning goroutine (tally, drop.Counts) and added to the shared atomics
// once per batch; Stats reads those. Nothing on the data path allocates
// per packet.
//
// The reference engine (Options.Engine = EngineWireGuard) puts
// wireguard-go's tun package behind the same NIC: its Read splits, its
// Write coalesces, and the NIC only carries packets between it and the
// wire.
package nic
