// Package view turns the records of a vnic capture (package capture) into
// what `vnic lab` shows a teacher for each step of a lab: the same bytes
// at the three capture points, the sender's host-tx (what the sender's
// tcpdump shows: GSO super-packets, as dev_queue_xmit hands them to a
// NETIF_F_TSO driver), the wire (after the NIC's TSO, skb_gso_segment)
// and the receiver's host-rx (after GRO, napi_gro_receive).
//
//   - Decode parses each record once into a Packet: IP, TCP/UDP/ICMP
//     fields, tcpdump's relative sequence numbers, the L4 checksum state
//     (complete, partial as CHECKSUM_PARTIAL leaves it, or bad) and the
//     capture comment (virtio_net_hdr, "segment i/n of host-tx #k",
//     "merged into host-rx #m", "dropped: REASON"). Malformed packets
//     are marked, never a panic.
//   - SideBySide prints a step as columns in the tcpdump style, each
//     wire packet on a row under the super-packet it was cut from and
//     beside the packet GRO merged it into.
//   - WriteHTML writes a self-contained HTML report: per step an SVG
//     picture with a lane per capture point, the expectations, the drop
//     counters and the side-by-side text.
//
// Packets are linked across lanes by the capture comments where they
// exist, and otherwise by content: a TCP super-packet covers the
// segments whose sequence ranges lie inside its own (this is how inbound
// wire packets, which the daemon records without an origin, find their
// host-rx packet, and how two NICs' captures are joined).
package view
