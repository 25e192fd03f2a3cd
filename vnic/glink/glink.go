package glink

import (
	"errors"
	"fmt"
	"sync"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/stack/gro"

	"vnic/vnic/virtio"
)

// Defaults and limits.
const (
	// DefaultMTU is the wire MTU when Options.MTU is 0.
	DefaultMTU = 1500
	// MaxGSOSize is the largest Options.GSOMaxSize: gVisor's TCP fills a
	// super-packet up to GSOMaxSize-61 payload bytes, and with 20 bytes of
	// IPv4 header and up to 40 of TCP options the IPv4 total length (16
	// bits) must still fit.
	MaxGSOSize = 1 << 16
	// DefaultTxQueueBytes is the transmit queue limit when
	// Options.TxQueueBytes is 0.
	DefaultTxQueueBytes = 16 << 20
)

// Options configures an Endpoint. Every field but Output has a usable zero
// value.
type Options struct {
	// MTU is the wire MTU: the largest IP packet Inject accepts and the
	// largest non-GSO packet the stack sends. 0 means DefaultMTU; at
	// least 68 (IPv4's minimum), at most 65535.
	MTU uint32

	// GSOMaxSize turns host GSO on when non-zero: the endpoint advertises
	// stack.HostGSOSupported and Output may carry TCP super-packets up to
	// this many bytes with a virtio_net_hdr. Between MTU and MaxGSOSize.
	GSOMaxSize uint32

	// GRO runs each Inject batch through gVisor's GRO (stack/gro). The
	// link then claims RX checksum offload and verifies the IPv4 header
	// and TCP/UDP/ICMP checksums itself, dropping what fails
	// (Drops.BadChecksum).
	GRO bool

	// MaxInject is the largest packet Inject accepts; 0 means MTU. A
	// router that runs GRO on its ingress sets it to 65535: the merged
	// packets it injects are bigger than the wire's MTU, as a GRO skb is
	// bigger than the device's.
	MaxInject uint32

	// ForwardGuard must be set on every Endpoint of a stack that forwards
	// IPv4: the guard GuardForwarding installed on that stack. gVisor's
	// IPv4 forwarding reads a forwarded packet's header after the chunk
	// behind it went back to gVisor's pool (see ForwardGuard); the
	// Endpoint drops the guard's reference once the stack has delivered the
	// packet. Not with GRO.
	ForwardGuard *ForwardGuard

	// TXChecksumOffload makes the link claim TX checksum offload, so
	// gVisor does not recompute the L4 checksum of forwarded packets (see
	// the package doc). For routers.
	TXChecksumOffload bool

	// TxQueueBytes is the most bytes of packets waiting for Output; beyond
	// it the endpoint drops what the stack sends (Drops.TxQueueFull). 0
	// means DefaultTxQueueBytes.
	TxQueueBytes int

	// Output receives the packets the stack sends, in order, in batches,
	// from a single goroutine owned by the Endpoint (never concurrently).
	// The slice and the packets' Data are only valid during the call;
	// Output may modify Data in place. Output should not block for long;
	// it may call Inject, on this endpoint or another. Required.
	Output func(pkts []Packet)
}

// Packet is one IP packet the stack sends.
type Packet struct {
	// Hdr is the virtio_net_hdr Linux would carry with this packet on a
	// TUN device. The zero Hdr means a complete packet. With GSO on, TCP
	// packets of a connection carry NEEDS_CSUM (partial checksum: the TCP
	// checksum field holds the pseudo-header sum, csum_start is the IP
	// header length, csum_offset 16), and a super-packet also carries
	// GSOType (GSOTCPv4/GSOTCPv6, with GSOECN when it carries CWR),
	// GSOSize (the MSS) and HdrLen (IP plus TCP header length).
	Hdr virtio.Hdr
	// Data is the IP packet, starting at the IP header.
	Data []byte
}

// groBucketSize is how many packets one bucket of gVisor's GRO holds
// (stack/gro's groBucketSize).
const groBucketSize = 8

// Endpoint is a gVisor link endpoint for one end of a point-to-point wire.
type Endpoint struct {
	mtu    uint32
	maxIn  uint32
	guard  *ForwardGuard
	gsoMax uint32
	caps   stack.LinkEndpointCapabilities
	useGRO bool

	mu         sync.RWMutex
	dispatcher stack.NetworkDispatcher
	onClose    func()

	// injMu guards closed against CloseInject; Inject holds it shared
	// while it delivers.
	injMu  sync.RWMutex
	closed bool

	// groMu serialises Inject batches through gro (not safe for
	// concurrent use).
	groMu sync.Mutex
	gro   gro.GRO

	q         *txQueue
	outWG     sync.WaitGroup
	closeOnce sync.Once

	cnt counters
}

var (
	_ stack.LinkEndpoint = (*Endpoint)(nil)
	_ stack.GSOEndpoint  = (*Endpoint)(nil)
)

// New validates the options and starts the output goroutine.
func New(opt Options) (*Endpoint, error) {
	if opt.Output == nil {
		return nil, errors.New("glink: Options.Output is nil: the link needs somewhere to send its packets")
	}
	if opt.MTU == 0 {
		opt.MTU = DefaultMTU
	}
	if opt.MTU < header.IPv4MinimumProcessableDatagramSize || opt.MTU > 65535 {
		return nil, fmt.Errorf("glink: MTU %d out of range %d..65535", opt.MTU, header.IPv4MinimumProcessableDatagramSize)
	}
	if opt.GSOMaxSize != 0 && (opt.GSOMaxSize < opt.MTU || opt.GSOMaxSize > MaxGSOSize) {
		return nil, fmt.Errorf("glink: GSOMaxSize %d out of range MTU (%d)..%d; 0 turns GSO off", opt.GSOMaxSize, opt.MTU, MaxGSOSize)
	}
	if opt.MaxInject == 0 {
		opt.MaxInject = opt.MTU
	}
	if opt.MaxInject < opt.MTU || opt.MaxInject > 65535 {
		return nil, fmt.Errorf("glink: MaxInject %d out of range MTU (%d)..65535", opt.MaxInject, opt.MTU)
	}
	if opt.ForwardGuard != nil && opt.GRO {
		return nil, errors.New("glink: ForwardGuard with GRO: gVisor's GRO delivers packets after Inject's loop, the guard could not release them")
	}
	if opt.TxQueueBytes < 0 {
		return nil, fmt.Errorf("glink: TxQueueBytes %d is negative", opt.TxQueueBytes)
	}
	if opt.TxQueueBytes == 0 {
		opt.TxQueueBytes = DefaultTxQueueBytes
	}
	e := &Endpoint{mtu: opt.MTU, maxIn: opt.MaxInject, guard: opt.ForwardGuard, gsoMax: opt.GSOMaxSize, useGRO: opt.GRO}
	if opt.GRO {
		e.caps |= stack.CapabilityRXChecksumOffload
	}
	if opt.TXChecksumOffload {
		e.caps |= stack.CapabilityTXChecksumOffload
	}
	e.gro.Init(opt.GRO)
	e.q = newTxQueue(opt.TxQueueBytes, &e.cnt)
	e.outWG.Add(1)
	go func() {
		defer e.outWG.Done()
		e.q.run(opt.Output)
	}()
	return e, nil
}

// MTU implements stack.LinkEndpoint.
func (e *Endpoint) MTU() uint32 { return e.mtu }

// SetMTU implements stack.LinkEndpoint. The wire's MTU is fixed at New.
func (e *Endpoint) SetMTU(uint32) {}

// MaxHeaderLength implements stack.LinkEndpoint: no link-layer header.
func (e *Endpoint) MaxHeaderLength() uint16 { return 0 }

// LinkAddress implements stack.LinkEndpoint: a point-to-point link has none.
func (e *Endpoint) LinkAddress() tcpip.LinkAddress { return "" }

// SetLinkAddress implements stack.LinkEndpoint.
func (e *Endpoint) SetLinkAddress(tcpip.LinkAddress) {}

// Capabilities implements stack.LinkEndpoint: RX checksum offload with
// Options.GRO, TX checksum offload with Options.TXChecksumOffload, nothing
// else (no link-address resolution).
func (e *Endpoint) Capabilities() stack.LinkEndpointCapabilities { return e.caps }

// Attach implements stack.LinkEndpoint.
func (e *Endpoint) Attach(d stack.NetworkDispatcher) {
	e.mu.Lock()
	e.dispatcher = d
	e.mu.Unlock()
}

// IsAttached implements stack.LinkEndpoint.
func (e *Endpoint) IsAttached() bool {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.dispatcher != nil
}

func (e *Endpoint) getDispatcher() stack.NetworkDispatcher {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.dispatcher
}

// Wait implements stack.LinkEndpoint. The output goroutine is stopped by
// CloseOutput, not by the stack.
func (e *Endpoint) Wait() {}

// ARPHardwareType implements stack.LinkEndpoint.
func (e *Endpoint) ARPHardwareType() header.ARPHardwareType { return header.ARPHardwareNone }

// AddHeader implements stack.LinkEndpoint: nothing to add.
func (e *Endpoint) AddHeader(*stack.PacketBuffer) {}

// ParseHeader implements stack.LinkEndpoint: nothing to parse.
func (e *Endpoint) ParseHeader(*stack.PacketBuffer) bool { return true }

// Close implements stack.LinkEndpoint (the stack calls it when the NIC is
// removed). It does not stop the output goroutine: see CloseOutput.
func (e *Endpoint) Close() {
	e.mu.Lock()
	f := e.onClose
	e.onClose = nil
	e.mu.Unlock()
	if f != nil {
		f()
	}
}

// SetOnCloseAction implements stack.LinkEndpoint.
func (e *Endpoint) SetOnCloseAction(f func()) {
	e.mu.Lock()
	e.onClose = f
	e.mu.Unlock()
}

// GSOMaxSize implements stack.GSOEndpoint.
func (e *Endpoint) GSOMaxSize() uint32 { return e.gsoMax }

// SupportedGSO implements stack.GSOEndpoint: host GSO (the offload is done
// by whoever reads Output, as a host kernel does for fdbased) or none.
func (e *Endpoint) SupportedGSO() stack.SupportedGSO {
	if e.gsoMax == 0 {
		return stack.GSONotSupported
	}
	return stack.HostGSOSupported
}

// WritePackets implements stack.LinkWriter. The packets are copied into the
// transmit queue; gVisor keeps ownership of the buffers.
func (e *Endpoint) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	n := 0
	for _, pkt := range pkts.AsSlice() {
		if err := e.q.push(vnetHdr(pkt), pkt, nil); err != nil { // only when closed
			if n == 0 {
				return 0, err
			}
			return n, nil
		}
		e.countOut(pkt)
		n++
	}
	return n, nil
}

// Forward queues a packet that the endpoint's owner forwarded itself,
// without the stack (a router's fast path), for Output, in order with
// what the stack sends. hdr is its Packet.Hdr (a GSO super-packet must
// carry NEEDS_CSUM with the pseudo-header sum in its checksum field, as
// the stack's own do); data is copied. It is counted in OutForwarded
// (and Out when Output gets it), and dropped like the stack's packets
// (Drops.TxQueueFull, Drops.ClosedOut). It returns false only after
// CloseOutput.
func (e *Endpoint) Forward(hdr virtio.Hdr, data []byte) bool {
	if e.q.push(hdr, nil, data) != nil {
		return false
	}
	e.cnt.outForwarded.Add(1)
	return true
}

// countOut counts what kind of packet the stack sent: forwarded, or an
// IPv4 fragment the stack made itself (gVisor builds fragments as new
// packets, so a fragment of a forwarded packet is not marked forwarded).
func (e *Endpoint) countOut(pkt *stack.PacketBuffer) {
	if pkt.NetworkPacketInfo.IsForwardedPacket {
		e.cnt.outForwarded.Add(1)
		return
	}
	if pkt.NetworkProtocolNumber == ipv4.ProtocolNumber {
		if h := header.IPv4(pkt.NetworkHeader().Slice()); len(h) >= header.IPv4MinimumSize && (h.More() || h.FragmentOffset() != 0) {
			e.cnt.outFragments.Add(1)
		}
	}
}

// Inject delivers wire packets (IP packets without a virtio header: on the
// wire every checksum is complete) to the stack. Each packet is copied;
// pkts may be reused when Inject returns. Packets that are empty, not
// IPv4/IPv6, shorter than their IP header says or longer than the MTU
// (Options.MaxInject) are
// counted in Stats().Drops and dropped; everything else goes to gVisor.
// Inject delivers synchronously on the calling goroutine and may be called
// concurrently.
func (e *Endpoint) Inject(pkts [][]byte) {
	e.injMu.RLock()
	defer e.injMu.RUnlock()
	if e.closed {
		e.cnt.dropClosed.Add(uint64(len(pkts)))
		return
	}
	d := e.getDispatcher()
	if d == nil {
		e.cnt.dropClosed.Add(uint64(len(pkts)))
		return
	}
	if e.useGRO {
		e.groMu.Lock()
		defer e.groMu.Unlock()
		e.gro.Dispatcher = d
	}
	for _, b := range pkts {
		proto, ok := e.check(b)
		if !ok {
			continue
		}
		pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(b)})
		e.cnt.inPackets.Add(1)
		e.cnt.inBytes.Add(uint64(len(b)))
		if e.useGRO {
			pkt.NetworkProtocolNumber = proto
			pkt.RXChecksumValidated = true
			e.gro.Enqueue(pkt)
		} else {
			d.DeliverNetworkPacket(proto, pkt)
			if e.guard != nil {
				// gVisor is done with the packet's header.
				e.guard.unpin(pkt)
			}
		}
		pkt.DecRef()
	}
	if e.useGRO {
		// gVisor's GRO.Flush hands up only the first packet of each of
		// its buckets (its loop steps to Next of the packet it has just
		// removed from the list); a bucket holds at most groBucketSize
		// packets, so that many calls empty them all, and nothing of
		// this batch waits for the next one.
		for range groBucketSize {
			e.gro.Flush()
		}
	}
}

// check returns the network protocol of a wire packet, or counts why it is
// dropped.
func (e *Endpoint) check(b []byte) (tcpip.NetworkProtocolNumber, bool) {
	if len(b) == 0 {
		e.cnt.dropEmpty.Add(1)
		return 0, false
	}
	if len(b) > int(e.maxIn) {
		e.cnt.dropOversize.Add(1)
		return 0, false
	}
	var proto tcpip.NetworkProtocolNumber
	switch b[0] >> 4 {
	case 4:
		proto = ipv4.ProtocolNumber
		if len(b) < header.IPv4MinimumSize {
			e.cnt.dropTruncated.Add(1)
			return 0, false
		}
		h := header.IPv4(b)
		if int(h.HeaderLength()) > len(b) || int(h.TotalLength()) > len(b) {
			e.cnt.dropTruncated.Add(1)
			return 0, false
		}
	case 6:
		proto = ipv6.ProtocolNumber
		if len(b) < header.IPv6MinimumSize || header.IPv6MinimumSize+int(header.IPv6(b).PayloadLength()) > len(b) {
			e.cnt.dropTruncated.Add(1)
			return 0, false
		}
	default:
		e.cnt.dropBadVersion.Add(1)
		return 0, false
	}
	if e.useGRO && !checksumsOK(b) {
		e.cnt.dropBadChecksum.Add(1)
		return 0, false
	}
	return proto, true
}

// CloseInject makes every later Inject drop its packets (Drops.Closed) and
// waits for the Injects in progress to return. Call it before closing the
// stack. Idempotent.
func (e *Endpoint) CloseInject() {
	e.injMu.Lock()
	e.closed = true
	e.injMu.Unlock()
}

// CloseOutput stops the transmit queue: what the stack sends afterwards is
// dropped (Drops.ClosedOut), what is queued is handed to Output, and the
// output goroutine ends before CloseOutput returns; Output is not called
// again. Call it after the stack is closed and waited for. Idempotent.
func (e *Endpoint) CloseOutput() {
	e.closeOnce.Do(func() {
		e.q.close()
		close(e.q.done)
		e.outWG.Wait()
	})
}
