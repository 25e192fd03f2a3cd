package glink_test

import (
	"bytes"
	"net/netip"
	"sync"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"vnic/vnic/glink"
	"vnic/vnic/pkttest"
)

type rec struct {
	mu   sync.Mutex
	pkts [][]byte
}

func (r *rec) output(pkts []glink.Packet) {
	r.mu.Lock()
	for _, p := range pkts {
		r.pkts = append(r.pkts, bytes.Clone(p.Data))
	}
	r.mu.Unlock()
}

func (r *rec) wait(t *testing.T) []byte {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		r.mu.Lock()
		if len(r.pkts) > 0 {
			p := r.pkts[0]
			r.mu.Unlock()
			return p
		}
		r.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatal("nothing forwarded")
		}
		time.Sleep(time.Millisecond)
	}
}

// waitN waits until n packets came out.
func (r *rec) waitN(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r.mu.Lock()
		got := len(r.pkts)
		r.mu.Unlock()
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d packets forwarded", got, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// forwarder is a two-NIC gVisor stack with forwarding on.
// With guarded, the stack has a glink.ForwardGuard (as every forwarding
// stack must); without, it shows gVisor's race (forward_race_test.go).
func forwarder(t *testing.T, txCsum, guarded bool) (*glink.Endpoint, *rec) {
	out := &rec{}
	s := stack.New(stack.Options{NetworkProtocols: []stack.NetworkProtocolFactory{ipv4.NewProtocol}})
	var g *glink.ForwardGuard
	if guarded {
		var err error
		if g, err = glink.GuardForwarding(s); err != nil {
			t.Fatal(err)
		}
	}
	in, err := glink.New(glink.Options{Output: func([]glink.Packet) {}, TXChecksumOffload: txCsum, ForwardGuard: g})
	if err != nil {
		t.Fatal(err)
	}
	eg, err := glink.New(glink.Options{Output: out.output, TXChecksumOffload: txCsum, ForwardGuard: g})
	if err != nil {
		t.Fatal(err)
	}
	s.SetForwardingDefaultAndAllNICs(ipv4.ProtocolNumber, true)
	for i, ep := range []*glink.Endpoint{in, eg} {
		if err := s.CreateNIC(tcpip.NICID(i+1), ep); err != nil {
			t.Fatal(err)
		}
		a := tcpip.AddrFrom4([4]byte{10, byte(i + 1), 0, 1})
		s.AddProtocolAddress(tcpip.NICID(i+1), tcpip.ProtocolAddress{Protocol: ipv4.ProtocolNumber, AddressWithPrefix: a.WithPrefix()}, stack.AddressProperties{})
	}
	s.SetRouteTable([]tcpip.Route{{Destination: header.IPv4EmptySubnet, NIC: 2}})
	t.Cleanup(func() {
		in.CloseInject()
		eg.CloseInject()
		s.Close()
		s.Wait()
		in.CloseOutput()
		eg.CloseOutput()
	})
	return in, out
}

// TestForwardingRecomputesL4ChecksumWithoutTXOffload pins down a gVisor
// fact: forwarding through a link without TX checksum offload recomputes
// the TCP checksum (forwardPacketWithRoute → CalculateTransportChecksum),
// repairing a packet corrupted on the wire; with TXChecksumOffload the
// forwarded packet keeps its (bad) checksum, as through a real router.
func TestForwardingRecomputesL4ChecksumWithoutTXOffload(t *testing.T) {
	for _, tx := range []bool{false, true} {
		in, out := forwarder(t, tx, true)
		p := pkttest.Packet{Src: netip.MustParseAddr("10.1.0.2"), Dst: netip.MustParseAddr("10.9.0.2"), Payload: []byte("hello"), BadL4Checksum: true}
		in.Inject([][]byte{p.Build()})
		got := out.wait(t)
		err := pkttest.Verify(got)
		if !tx && err != nil {
			t.Errorf("without TX offload: %v (gVisor no longer repairs forwarded checksums?)", err)
		}
		if tx && err == nil {
			t.Error("with TX offload the forwarded packet's bad checksum was repaired")
		}
		if st := in.Stats(); st.In.Packets != 1 {
			t.Errorf("%+v", st)
		}
	}
}

func TestOptionsValidation(t *testing.T) {
	out := func([]glink.Packet) {}
	for _, o := range []glink.Options{
		{},
		{Output: out, MTU: 10},
		{Output: out, MTU: 1500, GSOMaxSize: 1000},
		{Output: out, MTU: 1500, MaxInject: 1000},
		{Output: out, TxQueueBytes: -1},
	} {
		if e, err := glink.New(o); err == nil {
			e.CloseOutput()
			t.Errorf("New(%+v) accepted", o)
		}
	}
}

// TestGROInjectDeliversEveryFlow: with GRO on, every packet of an Inject
// batch reaches the stack before Inject returns, however many flows share
// a GRO bucket. gVisor's GRO.Flush hands up only the first packet of each
// of its 8 buckets (its loop steps to Next of a packet it has just
// removed); the rest waited for the next batch, which may be long in
// coming.
func TestGROInjectDeliversEveryFlow(t *testing.T) {
	s := stack.New(stack.Options{NetworkProtocols: []stack.NetworkProtocolFactory{ipv4.NewProtocol}})
	ep, err := glink.New(glink.Options{Output: func([]glink.Packet) {}, GRO: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateNIC(1, ep); err != nil {
		t.Fatal(err)
	}
	local := netip.MustParseAddr("10.1.0.1")
	s.AddProtocolAddress(1, tcpip.ProtocolAddress{Protocol: ipv4.ProtocolNumber, AddressWithPrefix: tcpip.AddrFrom4(local.As4()).WithPrefix()}, stack.AddressProperties{})
	s.SetRouteTable([]tcpip.Route{{Destination: header.IPv4EmptySubnet, NIC: 1}})
	t.Cleanup(func() {
		ep.CloseInject()
		s.Close()
		s.Wait()
		ep.CloseOutput()
	})
	// 40 flows, one data segment each: more flows than GRO has buckets,
	// so some share one.
	const flows = 40
	var batch [][]byte
	for i := range flows {
		p := pkttest.Packet{Src: netip.MustParseAddr("10.1.0.2"), Dst: local, SrcPort: uint16(40000 + i), DstPort: 9,
			Flags: pkttest.ACK, Seq: 1, Ack: 1, Payload: pkttest.Payload(100, byte(i))}
		batch = append(batch, p.Build())
	}
	before := s.Stats().IP.PacketsReceived.Value()
	ep.Inject(batch)
	if got := s.Stats().IP.PacketsReceived.Value() - before; got != flows {
		t.Errorf("after Inject of %d segments of %d flows, the stack received %d", flows, flows, got)
	}
}
