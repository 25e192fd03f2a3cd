// Package afpacket is a wire that is an existing Linux interface: an
// Ethernet vnic NIC's frames go out and come in through an AF_PACKET
// socket bound to it — one end of a veth pair whose other end is a
// bridge port, a port already in a bridge, a physical NIC in a lab — so a
// vnic NIC can join any L2 network the kernel has.
//
//	NIC transmit loop ──Wire.Inject(frames)──▶ sendmmsg(2), one frame a
//	  message (PACKET_QDISC_BYPASS: straight to the driver, as a NIC's
//	  ring would) ──▶ the interface
//	the interface ──recvmmsg(2)──▶ frames; a GSO super-packet (from a
//	  veth peer that left segmentation to us) is cut into wire-size
//	  frames and a partial checksum completed, as the cable would carry
//	  them ──Receiver.Inject(frames)──▶ the NIC's receive side
//
// The socket has PACKET_VNET_HDR, so every frame the kernel hands over
// says whether it is a GSO super-packet or carries a partial checksum
// (packet_rcv_vnet: virtio_net_hdr_from_skb), PACKET_AUXDATA, so a VLAN
// tag the kernel took out of the frame (skb_vlan_untag) is put back, and
// PACKET_IGNORE_OUTGOING, so it does not see its own frames.
//
// Offloads that would merge received frames before the socket sees them
// (GRO, LRO, hardware GRO) are switched off on the interface for as long
// as the wire is open and restored exactly on Close (Open logs which, and
// the command to restore them by hand after a kill -9). The interface is
// put in promiscuous mode through the socket (PACKET_MR_PROMISC), which
// the kernel undoes when the socket closes: the NIC's MAC is not the
// interface's. An interface that is down is set up, and down again on
// Close.
package afpacket
