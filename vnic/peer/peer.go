package peer

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"

	"vnic/vnic/glink"
)

// Defaults and limits.
const (
	// DefaultMTU is the wire MTU when Options.MTU is 0.
	DefaultMTU = glink.DefaultMTU
	// MaxGSOSize is the largest Options.GSOMaxSize: gVisor's TCP fills a
	// super-packet up to GSOMaxSize-61 payload bytes, and with 20 bytes of
	// IPv4 header and up to 40 of TCP options the IPv4 total length (16
	// bits) must still fit.
	MaxGSOSize = glink.MaxGSOSize
	// DefaultTxQueueBytes is the Output queue limit when
	// Options.TxQueueBytes is 0: twice the default TCP window.
	DefaultTxQueueBytes = 16 << 20
	// DefaultTCPBufferMax is the largest TCP send and receive buffer when
	// Options.TCPBufferMax is 0.
	DefaultTCPBufferMax = 8 << 20

	// nicID is the peer's only NIC, the wire.
	nicID tcpip.NICID = 1
)

// Options configures a Peer. The zero value of every field but Addrs and
// Output is a sensible default.
type Options struct {
	// Addrs are the peer's addresses, each with its on-link prefix, e.g.
	// 198.18.0.2/15 and fd00::2/64. At least one. The peer routes each
	// prefix to the wire.
	Addrs []netip.Prefix

	// MTU is the wire MTU: the largest IP packet Inject accepts and the
	// largest non-GSO packet Output hands out. 0 means DefaultMTU. At least
	// 1280 when an IPv6 address is configured.
	MTU uint32

	// GSOMaxSize turns GSO on when non-zero: the link advertises host GSO
	// to gVisor and Output may carry TCP super-packets up to this many
	// bytes with a virtio_net_hdr (see the package doc). 0 means GSO off:
	// every Output packet fits the MTU and has complete checksums. Between
	// MTU and MaxGSOSize.
	GSOMaxSize uint32

	// Output receives the packets the peer sends, in the order the stack
	// sent them, in batches, from a single goroutine owned by the Peer
	// (never concurrently). The slice and the packets' Data are only valid
	// during the call. Output should not block for long: while it runs the
	// queue fills, and beyond TxQueueBytes the peer drops (like a full NIC
	// ring). Output may call Inject, on this peer or another.
	// Required.
	Output func(pkts []Packet)

	// Logger receives the peer's logs; nil discards them.
	Logger *slog.Logger

	// Disable lists the services to leave off; ServiceAll leaves a bare
	// host that only answers ping (and RSTs/ICMP unreachables). The zero
	// value runs every service.
	Disable Service

	// OnLinkOnly leaves out the default routes (0.0.0.0/0 and ::/0 to the
	// wire), so the peer only answers sources inside its on-link prefixes.
	OnLinkOnly bool

	// GRO turns on gVisor's own receive coalescing (stack/gro) for each
	// Inject batch. gVisor's GRO requires the link to claim receive
	// checksum offload, so with GRO on the link verifies the IPv4 header
	// and TCP/UDP/ICMP checksums itself, as a NIC with rx-checksumming
	// would, and drops what fails (Drops.BadChecksum). Off by default.
	GRO bool

	// TxQueueBytes is the most bytes of packets waiting for Output;
	// beyond it the peer drops what the stack sends (Drops.TxQueueFull),
	// and the stack sees a loss on the wire. 0 means DefaultTxQueueBytes.
	TxQueueBytes int

	// MAC, when set, makes the wire Ethernet: the peer is a host with this
	// hardware address (a unicast one) on an Ethernet link (glink.Ethernet),
	// resolving link addresses with gVisor's own ARP and IPv6 neighbour
	// discovery; Inject takes Ethernet frames and Output's packets carry
	// the Ethernet header (Hdr offsets counted from it). Unset, the wire is
	// IP point-to-point.
	MAC net.HardwareAddr

	// TCPBufferMax is the largest TCP send and receive buffer (the stack's
	// TCPSendBufferSizeRangeOption/TCPReceiveBufferSizeRangeOption Max;
	// receive buffer auto-tuning is on). 0 means DefaultTCPBufferMax.
	TCPBufferMax int

	// RACK turns on gVisor's RACK-TLP loss detection (tail loss probes
	// after 2·SRTT, loss marked after RTT + min_RTT/4). Off by default:
	// the peer detects loss as RFC 6675 does, from three duplicate ACKs or
	// SACKed data, and otherwise by the retransmission timeout. On a wire
	// inside one machine the RTT is tens of microseconds to a millisecond,
	// and gVisor's RACK-TLP has none of the floors Linux puts under those
	// timers (tcp_schedule_loss_probe and tcp_rack_reo_timeout add
	// TCP_TIMEOUT_MIN, two jiffies), keeps the smallest RTT it ever saw
	// (a reordering window of microseconds) and breaks ties between
	// segments sent at the same instant the wrong way round: any ACK that
	// a busy scheduler delays by a millisecond then counts as a loss, and
	// the peer retransmits data the host already has (every retransmission
	// comes back DSACKed). Measured on the daemon's wire, 20 s of upload
	// and download at once: 906 retransmissions with RACK-TLP, all
	// spurious; 3 without.
	RACK bool
}

// Packet is one IP packet the peer sends: the virtio_net_hdr Linux would
// carry with it on a TUN device (Hdr; zero for a complete packet) and the
// IP packet (Data). See glink.Packet.
type Packet = glink.Packet

// Peer is a gVisor netstack host at the far end of a point-to-point wire.
type Peer struct {
	opt  Options
	log  *slog.Logger
	s    *stack.Stack
	link *glink.Endpoint
	// nic is the stack's link endpoint: link, or the Ethernet endpoint
	// around it (Options.MAC); inject is its Inject.
	nic    stack.LinkEndpoint
	inject func([][]byte)
	cnt    counters
	svc    *services

	closeOnce sync.Once
}

var _ io.Closer = (*Peer)(nil)

// New builds the peer's stack, its wire link, its addresses and routes, and
// starts its services. Close releases everything.
func New(opt Options) (*Peer, error) {
	if err := opt.validate(); err != nil {
		return nil, err
	}
	p := &Peer{opt: opt, log: opt.Logger}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}

	protos := []stack.NetworkProtocolFactory{}
	if opt.MAC != nil {
		protos = append(protos, glink.ARP)
	}
	p.s = stack.New(stack.Options{
		NetworkProtocols: append(protos,
			// IGMP off: nothing is sent unprompted.
			ipv4.NewProtocolWithOptions(ipv4.Options{}),
			// A point-to-point link: no DAD, no router solicitations, no
			// SLAAC, no MLD, no link-local address.
			ipv6.NewProtocolWithOptions(ipv6.Options{
				NDPConfigs: ipv6.NDPConfigurations{HandleRAs: ipv6.HandlingRAsDisabled},
				DADConfigs: stack.DADConfigurations{DupAddrDetectTransmits: 0},
			}),
		),
		TransportProtocols: []stack.TransportProtocolFactory{
			tcp.NewProtocol, udp.NewProtocol, icmp.NewProtocol4, icmp.NewProtocol6,
		},
	})
	if err := p.tuneTCP(); err != nil {
		p.s.Close()
		p.s.Wait()
		return nil, err
	}

	lo := glink.Options{
		MTU:          opt.MTU,
		GSOMaxSize:   opt.GSOMaxSize,
		GRO:          opt.GRO,
		TxQueueBytes: opt.TxQueueBytes,
		Output:       opt.Output,
	}
	var err error
	if opt.MAC != nil {
		var eth *glink.Ethernet
		eth, err = glink.NewEthernet(lo, tcpip.LinkAddress(opt.MAC))
		if err == nil {
			p.link, p.nic, p.inject = eth.Endpoint, eth, eth.Inject
		}
	} else {
		p.link, err = glink.New(lo)
		if err == nil {
			p.nic, p.inject = p.link, p.link.Inject
		}
	}
	if err != nil {
		p.s.Close()
		p.s.Wait()
		return nil, fmt.Errorf("peer: %w", err)
	}

	if err := p.configure(); err != nil {
		p.teardown()
		return nil, err
	}
	svc, err := startServices(p.s, opt.Addrs, opt.Disable, p.log, &p.cnt)
	if err != nil {
		p.teardown()
		return nil, err
	}
	p.svc = svc
	p.log.Info("peer up", "addrs", opt.Addrs, "mtu", opt.MTU, "gso_max_size", opt.GSOMaxSize, "gro", opt.GRO)
	return p, nil
}

func (o *Options) validate() error {
	if o.Output == nil {
		return errors.New("peer: Options.Output is nil: the peer needs somewhere to send its packets")
	}
	if len(o.Addrs) == 0 {
		return errors.New("peer: no addresses: set Options.Addrs, e.g. 198.18.0.2/15 and fd00::2/64")
	}
	if o.MTU == 0 {
		o.MTU = DefaultMTU
	}
	if o.MTU < header.IPv4MinimumProcessableDatagramSize || o.MTU > 65535 {
		return fmt.Errorf("peer: MTU %d out of range %d..65535", o.MTU, header.IPv4MinimumProcessableDatagramSize)
	}
	addrs := make([]netip.Prefix, len(o.Addrs))
	for i, a := range o.Addrs {
		a = netip.PrefixFrom(a.Addr().Unmap(), a.Bits())
		if !a.IsValid() || a.Addr().IsUnspecified() || a.Addr().IsMulticast() {
			return fmt.Errorf("peer: address %v is not a unicast address with a prefix length", o.Addrs[i])
		}
		if a.Addr().Is6() && o.MTU < header.IPv6MinimumMTU {
			return fmt.Errorf("peer: MTU %d below IPv6's minimum %d with address %v", o.MTU, header.IPv6MinimumMTU, a)
		}
		addrs[i] = a
	}
	o.Addrs = addrs
	if o.GSOMaxSize != 0 && (o.GSOMaxSize < o.MTU || o.GSOMaxSize > MaxGSOSize) {
		return fmt.Errorf("peer: GSOMaxSize %d out of range MTU (%d)..%d; 0 turns GSO off", o.GSOMaxSize, o.MTU, MaxGSOSize)
	}
	if o.TxQueueBytes < 0 {
		return fmt.Errorf("peer: TxQueueBytes %d is negative", o.TxQueueBytes)
	}
	if o.TxQueueBytes == 0 {
		o.TxQueueBytes = DefaultTxQueueBytes
	}
	if o.TCPBufferMax < 0 {
		return fmt.Errorf("peer: TCPBufferMax %d is negative", o.TCPBufferMax)
	}
	if o.TCPBufferMax == 0 {
		o.TCPBufferMax = DefaultTCPBufferMax
	}
	if o.TCPBufferMax < 64<<10 {
		o.TCPBufferMax = 64 << 10
	}
	return nil
}

// tuneTCP sets large windows: buffers up to TCPBufferMax with receive
// buffer auto-tuning (what net.ipv4.tcp_rmem/tcp_wmem and
// tcp_moderate_rcvbuf do on Linux), SACK, and the loss detection
// Options.RACK chooses.
func (p *Peer) tuneTCP() error {
	max := p.opt.TCPBufferMax
	def := min(1<<20, max)
	sack := tcpip.TCPSACKEnabled(true)
	moderate := tcpip.TCPModerateReceiveBufferOption(true)
	recovery := tcpip.TCPRecovery(0) // RFC 6675 SACK loss recovery
	if p.opt.RACK {
		recovery = tcpip.TCPRACKLossDetection
	}
	for _, o := range []tcpip.SettableTransportProtocolOption{
		&tcpip.TCPReceiveBufferSizeRangeOption{Min: 4096, Default: def, Max: max},
		&tcpip.TCPSendBufferSizeRangeOption{Min: 4096, Default: def, Max: max},
		&moderate,
		&sack,
		&recovery,
	} {
		if err := p.s.SetTransportProtocolOption(tcp.ProtocolNumber, o); err != nil {
			return fmt.Errorf("peer: setting TCP option %T: %s", o, err)
		}
	}
	return nil
}

// configure creates the wire NIC, adds the addresses and the routes.
func (p *Peer) configure() error {
	if err := p.s.CreateNICWithOptions(nicID, p.nic, stack.NICOptions{Name: "wire0"}); err != nil {
		return fmt.Errorf("peer: creating the wire NIC: %s", err)
	}
	var routes []tcpip.Route
	var v4, v6 bool
	for _, a := range p.opt.Addrs {
		proto := ipv4.ProtocolNumber
		if a.Addr().Is6() {
			proto, v6 = ipv6.ProtocolNumber, true
		} else {
			v4 = true
		}
		awp := tcpip.AddressWithPrefix{Address: tcpip.AddrFromSlice(a.Addr().AsSlice()), PrefixLen: a.Bits()}
		if err := p.s.AddProtocolAddress(nicID, tcpip.ProtocolAddress{Protocol: proto, AddressWithPrefix: awp}, stack.AddressProperties{}); err != nil {
			return fmt.Errorf("peer: adding address %v: %s", a, err)
		}
		routes = append(routes, tcpip.Route{Destination: awp.Subnet(), NIC: nicID})
	}
	if !p.opt.OnLinkOnly {
		if v4 {
			routes = append(routes, tcpip.Route{Destination: header.IPv4EmptySubnet, NIC: nicID})
		}
		if v6 {
			routes = append(routes, tcpip.Route{Destination: header.IPv6EmptySubnet, NIC: nicID})
		}
	}
	p.s.SetRouteTable(routes)
	return nil
}

// Stack returns the peer's gVisor stack, for callers that add their own
// endpoints (gonet.DialTCP, gonet.ListenTCP, ...). Its NIC is 1. The Peer
// owns it: do not Close it.
func (p *Peer) Stack() *stack.Stack { return p.s }

// Inject delivers wire packets (IP packets, no virtio header: on the wire
// every checksum is complete) from the NIC to the peer. Each packet is
// copied; pkts may be reused when Inject returns. Packets that are empty,
// not IPv4/IPv6, shorter than their IP header says or longer than the MTU
// are counted in Stats().Drops and dropped; everything else goes to
// gVisor, which counts what it refuses in Stats().Stack. With
// Options.MAC the packets are Ethernet frames (see glink.Ethernet). Inject
// delivers synchronously on the calling goroutine and may be called
// concurrently.
func (p *Peer) Inject(pkts [][]byte) { p.inject(pkts) }

// Stats returns a snapshot of the peer's counters and gVisor's.
func (p *Peer) Stats() Stats {
	return p.cnt.snapshot(p.link.Stats(), stackStats(p.s))
}

// Close stops the services, the stack and the output goroutine, and waits
// for all of them: when it returns, no goroutine of the peer is left and
// Output is not called again. Packets the stack sends while closing (FINs,
// RSTs) still go to Output. Close is idempotent; it always returns nil.
func (p *Peer) Close() error {
	p.closeOnce.Do(func() {
		p.link.CloseInject()
		p.teardown()
		p.log.Info("peer closed")
	})
	return nil
}

func (p *Peer) teardown() {
	if p.svc != nil {
		p.svc.close()
	}
	p.s.Close()
	if p.svc != nil {
		p.svc.wait()
	}
	p.s.Wait()
	p.link.CloseOutput()
}
