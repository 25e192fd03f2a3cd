package view

import (
	"bufio"
	"bytes"
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Report is what `vnic lab` writes as one self-contained HTML file.
type Report struct {
	Title    string // e.g. "Lab 1: Len is far bigger than the MSS"
	Scenario string // the story being reproduced, a paragraph or more of plain text
	Steps    []Step
}

// Step is one step of a lab: one traffic run under one offload setting.
type Step struct {
	Name        string // e.g. "GSO on"
	Description string // what the step does: "ethtool -K a0 gso off; nc sends 10,000 bytes"
	Explanation string // what to see in it, for the teacher
	Packets     []Packet
	// View chooses the lanes (sender host-tx, wires, receiver host-rx) of
	// the picture and the columns of the text, and the MTU/MSS lines.
	View TextOptions
	// Axis is the picture's horizontal axis; AxisAuto picks one.
	Axis Axis
	// Drops counts what did not arrive, for callers without classified
	// counters (View.Counters, which take precedence): key "WHERE/REASON"
	// (the part before the first "/" says where: "a0", "router"), value
	// the number of packets, e.g. {"vnic0/rx_exceeds_hw_mtu": 1}. A key
	// without "/" is a reason with no place. "dropped: REASON" notes in
	// the capture are counted and shown as well.
	Drops        map[string]uint64
	Expectations []ExpectationResult
}

// ExpectationResult is one checked claim about a step.
type ExpectationResult struct {
	Text   string // the claim: "every wire packet ≤ 1500 bytes"
	Pass   bool
	Detail string // what was seen: "7 wire packets, largest 1500"
}

//go:embed report.html.tmpl
var reportTmpl string

var tmpl = template.Must(template.New("report").Parse(reportTmpl))

// htmlStep is a Step prepared for the template.
type htmlStep struct {
	N            int
	ID           string
	Name         string
	Description  string
	Explanation  []string // paragraphs
	SVG          template.HTML
	Legend       template.HTML
	Note         string
	Summary      string
	Text         string
	Lost         []LossRow
	LostSeen     int // packets seen not to arrive: the drop marks
	Events       []LossRow
	Expectations []ExpectationResult
	Passed       int
}

// WriteHTML writes the report as one HTML file with everything inline
// (CSS, SVG; no scripts, no external resources): per step an SVG picture
// with a lane per capture point (the sender's host-tx, the wire(s), each
// router interface on the path, the receiver's host-rx), each packet a
// bar as high as its IP length, lines from each super-packet to its
// segments and from the segments to the packet GRO merged them into, a
// cross on every packet that did not arrive (the reason on hover and in
// the legend), ICMP errors as red triangles naming the MTU, checksum
// states as a strip under the bars, a dashed line at the MTU, and a strip
// with the whole step under the axis; then the expectations, what did not
// arrive (by place and reason) and the events, the explanation, the
// summary and the side-by-side text (SideBySide, every row). Every string
// is escaped.
func WriteHTML(w io.Writer, r Report) error {
	data := struct {
		Title    string
		Scenario []string
		Steps    []htmlStep
		Pass     int
		Total    int
	}{Title: r.Title, Scenario: paragraphs(r.Scenario)}
	if data.Title == "" {
		data.Title = "vnic lab"
	}
	for i := range r.Steps {
		s := &r.Steps[i]
		hs := htmlStep{
			N:            i + 1,
			ID:           "step-" + strconv.Itoa(i+1),
			Name:         s.Name,
			Description:  s.Description,
			Explanation:  paragraphs(s.Explanation),
			Expectations: s.Expectations,
		}
		opt := s.View
		opt.Color = false
		opt.MaxRows = 0
		if len(opt.Counters) == 0 {
			opt.Counters = countersFromDrops(s.Drops)
		}
		if fig := buildFigure(s.Packets, &opt, s.Axis); fig != nil {
			hs.SVG = template.HTML(fig.svg())
			hs.Legend = template.HTML(fig.legendHTML())
			hs.Note = fig.Note
		}
		lo := buildLayout(s.Packets, &opt)
		var tb bytes.Buffer
		bw := bufio.NewWriter(&tb)
		wide := opt
		wide.Width = max(opt.Width, 140)
		writeSideBySide(bw, lo, &wide)
		bw.Flush()
		hs.Text = tb.String()
		tb.Reset()
		writeSummary(bw, lo, &wide)
		bw.Flush()
		hs.Summary = tb.String()
		for _, row := range lo.lossRows(opt.Counters) {
			if row.Event {
				hs.Events = append(hs.Events, row)
			} else {
				hs.Lost = append(hs.Lost, row)
				hs.LostSeen += row.Seen
			}
		}
		for _, e := range s.Expectations {
			if e.Pass {
				hs.Passed++
				data.Pass++
			}
			data.Total++
		}
		data.Steps = append(data.Steps, hs)
	}
	bw := bufio.NewWriter(w)
	if err := tmpl.Execute(bw, data); err != nil {
		return fmt.Errorf("view: render report: %w", err)
	}
	return bw.Flush()
}

func paragraphs(s string) []string {
	var out []string
	for _, p := range strings.Split(strings.ReplaceAll(s, "\r\n", "\n"), "\n\n") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// countersFromDrops turns a Step's plain Drops map ("WHERE/REASON" →
// count) into counters, for callers that do not classify them.
func countersFromDrops(drops map[string]uint64) []Counter {
	var cs []Counter
	for k, n := range drops {
		if n == 0 {
			continue
		}
		where, reason, ok := strings.Cut(k, "/")
		if !ok {
			where, reason = "", k
		}
		cs = append(cs, Counter{Where: where, Reason: reason, Count: n})
	}
	slices.SortFunc(cs, func(a, b Counter) int { return strings.Compare(a.Where+a.Reason, b.Where+b.Reason) })
	return cs
}

func addrPort(a netip.Addr, port uint16) string {
	return netip.AddrPortFrom(a, port).String()
}
