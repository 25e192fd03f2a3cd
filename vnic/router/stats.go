package router

import (
	"sync/atomic"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"vnic/vnic/glink"
)

// Stats is a snapshot of the router's counters. All counters only grow.
type Stats struct {
	// Ifaces holds each interface's counters, in Options.Ifaces order.
	Ifaces []IfaceStats
	// ICMP counts the ICMP the router sent, over all interfaces.
	ICMP ICMPStats
	// Forwarding holds gVisor's forwarding counters (IPv4 and IPv6).
	Forwarding ForwardingStats
	// Firewall holds each rule's counters, in Firewall.Rules order.
	Firewall []RuleStats
}

// IfaceStats are one interface's counters.
type IfaceStats struct {
	Name string
	GRO  GROMode
	// Link is the gVisor link's view: packets in (to gVisor, after GRO)
	// and out (before the outbound firewall), packets forwarded out of
	// this interface (Link.OutForwarded), IPv4 fragments made
	// (Link.OutFragments), and the link's drops.
	Link glink.Stats
	// GRO counters of the receive path.
	GROStats GROStats
	// ICMP counts the ICMP the router sent on this interface.
	ICMP ICMPStats
	// Drops counts packets this interface's own code dropped.
	Drops IfaceDrops
	// TTLFixed counts IPv4 packets that arrived with TTL 1 and were
	// handed to gVisor with TTL 0 so that it sends time-exceeded (see
	// the package doc).
	TTLFixed uint64
	// PTBFixed counts ICMPv6 packet-too-big messages whose MTU field the
	// router filled in (gVisor leaves it 0).
	PTBFixed uint64
}

// GROStats count the receive path's GRO.
type GROStats struct {
	// Polls counts the GRO passes (NAPI polls of up to NAPIBudget packets).
	Polls uint64
	// SuperPackets counts merged packets (two or more segments).
	SuperPackets uint64
	// ForwardedWhole counts merged packets handed to gVisor whole
	// (GROBuggy2014, DF, bigger than the egress MTU): each meets the
	// egress MTU check as one big packet.
	ForwardedWhole uint64
	// Resegmented counts the segments merged packets were cut back into
	// before gVisor (GROFixed when the packet is not one the router
	// forwards whole, and GROBuggy2014 where the bug does not bite).
	Resegmented uint64
	// ForwardedGSO counts merged packets the router forwarded whole
	// (GROFixed): out of the egress interface as one super-packet with a
	// GSO header, counted there in Link.OutSuper and Link.OutForwarded.
	ForwardedGSO uint64
	// DroppedMerged counts merged packets dropped silently for being
	// bigger than the egress MTU (GRODropsMerged).
	DroppedMerged uint64
}

// ICMPStats count ICMP messages the router originated, by type.
type ICMPStats struct {
	TimeExceeded   uint64 // ICMPv4 type 11, ICMPv6 type 3
	FragNeeded     uint64 // ICMPv4 type 3 code 4
	PacketTooBig   uint64 // ICMPv6 type 2
	DstUnreachable uint64 // ICMPv4 type 3 (other codes), ICMPv6 type 1
	ParamProblem   uint64 // ICMPv4 type 12, ICMPv6 type 4
	EchoReply      uint64 // ICMPv4 type 0, ICMPv6 type 129
	Other          uint64
}

func (s *ICMPStats) add(o ICMPStats) {
	s.TimeExceeded += o.TimeExceeded
	s.FragNeeded += o.FragNeeded
	s.PacketTooBig += o.PacketTooBig
	s.DstUnreachable += o.DstUnreachable
	s.ParamProblem += o.ParamProblem
	s.EchoReply += o.EchoReply
	s.Other += o.Other
}

// IfaceDrops counts packets dropped by an interface's receive path
// before gVisor (gVisor's own drops are in ForwardingStats, the link's in
// IfaceStats.Link.Drops, the firewall's per rule).
type IfaceDrops struct {
	// Oversize: longer than Iface.MaxReceive.
	Oversize uint64
	// Closed: Inject after Close.
	Closed uint64
	// Resegment: a merged packet segment could not cut again.
	Resegment uint64
}

// ForwardingStats are gVisor's forwarding counters (tcpip.Stats.IP and
// IP.Forwarding), summed over IPv4 and IPv6.
type ForwardingStats struct {
	ExhaustedTTL     uint64 // TTL/hop limit exceeded
	PacketTooBig     uint64 // too big for the egress MTU and not fragmentable
	Unrouteable      uint64 // no route
	HostUnreachable  uint64
	LinkLocalSource  uint64
	LinkLocalDest    uint64
	NoBufferSpace    uint64 // OutgoingDeviceNoBufferSpace
	Errors           uint64 // all forwarding errors
	Malformed        uint64 // IP.MalformedPacketsReceived
	InvalidDst       uint64 // IP.InvalidDestinationAddressesReceived
	InvalidSrc       uint64 // IP.InvalidSourceAddressesReceived
	OutgoingErrors   uint64 // IP.OutgoingPacketErrors
	ICMPRateLimited  uint64 // ICMP errors suppressed by gVisor's rate limiter
	ReassemblyErrors uint64 // IP.MalformedFragmentsReceived
}

// Stats returns a snapshot of the router's counters.
func (r *Router) Stats() Stats {
	var st Stats
	for _, f := range r.ifs {
		is := IfaceStats{
			Name: f.name,
			GRO:  f.mode(),
			Link: f.link.Stats(),
			GROStats: GROStats{
				Polls:          f.cnt.groPolls.Load(),
				SuperPackets:   f.cnt.groSuper.Load(),
				ForwardedWhole: f.cnt.groForwardedWhole.Load(),
				Resegmented:    f.cnt.groResegmented.Load(),
				ForwardedGSO:   f.cnt.groForwardedGSO.Load(),
				DroppedMerged:  f.cnt.groDroppedMerged.Load(),
			},
			ICMP: ICMPStats{
				TimeExceeded:   f.cnt.icmpTimeExceeded.Load(),
				FragNeeded:     f.cnt.icmpFragNeeded.Load(),
				PacketTooBig:   f.cnt.icmpPacketTooBig.Load(),
				DstUnreachable: f.cnt.icmpDstUnreachable.Load(),
				ParamProblem:   f.cnt.icmpParamProblem.Load(),
				EchoReply:      f.cnt.icmpEchoReply.Load(),
				Other:          f.cnt.icmpOther.Load(),
			},
			Drops: IfaceDrops{
				Oversize:  f.cnt.dropOversize.Load(),
				Closed:    f.cnt.dropClosed.Load(),
				Resegment: f.cnt.dropResegment.Load(),
			},
			TTLFixed: f.cnt.ttlFixed.Load(),
			PTBFixed: f.cnt.ptbFixed.Load(),
		}
		st.ICMP.add(is.ICMP)
		st.Ifaces = append(st.Ifaces, is)
	}
	ip := r.s.Stats().IP
	fw := ip.Forwarding
	icmp := r.s.Stats().ICMP
	st.Forwarding = ForwardingStats{
		ExhaustedTTL:     fw.ExhaustedTTL.Value(),
		PacketTooBig:     fw.PacketTooBig.Value(),
		Unrouteable:      fw.Unrouteable.Value(),
		HostUnreachable:  fw.HostUnreachable.Value(),
		LinkLocalSource:  fw.LinkLocalSource.Value(),
		LinkLocalDest:    fw.LinkLocalDestination.Value(),
		NoBufferSpace:    fw.OutgoingDeviceNoBufferSpace.Value(),
		Errors:           fw.Errors.Value(),
		Malformed:        ip.MalformedPacketsReceived.Value(),
		InvalidDst:       ip.InvalidDestinationAddressesReceived.Value(),
		InvalidSrc:       ip.InvalidSourceAddressesReceived.Value(),
		OutgoingErrors:   ip.OutgoingPacketErrors.Value(),
		ICMPRateLimited:  icmp.V4.PacketsSent.RateLimited.Value() + icmp.V6.PacketsSent.RateLimited.Value(),
		ReassemblyErrors: ip.MalformedFragmentsReceived.Value(),
	}
	for _, ru := range r.fw {
		st.Firewall = append(st.Firewall, RuleStats{
			Name:     ru.Name,
			Iface:    ru.Iface,
			Dir:      ru.Dir,
			Matched:  ru.matched.Load(),
			Dropped:  ru.dropped.Load(),
			ICMPSent: ru.icmpSent.Load(),
			Clamped:  ru.clamped.Load(),
		})
	}
	return st
}

type ifaceCounters struct {
	groPolls, groSuper, groForwardedWhole, groResegmented, groForwardedGSO, groDroppedMerged atomic.Uint64

	icmpTimeExceeded, icmpFragNeeded, icmpPacketTooBig, icmpDstUnreachable atomic.Uint64
	icmpParamProblem, icmpEchoReply, icmpOther                             atomic.Uint64

	dropOversize, dropClosed, dropResegment atomic.Uint64
	ttlFixed, ptbFixed                      atomic.Uint64
}

func (c *ifaceCounters) countICMPv4(ic header.ICMPv4) {
	switch ic.Type() {
	case header.ICMPv4TimeExceeded:
		c.icmpTimeExceeded.Add(1)
	case header.ICMPv4DstUnreachable:
		if ic.Code() == header.ICMPv4FragmentationNeeded {
			c.icmpFragNeeded.Add(1)
		} else {
			c.icmpDstUnreachable.Add(1)
		}
	case header.ICMPv4ParamProblem:
		c.icmpParamProblem.Add(1)
	case header.ICMPv4EchoReply:
		c.icmpEchoReply.Add(1)
	default:
		c.icmpOther.Add(1)
	}
}

func (c *ifaceCounters) countICMPv6(ic header.ICMPv6) {
	switch ic.Type() {
	case header.ICMPv6TimeExceeded:
		c.icmpTimeExceeded.Add(1)
	case header.ICMPv6PacketTooBig:
		c.icmpPacketTooBig.Add(1)
	case header.ICMPv6DstUnreachable:
		c.icmpDstUnreachable.Add(1)
	case header.ICMPv6ParamProblem:
		c.icmpParamProblem.Add(1)
	case header.ICMPv6EchoReply:
		c.icmpEchoReply.Add(1)
	default:
		c.icmpOther.Add(1)
	}
}
