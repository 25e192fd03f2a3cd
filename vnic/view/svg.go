package view

import (
	"fmt"
	"html"
	"math"
	"strconv"
	"strings"
	"time"

	"vnic/vnic/capture"
)

// Axis chooses the horizontal axis of a step's picture. Every step uses
// the same rule, capture order (AxisOrder), so pictures compare; the
// other values are kept for callers and mean the same.
type Axis uint8

// Axes.
const (
	AxisAuto Axis = iota
	// AxisSeq used to put packets at their TCP sequence numbers; it is
	// drawn as AxisOrder now.
	AxisSeq
	// AxisOrder lays packets out in capture order, one slot per packet of
	// the busiest lane in each linked group: time runs left to right, a
	// super-packet spans the slots of its segments, packets captured in
	// the same microsecond stay apart. Ticks give the time since the step
	// started.
	AxisOrder
)

// Geometry of the picture, in SVG user units: the picture is drawn at
// 100% in a 1024-pixel-wide window, so every text is at least 12 px.
const (
	svgW      = 940
	svgLeft   = 196 // lane labels
	svgRight  = 12
	svgTop    = 24 // room for the first lane's labels
	laneH     = 80
	laneGap   = 34 // between lanes, where the link lines run
	axisH     = 50
	ovH       = 30 // the overview strip under the axis
	plotW     = svgW - svgLeft - svgRight
	maxBarTop = 20   // room above the tallest bar for labels
	maxSlots  = 160  // packets drawn at most: a slot of at least 4.6 px
	charW     = 8.0  // width of a 12.5 px digit or letter (0.64 em), for label boxes
	fontSmall = 12.5 // the smallest text
)

// Colours of the marks; the legend uses the same.
const (
	colTXSuper   = "#1d4ed8"
	colTXCut     = "#0e7490"
	colTXSingle  = "#93c5fd"
	colWireOut   = "#0f766e"
	colWireIn    = "#ea7317"
	colRXMerged  = "#7e22ce"
	colRXSingle  = "#d8b4fe"
	colHopOut    = "#15803d"
	colICMP      = "#dc2626"
	colLost      = "#fecaca" // a packet that did not arrive
	colUndecoded = "#9ca3af"
	colCsumOK    = "#16a34a"
	colCsumPart  = "#f59e0b"
	colCsumBad   = "#dc2626"
)

// figure is one step's picture, rendered to SVG by svg().
type figure struct {
	W, H   int
	b      strings.Builder // the marks, in drawing order
	top    strings.Builder // the labels, drawn over the marks
	labels []box           // placed text boxes (and ICMP marks), for collision avoidance
	Legend []legendItem
	Note   string
	// Counts for the tests and the page: packets drawn, losses (all, and
	// drawn in the window), lanes.
	Drawn, Lost, LostDrawn, Lanes int
}

type box struct{ x0, y0, x1, y1 float64 }

func (a box) overlaps(b box) bool {
	return a.x0 < b.x1 && b.x0 < a.x1 && a.y0 < b.y1 && b.y0 < a.y1
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
	v := min(float64(n), s.max)
	room := float64(laneH - maxBarTop)
	if s.sqrt {
		return math.Max(2, room*math.Sqrt(v/s.max))
	}
	return math.Max(2, room*v/s.max)
}

// markKind is what a bar shows, for its colour and the legend.
func markKind(p *Packet, lo *layout, ln *lane) (color, kind, legend string) {
	switch {
	case !p.Valid:
		return colUndecoded, "undecodable", "undecodable"
	case ln.kind == laneTX && p.Super():
		return colTXSuper, "super", "host-tx super-packet (GSO: the NIC cuts it into the wire packets)"
	case ln.kind == laneTX && len(lo.down[p]) > 1:
		return colTXCut, "cut", "host-tx packet without GSO that the NIC cut anyway (its hardware MTU is smaller)"
	case ln.kind == laneTX:
		return colTXSingle, "single-tx", "host-tx packet without GSO: one wire packet"
	case p.Point == capture.HostRX && (p.Merged > 1 || p.Super()):
		return colRXMerged, "merged", "received super-packet (GRO merged wire packets)"
	case p.Point == capture.HostRX:
		return colRXSingle, "single-rx", "received packet, as it arrived"
	case ln.kind == laneHop && p.Super():
		return colTXSuper, "super", "host-tx super-packet (GSO: the NIC cuts it into the wire packets)"
	case ln.kind == laneHop:
		return colHopOut, "hop-out", "router sends (forwards, or its own ICMP)"
	case p.Dir == capture.In:
		return colWireIn, "wire-in", "wire packet, in"
	}
	return colWireOut, "wire-out", "wire packet, out"
}

// window picks the groups the picture draws: all if they fit maxSlots,
// else a run of them around the first interesting group (a loss, else an
// ICMP error, else a super-packet).
func (lo *layout) window() (from, to int, why string) {
	slots := func(g *group) int {
		n := 1
		for _, c := range g.cells {
			n = max(n, len(c))
		}
		return n
	}
	total := 0
	for _, g := range lo.groups {
		total += slots(g)
	}
	if total <= maxSlots {
		return 0, len(lo.groups), ""
	}
	focus, best := 0, 0
	for i, g := range lo.groups {
		score := 0
		for _, c := range g.cells {
			for _, p := range c {
				switch {
				case lo.lost[p] != nil:
					score = max(score, 3)
				case p.ICMP != nil && p.ICMP.Error:
					score = max(score, 2)
				case p.Super() || p.Merged > 1:
					score = max(score, 1)
				}
			}
		}
		if score > best {
			focus, best = i, score
		}
	}
	why = [...]string{"the start", "the first super-packet", "the first ICMP error", "the first packet that did not arrive"}[best]
	// A few groups before the focus, then as many after as fit.
	from = focus
	used := slots(lo.groups[focus])
	for from > 0 && used+slots(lo.groups[from-1]) <= maxSlots/4 {
		from--
		used += slots(lo.groups[from])
	}
	to = focus + 1
	for to < len(lo.groups) && used+slots(lo.groups[to]) <= maxSlots {
		used += slots(lo.groups[to])
		to++
	}
	return from, to, why
}

// buildFigure lays out one step's picture.
func buildFigure(pkts []Packet, opt *TextOptions, _ Axis) *figure {
	lo := buildLayout(pkts, opt)
	nl := len(lo.lanes)
	if nl == 0 {
		return nil
	}
	f := &figure{W: svgW, Lanes: nl}
	axisY := float64(svgTop + nl*laneH + (nl-1)*laneGap)
	f.H = int(axisY) + axisH + ovH
	laneY := func(i int) float64 { return float64(svgTop + i*(laneH+laneGap)) }
	base := func(i int) float64 { return laneY(i) + laneH }

	from, to, why := lo.window()
	groups := lo.groups[from:to]

	// y scale, shared by the lanes so heights compare.
	mtu := opt.mtu()
	maxLen := mtu
	for _, g := range groups {
		for _, c := range g.cells {
			for _, p := range c {
				maxLen = max(maxLen, p.IPLen, p.Len)
			}
		}
	}
	ys := yScale{max: float64(maxLen), sqrt: maxLen > mtu*9/2}

	// Lanes: background, labels, MTU line.
	stats := lo.laneStats(opt)
	for i, ln := range lo.lanes {
		y := laneY(i)
		fmt.Fprintf(&f.b, `<g class="lane" data-lane="%d"><rect x="%d" y="%.1f" width="%d" height="%d" fill="#f8fafc" stroke="#cbd5e1"/>`,
			i, svgLeft, y, plotW, laneH)
		f.text(6, y+15, 14, "700", "#0f172a", "start", fit(ln.title, 21), ln.title)
		f.text(6, y+32, fontSmall, "400", "#475569", "start", fit(ln.role, 26), ln.role)
		s := stats[i]
		f.text(6, y+49, fontSmall, "400", "#475569", "start", fmt.Sprintf("%d packets, max %d", s.Packets, s.Largest), "")
		var warn []string
		if s.AboveMTU > 0 {
			warn = append(warn, fmt.Sprintf("%d above MTU", s.AboveMTU))
		}
		if s.Lost > 0 {
			warn = append(warn, fmt.Sprintf("%d lost", s.Lost))
		}
		if len(warn) > 0 {
			f.text(6, y+66, fontSmall, "700", "#b91c1c", "start", strings.Join(warn, " · "), "")
		}
		my := base(i) - ys.h(mtu)
		fmt.Fprintf(&f.b, `<line class="mtu" x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#dc2626" stroke-width="1.2" stroke-dasharray="6 4"/>`,
			svgLeft, svgLeft+plotW, my, my)
		f.b.WriteString("</g>\n")
		// The MTU label sits at the right end of the line, placed first so
		// packet labels keep clear of it.
		f.place(svgLeft+plotW-4, my-3, fontSmall, "600", colICMP, "end", "MTU "+strconv.Itoa(mtu), "", false)
	}

	// x positions: capture order, one slot per packet of a group's
	// busiest lane.
	type span struct{ x0, x1 float64 }
	pos := map[*Packet]span{}
	slots := 0
	starts := make([]int, len(groups))
	widths := make([]int, len(groups))
	for i, g := range groups {
		n := 1
		for _, c := range g.cells {
			n = max(n, len(c))
		}
		starts[i], widths[i] = slots, n
		slots += n
	}
	sw := float64(plotW) / float64(max(slots, 1))
	for i, g := range groups {
		for _, c := range g.cells {
			k := len(c)
			for j, p := range c {
				a := float64(starts[i]) + float64(j)*float64(widths[i])/float64(k)
				b := float64(starts[i]) + float64(j+1)*float64(widths[i])/float64(k)
				pos[p] = span{svgLeft + a*sw, svgLeft + b*sw}
			}
		}
	}

	// Link lines under the marks: from the bottom of the upper packet to
	// the top of the lower one.
	barTop := func(p *Packet) float64 {
		l := p.IPLen
		if !p.Valid {
			l = p.Len
		}
		return base(lo.laneOf[p]) - ys.h(l)
	}
	f.b.WriteString(`<g class="links" stroke="#64748b" stroke-width="1" stroke-opacity="0.5" fill="none">`)
	for _, g := range groups {
		for _, c := range g.cells {
			for _, lower := range c {
				for _, u := range lo.up[lower] {
					us, ok1 := pos[u]
					ls, ok2 := pos[lower]
					if !ok1 || !ok2 {
						continue
					}
					fmt.Fprintf(&f.b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f"/>`, (us.x0+us.x1)/2, base(lo.laneOf[u]), (ls.x0+ls.x1)/2, barTop(lower))
				}
			}
		}
	}
	f.b.WriteString("</g>\n")

	// Bars, checksum strips, drop crosses; ICMP errors as triangles.
	legend := map[string]legendItem{}
	var legendOrder []string
	addLegend := func(key string, it legendItem) {
		if _, ok := legend[key]; !ok {
			legend[key] = it
			legendOrder = append(legendOrder, key)
		}
	}
	var icmps []*icmpMark
	var labels []func()
	f.b.WriteString(`<g class="marks">`)
	for _, g := range groups {
		for li, c := range g.cells {
			ln := lo.lanes[li]
			for _, p := range c {
				s := pos[p]
				f.Drawn++
				title := ln.title + "  +" + msTime(p.TS.Sub(lo.start)) + " ms  " + Summary(p)
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
				loss := lo.lost[p]
				if loss != nil {
					title += "\nDID NOT ARRIVE — " + loss.Text()
				}
				if p.ICMP != nil && p.ICMP.Error {
					cx := (s.x0 + s.x1) / 2
					if m := lastICMP(icmps, li); m != nil && m.text == p.ICMP.Text && cx-m.lastPos < 16 {
						m.n++
						m.titles = append(m.titles, title)
						m.lastPos = cx
						continue
					}
					icmps = append(icmps, &icmpMark{x: cx, y: laneY(li) + 4, n: 1, text: p.ICMP.Text, titles: []string{title}, lane: li, lastPos: cx})
					continue
				}
				color, kind, leg := markKind(p, lo, ln)
				addLegend(kind, legendItem{color, leg, "rect"})
				l := p.IPLen
				if !p.Valid {
					l = p.Len
				}
				h := ys.h(l)
				w := math.Max(s.x1-s.x0-1, 1.5)
				stroke := ""
				if loss != nil {
					stroke = fmt.Sprintf(` stroke="%s" stroke-width="2"`, colICMP)
					color, kind = colLost, "lost"
				}
				fmt.Fprintf(&f.b, `<rect class="pkt %s" data-lane="%d" x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"%s><title>%s</title></rect>`,
					kind, li, s.x0, base(li)-h, w, h, color, stroke, esc(title))
				// Checksum strip under the bar.
				if cs := csumColor(p, opt); cs != "" {
					fmt.Fprintf(&f.b, `<rect class="csum" x="%.1f" y="%.1f" width="%.1f" height="5" fill="%s"><title>%s</title></rect>`,
						s.x0, base(li)+1.5, w, cs, esc("checksum "+csumWord(p)))
					addLegend("csum-"+cs, legendItem{cs, "checksum " + csumWord(p), "strip"})
				}
				if loss != nil {
					f.LostDrawn++
					// The cross sits on the bar when it is tall enough,
					// else just above it, under the size label.
					cx := s.x0 + w/2
					ty := base(li) - h/2 - 5
					if h < 16 {
						ty = base(li) - h - 13
					}
					fmt.Fprintf(&f.b, `<g class="drop" data-lane="%d"><path d="M%.1f %.1f l10 10 m0 -10 l-10 10" stroke="%s" stroke-width="2.6" stroke-linecap="round"/><title>%s</title></g>`,
						li, cx-5, ty, colICMP, esc("did not arrive — "+loss.Text()))
					f.labels = append(f.labels, box{cx - 6, ty - 1, cx + 6, ty + 11})
					key := "drop " + loss.Where + ": " + loss.Reason
					addLegend(key, legendItem{colICMP, "did not arrive — " + loss.Where + ": " + firstNonEmpty(loss.Detail, loss.Reason), "x"})
				}
				if w >= 8 && (p.Super() || p.Merged > 1 || len(lo.down[p]) > 1 || l > mtu || loss != nil) {
					x, y, text := s.x0+w/2, base(li)-h-4, strconv.Itoa(l)
					labels = append(labels, func() { f.place(x, y, fontSmall, "400", "#0f172a", "middle", text, "", true) })
				}
			}
		}
	}
	f.b.WriteString("</g>\n")
	// ICMP errors: a red triangle per run, labelled with what it says.
	if len(icmps) > 0 {
		addLegend("icmp", legendItem{colICMP, "ICMP error (the text names the MTU it asks for); hover for each", "tri"})
	}
	f.b.WriteString(`<g class="icmp">`)
	for _, m := range icmps {
		f.labels = append(f.labels, box{m.x - 9, m.y - 1, m.x + 9, m.y + 15})
	}
	labelled := map[string]bool{}
	for _, m := range icmps {
		f.Drawn += m.n
		t := strings.Join(m.titles, "\n\n")
		if len(m.titles) > 4 {
			t = strings.Join(m.titles[:4], "\n\n") + fmt.Sprintf("\n\n… and %d more", len(m.titles)-4)
		}
		fmt.Fprintf(&f.b, `<g class="pkt icmp-error" data-lane="%d" data-count="%d"><polygon points="%.1f,%.1f %.1f,%.1f %.1f,%.1f" fill="%s" stroke="#7f1d1d"/><title>%s</title></g>`,
			m.lane, m.n, m.x-8, m.y, m.x+8, m.y, m.x, m.y+14, colICMP, esc(t))
		// The first of each kind per lane is labelled (the MTU it names
		// is the point); the others are the same triangle.
		key := strconv.Itoa(m.lane) + m.text
		if labelled[key] {
			continue
		}
		text := "ICMP " + m.text
		if n := icmpCount(icmps, m.lane, m.text); n > 1 {
			text = fmt.Sprintf("ICMP %s (×%d)", m.text, n)
		}
		// Above the lane, in the gap where the link lines run, starting
		// at the triangle (or ending there, near the right edge).
		anchor, x := "start", m.x-8
		if x+float64(len(text))*charW*1.08 > svgLeft+plotW {
			anchor, x = "end", m.x+8
		}
		labelled[key] = f.place(x, m.y-8, fontSmall, "700", "#b91c1c", anchor, "▼ "+text, t, true)
	}
	f.b.WriteString("</g>\n")
	for _, l := range labels {
		l()
	}

	// The axis: time since the step started at the first packet of
	// groups, never the same label twice.
	fmt.Fprintf(&f.b, `<g class="axis"><line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#94a3b8"/>`, svgLeft, svgLeft+plotW, axisY+8, axisY+8)
	lastX, lastLabel := -1e9, ""
	for i, g := range groups {
		x := svgLeft + float64(starts[i])*sw
		label := "+" + shortDur(g.first.Sub(lo.start))
		if x-lastX < 80 || label == lastLabel {
			continue
		}
		fmt.Fprintf(&f.b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#94a3b8"/>`, x, x, axisY+8, axisY+13)
		anchor := "middle"
		if x < svgLeft+40 {
			anchor = "start"
		}
		f.place(x, axisY+26, fontSmall, "400", "#475569", anchor, label, "", true)
		lastX, lastLabel = x, label
	}
	xl := "packets in capture order →  (ticks: time since the step's first packet; a super-packet spans its segments)"
	f.text(svgLeft+plotW/2, axisY+44, fontSmall, "400", "#334155", "middle", xl, "")
	f.b.WriteString("</g>\n")

	// The overview: the whole step in one strip, the window drawn, a red
	// tick for every packet that did not arrive.
	f.overview(lo, from, to, axisY+axisH+4)
	f.Lost = len(lo.losses)

	for _, k := range legendOrder {
		f.Legend = append(f.Legend, legend[k])
	}
	if len(lo.up) > 0 {
		f.Legend = append(f.Legend, legendItem{"#64748b", "same bytes: super-packet ↔ segments ↔ merged packet", "line"})
	}
	f.Legend = append(f.Legend, legendItem{colICMP, fmt.Sprintf("MTU %d", mtu), "mtu"})
	if to-from < len(lo.groups) {
		f.Note = fmt.Sprintf("Drawn: %d of the step's packets, around %s (the strip under the axis is the whole step, the frame what is drawn, a red tick each packet that did not arrive). The side-by-side text below and the pcapng have every packet.",
			f.Drawn, why)
	}
	if lo.other > 0 {
		f.Note = strings.TrimSpace(f.Note + fmt.Sprintf(" %d more packets of this step were recorded at capture points not drawn here (the way back: the sender's host-rx, the receiver's host-tx and wire); the pcapng has them.", lo.other))
	}
	return f
}

// icmpMark is a run of ICMP errors saying the same, drawn as one
// triangle.
type icmpMark struct {
	x, y    float64
	n       int
	text    string
	titles  []string
	lane    int
	lastPos float64
}

// icmpCount is how many ICMP errors saying text lane li shows.
func icmpCount(ms []*icmpMark, li int, text string) int {
	n := 0
	for _, m := range ms {
		if m.lane == li && m.text == text {
			n += m.n
		}
	}
	return n
}

// lastICMP returns the last mark of lane li, if it is the last mark drawn
// in that lane.
func lastICMP(ms []*icmpMark, li int) *icmpMark {
	for i := len(ms) - 1; i >= 0; i-- {
		if ms[i].lane == li {
			return ms[i]
		}
	}
	return nil
}

// overview draws the whole step as a strip: every group at its place in
// capture order, the window's frame, and a red tick per loss.
func (f *figure) overview(lo *layout, from, to int, y float64) {
	total := 0
	starts := make([]int, len(lo.groups)+1)
	for i, g := range lo.groups {
		n := 1
		for _, c := range g.cells {
			n = max(n, len(c))
		}
		starts[i] = total
		total += n
	}
	starts[len(lo.groups)] = total
	if total == 0 {
		return
	}
	x := func(slot int) float64 { return svgLeft + float64(slot)/float64(total)*plotW }
	fmt.Fprintf(&f.b, `<g class="overview"><rect x="%d" y="%.1f" width="%d" height="12" fill="#e2e8f0"/>`, svgLeft, y, plotW)
	fmt.Fprintf(&f.b, `<rect class="window" x="%.1f" y="%.1f" width="%.1f" height="16" fill="none" stroke="#0f172a" stroke-width="1.5"/>`,
		x(starts[from]), y-2, math.Max(x(starts[to])-x(starts[from]), 2))
	groupOf := map[*Packet]int{}
	for i, g := range lo.groups {
		for _, c := range g.cells {
			for _, p := range c {
				groupOf[p] = i
			}
		}
	}
	for _, l := range lo.losses {
		gx := x(starts[groupOf[l.P]])
		fmt.Fprintf(&f.b, `<line class="drop-tick" x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="%s" stroke-width="1.5"><title>%s</title></line>`,
			gx, gx, y, y+12, colICMP, esc("did not arrive — "+l.Text()))
	}
	f.text(6, y+11, fontSmall, "400", "#475569", "start", "the whole step:", "")
	f.b.WriteString("</g>\n")
}

// text draws a text that need not avoid others (lane labels, the axis
// title); title, if set, is its tooltip.
func (f *figure) text(x, y, size float64, weight, color, anchor, s, title string) {
	fmt.Fprintf(&f.b, `<text x="%.1f" y="%.1f" font-size="%.1f" font-weight="%s" fill="%s" text-anchor="%s">%s`, x, y, size, weight, color, anchor, esc(s))
	if title != "" && title != s {
		fmt.Fprintf(&f.b, `<title>%s</title>`, esc(title))
	}
	f.b.WriteString("</text>")
}

// place draws a label where it overlaps no label placed before it (trying
// a line higher), or, if it cannot, not at all (its text stays in the
// mark's tooltip): labels never overlap.
func (f *figure) place(x, y, size float64, weight, color, anchor, s, title string, optional bool) bool {
	w := float64(len([]rune(s))) * charW * size / fontSmall
	if weight == "700" || weight == "600" {
		w *= 1.08
	}
	bx := func(y float64) box {
		x0 := x
		switch anchor {
		case "middle":
			x0 = x - w/2
		case "end":
			x0 = x - w
		}
		return box{x0 - 2, y - size, x0 + w + 2, y + 3}
	}
	for _, yy := range []float64{y, y - size - 2} {
		b := bx(yy)
		if b.x0 < svgLeft-2 && anchor != "start" || b.x1 > svgW || b.y0 < 0 {
			continue
		}
		clear := true
		for _, o := range f.labels {
			if b.overlaps(o) {
				clear = false
				break
			}
		}
		if clear || !optional {
			f.labels = append(f.labels, b)
			fmt.Fprintf(&f.top, `<text class="label" x="%.1f" y="%.1f" font-size="%.1f" font-weight="%s" fill="%s" text-anchor="%s" stroke="#fff" stroke-width="3" paint-order="stroke">%s`,
				x, yy, size, weight, color, anchor, esc(s))
			if title != "" {
				fmt.Fprintf(&f.top, `<title>%s</title>`, esc(title))
			}
			f.top.WriteString("</text>")
			return true
		}
	}
	return false
}

func esc(s string) string { return html.EscapeString(s) }

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// csumColor is the colour of the checksum strip under p's bar: every
// state with opt.Checksums, else only checksums a receiver would drop.
func csumColor(p *Packet, opt *TextOptions) string {
	if badCsum(p) {
		return colCsumBad
	}
	if !opt.Checksums {
		return ""
	}
	switch p.Csum {
	case CsumComplete:
		return colCsumOK
	case CsumPartial:
		return colCsumPart
	case CsumBad:
		return colCsumBad
	}
	return ""
}

func csumWord(p *Packet) string {
	switch {
	case badCsum(p) && p.Csum == CsumPartial:
		return "partial where nothing completes it (bad: the receiver drops it)"
	case badCsum(p):
		return "bad (the receiver drops it)"
	case p.Csum == CsumComplete:
		return "complete (verifies)"
	case p.Csum == CsumPartial:
		return "partial (pseudo-header sum: the NIC completes it)"
	}
	return p.Csum.String()
}

// svg renders the figure.
func (f *figure) svg() string {
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="lanes" xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" role="img" aria-label="packets at each capture point" data-lanes="%d" data-drawn="%d" data-lost="%d" data-lost-drawn="%d">`+"\n",
		f.W, f.H, f.W, f.H, f.Lanes, f.Drawn, f.Lost, f.LostDrawn)
	b.WriteString(f.b.String())
	b.WriteString(`<g class="labels">`)
	b.WriteString(f.top.String())
	b.WriteString("</g>\n</svg>")
	return b.String()
}

// legendHTML renders the legend.
func (f *figure) legendHTML() string {
	var b strings.Builder
	for _, it := range f.Legend {
		b.WriteString("<span>")
		c := esc(it.Color)
		switch it.Shape {
		case "rect":
			fmt.Fprintf(&b, `<svg width="18" height="12"><rect width="18" height="12" fill="%s"/></svg>`, c)
		case "strip":
			fmt.Fprintf(&b, `<svg width="18" height="12"><rect y="7" width="18" height="5" fill="%s"/></svg>`, c)
		case "tri":
			fmt.Fprintf(&b, `<svg width="16" height="14"><polygon points="0,0 16,0 8,14" fill="%s"/></svg>`, c)
		case "line":
			fmt.Fprintf(&b, `<svg width="22" height="12"><line x1="0" y1="1" x2="22" y2="11" stroke="%s" stroke-width="1.5"/></svg>`, c)
		case "mtu":
			fmt.Fprintf(&b, `<svg width="26" height="12"><line x1="0" y1="6" x2="26" y2="6" stroke="%s" stroke-width="1.5" stroke-dasharray="6 4"/></svg>`, c)
		case "x":
			fmt.Fprintf(&b, `<svg width="14" height="14"><path d="M1 1 L13 13 M13 1 L1 13" stroke="%s" stroke-width="2.4"/></svg>`, c)
		}
		b.WriteString(esc(it.Label))
		b.WriteString("</span>")
	}
	return b.String()
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
