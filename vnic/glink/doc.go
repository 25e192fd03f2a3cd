// Package glink is a gVisor link endpoint for one end of an IP
// point-to-point wire that exists only in memory: no link-layer header (no
// ethernet, no ARP, no NDP), packets in with Inject, packets out through
// Options.Output. vnic's gVisor hosts (package peer) and routers (package
// router) each attach one Endpoint per wire.
//
//	wire packets ──▶ Endpoint.Inject ──▶ gVisor stack ──▶ WritePackets ──▶ tx queue ──▶ Options.Output
//
// # Transmit
//
// What the stack sends is copied into a transmit queue (the NIC's ring) and
// handed to Output from one goroutine owned by the Endpoint, in batches, in
// the order the stack sent it. Beyond Options.TxQueueBytes the endpoint
// drops, and the stack sees a loss on the wire.
//
// With Options.GSOMaxSize the endpoint advertises host GSO
// (stack.HostGSOSupported, as link/fdbased does for a host socket): gVisor's
// TCP then builds super-packets marked with pkt.GSOOptions, and the endpoint
// encodes those options as the virtio_net_hdr Linux would put in front of
// the same packet on a TUN device opened with IFF_VNET_HDR
// (virtio_net_hdr_from_skb). Whoever consumes Output must put such packets
// on the wire first (segment.Segment). Without GSO every Output packet is a
// wire packet with a zero header.
//
// # Receive
//
// Inject takes wire packets (complete IP packets, at most MTU bytes) and
// delivers them synchronously on the caller's goroutine. Packets that are
// empty, not IPv4/IPv6, truncated or longer than the MTU are dropped and
// counted, as a NIC would. Options.GRO runs each batch through gVisor's own
// GRO (stack/gro), which requires the link to claim receive checksum
// offload; the endpoint then verifies checksums itself, as a NIC with
// rx-checksumming does.
//
// # Forwarding
//
// A stack that forwards IPv4 needs a ForwardGuard (GuardForwarding) on
// all its endpoints: gVisor's IPv4 forwarding reads the forwarded packet's
// header after it gave the buffer chunk behind it back to its pool. A
// router that forwards some packets itself (not through the stack) queues
// them with Endpoint.Forward, in order with the stack's.
//
// # Checksums
//
// Options.TXChecksumOffload makes the link claim TX checksum offload. A
// router needs it: without it gVisor's forwarding path
// (forwardPacketWithRoute, route.RequiresTXTransportChecksum) recomputes the
// TCP/UDP checksum of every forwarded packet, which a real router never
// does, and which would silently repair a packet corrupted on the wire.
// With it, the stack's own TCP/UDP packets would leave with incomplete
// checksums, so only claim it on a stack that forwards and originates
// nothing but ICMP (gVisor always completes ICMP checksums).
//
// # Lifecycle
//
// New starts the output goroutine. The owner attaches the endpoint to a
// stack (CreateNIC), and on shutdown calls CloseInject (no new Inject
// enters the stack), closes and waits for the stack, then CloseOutput (the
// queue is flushed to Output and the goroutine ends).
package glink
