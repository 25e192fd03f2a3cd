package glink_test

import (
	"bytes"
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"

	"vnic/vnic/glink"
	"vnic/vnic/pkttest"
)

var (
	hostMAC = tcpip.LinkAddress("\x02\x00\x00\x00\x00\x01")
	peerMAC = tcpip.LinkAddress("\x02\x00\x00\x00\x00\x02")
	hostIP  = tcpip.AddrFrom4([4]byte{198, 18, 0, 1})
	peerIP  = tcpip.AddrFrom4([4]byte{198, 18, 0, 2})
)

// ethHost is a gVisor host on an Ethernet endpoint (with gVisor's ARP) at
// peerIP/peerMAC; out records what it sends.
func ethHost(t *testing.T, gro bool) (*glink.Ethernet, *stack.Stack, *rec) {
	out := &rec{}
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{glink.ARP, ipv4.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{udp.NewProtocol},
	})
	ep, err := glink.NewEthernet(glink.Options{Output: out.output, GRO: gro}, peerMAC)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateNIC(1, ep); err != nil {
		t.Fatal(err)
	}
	s.AddProtocolAddress(1, tcpip.ProtocolAddress{Protocol: ipv4.ProtocolNumber, AddressWithPrefix: peerIP.WithPrefix()}, stack.AddressProperties{})
	s.SetRouteTable([]tcpip.Route{{Destination: header.IPv4EmptySubnet, NIC: 1}})
	t.Cleanup(func() {
		ep.CloseInject()
		s.Close()
		s.Wait()
		ep.CloseOutput()
	})
	return ep, s, out
}

func frame(dst, src tcpip.LinkAddress, typ tcpip.NetworkProtocolNumber, payload []byte) []byte {
	b := make([]byte, header.EthernetMinimumSize+len(payload))
	header.Ethernet(b).Encode(&header.EthernetFields{SrcAddr: src, DstAddr: dst, Type: typ})
	copy(b[header.EthernetMinimumSize:], payload)
	return b
}

// TestEthernetAnswersARP: gVisor's own ARP answers a request for the
// host's address with the endpoint's hardware address.
func TestEthernetAnswersARP(t *testing.T) {
	for _, gro := range []bool{false, true} {
		ep, _, out := ethHost(t, gro)
		a := header.ARP(make([]byte, header.ARPSize))
		a.SetIPv4OverEthernet()
		a.SetOp(header.ARPRequest)
		copy(a.HardwareAddressSender(), hostMAC)
		copy(a.ProtocolAddressSender(), hostIP.AsSlice())
		copy(a.ProtocolAddressTarget(), peerIP.AsSlice())
		ep.Inject([][]byte{frame(header.EthernetBroadcastAddress, hostMAC, header.ARPProtocolNumber, a)})
		f := out.wait(t)
		eth := header.Ethernet(f)
		if eth.Type() != header.ARPProtocolNumber || eth.SourceAddress() != peerMAC || eth.DestinationAddress() != hostMAC {
			t.Fatalf("gro %v: frame %x", gro, f)
		}
		r := header.ARP(f[header.EthernetMinimumSize:])
		if r.Op() != header.ARPReply || !bytes.Equal(r.HardwareAddressSender(), []byte(peerMAC)) {
			t.Errorf("gro %v: ARP op %d from %x", gro, r.Op(), r.HardwareAddressSender())
		}
	}
}

// TestEthernetDeliversIPAndDropsOthersFrames: an IP packet to the
// endpoint's address reaches the stack (a UDP datagram to a closed port
// draws an ICMP port unreachable, sent after ARP resolves the sender);
// one to another unicast hardware address is dropped as a NIC would.
func TestEthernetDeliversIPAndDropsOthersFrames(t *testing.T) {
	ep, _, out := ethHost(t, true)
	p := pkttest.Packet{Src: netip.MustParseAddr("198.18.0.1"), Dst: netip.MustParseAddr("198.18.0.2"), Proto: pkttest.ProtoUDP, SrcPort: 5, DstPort: 7777, Payload: []byte("x")}
	other := tcpip.LinkAddress("\x02\x00\x00\x00\x00\x99")
	ep.Inject([][]byte{frame(other, hostMAC, header.IPv4ProtocolNumber, p.Build()), frame(peerMAC, hostMAC, header.IPv4ProtocolNumber, p.Build())})
	f := out.wait(t) // the stack resolves the sender first
	if header.Ethernet(f).Type() != header.ARPProtocolNumber {
		t.Fatalf("first frame out: ethertype %#x, want an ARP request", header.Ethernet(f).Type())
	}
	st := ep.Stats()
	if st.Drops.NotForUs != 1 || st.In.Packets != 1 {
		t.Errorf("in %d, not_for_us %d; want 1 and 1", st.In.Packets, st.Drops.NotForUs)
	}
}
