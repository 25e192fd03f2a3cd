// Package coalesce is the receive half of vnic's software NIC: GRO. It
// takes a batch of wire packets (one NAPI poll's worth) and merges the
// segments of each TCP flow (and, if enabled, UDP flow) into super-packets
// with the virtio_net_hdr the kernel would put in front of them when it
// hands the result to a TUN device, byte for byte like Linux 6.18:
//
//   - dev_gro_receive, napi_gro_complete, skb_gro_receive, gro_flush_oldest
//     (net/core/gro.c): one held packet per flow, completed when the next
//     segment cannot merge (pp), when a merged segment ends it, when a new
//     flow needs the slot (MAX_GRO_SKBS), or at the end of the poll;
//     nothing grows past gro_max_size (65535 by default).
//   - inet_gro_receive, inet_gro_complete (net/ipv4/af_inet.c): IPv4 with
//     ihl 5 only, no fragments, header checksum verified; a length field
//     that disagrees with the packet marks it flush; total length and
//     header checksum (csum_replace2) fixed on completion; the first
//     packet's ID kept.
//   - ipv6_gro_receive, ipv6_gro_pull_exthdrs, ipv6_gro_complete
//     (net/ipv6/ip6_offload.c): routing and destination-options headers
//     are walked and must be byte-identical within a flow, which also
//     includes the flow label; hop-by-hop, fragment and other extension
//     headers are not merged.
//   - inet_gro_flush, ipv6_gro_flush (include/net/gro.h): TTL/hop limit,
//     TOS/traffic class and DF must match; the IPv4 ID must increment by
//     one per segment or, decided at the second segment, stay fixed (DF
//     set or not, as of 6.18).
//   - tcp4_gro_receive, tcp6_gro_receive, tcp_gro_receive, tcp_gro_complete
//     (net/ipv4/tcp_offload.c, net/ipv6/tcpv6_offload.c): checksum
//     validated first; ports, ack_seq, the flag word (data offset, flags
//     but FIN/PSH, window; CWR included) and the option bytes must match;
//     a segment with CWR never merges: it completes its flow's packet and
//     is held on its own (a slot of MAX_GRO_SKBS) until the next segment
//     of its flow or the end of the poll; sequence contiguous; a segment
//     longer than the first does not merge, a shorter one ends the
//     packet, as do PSH,
//     FIN, URG, RST, SYN; FIN and PSH are or-ed into the head; the checksum
//     field becomes the pseudo-header sum (CHECKSUM_PARTIAL).
//   - udp4_gro_receive, udp6_gro_receive, udp_gro_receive_segment,
//     udp_gro_complete (net/ipv4/udp_offload.c, net/ipv6/udp_offload.c):
//     forwarding-style UDP GRO (rx-udp-gro-forwarding): checksum 0 and bad
//     lengths never merge, same-size datagrams merge, a shorter one ends
//     the packet, a bigger one completes it, at most 64 per packet.
//   - virtio_net_hdr_from_skb (include/linux/virtio_net.h): NEEDS_CSUM,
//     gso_type TCPV4/TCPV6/UDP_L4, gso_size the first segment's payload,
//     csum_start/csum_offset. hdr_len is recomputed as csum_start plus the
//     L4 header (the kernel writes skb_headlen, the whole first packet).
//     With Options.MarkValid, DATA_VALID on an unmerged packet whose
//     checksum was verified (skb_gro_checksum_validate left it
//     CHECKSUM_UNNECESSARY), as a NIC with rx-checksumming on reports it.
//
// Packets that are not merged go out exactly as they came, with a zero
// header (or DATA_VALID, above). Malformed input never panics: it is
// handed on unmerged and counted (Stats, PassReason).
//
// Options.TUNEgress goes one step further and models what the kernel's
// forwarding path does to GRO output before a TUN reads it: fixed-ID TCPv4
// runs, which a TUN cannot carry, come out as their original segments.
//
// Options.L2Len takes the Ethernet frames of a TAP device: a frame merges
// only with frames whose MAC header is the same (gro_list_prepare:
// compare_ether_header), one whose EtherType is not IPv4 or IPv6 passes
// (no vlan_gro_receive: this kernel has no 8021q), and the virtio header
// counts from the Ethernet header. Proven through TAP devices
// (kerneltest.NewGROTAP), randomized runs included.
//
// # What is not mirrored
//
// Proven against the running kernel (vnic/kerneltest: a TUN with IFF_NAPI
// → forwarding → a TUN reading GRO's output), what differs is what the
// kernel does after GRO, not GRO itself:
//
//   - The stack behind GRO: ip_rcv/ip6_rcv drop a packet with a bad IPv4
//     header, bad options or a length above the packet, and trim one
//     longer than its IP length; the engine hands such packets on as they
//     came (GRO passes them unmerged too) and leaves that to the kernel
//     it writes them to.
//   - A TUNEgress run (fixed IPv4 IDs) comes out of the kernel segmented
//     again with partial checksums (NEEDS_CSUM); the engine hands on the
//     original packets, checksums complete (DATA_VALID with MarkValid).
//   - A TUN ignores DATA_VALID in the frames written to it: tun_get_user
//     never reads the flag, so the host kernel verifies checksums itself
//     whatever MarkValid says; the flag is for captures and for far ends
//     that honour it (virtio_net's receive path does).
//   - UDP tunnel GRO (udp_gro_receive → vxlan_gro_receive →
//     eth_gro_receive): where a VXLAN socket listens, Linux's GRO merges
//     the inner TCP segments of VXLAN datagrams and hands up one tunnel
//     super-packet. The engine sees VXLAN datagrams as UDP (merged only as
//     forwarding UDP GRO, when enabled). It could not hand a tunnel
//     super-packet to a TUN anyway: a TUN refuses on write the tunnel
//     frames it hands out on read (segment's doc). The receiving kernel's
//     vxlan device merges the inner packets after decapsulation (its GRO
//     cells), so its TCP sees merged packets all the same.
//
// The engine is pure (no syscalls) and does not allocate in steady state;
// merging is in place, in the buffer of the flow's first packet.
package coalesce
