package view

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"vnic/vnic/capture"
)

func (l *TextOptions) wires() []string {
	if l.Wires != nil {
		return l.Wires
	}
	if l.Sender != "" {
		return []string{l.Sender}
	}
	if l.Receiver != "" {
		return []string{l.Receiver}
	}
	return nil
}

// Hop is a router interface on the path from Sender to Receiver: a lane of
// what tcpdump on it shows, both directions — what arrived after its GRO
// (its host-rx) and what it sent (its host-tx). Ifname is its capture name
// ("router.eth1": interfaces <router>.<iface>@host-rx and @host-tx);
// Ingress is true for the interface facing the sender (packets towards the
// receiver arrive there), false for the one facing the receiver (they
// leave there). A gVisor router records its interfaces so, and so does a
// Linux router host with vnic NICs: each NIC is a hop.
type Hop struct {
	Ifname  string
	Ingress bool
}

// lane is one column of the text or one lane of the picture.
type lane struct {
	points  uint8 // 1 << capture.Point for each point shown
	ifname  string
	title   string // "a0@host-tx", "router.eth1"
	role    string // "sender's tcpdump", "the wire", "router's tcpdump -i eth1"
	kind    laneKind
	ingress bool      // a hop facing the sender
	pkts    []*Packet // in time order
}

type laneKind uint8

const (
	laneTX laneKind = iota
	laneWire
	laneHop
	laneRX
)

func (ln *lane) has(p *Packet) bool {
	return p.Ifname == ln.ifname && ln.points&(1<<p.Point) != 0
}

// down reports whether p, in this lane, travels from the sender towards
// the receiver (the direction the lanes are ordered in).
func (ln *lane) down(p *Packet) bool {
	switch ln.kind {
	case laneTX, laneRX:
		return true
	case laneWire:
		return p.Dir == capture.Out
	case laneHop:
		if ln.ingress {
			return p.Point == capture.HostRX
		}
		return p.Point == capture.HostTX
	}
	return false
}

// layout is a step's packets sorted into lanes, linked, and grouped.
type layout struct {
	lanes  []*lane
	start  time.Time
	groups []*group
	// up and down link a packet to the packets in the lane above (its
	// super-packet, or the wire packets merged into it) and below.
	up, down map[*Packet][]*Packet
	laneOf   map[*Packet]int
	other    int // packets of the step not in any lane
	// lost are the packets that did not arrive, by packet.
	lost map[*Packet]*Loss
	// losses in lane order, then time.
	losses []*Loss
}

// group is a connected set of linked packets: a super-packet, its
// segments, and the packets they were merged into.
type group struct {
	cells [][]*Packet // per lane, in time order
	first time.Time
	index int // of the earliest packet
}

func buildLayout(pkts []Packet, l *TextOptions) *layout {
	lo := &layout{up: map[*Packet][]*Packet{}, down: map[*Packet][]*Packet{}, laneOf: map[*Packet]int{}, start: l.Start,
		lost: map[*Packet]*Loss{}}
	if l.Sender != "" {
		lo.lanes = append(lo.lanes, &lane{points: 1 << capture.HostTX, ifname: l.Sender, title: l.Sender + "@host-tx", role: "sender's tcpdump", kind: laneTX})
	}
	for _, w := range l.wires() {
		lo.lanes = append(lo.lanes, &lane{points: 1 << capture.Wire, ifname: w, title: w + "@wire", role: "the wire", kind: laneWire})
	}
	for _, h := range l.Hops {
		role := "tcpdump -i " + h.Ifname
		if r, i, ok := strings.Cut(h.Ifname, "."); ok {
			role = r + "'s tcpdump -i " + i
		}
		lo.lanes = append(lo.lanes, &lane{points: 1<<capture.HostRX | 1<<capture.HostTX, ifname: h.Ifname, title: h.Ifname, role: role,
			kind: laneHop, ingress: h.Ingress})
	}
	if l.Receiver != "" {
		lo.lanes = append(lo.lanes, &lane{points: 1 << capture.HostRX, ifname: l.Receiver, title: l.Receiver + "@host-rx", role: "receiver's tcpdump", kind: laneRX})
	}
	for i := range pkts {
		p := &pkts[i]
		if l.Filter != nil && !l.Filter(p) {
			continue
		}
		found := false
		for li, ln := range lo.lanes {
			if ln.has(p) {
				ln.pkts = append(ln.pkts, p)
				lo.laneOf[p] = li
				found = true
				break
			}
		}
		if !found {
			lo.other++
		}
		if l.Start.IsZero() && (lo.start.IsZero() || p.TS.Before(lo.start)) {
			lo.start = p.TS
		}
	}
	for _, ln := range lo.lanes {
		slices.SortStableFunc(ln.pkts, func(a, b *Packet) int {
			if c := a.TS.Compare(b.TS); c != 0 {
				return c
			}
			return cmp.Compare(a.Index, b.Index)
		})
	}
	lo.link()
	lo.group()
	lo.findLosses(l.Counters)
	return lo
}

func (lo *layout) addEdge(upper, lower *Packet) {
	lo.up[lower] = append(lo.up[lower], upper)
	lo.down[upper] = append(lo.down[upper], lower)
}

// link connects each pair of adjacent lanes: through the capture comments
// within one NIC (a segment names its host-tx packet, a wire packet the
// host-rx packet it was merged into), by content everywhere else.
func (lo *layout) link() {
	for i := 0; i+1 < len(lo.lanes); i++ {
		a, b := lo.lanes[i], lo.lanes[i+1]
		switch {
		case a.kind == laneTX && b.kind == laneWire:
			lo.linkTX(a, b)
		default:
			lo.linkRX(a, b)
		}
	}
}

// linkTX links segments to their host-tx super-packet by the comment
// "segment i/n of host-tx #k"; a wire lane of another NIC is matched by
// content instead.
func (lo *layout) linkTX(tx, wire *lane) {
	if tx.ifname != wire.ifname {
		for _, w := range wire.pkts {
			if s := matchContainer(w, tx); s != nil {
				lo.addEdge(s, w)
			}
		}
		return
	}
	byNum := map[uint64]*Packet{}
	for _, p := range tx.pkts {
		if p.Num != 0 {
			byNum[p.Num] = p
		}
	}
	for _, w := range wire.pkts {
		if w.Origin.Kind == capture.FromHostTX {
			if s := byNum[w.Origin.Super]; s != nil {
				lo.addEdge(s, w)
			}
		}
	}
}

// linkRX links the packets of a lane to those of the lane above them: by
// the comment "merged into host-rx #m" from a NIC's wire to its own
// host-rx, else by content: a TCP packet covers the segments of its flow
// whose [seq,end) lie inside its own range, seen at or before it, or, on
// another interface, lies inside one of them (cut and merged again in
// between); anything else matches one packet with the same addresses,
// protocol, IP ID, fragment offset and length.
func (lo *layout) linkRX(upper, rx *lane) {
	linked := map[*Packet]bool{}
	if upper.kind == laneWire && rx.kind == laneRX && upper.ifname == rx.ifname {
		byNum := map[uint64]*Packet{}
		for _, p := range rx.pkts {
			if p.Num != 0 {
				byNum[p.Num] = p
			}
		}
		for _, w := range upper.pkts {
			if w.Origin.Kind == capture.IntoHostRX {
				if r := byNum[w.Origin.Super]; r != nil {
					lo.addEdge(w, r)
					linked[r], linked[w] = true, true
				}
			}
		}
	}
	for _, r := range rx.pkts {
		if linked[r] {
			continue
		}
		ws := matchContent(r, upper, rx, linked)
		if len(ws) == 0 && r.IsTCP() && r.RelEnd != r.RelSeq && rx.ifname != upper.ifname {
			// A part of a packet sent above: a NIC not drawn between
			// the two (a router's egress) cut it, the receiver's GRO
			// merged the pieces along other boundaries.
			if s := matchContainer(r, upper); s != nil {
				ws = []*Packet{s}
			}
		}
		for _, w := range ws {
			linked[w] = true
			lo.addEdge(w, r)
		}
	}
}

// slack is how much later than the packet it is matched with a packet in
// the lane above may be stamped (the two points may take their clocks at
// slightly different moments).
const slack = time.Millisecond

// matchContent finds the packets of upper that make up r (see linkRX),
// latest first among equals, skipping those already linked.
func matchContent(r *Packet, upper, rxl *lane, linked map[*Packet]bool) []*Packet {
	if !r.Valid {
		return nil
	}
	wantDir := capture.DirUnknown
	if upper.kind == laneWire && rxl.kind == laneRX && upper.ifname == rxl.ifname {
		wantDir = capture.In
	}
	ok := func(w *Packet) bool {
		return w.Valid && !linked[w] && (wantDir == capture.DirUnknown || w.Dir == wantDir) &&
			!w.TS.After(r.TS.Add(slack)) && w.Src == r.Src && w.Dst == r.Dst && w.Proto == r.Proto
	}
	if r.IsTCP() && r.RelEnd != r.RelSeq {
		// The same segment first (a packet forwarded or delivered as it
		// was), the latest copy.
		for i := len(upper.pkts) - 1; i >= 0; i-- {
			w := upper.pkts[i]
			if ok(w) && w.IsTCP() && w.SrcPort == r.SrcPort && w.DstPort == r.DstPort && w.RelSeq == r.RelSeq && w.RelEnd == r.RelEnd && w.Flags == r.Flags {
				return []*Packet{w}
			}
		}
		// Else walk back from r's time, taking segments inside r's
		// range until the range is covered.
		var got []*Packet
		covered := uint32(0)
		want := r.RelEnd - r.RelSeq
		for i := len(upper.pkts) - 1; i >= 0 && covered < want; i-- {
			w := upper.pkts[i]
			if !ok(w) || !w.IsTCP() || w.SrcPort != r.SrcPort || w.DstPort != r.DstPort {
				continue
			}
			if w.RelEnd == w.RelSeq || seqBefore(w.RelSeq, r.RelSeq) || seqBefore(r.RelEnd, w.RelEnd) {
				continue
			}
			dup := false
			for _, g := range got {
				if g.RelSeq == w.RelSeq {
					dup = true // a retransmission: keep the later copy
				}
			}
			if dup {
				continue
			}
			got = append(got, w)
			covered += w.RelEnd - w.RelSeq
		}
		slices.Reverse(got)
		return got
	}
	for i := len(upper.pkts) - 1; i >= 0; i-- {
		w := upper.pkts[i]
		if !ok(w) || w.ID != r.ID || w.FragOff != r.FragOff || w.IPLen != r.IPLen || w.SrcPort != r.SrcPort || w.DstPort != r.DstPort {
			continue
		}
		if r.IsTCP() && (w.Seq != r.Seq || w.Ack != r.Ack || w.Flags != r.Flags) {
			continue
		}
		return []*Packet{w}
	}
	return nil
}

// matchContainer finds the packet of upper that w was cut from: for TCP
// data the latest one of the flow whose sequence range holds w's, seen
// no later than w; for anything else the same packet (matchContent).
func matchContainer(w *Packet, upper *lane) *Packet {
	if !w.Valid {
		return nil
	}
	if !w.IsTCP() || w.RelEnd == w.RelSeq {
		if m := matchContent(w, upper, &lane{}, map[*Packet]bool{}); len(m) == 1 {
			return m[0]
		}
		return nil
	}
	for i := len(upper.pkts) - 1; i >= 0; i-- {
		s := upper.pkts[i]
		if !s.IsTCP() || s.TS.After(w.TS.Add(slack)) || s.flow() != w.flow() {
			continue
		}
		if !seqBefore(w.RelSeq, s.RelSeq) && !seqBefore(s.RelEnd, w.RelEnd) {
			return s
		}
	}
	return nil
}

// seqBefore reports a < b in sequence space.
func seqBefore(a, b uint32) bool { return int32(a-b) < 0 }

// group builds the connected components of the links.
func (lo *layout) group() {
	parent := map[*Packet]*Packet{}
	var find func(p *Packet) *Packet
	find = func(p *Packet) *Packet {
		q, ok := parent[p]
		if !ok || q == p {
			return p
		}
		r := find(q)
		parent[p] = r
		return r
	}
	for lower, uppers := range lo.up {
		for _, u := range uppers {
			a, b := find(lower), find(u)
			if a != b {
				parent[a] = b
			}
		}
	}
	byRoot := map[*Packet]*group{}
	for li, ln := range lo.lanes {
		for _, p := range ln.pkts {
			root := find(p)
			g := byRoot[root]
			if g == nil {
				g = &group{cells: make([][]*Packet, len(lo.lanes)), first: p.TS, index: p.Index}
				byRoot[root] = g
				lo.groups = append(lo.groups, g)
			}
			g.cells[li] = append(g.cells[li], p)
			if p.TS.Before(g.first) || p.TS.Equal(g.first) && p.Index < g.index {
				g.first, g.index = p.TS, p.Index
			}
		}
	}
	slices.SortStableFunc(lo.groups, func(a, b *group) int {
		if c := a.first.Compare(b.first); c != 0 {
			return c
		}
		return cmp.Compare(a.index, b.index)
	})
}

// rows lays a group out in rows: one row per packet of its busiest lane
// (usually the wire), each packet of the other lanes on the row of the
// first packet it is linked with there, or on the next free row.
func (lo *layout) rows(g *group) [][]*Packet {
	n := 0
	ref := -1
	for li, c := range g.cells {
		if len(c) > n || len(c) == n && ref >= 0 && lo.lanes[li].kind == laneWire && lo.lanes[ref].kind != laneWire {
			n, ref = len(c), li
		}
	}
	rowOf := map[*Packet]int{}
	for i, p := range g.cells[ref] {
		rowOf[p] = i
	}
	out := make([][]*Packet, n, n+4)
	for i := range out {
		out[i] = make([]*Packet, len(lo.lanes))
	}
	for i, p := range g.cells[ref] {
		out[i][ref] = p
	}
	// Place lanes outwards from ref, so each finds its linked neighbour
	// already placed.
	order := []int{}
	for d := 1; d < len(lo.lanes); d++ {
		if ref-d >= 0 {
			order = append(order, ref-d)
		}
		if ref+d < len(lo.lanes) {
			order = append(order, ref+d)
		}
	}
	for _, li := range order {
		next := 0
		for _, p := range g.cells[li] {
			want := -1
			links := lo.down[p]
			if li > ref {
				links = lo.up[p]
			}
			for _, q := range links {
				if r, ok := rowOf[q]; ok && (want < 0 || r < want) {
					want = r
				}
			}
			if want < next {
				want = next
			}
			for want < len(out) && out[want][li] != nil {
				want++
			}
			for want >= len(out) {
				out = append(out, make([]*Packet, len(lo.lanes)))
			}
			out[want][li] = p
			rowOf[p] = want
			next = want + 1
		}
	}
	return out
}

// Counter is one of a step's counters, classified: a drop (a packet that
// did not arrive, counted where it died) or an event (something that
// happened to packets that went on, or a packet that was made: an ICMP
// error sent, an MSS clamped).
type Counter struct {
	// Where the counter counts: "server1's NIC", "router (forwarding)",
	// "basil's kernel".
	Where string
	// Reason in words: "above the hardware MTU 1500", "bad TCP checksum".
	Reason string
	Count  uint64
	// Event: not a loss.
	Event bool
	// LastSeen are the capture points (IFNAME@POINT) where a packet this
	// counter drops was last seen: a packet seen there that never reached
	// the next lane is matched with the counter.
	LastSeen []string
	// Match, if set, must hold for such a packet (e.g. a bad checksum: a
	// kernel drops only those of what its NIC handed it).
	Match func(p *Packet) bool
	// Limit, when not 0, is the size the packet was above: the reason of
	// one packet then reads "IP len 8996 > " + LimitName + " 1500".
	Limit     int
	LimitName string
}

// Loss is a packet that left a capture point and did not reach the next
// one (or, at the receiver's host-rx, that its kernel dropped).
type Loss struct {
	P *Packet
	// Lane is the lane it was last seen in.
	Lane int
	// Where and Reason: from the counter that explains it, or "between A
	// and B" / "not seen at B" when none does.
	Where, Reason string
	// Detail is the reason for this packet ("IP len 8996 > hardware MTU
	// 1500").
	Detail string
	// Counted: a counter explains it.
	Counted bool
}

// Text is "where: detail".
func (l *Loss) Text() string {
	d := l.Detail
	if d == "" {
		d = l.Reason
	}
	return l.Where + ": " + d
}

// findLosses marks the packets that did not arrive: for each pair of
// adjacent lanes where the lower lane is downstream of the upper (not a
// NIC's own wire above its own host-rx, which is the return path), every
// packet of the upper lane travelling towards the receiver that is linked
// to nothing in the lower one; and at the last lane, the packets a
// counter with a Match says its kernel dropped. Each is explained by a
// counter whose LastSeen names its capture point, while that counter's
// count lasts.
func (lo *layout) findLosses(counters []Counter) {
	left := make([]uint64, len(counters))
	for i, c := range counters {
		left[i] = c.Count
	}
	explain := func(p *Packet, li int, next string) {
		at := p.Ifname + "@" + p.Point.String()
		l := &Loss{P: p, Lane: li}
		for i := range counters {
			c := &counters[i]
			if c.Event || left[i] == 0 || !slices.Contains(c.LastSeen, at) || c.Match != nil && !c.Match(p) {
				continue
			}
			left[i]--
			l.Where, l.Reason, l.Counted = c.Where, c.Reason, true
			if c.Limit > 0 {
				n := p.IPLen
				if !p.Valid {
					n = p.Len
				}
				l.Detail = fmt.Sprintf("IP len %d > %s %d", n, c.LimitName, c.Limit)
			}
			break
		}
		if !l.Counted {
			if next == "" {
				return // the last lane: nothing says its kernel dropped it
			}
			l.Where = "between " + lo.lanes[li].title + " and " + next
			l.Reason = "not seen at " + next + " (no counter explains it)"
		}
		lo.lost[p] = l
		lo.losses = append(lo.losses, l)
	}
	for li, ln := range lo.lanes {
		for _, p := range ln.pkts {
			if p.Dropped != "" {
				// The recorder's own note: dropped right here.
				l := &Loss{P: p, Lane: li, Where: ln.title, Reason: p.Dropped, Counted: true}
				lo.lost[p] = l
				lo.losses = append(lo.losses, l)
			}
		}
		if li+1 < len(lo.lanes) {
			nx := lo.lanes[li+1]
			if ln.kind == laneWire && nx.kind == laneRX && ln.ifname == nx.ifname || len(nx.pkts) == 0 && len(ln.pkts) > 0 && !anyCounterAt(counters, ln) {
				// The return path, or a lane that saw nothing this
				// step (a filter, another direction).
				continue
			}
			for _, p := range ln.pkts {
				if ln.down(p) && len(lo.down[p]) == 0 && p.Valid && !(p.ICMP != nil && p.ICMP.Error) && lo.lost[p] == nil {
					explain(p, li, nx.title)
				}
			}
			continue
		}
		for _, p := range ln.pkts {
			if ln.down(p) {
				for _, c := range counters {
					if c.Match != nil && !c.Event && slices.Contains(c.LastSeen, p.Ifname+"@"+p.Point.String()) && c.Match(p) {
						explain(p, li, "")
						break
					}
				}
			}
		}
	}
}

// anyCounterAt reports whether a drop counter names a point of ln.
func anyCounterAt(counters []Counter, ln *lane) bool {
	for _, c := range counters {
		if c.Event {
			continue
		}
		for _, at := range c.LastSeen {
			if ifname, p, ok := capture.ParseInterfaceName(at); ok && ifname == ln.ifname && ln.points&(1<<p) != 0 {
				return true
			}
		}
	}
	return false
}

// PathHops finds, in a step's packets, the interfaces of the hosts
// between Sender and Receiver that the sender's packets crossed: every
// capture name other than theirs whose host-rx saw a packet from one of
// the sender's addresses (an ingress, facing the sender) or whose host-tx
// sent one on (an egress, facing the receiver), in the order the first
// such packet reached them. A gVisor router's interfaces are named
// <router>.<iface>, a Linux router host's vnic NICs <host>.<nic>: both are
// found, however many NICs a host has.
func PathHops(pkts []Packet, sender, receiver string) []Hop {
	srcs := map[string]bool{}
	for i := range pkts {
		p := &pkts[i]
		if p.Valid && p.Ifname == sender && p.Point == capture.HostTX {
			srcs[p.Src.String()] = true
		}
	}
	type seen struct {
		hop   Hop
		first int // index of the first packet
	}
	found := map[string]*seen{}
	for i := range pkts {
		p := &pkts[i]
		if !p.Valid || p.Ifname == sender || p.Ifname == receiver || !srcs[p.Src.String()] {
			continue
		}
		if p.Point != capture.HostRX && p.Point != capture.HostTX {
			continue
		}
		if _, ok := found[p.Ifname]; !ok {
			found[p.Ifname] = &seen{Hop{Ifname: p.Ifname, Ingress: p.Point == capture.HostRX}, i}
		}
	}
	var out []*seen
	for _, s := range found {
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b *seen) int {
		if c := pkts[a.first].TS.Compare(pkts[b.first].TS); c != 0 {
			return c
		}
		return cmp.Compare(a.first, b.first)
	})
	hops := make([]Hop, len(out))
	for i, s := range out {
		hops[i] = s.hop
	}
	return hops
}
