// Package peer is the host at the far end of vnic's wire: a gVisor netstack
// with IPv4 and IPv6 addresses and a few classic services, attached to a
// point-to-point IP link (no ethernet, no ARP, no NDP) that exists only in
// memory. Pure Go, no syscalls, no root: a test builds one, feeds it wire
// packets with Inject and gets its answers through Options.Output.
//
//	NIC ──wire packets──▶ Peer.Inject ──▶ gVisor stack ──▶ Options.Output ──▶ GRO/TUN
//
// # Addresses and routes
//
// Each Options.Addrs prefix (e.g. 198.18.0.2/15, fd00::2/64) becomes an
// address and an on-link route to the wire; unless Options.OnLinkOnly,
// default routes (0.0.0.0/0, ::/0) point to the wire too. The stack answers
// ICMP and ICMPv6 echo itself. IPv6 runs without DAD, router solicitation,
// SLAAC or MLD, and IPv4 without IGMP, so the peer never sends anything
// unprompted.
//
// # Services
//
// On every address: TCP and UDP echo (port 7, RFC 862), TCP and UDP discard
// (9, RFC 863), TCP chargen (19, RFC 864), and HTTP on 80 (net/http over
// gVisor's gonet listener): GET /bytes/N answers N bytes (N up to
// MaxHTTPBytes; byte i is i mod 251; anything else is a 400), POST /
// swallows the body and answers its length in decimal, GET / a one-line
// help. Options.Disable turns services off.
//
// TCP runs with large windows: send and receive buffers up to
// Options.TCPBufferMax (8 MiB) with receive-buffer auto-tuning, and SACK.
//
// # GSO
//
// With Options.GSOMaxSize set, the link tells gVisor it supports host GSO
// (stack.HostGSOSupported, as link/fdbased does for a host socket), and
// gVisor's TCP then builds segments of up to GSOMaxSize bytes, marked with
// pkt.GSOOptions, instead of MSS-sized ones. The link translates those
// options into the virtio_net_hdr that Linux (virtio_net_hdr_from_skb)
// would put in front of the same packet on a TUN device opened with
// IFF_VNET_HDR:
//
//   - every TCP packet of a connection carries NEEDS_CSUM, csum_start = IP
//     header length (20 or 40), csum_offset = 16, and its checksum field
//     holds the pseudo-header sum over the packet's whole TCP length, not
//     complemented (gVisor's buildTCPHdr, like Linux's __tcp_v4_send_check);
//   - a packet whose payload exceeds the MSS is a super-packet of up to
//     about 64 KiB: gso_type TCPV4 or TCPV6 (|ECN if it carries CWR),
//     gso_size = the MSS gVisor sends with, hdr_len = IP + TCP header
//     length. gVisor's MSS reserves room for the largest TCP options (40
//     bytes), so at MTU 1500 gso_size is 1420 for IPv4 and 1400 for IPv6,
//     where Linux would use 1448 and 1428 with timestamps.
//
// Everything else (UDP, ICMP, TCP sent without a connected endpoint: the
// listener's SYN-ACK, an RST for a closed port) has a complete checksum
// and a zero header. Whoever
// consumes Output must therefore put each packet "on the wire" first, with
// segment.Segment, before it is coalesced or written into a TUN; with GSO
// off (GSOMaxSize 0) every Output packet is already a wire packet: at most
// MTU bytes, every checksum complete, zero header.
//
// # Receive
//
// Inject takes wire packets (at most MTU bytes, complete checksums) and
// delivers them synchronously. Options.GRO runs each Inject batch through
// gVisor's own GRO (stack/gro) first; it is off by default because vnic
// does its own GRO (package coalesce) on the other direction and the peer
// should see the wire as it is.
package peer
