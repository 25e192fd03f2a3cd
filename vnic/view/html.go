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
	// Drops counts what did not arrive: key "WHERE/REASON" (the part
	// before the first "/" says where: "a0", "router", "vnic0 peer"),
	// value the number of packets, e.g. {"vnic0/rx_exceeds_hw_mtu": 1}.
	// A key without "/" is a reason with no place. "dropped: REASON"
	// notes in the capture are counted and shown as well.
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

var tmpl = template.Must(template.New("report").Funcs(template.FuncMap{
	"f":    func(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) },
	"add":  func(a, b float64) float64 { return a + b },
	"sub":  func(a, b float64) float64 { return a - b },
	"inc":  func(i int) int { return i + 1 },
	"mul2": func(v float64) float64 { return v / 2 },
	"ax": func(anchor string) float64 {
		if anchor == "end" {
			return -12
		}
		return 12
	},
}).Parse(reportTmpl))

// htmlStep is a Step prepared for the template.
type htmlStep struct {
	N            int
	ID           string
	Name         string
	Description  string
	Explanation  []string // paragraphs
	Fig          *figure
	Text         string
	Drops        []dropRow
	Expectations []ExpectationResult
	Passed       int
}

type dropRow struct {
	Where, Reason, Source string
	Count                 uint64
}

// WriteHTML writes the report as one HTML file with everything inline
// (CSS, SVG; no scripts, no external resources): per step an SVG picture
// with a lane per capture point (the sender's host-tx, the wire(s), the
// receiver's host-rx), each packet a bar as high as its IP length, lines
// from each super-packet to its segments and from the segments to the
// packet GRO merged them into, ICMP errors as red triangles, a dashed
// line at the MTU; then the expectations with pass/fail, the drop
// counters, the explanation and the side-by-side text (SideBySide).
// Every string is escaped by html/template.
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
		hs.Fig = buildFigure(s.Packets, &opt, s.Axis)
		var tb bytes.Buffer
		bw := bufio.NewWriter(&tb)
		writeSideBySide(bw, buildLayout(s.Packets, &opt), &opt)
		bw.Flush()
		hs.Text = tb.String()
		hs.Drops = dropRows(s)
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

// dropRows merges the step's counters with the drop notes of its packets.
func dropRows(s *Step) []dropRow {
	var rows []dropRow
	for k, n := range s.Drops {
		if n == 0 {
			continue
		}
		where, reason, ok := strings.Cut(k, "/")
		if !ok {
			where, reason = "", k
		}
		rows = append(rows, dropRow{Where: where, Reason: reason, Count: n, Source: "counter"})
	}
	notes := map[[2]string]uint64{}
	for i := range s.Packets {
		p := &s.Packets[i]
		if p.Dropped != "" {
			notes[[2]string{p.Ifname + "@" + p.Point.String(), p.Dropped}]++
		}
	}
	for k, n := range notes {
		rows = append(rows, dropRow{Where: k[0], Reason: k[1], Count: n, Source: "capture notes"})
	}
	slices.SortFunc(rows, func(a, b dropRow) int {
		if c := strings.Compare(a.Source, b.Source); c != 0 {
			return c
		}
		if c := strings.Compare(a.Where, b.Where); c != 0 {
			return c
		}
		return strings.Compare(a.Reason, b.Reason)
	})
	return rows
}

func addrPort(a netip.Addr, port uint16) string {
	return netip.AddrPortFrom(a, port).String()
}
