package view

import (
	"cmp"
	"slices"
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

// lane is one column of the text or one lane of the picture.
type lane struct {
	point  capture.Point
	ifname string
	title  string    // "a0@host-tx"
	role   string    // "sender tcpdump", "wire", "receiver tcpdump"
	pkts   []*Packet // in time order
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
}

// group is a connected set of linked packets: a super-packet, its
// segments, and the packets they were merged into.
type group struct {
	cells [][]*Packet // per lane, in time order
	first time.Time
	index int // of the earliest packet
}

func buildLayout(pkts []Packet, l *TextOptions) *layout {
	lo := &layout{up: map[*Packet][]*Packet{}, down: map[*Packet][]*Packet{}, laneOf: map[*Packet]int{}, start: l.Start}
	if l.Sender != "" {
		lo.lanes = append(lo.lanes, &lane{point: capture.HostTX, ifname: l.Sender, title: l.Sender + "@host-tx", role: "sender's tcpdump"})
	}
	for _, w := range l.wires() {
		lo.lanes = append(lo.lanes, &lane{point: capture.Wire, ifname: w, title: w + "@wire", role: "the wire"})
	}
	if l.Receiver != "" {
		lo.lanes = append(lo.lanes, &lane{point: capture.HostRX, ifname: l.Receiver, title: l.Receiver + "@host-rx", role: "receiver's tcpdump"})
	}
	for i := range pkts {
		p := &pkts[i]
		if l.Filter != nil && !l.Filter(p) {
			continue
		}
		found := false
		for li, ln := range lo.lanes {
			if p.Point == ln.point && p.Ifname == ln.ifname {
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
	return lo
}

func (lo *layout) addEdge(upper, lower *Packet) {
	lo.up[lower] = append(lo.up[lower], upper)
	lo.down[upper] = append(lo.down[upper], lower)
}

type numKey struct {
	ifname string
	num    uint64
}

// link connects each pair of adjacent lanes.
func (lo *layout) link() {
	for i := 0; i+1 < len(lo.lanes); i++ {
		a, b := lo.lanes[i], lo.lanes[i+1]
		switch {
		case a.point == capture.HostTX && b.point == capture.Wire:
			lo.linkTX(a, b)
		case a.point == capture.Wire && b.point == capture.HostRX:
			lo.linkRX(a, b)
		case a.point == capture.Wire && b.point == capture.Wire:
			lo.linkSame(a, b)
		case a.point == capture.HostTX && b.point == capture.HostRX:
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

// linkRX links host-rx packets to the wire packets merged into them: by
// the comment "merged into host-rx #m" where the capture has it, else by
// content: a TCP packet covers the segments of its flow whose [seq,end)
// lie inside its own range, seen at or before it; anything else matches
// one packet with the same addresses, protocol, IP ID, fragment offset
// and length. The same function matches any lane against the one above
// it by content.
func (lo *layout) linkRX(upper, rx *lane) {
	linked := map[*Packet]bool{}
	if upper.point == capture.Wire && upper.ifname == rx.ifname {
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
		for _, w := range matchContent(r, upper, rx, linked) {
			linked[w] = true
			lo.addEdge(w, r)
		}
	}
}

// linkSame links the same packet seen in two lanes (two wires).
func (lo *layout) linkSame(a, b *lane) {
	linked := map[*Packet]bool{}
	for _, p := range b.pkts {
		for _, w := range matchContent(p, a, b, linked) {
			linked[w] = true
			lo.addEdge(w, p)
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
	if upper.point == capture.Wire && rxl.point == capture.HostRX && upper.ifname == rxl.ifname {
		wantDir = capture.In
	}
	ok := func(w *Packet) bool {
		return w.Valid && !linked[w] && (wantDir == capture.DirUnknown || w.Dir == wantDir) &&
			!w.TS.After(r.TS.Add(slack)) && w.Src == r.Src && w.Dst == r.Dst && w.Proto == r.Proto
	}
	if r.IsTCP() && r.RelEnd != r.RelSeq {
		// Walk back from r's time, taking segments inside r's range
		// until the range is covered.
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
		if len(c) > n || len(c) == n && ref >= 0 && lo.lanes[li].point == capture.Wire && lo.lanes[ref].point != capture.Wire {
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
