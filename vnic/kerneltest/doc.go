// Package kerneltest runs packets through the running kernel's own software
// GSO and GRO, so that vnic's pure-Go engines (segment, coalesce) can be
// differential-tested against the real thing: "the kernel is the oracle"
// (README.md). Every oracle lives in a fresh, named, throwaway network
// namespace holding two TUN devices, `in` and `out`, with forwarding on
// between them; nothing leaves the namespace, and everything is removed in
// t.Cleanup. Only 198.18.0.0/15 and fd00::/8 are routed (out of `out`).
// The tests need root and /dev/net/tun (see RequireRoot).
//
// # Recipes
//
// GSO (NewGSO): `in` has IFF_VNET_HDR and offloads
// CSUM|TSO4|TSO6|TSO_ECN|USO4|USO6, `out` has IFF_VNET_HDR and no offloads.
// A frame written into `in` is parsed by virtio_net_hdr_to_skb, forwarded
// (ip_forward/ip6_forward), and segmented and checksummed in software by
// validate_xmit_skb (skb_gso_segment, skb_checksum_help) on its way into
// `out`, all synchronously inside write(2).
//
// GRO (NewGRO): `in` has IFF_VNET_HDR|IFF_NAPI and no offloads, `out` has
// CSUM|TSO4|TSO6|TSO_ECN|USO4|USO6, so whatever GRO builds reaches `out`'s
// reader whole, described by the virtio header (virtio_net_hdr_from_skb).
// A TUN write(2) runs one NAPI poll per packet, so the flush is held
// across polls with gro_flush_timeout=1000000 and napi_defer_hard_irqs=10
// on `in` (written through a sysfs mounted inside the namespace). A jiffy
// tick during a batch would split it (napi_complete_done flushes held
// packets older than the current jiffy), so a batch is written right
// after a tick, from a thread raised to SCHED_FIFO for the writes, and
// written again when the coarse clock shows a tick came before its last
// write anyway. Reading stops when the frames carry the batch's whole
// payload and its empty segments, or after 100 ms without a frame: on a
// loaded machine the held list can trail the writes by tens of
// milliseconds.
//
// UDP tunnel GSO (NewTunnelGSO): the GSO recipe with a VXLAN device
// (VNI 42, port 4789, fixed MAC addresses and a permanent neighbour for
// the inner destinations) whose underlay is `out`. A super-packet written
// into `in` is forwarded into the VXLAN device, which encapsulates it
// whole; `out` reads it as one tunnel super-packet with the 24-byte
// virtio_net_hdr_v1_hash_tunnel when it has the UDP tunnel offloads
// (Encapsulate), or as the segments skb_udp_tunnel_segment made of it
// when it has none (Segment: its offloads are switched between the two).
//
// Both TUNs have MTU 65535, so forwarding never fragments and never sends
// "fragmentation needed"; `out` has txqueuelen 8192. IPv6 link-local
// addresses are off (addr_gen_mode 1), and the readers keep only frames of
// the (version, source, destination) flows the test wrote: with forwarding
// on, the kernel still sends an MLDv2 report for ff02::2 (all-routers)
// from :: out of each TUN at link-up, and the filter drops it.
//
// TAP (NewGSOTAP, NewGROTAP): the same recipes with TAP devices, whose
// frames are Ethernet frames; `in` has the address TAPInMAC, and the
// namespace routes via a permanent neighbour of `out`, so the frames that
// come out carry the router's MAC header (AfterRouting). Seen on 6.18:
// csum_start and hdr_len count from the Ethernet header both ways; the
// merged frame's hdr_len is the whole first frame (skb_headlen) with its
// MAC header; GSO without NEEDS_CSUM measures "really GSO" from the start
// of the frame (a TCP payload of exactly gso_size is GSO on a TAP and
// dropped by tcp_gso_segment); GRO does not merge frames whose MAC headers
// differ. The TAP MTU is at most 65521 (TAPMTU).
//
// # What Linux 6.18 does in these recipes (established by the tests here)
//
// Both recipes forward, so every packet that comes out has its IPv4 TTL
// or IPv6 hop limit one lower than what went in, with the IPv4 header
// checksum adjusted (AfterForwarding applies the same change to a pure-Go
// engine's input). Nothing else in the IP header changes.
//
// GSO:
//   - The worked example (TCPV4, gso_size 1448, 10,000 payload bytes)
//     comes out as 6 × 1448 + 1312, IPv4 IDs incrementing from the
//     super-packet's and wrapping 0xffff → 0, PSH and FIN only on the last
//     segment, every checksum complete.
//   - CWR is cleared on every segment but the first, with or without
//     VIRTIO_NET_HDR_GSO_ECN; URG and the urgent pointer are copied
//     unchanged into every segment.
//   - USO (UDP_L4) makes one datagram per gso_size with its own length and
//     checksum, IPv4 ID incremented per datagram; more than 128 datagrams
//     (UDP_MAX_SEGMENTS) makes write(2) fail with EINVAL.
//   - A GSO frame whose payload is not larger than gso_size is not GSO
//     (virtio_net_hdr_to_skb: "too small packets are not really GSO ones")
//     and comes out as one packet with its checksum completed, PSH kept.
//   - GSO_NONE with NEEDS_CSUM comes out with its checksum completed; a TCP
//     GSO frame without NEEDS_CSUM is segmented all the same; hdr_len is
//     ignored (0 works).
//   - A checksum that computes to 0 is sent as 0xffff by skb_checksum_help
//     (GSO_NONE with NEEDS_CSUM) for TCP as well as UDP; in segmentation a
//     TCP segment keeps 0 and a UDP datagram gets 0xffff.
//   - IPv4 options and IPv6 hop-by-hop/destination-options headers are
//     copied into every segment.
//   - A TCPV4 gso_type on an IPv6 packet is dropped silently (no error, no
//     output).
//   - Segments read from `out` carry an all-zero virtio header (no
//     DATA_VALID).
//   - gso_size 0xffff (GSO_BY_FRAGS) makes write(2) fail with EINVAL, for
//     every gso type; so does hdr_len past the packet (past it plus 2
//     behind a 12-byte header, GSOOptions.VnetHdrSize), GSO_NONE included.
//   - Legacy UFO (gso_type UDP) is accepted: a datagram that fits in
//     gso_size (UDP header included) comes out as one packet, a larger one
//     as IP fragments (IPv4: the ID kept; IPv6: a fragment header with a
//     hashed ID), each with a DATA_VALID header.
//   - A frame longer than its IP length is trimmed to it by ip_rcv /
//     ip6_rcv (after the virtio layer measured the whole frame), one
//     shorter is dropped silently; so are IPv4 headers with a bad checksum
//     or options ip_options_compile refuses, source routes, and IPv6
//     hop-by-hop options ip6_parse_tlv refuses. An IPv4 total length of 0
//     on a TCP GSO frame is taken as the frame's length (BIG TCP).
//   - A packet that leaves unsegmented must fit the 65535-byte MTU: an
//     IPv6 packet with a 65535-byte payload (65575 bytes) is dropped by
//     forwarding (packet too big), so differential tests keep whole
//     packets within 65535 bytes.
//
// GRO:
//   - The worked example: the 7 segments of the GSO example come out as
//     one 10,052-byte packet with flags NEEDS_CSUM, gso_type TCPV4,
//     gso_size 1448, csum_start 20, csum_offset 16 and hdr_len 1500 — the
//     whole first packet (skb_headlen), which is why hdr_len from the
//     kernel is never trusted. The TCP checksum field holds the
//     pseudo-header sum (tcp4_gro_complete), the IPv4 ID is the first
//     packet's, FIN/PSH of the last packet are or-ed in.
//   - With the held flush, a batch written back to back merges completely
//     and reproducibly (hundreds of batches of 14 and 64 packets: every one
//     a single frame). A merged packet stops at 64 KiB: 70 × 1000 bytes
//     come out as 65 + 5 segments' worth.
//   - A packet GRO looked at but did not merge comes out alone with flags
//     DATA_VALID and gso_type NONE (its checksum was verified): a single
//     packet, pure ACKs, a CWR segment (delivered on its own; what follows
//     merges), a sequence gap, UDP without rx-udp-gro-forwarding. A packet
//     GRO never validated comes out with an all-zero header: IPv4 with
//     options (inet_gro_receive only takes IHL 5), a bad L4 checksum, or
//     any packet with GRO off.
//   - CWR always flushes: even a run with CWR on every segment comes out
//     segment by segment with DATA_VALID (never merged). A CWR segment is
//     held, though, like a new head: it comes out when the next segment of
//     its flow arrives or at the end of the poll, after older held packets
//     of other flows, and it takes one of the eight GRO slots.
//   - PSH ends a merge after including the PSH segment; a segment shorter
//     than gso_size ends it likewise; a larger one starts a new packet.
//   - IPv6 with hop-by-hop or destination-options headers merges
//     (csum_start after the extension headers); a packet whose extension
//     headers differ from its neighbours' is validated but not merged.
//   - Forwarded UDP merges (gso_type UDP_L4) only with
//     rx-udp-gro-forwarding on (GROOptions.UDPGROForwarding).
//   - A run whose IPv4 IDs do not increment (all the same, with or without
//     DF) is merged as SKB_GSO_TCP_FIXEDID, which a TUN cannot take (no
//     TSO_MANGLEID), so the kernel segments it again before `out`: the
//     reader sees the original packets, gso_type NONE, NEEDS_CSUM and the
//     pseudo-header sum in the TCP checksum field.
package kerneltest
