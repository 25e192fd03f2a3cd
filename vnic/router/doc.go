// Package router is a gVisor netstack router (and optional firewall) with N
// interfaces, each one end of an in-memory wire (package glink), for vnic's
// multi-host offload labs. Pure Go, no root.
//
//	wire ─▶ Inject(i) ─▶ GRO (Iface.GRO) ─▶ firewall In ─▶ gVisor forwarding ─▶ firewall Out ─▶ Iface.Output ─▶ wire
//
// # Forwarding: what gVisor does, and what the router corrects
//
// Forwarding is gVisor's (stack.SetForwardingDefaultAndAllNICs for IPv4
// and IPv6; GROFixed's merged packets aside, see below), with routes from the interfaces' prefixes and Options.Routes
// (longest prefix first). Established by the tests in this package:
//
//   - TTL/hop limit is decremented, the IPv4 header checksum updated.
//   - ICMP time-exceeded (IPv4 type 11, ICMPv6 type 3) from the ingress
//     address. gVisor's IPv4 refuses only TTL 0 and forwards a packet
//     that arrives with TTL 1 as TTL 0 (Linux's ip_forward refuses
//     TTL <= 1; gVisor's IPv6 gets hop limit <= 1 right): the router
//     hands such packets to gVisor with TTL 0 (IfaceStats.TTLFixed), so
//     the quote in the time-exceeded says TTL 0 where Linux's says 1.
//   - A DF IPv4 packet (any IPv6 packet) bigger than the egress MTU is
//     dropped and answered with ICMP fragmentation-needed naming the
//     egress link MTU (RFC 1191), or ICMPv6 packet-too-big — which gVisor
//     sends with MTU 0 (icmpReasonPacketTooBig has no MTU): the router
//     writes the egress link MTU in (IfaceStats.PTBFixed). Neither is
//     rate-limited (like Linux: PMTU discovery is exempt).
//   - A non-DF IPv4 packet bigger than the egress MTU is fragmented
//     (glink.Stats.OutFragments counts the fragments).
//   - gVisor drops GSO metadata when it forwards (DeepCopyForForwarding
//     builds a new packet without GSOOptions) and its MTU check
//     (packetMustBeFragmented) exempts only GSO packets, so a big merged
//     packet handed to it meets the MTU check whole: exactly the 2014 bug.
//   - Without TX checksum offload on the egress link gVisor recomputes the
//     L4 checksum of every forwarded packet (repairing wire corruption);
//     the router's links claim the offload so forwarded packets are left
//     alone, and the router completes the checksums of its own TCP/UDP
//     packets (RSTs) itself.
//
// # GRO on the ingress (story 3)
//
// Iface.GRO, changed at run time by SetGRO (`ethtool -K eth1 gro off`):
//
//   - GROOff: packets are forwarded as they arrive.
//   - GROBuggy2014: each Inject batch is cut into NAPI polls of
//     NAPIBudget packets and merged by package coalesce (Linux's GRO). A
//     merged DF packet bigger than the MTU of the route to its destination
//     is handed to gVisor whole (its checksum completed), so gVisor
//     answers fragmentation-needed with the egress MTU (e.g. mtu 1500 for
//     a 10,052-byte packet) and drops it: the Debian 3.2.60 router, whose
//     ip_forward compared the merged skb's length with the egress MTU.
//     Other merged packets are re-segmented, as that kernel's egress GSO
//     did.
//   - GRODropsMerged: merged as GROBuggy2014, but a merged DF packet
//     bigger than the egress MTU is dropped silently (counted in
//     GROStats.DroppedMerged), as gVisor's netstack did when its host
//     coalesced on receive (google/gvisor issue 14011): no ICMP tells the
//     sender anything, and it advances only through RTO retransmits.
//   - GROFixed: a kernel with the fix. Merged packets are kept whole
//     through the forwarding path and checked segment by segment against
//     the egress MTU (ip_exceeds_mtu → skb_gso_validate_network_len), then
//     leave the egress as one super-packet with a GSO virtio header, for
//     the egress NIC's TSO: whoever consumes Iface.Output segments it
//     (segment.Segment), and the wire carries the segments that arrived,
//     TTL decremented (GROStats.ForwardedGSO). The router does this
//     forwarding itself (Router.forwardWhole: TTL/hop limit, header
//     checksum, gVisor's FindRoute for the egress), because gVisor cannot:
//     DeepCopyForForwarding drops GSO metadata and its MTU check would
//     refuse the merged packet (the 2014 bug). It takes only plain
//     unicast TCP that gVisor would forward unchanged; a merged packet
//     with TTL 1, IP options, for the router, unroutable, with segments
//     above the egress MTU, or on a router with firewall rules is
//     re-segmented with package segment and handed to gVisor, so that
//     every ICMP answer, fragmentation and local delivery is still
//     gVisor's. Fixed-ID IPv4 runs are not merged at all in this mode
//     (coalesce TUNEgress), since segmenting them again would change
//     their IDs.
//
// gVisor's IPv4 forwarding reads a forwarded packet's header from a
// buffer chunk it has already returned to its pool (a race with every
// other goroutine using gVisor buffers); the router's stack carries a
// glink.ForwardGuard, which keeps that chunk referenced until gVisor is
// done (see glink.ForwardGuard).
//
// # Firewall (story 4)
//
// Firewall rules run in our code, In rules after GRO and before gVisor,
// Out rules after gVisor and before Iface.Output (see Firewall):
// DropAbove drops packets above a size and can answer
// fragmentation-needed / packet-too-big; ClampMSS rewrites the MSS option
// of SYNs (iptables TCPMSS --set-mss / --clamp-mss-to-pmtu). Clamping cannot
// help against TSO super-packets put on the wire unsegmented: they are big
// because of TSO, not because of the MSS.
//
// # Counters
//
// Stats: per interface the link's counters (in, out, forwarded, fragments
// made, drops), GRO (polls, merged packets, forwarded whole,
// re-segmented), ICMP sent by type, drops of the receive path and the
// corrections made; gVisor's forwarding counters (TTL exhausted, too big,
// unroutable, ...); per firewall rule matched, dropped, ICMP sent,
// clamped.
package router
