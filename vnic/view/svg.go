package view

import (
	"fmt"
	"math"
	"strconv"
	"time"

	"vnic/vnic/capture"
)

// Axis chooses the horizontal axis of a step's picture.
type Axis uint8

// Axes.
const (
	// AxisAuto picks AxisSeq when most drawn packets carry TCP data of one
	// flow, AxisOrder otherwise.
	AxisAuto Axis = iota
	// AxisSeq puts each packet of the busiest TCP flow at its sequence
	// range: a super-packet spans exactly its segments, so cutting and
	// merging are visible as widths. Other packets are not drawn (ICMP
	// errors quoting the flow are, at the quoted sequence number).
	AxisSeq
	// AxisOrder lays packets out in capture order, one slot per packet of
	// the busiest lane in each linked group: time runs left to right but
	// packets captured in the same microsecond stay apart.
	AxisOrder
)

// Geometry of the picture, in SVG user units (pixels at 100%).
const (
	svgW      = 1200
	svgLeft   = 170 // lane labels (the template draws lanes from x=170 to 1180)
	svgRight  = 20
	svgTop    = 16
	laneH     = 120
	laneGap   = 56 // between lanes, where the link lines run
	axisH     = 46
	barGap    = 1.0
	plotW     = svgW - svgLeft - svgRight
	maxBarTop = 18 // room above the tallest bar for labels
)

// Colours of the marks; the legend uses the same.
const (
	colTXSuper   = "#1d4ed8"
	colTXSingle  = "#93c5fd"
	colWireOut   = "#0f766e"
	colWireIn    = "#ea7317"
	colRXMerged  = "#7e22ce"
	colRXSingle  = "#d8b4fe"
	colICMP      = "#dc2626"
	colUndecoded = "#9ca3af"
)

// figure is the data the SVG template draws.
type figure struct {
	W, H    int
	Lanes   []figLane
	Links   []figLine
	Marks   []figMark
	Icmps   []figIcmp
	Ticks   []figTick
	AxisY   float64
	XLabel  string
	Note    string
	Count   int // packet marks drawn
	Legend  []legendItem
	Caption string
}

type figLane struct {
	Y, H          float64
	Title, Role   string
	MTUY          float64
	MTULabel      string
	ShowMTU       bool
	Ticks         []figTick // y axis
	Count, MaxLen int
	Above         int
}

type figLine struct{ X1, Y1, X2, Y2 float64 }

type figMark struct {
	X, Y, W, H float64
	Fill       string
	Stroke     string
	Dash       bool
	Dropped    bool
	Label      string // drawn above the bar when there is room
	Label2     string // drop note
	Title      string // tooltip
	Lane       int
	Kind       string
}

type figIcmp struct {
	X, Y   float64
	Points string
	Label  string
	Title  string
	Anchor string
}

type figTick struct {
	X, Y  float64
	Label string
}

type legendItem struct {
	Color, Label, Shape string
}

// yScale maps an IP length to a bar height.
type yScale struct {
	max  float64
	sqrt bool
}

func (s yScale) h(n int) float64 {
	v := float64(n)
	if v > s.max {
		v = s.max
	}
	room := float64(laneH - maxBarTop)
	if s.sqrt {
		return math.Max(2, room*math.Sqrt(v/s.max))
	}
	return math.Max(2, room*v/s.max)
}

// markColor picks a packet's fill.
func markColor(p *Packet) (string, string) {
	switch {
	case !p.Valid:
		return colUndecoded, "undecodable"
	case p.Point == capture.HostTX && p.Super():
		return colTXSuper, "super"
	case p.Point == capture.HostTX:
		return colTXSingle, "single"
	case p.Point == capture.HostRX && (p.Merged > 1 || p.Super()):
		return colRXMerged, "merged"
	case p.Point == capture.HostRX:
		return colRXSingle, "single"
	case p.Dir == capture.In:
		return colWireIn, "wire-in"
	}
	return colWireOut, "wire-out"
}

// buildFigure lays out one step's picture.
func buildFigure(pkts []Packet, opt *TextOptions, axis Axis) *figure {
	lo := buildLayout(pkts, opt)
	f := &figure{W: svgW}
	nl := len(lo.lanes)
	if nl == 0 {
		return nil
	}
	f.H = svgTop + nl*laneH + (nl-1)*laneGap + axisH
	f.AxisY = float64(svgTop + nl*laneH + (nl-1)*laneGap)

	// The busiest TCP data flow, for the sequence axis.
	bytes := map[flowKey]int{}
	drawn, data := 0, 0
	for _, ln := range lo.lanes {
		for _, p := range ln.pkts {
			drawn++
			if p.IsTCP() && p.Payload > 0 {
				bytes[p.flow()] += p.Payload
			}
		}
	}
	var flow flowKey
	best := 0
	for k, n := range bytes {
		if n > best || n == best && best > 0 && k.sport < flow.sport {
			flow, best = k, n
		}
	}
	var seqLo, seqHi uint32
	first := true
	for _, ln := range lo.lanes {
		for _, p := range ln.pkts {
			if p.IsTCP() && p.Payload > 0 && p.flow() == flow {
				data++
				if first || seqBefore(p.RelSeq, seqLo) {
					seqLo = p.RelSeq
				}
				if first || seqBefore(seqHi, p.RelEnd) {
					seqHi = p.RelEnd
				}
				first = false
			}
		}
	}
	if axis == AxisAuto {
		axis = AxisOrder
		if best > 0 && data*2 >= drawn {
			axis = AxisSeq
		}
	}
	if best == 0 {
		axis = AxisOrder
	}

	// y scale, shared by the lanes so heights compare.
	mtu := opt.mtu()
	maxLen := mtu
	for _, ln := range lo.lanes {
		for _, p := range ln.pkts {
			maxLen = max(maxLen, p.IPLen, p.Len)
		}
	}
	ys := yScale{max: float64(maxLen)}
	if maxLen > mtu*9/2 {
		ys.sqrt = true
	}

	laneY := func(i int) float64 { return float64(svgTop + i*(laneH+laneGap)) }
	base := func(i int) float64 { return laneY(i) + laneH }
	for i, ln := range lo.lanes {
		fl := figLane{Y: laneY(i), H: laneH, Title: ln.title, Role: ln.role, Count: len(ln.pkts)}
		for _, p := range ln.pkts {
			fl.MaxLen = max(fl.MaxLen, p.IPLen)
			if p.IPLen > mtu {
				fl.Above++
			}
		}
		fl.MTUY = base(i) - ys.h(mtu)
		fl.MTULabel = "MTU " + strconv.Itoa(mtu)
		fl.ShowMTU = true
		if maxLen > mtu {
			fl.Ticks = append(fl.Ticks, figTick{Y: base(i) - ys.h(maxLen), Label: strconv.Itoa(maxLen)})
		}
		f.Lanes = append(f.Lanes, fl)
	}

	// x positions.
	type span struct{ x0, x1 float64 }
	pos := map[*Packet]span{}
	switch axis {
	case AxisSeq:
		lo64, hi64 := float64(0), float64(seqHi-seqLo)
		if hi64 <= lo64 {
			hi64 = 1
		}
		x := func(s uint32) float64 { return svgLeft + float64(s-seqLo)/hi64*plotW }
		for _, ln := range lo.lanes {
			for _, p := range ln.pkts {
				if p.IsTCP() && p.Payload > 0 && p.flow() == flow {
					pos[p] = span{x(p.RelSeq), x(p.RelSeq + uint32(p.Payload))}
				}
			}
		}
		f.XLabel = fmt.Sprintf("TCP sequence number, relative (bytes) — flow %s → %s", addrPort(flow.src, flow.sport), addrPort(flow.dst, flow.dport))
		for _, t := range niceTicks(0, float64(seqHi-seqLo), 8) {
			f.Ticks = append(f.Ticks, figTick{X: x(seqLo + uint32(t)), Label: strconv.FormatInt(int64(seqLo)+int64(t), 10)})
		}
		// ICMP errors quoting the flow go at the quoted sequence number.
		for _, ln := range lo.lanes {
			for _, p := range ln.pkts {
				if q := icmpQuote(p); q != nil && q.Proto == ProtoTCP && q.flow() == flow {
					xx := x(q.RelSeq)
					pos[p] = span{xx, xx}
				}
			}
		}
	default:
		slots := 0
		type gslot struct{ start, n int }
		gs := make([]gslot, len(lo.groups))
		for i, g := range lo.groups {
			n := 1
			for _, c := range g.cells {
				n = max(n, len(c))
			}
			gs[i] = gslot{slots, n}
			slots += n
		}
		sw := float64(plotW) / float64(max(slots, 1))
		lastTick := -1e9
		for i, g := range lo.groups {
			for _, c := range g.cells {
				k := len(c)
				for j, p := range c {
					a := float64(gs[i].start) + float64(j)*float64(gs[i].n)/float64(k)
					b := float64(gs[i].start) + float64(j+1)*float64(gs[i].n)/float64(k)
					pos[p] = span{svgLeft + a*sw, svgLeft + b*sw}
				}
			}
			xx := svgLeft + float64(gs[i].start)*sw
			if xx-lastTick >= 110 {
				f.Ticks = append(f.Ticks, figTick{X: xx, Label: "+" + shortDur(g.first.Sub(lo.start))})
				lastTick = xx
			}
		}
		f.XLabel = "packets in capture order (time since the step started →); a linked super-packet spans its segments"
	}

	notDrawn := 0
	for li, ln := range lo.lanes {
		for _, p := range ln.pkts {
			s, ok := pos[p]
			if !ok {
				notDrawn++
				continue
			}
			title := ln.title + "  " + reltime(p.TS.Sub(lo.start)) + "  " + Summary(p)
			if p.Valid {
				title += fmt.Sprintf("\nIP len %d, %s → %s", p.IPLen, p.Src, p.Dst)
				if p.DF {
					title += ", DF"
				}
				if p.Csum != CsumUnknown {
					title += ", checksum " + p.Csum.String()
				}
			}
			if p.Comment != "" {
				title += "\n" + p.Comment
			}
			if q := icmpQuote(p); q != nil {
				cx := s.x0
				top := base(li) - 34
				f.Icmps = append(f.Icmps, figIcmp{
					X: cx, Y: top,
					Points: fmt.Sprintf("%.1f,%.1f %.1f,%.1f %.1f,%.1f", cx, top, cx-9, top+16, cx+9, top+16),
					Label:  p.ICMP.Text,
					Title:  title,
					Anchor: anchorFor(cx),
				})
				f.Count++
				continue
			}
			if p.ICMP != nil && p.ICMP.Error {
				cx := (s.x0 + s.x1) / 2
				top := base(li) - 34
				f.Icmps = append(f.Icmps, figIcmp{X: cx, Y: top,
					Points: fmt.Sprintf("%.1f,%.1f %.1f,%.1f %.1f,%.1f", cx, top, cx-9, top+16, cx+9, top+16),
					Label:  p.ICMP.Text, Title: title, Anchor: anchorFor(cx)})
				f.Count++
				continue
			}
			fill, kind := markColor(p)
			l := p.IPLen
			if !p.Valid {
				l = p.Len
			}
			h := ys.h(l)
			w := math.Max(s.x1-s.x0-barGap, 1.5)
			m := figMark{X: s.x0, Y: base(li) - h, W: w, H: h, Fill: fill, Title: title, Lane: li, Kind: kind}
			if p.Dropped != "" {
				m.Dropped = true
				m.Stroke = colICMP
				m.Label2 = "dropped: " + p.Dropped
			}
			if p.Csum == CsumBad || p.Csum == CsumPartial && p.Point == capture.Wire {
				m.Stroke, m.Dash = colICMP, true
			}
			if w >= 38 && (p.Super() || p.Merged > 1 || len(lo.down[p]) > 1 || len(lo.up[p]) > 1 || l > mtu) {
				m.Label = strconv.Itoa(l)
			}
			f.Marks = append(f.Marks, m)
			f.Count++
		}
	}
	if notDrawn > 0 {
		f.Note = fmt.Sprintf("%d packets of other flows, and pure ACKs, are not drawn on the sequence axis; the text below lists every packet.", notDrawn)
	}
	if lo.other > 0 {
		f.Note += fmt.Sprintf(" %d packets were captured at points not shown.", lo.other)
	}

	// Link lines: from the bottom of the upper packet to the top of the
	// lower one.
	markOf := map[*Packet]int{}
	{
		k := 0
		for _, ln := range lo.lanes {
			for _, p := range ln.pkts {
				if _, ok := pos[p]; ok && icmpQuote(p) == nil && !(p.ICMP != nil && p.ICMP.Error) {
					markOf[p] = k
					k++
				}
			}
		}
	}
	for lower, uppers := range lo.up {
		li, ok := markOf[lower]
		if !ok {
			continue
		}
		lm := f.Marks[li]
		for _, u := range uppers {
			ui, ok := markOf[u]
			if !ok {
				continue
			}
			um := f.Marks[ui]
			f.Links = append(f.Links, figLine{X1: um.X + um.W/2, Y1: um.Y + um.H, X2: lm.X + lm.W/2, Y2: lm.Y})
		}
	}
	sortLines(f.Links)
	f.Legend = legend(f)
	return f
}

func icmpQuote(p *Packet) *Packet {
	if p.ICMP != nil && p.ICMP.Error && p.ICMP.Quote != nil {
		return p.ICMP.Quote
	}
	return nil
}

func anchorFor(x float64) string {
	if x > svgW-220 {
		return "end"
	}
	return "start"
}

// legend lists what the picture uses.
func legend(f *figure) []legendItem {
	seen := map[string]bool{}
	for _, m := range f.Marks {
		seen[m.Kind] = true
		if m.Dropped {
			seen["dropped"] = true
		}
		if m.Dash {
			seen["badcsum"] = true
		}
	}
	var l []legendItem
	add := func(kind, color, label, shape string) {
		if seen[kind] {
			l = append(l, legendItem{color, label, shape})
		}
	}
	add("super", colTXSuper, "host-tx super-packet (GSO: cut by the NIC)", "rect")
	add("single", colTXSingle, "packet the NIC sends/delivers unchanged", "rect")
	add("wire-out", colWireOut, "wire packet, out", "rect")
	add("wire-in", colWireIn, "wire packet, in", "rect")
	add("merged", colRXMerged, "host-rx super-packet (GRO: merged by the NIC)", "rect")
	add("undecodable", colUndecoded, "undecodable", "rect")
	if len(f.Icmps) > 0 {
		l = append(l, legendItem{colICMP, "ICMP error", "tri"})
	}
	add("dropped", colICMP, "dropped (note in the capture)", "x")
	add("badcsum", colICMP, "bad checksum", "dash")
	if len(f.Links) > 0 {
		l = append(l, legendItem{"#64748b", "same bytes: super-packet ↔ segments ↔ merged packet", "line"})
	}
	l = append(l, legendItem{colICMP, "MTU", "mtu"})
	return l
}

func sortLines(ls []figLine) {
	// Deterministic output for golden tests.
	for i := 1; i < len(ls); i++ {
		for j := i; j > 0 && lineLess(ls[j], ls[j-1]); j-- {
			ls[j], ls[j-1] = ls[j-1], ls[j]
		}
	}
}

func lineLess(a, b figLine) bool {
	if a.Y1 != b.Y1 {
		return a.Y1 < b.Y1
	}
	if a.X2 != b.X2 {
		return a.X2 < b.X2
	}
	return a.X1 < b.X1
}

// niceTicks returns about n round values from lo to hi.
func niceTicks(lo, hi float64, n int) []float64 {
	if hi <= lo {
		return []float64{lo}
	}
	raw := (hi - lo) / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	var t []float64
	for v := math.Ceil(lo/step) * step; v <= hi+step/1e6; v += step {
		t = append(t, v)
	}
	return t
}

func shortDur(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return strconv.FormatInt(d.Microseconds(), 10) + "µs"
	case d < time.Second:
		return strconv.FormatFloat(float64(d.Microseconds())/1000, 'f', 1, 64) + "ms"
	}
	return strconv.FormatFloat(d.Seconds(), 'f', 2, 64) + "s"
}
