// Package segment is the transmit half of vnic's software NIC: it turns one
// frame read from the TUN device (a virtio_net_hdr plus an IP packet of up
// to 64 KiB) into the packets that would cross the wire, doing in Go what
// TSO/USO hardware or the kernel's software GSO does, byte for byte like
// Linux 6.18:
//
//   - tun_get_user, __tun_vnet_hdr_get (drivers/net/tun.c, tun_vnet.h):
//     hdr_len (raised to the end of a partial checksum's field) may not
//     run past the frame, for every gso type.
//   - __virtio_net_hdr_to_skb (include/linux/virtio_net.h): which headers
//     are accepted, gso_size 0 and 0xffff (GSO_BY_FRAGS) refused, when a
//     GSO-typed frame (legacy UFO included) is "too small to be GSO" and
//     is sent as one packet instead, the UDP_MAX_SEGMENTS limit.
//   - ip_rcv_core, ip_options_compile (net/ipv4/ip_input.c,
//     ip_options.c), ip6_rcv_core, ip6_parse_tlv (net/ipv6/ip6_input.c,
//     exthdrs.c): the IP header as the stack the frame enters checks it
//     (IPv4 header checksum and options, IPv6 hop-by-hop options, the
//     length fields), and a frame longer than its IP length trimmed to it
//     (BIG TCP's total length 0 and a jumbogram's payload length 0
//     included), after the virtio layer measured the untrimmed frame.
//   - inet_gso_segment (net/ipv4/af_inet.c): IPv4 options copied into every
//     segment, ID incremented per segment unless SKB_GSO_TCP_FIXEDID, total
//     length and header checksum recomputed.
//   - ipv6_gso_segment (net/ipv6/ip6_offload.c): hop-by-hop, routing and
//     destination-options headers copied into every segment, payload length
//     rewritten; any other extension header (a fragment header in
//     particular) ends the walk and the packet cannot be segmented.
//   - tcp4_gso_segment, tcp6_gso_segment, tcp_gso_segment
//     (net/ipv4/tcp_offload.c, net/ipv6/tcpv6_offload.c): payload cut at
//     gso_size, sequence numbers advanced, FIN and PSH only on the last
//     segment, CWR only on the first (unless SKB_GSO_TCP_ACCECN), the
//     checksum derived from the pseudo-header sum the sender left in the
//     checksum field, adjusted for each segment's length.
//   - __udp_gso_segment (net/ipv4/udp_offload.c): one UDP datagram per
//     gso_size chunk, each with its own length and checksum (0 sent as
//     0xffff, CSUM_MANGLED_0).
//   - skb_checksum_help (net/core/dev.c): checksum completion for a
//     NEEDS_CSUM packet that is not segmented.
//   - __skb_udp_tunnel_segment (net/ipv4/udp_offload.c), with
//     virtio_net_hdr_tnl_to_skb's checks (NewTunnelPlan): a TCP/UDP
//     super-packet in a UDP tunnel (VXLAN) read with the 24-byte header
//     of a TUN with the UDP tunnel offloads: the inner packet cut as
//     above, the outer headers copied onto every segment, outer IPv4 ID
//     incremented, outer UDP checksum per segment with UDP_TUNNEL_CSUM.
//
// A caller asks first, then cuts: NewPlan does every check and returns a
// Plan that says how many wire packets the frame makes (Segments) and how
// large the largest is (MaxSize); Plan.Cut writes them into the caller's
// buffers and fails only when those are too few or too small. Segment is
// NewPlan followed by Cut.
//
// Segment, NewPlan and Cut are pure (no syscalls) and allocation-free;
// errors are typed and name a stable drop reason (see Reason) the daemon
// counts by.
//
// On top of the kernel's rules, Options.MaxPacket models a NIC whose
// hardware MTU is smaller than what the stack was told: TSO then cuts at a
// smaller MSS, and anything else that does not fit is dropped.
//
// Options.L2Len takes the frames of a TAP device: an Ethernet header in
// front of the IP packet, csum_start and hdr_len counted from it, a copy
// of it in front of every wire packet (skb_segment copies the MAC
// header). One rule differs from a TUN's in the frame's favour: a GSO
// frame without NEEDS_CSUM is "really GSO" when more than gso_size bytes
// follow nh_min_len + thlen bytes measured from the start of the frame,
// i.e. the Ethernet header counts (__virtio_net_hdr_to_skb). Proven
// through TAP devices (kerneltest.NewGSOTAP), randomized runs included.
//
// # What is not mirrored
//
// The rules above are proven against the running kernel by writing frames
// into a TUN device and reading what its forwarding path sends out of
// another (vnic/kerneltest). Frames the kernel treats differently:
//
//   - Legacy UFO (VIRTIO_NET_HDR_GSO_UDP) with more than gso_size bytes
//     after the IP header: the kernel IP-fragments the datagram
//     (udp4_ufo_fragment, udp6_ufo_fragment); NewPlan refuses it
//     (ErrGSOType). A TUN device never hands a NIC such a frame (TUN_F_UFO
//     has been ignored since Linux 4.14), and IPv6's fragment ID is a
//     keyed hash (ipv6_proxy_select_ident) no NIC could reproduce.
//   - A UDP tunnel frame's outer transport header may start right after
//     the outer IP header; virtio_net_hdr_tnl_to_skb wants room for an
//     Ethernet header too, so a TUN refuses on write the tunnel frames it
//     hands out on read (pinned by kerneltest's
//     TestKernelTUNRefusesItsOwnTunnelFrames).
//   - What a forwarding router, not a NIC, does to a packet: record route
//     and timestamp options filled in, option bytes after an end-of-list
//     zeroed (ip_forward_options), TTL and routing decisions. segment
//     copies options as it finds them.
package segment
