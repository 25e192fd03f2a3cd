package glink

import (
	"encoding/binary"
	"fmt"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// Ethernet is an Endpoint for one end of an Ethernet wire: frames in with
// Inject, frames out through Options.Output, each IP packet behind an
// Ethernet header, and the stack resolving link addresses itself — ARP
// (add gVisor's arp.NewProtocol to the stack) and IPv6 neighbour
// discovery — as on any Ethernet link.
//
// It does what gVisor's link/ethernet wrapper does (LinkAddress,
// CapabilityResolutionRequired, AddHeader, ParseHeader, PktType from the
// destination address) but on the receive side itself, not as a
// dispatcher in front of the stack: gVisor's GRO (Options.GRO) takes IP
// packets whose link header is already consumed, and link/ethernet would
// consume it a second time when GRO hands a merged packet on. Like a NIC
// that is not promiscuous, it drops unicast frames for another address
// (Drops.NotForUs).
//
// Output packets carry the Ethernet header, and their Hdr's csum_start
// and hdr_len count from it, as a TAP device's virtio header does.
type Ethernet struct {
	*Endpoint
	mac tcpip.LinkAddress
}

var (
	_ stack.LinkEndpoint = (*Ethernet)(nil)
	_ stack.GSOEndpoint  = (*Ethernet)(nil)
)

// NewEthernet makes an Ethernet endpoint with hardware address mac (a
// unicast address). opt.MTU is the IP MTU, as on a Linux Ethernet
// interface; the frames are 14 bytes longer.
func NewEthernet(opt Options, mac tcpip.LinkAddress) (*Ethernet, error) {
	if len(mac) != header.EthernetAddressSize || header.IsMulticastEthernetAddress(mac) || mac == header.UnspecifiedEthernetAddress {
		return nil, fmt.Errorf("glink: hardware address %v: need a unicast Ethernet address", mac)
	}
	e, err := New(opt)
	if err != nil {
		return nil, err
	}
	return &Ethernet{Endpoint: e, mac: mac}, nil
}

// MaxHeaderLength implements stack.LinkEndpoint: the Ethernet header.
func (e *Ethernet) MaxHeaderLength() uint16 { return header.EthernetMinimumSize }

// LinkAddress implements stack.LinkEndpoint.
func (e *Ethernet) LinkAddress() tcpip.LinkAddress { return e.mac }

// Capabilities implements stack.LinkEndpoint: the Endpoint's, and link
// addresses need resolving (ARP, NDP).
func (e *Ethernet) Capabilities() stack.LinkEndpointCapabilities {
	return e.Endpoint.Capabilities() | stack.CapabilityResolutionRequired
}

// ARPHardwareType implements stack.LinkEndpoint.
func (e *Ethernet) ARPHardwareType() header.ARPHardwareType { return header.ARPHardwareEther }

// AddHeader implements stack.LinkEndpoint: the Ethernet header, as
// link/ethernet writes it.
func (e *Ethernet) AddHeader(pkt *stack.PacketBuffer) {
	eth := header.Ethernet(pkt.LinkHeader().Push(header.EthernetMinimumSize))
	src := pkt.EgressRoute.LocalLinkAddress
	if src == "" {
		src = e.mac
	}
	eth.Encode(&header.EthernetFields{SrcAddr: src, DstAddr: pkt.EgressRoute.RemoteLinkAddress, Type: pkt.NetworkProtocolNumber})
}

// ParseHeader implements stack.LinkEndpoint.
func (e *Ethernet) ParseHeader(pkt *stack.PacketBuffer) bool {
	_, ok := pkt.LinkHeader().Consume(header.EthernetMinimumSize)
	return ok
}

// Inject delivers wire frames (Ethernet frames, checksums complete) to
// the stack, like Endpoint.Inject for IP packets: each is copied; frames
// shorter than an Ethernet header, for another unicast address, or whose
// IP packet Endpoint.Inject would drop are counted and dropped; IPv4 and
// IPv6 go through GRO with Options.GRO, ARP and everything else straight
// to the stack (which counts protocols it does not know).
func (e *Ethernet) Inject(frames [][]byte) {
	e.injMu.RLock()
	defer e.injMu.RUnlock()
	if e.closed {
		e.cnt.dropClosed.Add(uint64(len(frames)))
		return
	}
	d := e.getDispatcher()
	if d == nil {
		e.cnt.dropClosed.Add(uint64(len(frames)))
		return
	}
	if e.useGRO {
		e.groMu.Lock()
		defer e.groMu.Unlock()
		e.gro.Dispatcher = d
	}
	for _, f := range frames {
		if len(f) < header.EthernetMinimumSize {
			e.cnt.dropTruncated.Add(1)
			continue
		}
		eth := header.Ethernet(f)
		dst := eth.DestinationAddress()
		var typ tcpip.PacketType
		switch {
		case dst == header.EthernetBroadcastAddress:
			typ = tcpip.PacketBroadcast
		case header.IsMulticastEthernetAddress(dst):
			typ = tcpip.PacketMulticast
		case dst == e.mac:
			typ = tcpip.PacketHost
		default:
			e.cnt.dropNotForUs.Add(1)
			continue
		}
		proto := tcpip.NetworkProtocolNumber(binary.BigEndian.Uint16(f[12:]))
		ip := proto == header.IPv4ProtocolNumber || proto == header.IPv6ProtocolNumber
		if ip {
			p, ok := e.check(f[header.EthernetMinimumSize:])
			if !ok {
				continue
			}
			if p != proto {
				e.cnt.dropBadVersion.Add(1)
				continue
			}
		}
		pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(f)})
		pkt.LinkHeader().Consume(header.EthernetMinimumSize)
		pkt.PktType = typ
		pkt.NetworkProtocolNumber = proto
		e.cnt.inPackets.Add(1)
		e.cnt.inBytes.Add(uint64(len(f)))
		if ip && e.useGRO {
			pkt.RXChecksumValidated = true
			e.gro.Enqueue(pkt)
		} else {
			d.DeliverNetworkPacket(proto, pkt)
		}
		pkt.DecRef()
	}
	if e.useGRO {
		e.gro.Flush()
	}
}

// ARP is gVisor's ARP protocol, for the stack of an Ethernet endpoint.
var ARP stack.NetworkProtocolFactory = arp.NewProtocol
