package view

import (
	"bufio"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"vnic/vnic/capture"
)

// TextOptions choose what SideBySide (and a Step's picture) shows: which
// capture points make the columns, left to right (top to bottom in the
// picture): the sender's host-tx, one or more wires, the router
// interfaces on the path, the receiver's host-rx.
//
// Two-host lab: TextOptions{Sender: "a0", Receiver: "b0"} (the wire is
// a0's). Single host with the gVisor peer: TextOptions{Sender: "vnic0",
// Receiver: "vnic0"}: vnic0's host-tx, its wire (both directions, marked
// > out and < in) and its host-rx (the return direction). Through a
// router: TextOptions{Sender: "web.eth0", Hops: []Hop{{"router.eth1",
// true}, {"router.eth0", false}}, Receiver: "client.eth0"}.
type TextOptions struct {
	// Sender is the ifname whose host-tx makes the first column; "" for
	// none.
	Sender string
	// Receiver is the ifname whose host-rx makes the last column; "" for
	// none.
	Receiver string
	// Wires are the ifnames whose wire points make the middle columns, in
	// order; nil means the Sender's (without a Sender, the Receiver's).
	// Non-nil and empty shows no wire.
	Wires []string
	// Hops are the router interfaces between the wires and the receiver,
	// in path order: a column each, what tcpdump on the router shows.
	Hops []Hop
	// Filter, if not nil, keeps only the packets it returns true for
	// (e.g. one TCP flow).
	Filter func(p *Packet) bool
	// Counters are the step's counters, classified: the drops name the
	// reason of the packets that did not arrive; drops and events are
	// listed in the summary.
	Counters []Counter
	// Start is time zero for the timestamps; the zero Time means the
	// earliest packet kept.
	Start time.Time
	// Width is the line width in columns; 0 means 100.
	Width int
	// MaxRows bounds the rows of the side-by-side view: at most this many,
	// around the first interesting event (the first packet that did not
	// arrive, else the first ICMP error, else the first super-packet);
	// 0 shows every row.
	MaxRows int
	// MTU is the wire MTU the summary counts packets above (IP length);
	// 0 means 1500.
	MTU int
	// MSS is the TCP MSS the summary counts payloads above; 0 means MTU −
	// 52 (IPv4, TCP with timestamps: 1448 for MTU 1500).
	MSS int
	// Checksums shows every checksum state ("csum partial"), not only
	// bad ones, in the text and as marks in the picture.
	Checksums bool
	// Color uses ANSI colours: red for ICMP errors, drops and bad
	// checksums, bold for super-packets.
	Color bool
}

func (o *TextOptions) mtu() int {
	if o.MTU > 0 {
		return o.MTU
	}
	return 1500
}

func (o *TextOptions) mss() int {
	if o.MSS > 0 {
		return o.MSS
	}
	return o.mtu() - 52
}

func (o *TextOptions) width() int {
	if o.Width > 0 {
		return max(o.Width, 60)
	}
	return 100
}

// ANSI escapes for TextOptions.Color.
const (
	ansiRed   = "\x1b[31m"
	ansiBold  = "\x1b[1m"
	ansiDim   = "\x1b[2m"
	ansiReset = "\x1b[0m"
)

// SideBySide writes one step's packets as columns in the tcpdump style:
// the sender's host-tx | the wire(s) | the routers' interfaces | the
// receiver's host-rx, each wire packet on a row under the super-packet it
// was cut from, each packet a router or a host received on the row of the
// first packet merged into it (a "|" continues a super-packet down the
// rows of its segments). A row starts with its time in milliseconds since
// opt.Start; a cell is
//
//	> P. 1:7241 len 7240 gso 1448 [1/5]
//
// with > (out) or < (in) on a wire or a router, the TCP flags and relative
// sequence range as tcpdump prints them, the payload length, and the
// segment's place in its super-packet. A packet that did not arrive where
// it was going starts with ✗, an ICMP error with !!. Cells shorten to fit
// opt.Width; with opt.MaxRows only the rows around the first interesting
// event are shown, and the count of the others.
func SideBySide(w io.Writer, pkts []Packet, opt TextOptions) error {
	bw := bufio.NewWriter(w)
	lo := buildLayout(pkts, &opt)
	writeSideBySide(bw, lo, &opt)
	return bw.Flush()
}

// textRow is one line of the side-by-side body.
type textRow struct {
	time   string
	cells  []string
	colors []string
	focus  int // 3 a loss, 2 an ICMP error, 1 a super-packet, 0 none
}

func writeSideBySide(w *bufio.Writer, lo *layout, opt *TextOptions) {
	width := opt.width()
	n := len(lo.lanes)
	if n == 0 {
		fmt.Fprintln(w, "(no columns: set TextOptions.Sender, Wires or Receiver)")
		return
	}
	const timeW = 8
	const sep = " | "
	colW := max((width-timeW-len(sep)*n)/n, 12)
	line := func(t string, cells []string, colors []string) {
		var b strings.Builder
		b.WriteString(padLeft(t, timeW))
		for i, c := range cells {
			b.WriteString(sep)
			c = fit(c, colW)
			if i < n-1 {
				c = pad(c, colW)
			}
			if opt.Color && colors != nil && colors[i] != "" && strings.TrimSpace(c) != "" {
				c = colors[i] + c + ansiReset
			}
			b.WriteString(c)
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
	titles := make([]string, n)
	roles := make([]string, n)
	rules := make([]string, n)
	for i, ln := range lo.lanes {
		titles[i] = ln.title
		roles[i] = ln.role
		rules[i] = strings.Repeat("-", colW)
	}
	body := lo.textRows(opt, colW)
	from, to := 0, len(body)
	if opt.MaxRows > 0 && len(body) > opt.MaxRows {
		f, best := 0, 0
		for i, r := range body {
			if r.focus > best {
				f, best = i, r.focus
			}
		}
		from = max(0, f-opt.MaxRows/3)
		to = min(len(body), from+opt.MaxRows)
		from = max(0, to-opt.MaxRows)
	}
	line("ms", titles, nil)
	line("", roles, nil)
	line(strings.Repeat("-", timeW), rules, nil)
	if from > 0 {
		fmt.Fprintf(w, "%s %d rows before these (--full, or the report)\n", padLeft("...", timeW), from)
	}
	for _, r := range body[from:to] {
		line(r.time, r.cells, r.colors)
	}
	if to < len(body) {
		fmt.Fprintf(w, "%s %d more rows: --full, or the report\n", padLeft("...", timeW), len(body)-to)
	}
}

// textRows lays every group out in rows of cells colW wide.
func (lo *layout) textRows(opt *TextOptions, colW int) []textRow {
	n := len(lo.lanes)
	var out []textRow
	for _, g := range lo.groups {
		rows := lo.rows(g)
		rowOf := map[*Packet]int{}
		for r, row := range rows {
			for _, p := range row {
				if p != nil {
					rowOf[p] = r
				}
			}
		}
		// cont[r][li]: the lane's super-packet continues down this row.
		cont := make([][]string, len(rows))
		for r := range cont {
			cont[r] = make([]string, n)
		}
		for r, row := range rows {
			for li, p := range row {
				if p == nil {
					continue
				}
				last := r
				for _, q := range append(append([]*Packet(nil), lo.down[p]...), lo.up[p]...) {
					if rr, ok := rowOf[q]; ok && rr > last && lo.laneOf[q] != li {
						last = rr
					}
				}
				for rr := r + 1; rr <= last; rr++ {
					if rows[rr][li] != nil {
						break
					}
					if rr == last {
						cont[rr][li] = "'"
					} else {
						cont[rr][li] = "|"
					}
				}
			}
		}
		for r, row := range rows {
			tr := textRow{cells: make([]string, n), colors: make([]string, n)}
			var first *Packet
			for li, p := range row {
				if p == nil {
					if c := cont[r][li]; c != "" {
						tr.cells[li] = "  " + c
					}
					continue
				}
				if first == nil || p.TS.Before(first.TS) {
					first = p
				}
				tr.cells[li], tr.colors[li] = cell(p, lo, opt, colW)
				switch {
				case lo.lost[p] != nil:
					tr.focus = max(tr.focus, 3)
				case p.ICMP != nil && p.ICMP.Error:
					tr.focus = max(tr.focus, 2)
				case p.Super() || p.Merged > 1 || len(lo.down[p]) > 1:
					tr.focus = max(tr.focus, 1)
				}
			}
			if first != nil {
				tr.time = msTime(first.TS.Sub(lo.start))
			}
			out = append(out, tr)
		}
	}
	// Keep only the first row of each kind as a focus candidate, so the
	// window centres on the first event of the most interesting kind.
	seen := map[int]bool{}
	for i := range out {
		if seen[out[i].focus] {
			out[i].focus = 0
		} else {
			seen[out[i].focus] = true
		}
	}
	return out
}

// msTime formats d as milliseconds with microseconds: "12.345".
func msTime(d time.Duration) string {
	return strconv.FormatFloat(float64(d.Microseconds())/1000, 'f', 3, 64)
}

// reltime formats d like tcpdump -ttttt: 00:00:00.000123.
func reltime(d time.Duration) string {
	sign := ""
	if d < 0 {
		sign, d = "-", -d
	}
	us := d.Microseconds()
	return fmt.Sprintf("%s%02d:%02d:%02d.%06d", sign, us/3600e6, us/60e6%60, us/1e6%60, us%1e6)
}

// cell formats one packet to fit w columns (shortening it step by step),
// with its ANSI colour.
func cell(p *Packet, lo *layout, opt *TextOptions, w int) (string, string) {
	color := ""
	if p.Super() || p.Merged > 1 {
		color = ansiBold
	} else if p.IsTCP() && p.Payload == 0 {
		color = ansiDim
	}
	prefix := ""
	if li, ok := lo.laneOf[p]; p.Point == capture.Wire || ok && lo.lanes[li].kind == laneHop {
		switch p.Dir {
		case capture.Out:
			prefix = "> "
		case capture.In:
			prefix = "< "
		}
	}
	var info, must, compact []string // marks: informative; important, in full and short
	switch {
	case badCsum(p):
		must = append(must, "BAD CSUM ("+p.Csum.String()+")")
		compact = append(compact, "BAD CSUM")
		color = ansiRed
	case opt.Checksums && p.Csum == CsumComplete:
		info = append(info, "csum ok")
	case opt.Checksums && p.Csum != CsumUnknown:
		info = append(info, "csum "+p.Csum.String())
	}
	if l := lo.lost[p]; l != nil {
		prefix = "✗ " + prefix
		must = append(must, "DROP "+l.Text())
		compact = append(compact, "DROP")
		color = ansiRed
	}
	if p.ICMP != nil && p.ICMP.Error {
		color = ansiRed
	}
	idx := ""
	if p.Point == capture.Wire && p.Origin.Count > 1 {
		idx = fmt.Sprintf(" [%d/%d]", p.Origin.Index+1, p.Origin.Count)
	}
	full := Summary(p)
	short := shortSummary(p)
	medium := full
	if p.ICMP != nil && p.ICMP.Error {
		medium = "!! ICMP " + p.ICMP.Text
	}
	all := append(append([]string(nil), info...), must...)
	for _, s := range []string{
		prefix + full + idx + joinMarks(all),
		prefix + full + idx + joinMarks(must),
		prefix + full + joinMarks(must),
		prefix + full + joinMarks(compact),
		prefix + medium + joinMarks(compact),
		prefix + short + joinMarks(compact),
		prefix + full + idx,
		prefix + full,
		prefix + short,
	} {
		if utf8.RuneCountInString(s) <= w {
			return s, color
		}
	}
	return prefix + short, color
}

func joinMarks(m []string) string {
	if len(m) == 0 {
		return ""
	}
	return ", " + strings.Join(m, ", ")
}

// BadChecksum reports whether p's checksum is one a receiver drops the
// packet for: bad, or partial where nothing completes it (on the wire, or
// handed to a kernel without NEEDS_CSUM).
func BadChecksum(p *Packet) bool { return badCsum(p) }

func badCsum(p *Packet) bool {
	switch p.Csum {
	case CsumBad:
		return p.VNet == nil || p.VNet.Flags&0x1 == 0
	case CsumPartial:
		if p.Point == capture.Wire {
			return true
		}
		return p.Point == capture.HostRX && p.VNet != nil && p.VNet.Flags&0x1 == 0 && p.VNet.GSOType == 0
	}
	return false
}

// shortSummary is Summary in as few columns as it takes, the size first:
// "P. 7240@1" (7240 bytes at relative sequence 1), "S 0:1", ". ack 2897",
// "!! mtu 1500" (an ICMP error asking for MTU 1500).
func shortSummary(p *Packet) string {
	switch {
	case !p.Valid:
		return "?? " + p.Err
	case p.IsTCP():
		s := FlagString(p.Flags) + " "
		switch {
		case p.Payload > 0:
			s += fmt.Sprintf("%d@%d", p.Payload, p.RelSeq)
		case p.RelEnd != p.RelSeq:
			s += fmt.Sprintf("%d:%d", p.RelSeq, p.RelEnd)
		default:
			s += fmt.Sprintf("ack %d", p.RelAck)
		}
		return s
	case p.ICMP != nil && p.ICMP.Error && p.ICMP.MTU > 0:
		return fmt.Sprintf("!! mtu %d", p.ICMP.MTU)
	case p.ICMP != nil && p.ICMP.Error:
		return "!! " + p.ICMP.Text
	case p.ICMP != nil:
		s := "ICMP " + p.ICMP.Text
		if p.Frag {
			s = fmt.Sprintf("frag %d@%d", p.IPLen-p.HdrLen, p.FragOff)
		}
		return s
	case p.Frag:
		return fmt.Sprintf("frag %d@%d", p.IPLen-p.HdrLen, p.FragOff)
	}
	return fmt.Sprintf("proto %d len %d", p.Proto, p.IPLen)
}

// Summary is a one-line tcpdump-like description of the packet, without
// time or addresses: "P. 1:7241 len 7240 gso 1448", ". ack 1 len 0",
// "!! ICMP frag needed, mtu 1500 (for 1:2897 len 2948)", "UDP len 1000",
// "ICMP echo request id 7 seq 1 len 3008 frag 4660:1480@0+".
func Summary(p *Packet) string {
	if !p.Valid {
		return "?? undecodable: " + p.Err
	}
	var b strings.Builder
	switch {
	case p.IsTCP():
		b.WriteString(FlagString(p.Flags))
		b.WriteByte(' ')
		if p.RelEnd != p.RelSeq {
			fmt.Fprintf(&b, "%d:%d", p.RelSeq, p.RelEnd)
		} else {
			fmt.Fprintf(&b, "ack %d", p.RelAck)
		}
		fmt.Fprintf(&b, " len %d", p.Payload)
	case p.Proto == ProtoUDP && p.L4HdrLen > 0:
		fmt.Fprintf(&b, "UDP %d > %d len %d", p.SrcPort, p.DstPort, p.Payload)
	case p.ICMP != nil:
		if p.ICMP.Error {
			b.WriteString("!! ")
		}
		b.WriteString("ICMP ")
		if p.ICMP.V6 {
			b.WriteString("v6 ")
		}
		b.WriteString(p.ICMP.Text)
		if q := p.ICMP.Quote; q != nil {
			b.WriteString(" (for ")
			if q.Proto == ProtoTCP && q.L4HdrLen > 0 {
				fmt.Fprintf(&b, "%d:%d ", q.RelSeq, q.RelEnd)
			} else if q.Proto == ProtoTCP {
				fmt.Fprintf(&b, "seq %d ", q.RelSeq)
			}
			fmt.Fprintf(&b, "IP len %d)", q.IPLen)
		} else if !p.ICMP.Error {
			fmt.Fprintf(&b, " len %d", p.IPLen)
		}
	default:
		fmt.Fprintf(&b, "proto %d len %d", p.Proto, p.IPLen)
	}
	if p.Frag {
		fmt.Fprintf(&b, " frag %d:%d@%d", p.ID, p.IPLen-p.HdrLen, p.FragOff)
		if p.MF {
			b.WriteByte('+')
		}
	}
	switch {
	case p.Point == capture.HostRX && p.Merged > 1:
		b.WriteString(" gro " + strconv.Itoa(p.Merged))
	case p.Super():
		fmt.Fprintf(&b, " gso %d", p.VNet.GSOSize)
	}
	return b.String()
}

// LaneStats is what the summary says about one lane.
type LaneStats struct {
	Title, Role           string
	Packets, Largest      int
	AboveMTU, AboveMSS    int
	MaxPayload            int
	Lost                  int            // packets seen here that did not arrive at the next lane
	ICMPErrors            map[string]int // by text ("frag needed, mtu 1500")
	Partial, Bad, Checked int            // TCP/UDP checksums: partial, bad (would be dropped), verified
}

// laneStats computes each lane's summary.
func (lo *layout) laneStats(opt *TextOptions) []LaneStats {
	var out []LaneStats
	for li, ln := range lo.lanes {
		s := LaneStats{Title: ln.title, Role: ln.role, Packets: len(ln.pkts), ICMPErrors: map[string]int{}}
		for _, p := range ln.pkts {
			l := p.IPLen
			if !p.Valid {
				l = p.Len
			}
			s.Largest = max(s.Largest, l)
			if l > opt.mtu() {
				s.AboveMTU++
			}
			if p.IsTCP() {
				s.MaxPayload = max(s.MaxPayload, p.Payload)
				if p.Payload > opt.mss() {
					s.AboveMSS++
				}
			}
			if p.ICMP != nil && p.ICMP.Error {
				s.ICMPErrors[p.ICMP.Text]++
			}
			if l := lo.lost[p]; l != nil && l.Lane == li {
				s.Lost++
			}
			switch {
			case badCsum(p):
				s.Bad++
			case p.Csum == CsumPartial:
				s.Partial++
			case p.Csum == CsumComplete:
				s.Checked++
			}
		}
		out = append(out, s)
	}
	return out
}

// LossRow is the summary of the packets that did not arrive for one
// place and reason, or of an event.
type LossRow struct {
	Where, Reason string
	// Counted by the counter; Seen among the captured packets of the
	// step (the drop marks).
	Counted uint64
	Seen    int
	Event   bool
	// Example is one packet's reason ("IP len 8996 > hardware MTU 1500").
	Example string
}

// lossRows merges the counters with what the capture shows.
func (lo *layout) lossRows(counters []Counter) []LossRow {
	var rows []LossRow
	idx := map[[2]string]int{}
	add := func(where, reason string, counted uint64, seen int, event bool, example string) {
		k := [2]string{where, reason}
		if i, ok := idx[k]; ok {
			rows[i].Counted += counted
			rows[i].Seen += seen
			if rows[i].Example == "" {
				rows[i].Example = example
			}
			return
		}
		idx[k] = len(rows)
		rows = append(rows, LossRow{Where: where, Reason: reason, Counted: counted, Seen: seen, Event: event, Example: example})
	}
	for _, c := range counters {
		if c.Count > 0 {
			add(c.Where, c.Reason, c.Count, 0, c.Event, "")
		}
	}
	for _, l := range lo.losses {
		add(l.Where, l.Reason, 0, 1, false, l.Detail)
	}
	slices.SortStableFunc(rows, func(a, b LossRow) int {
		if a.Event != b.Event {
			if a.Event {
				return 1
			}
			return -1
		}
		return 0
	})
	return rows
}

// WriteSummary writes a step's summary: per lane (capture point) the
// packets, the largest, how many are above the MTU and the MSS, how many
// did not arrive at the next point, the ICMP errors; then what did not
// arrive, by place and reason (each lost packet once), and the events
// (ICMP errors sent, MSS clamped: not losses).
func WriteSummary(w io.Writer, pkts []Packet, opt TextOptions) error {
	bw := bufio.NewWriter(w)
	lo := buildLayout(pkts, &opt)
	writeSummary(bw, lo, &opt)
	return bw.Flush()
}

func writeSummary(w *bufio.Writer, lo *layout, opt *TextOptions) {
	width := opt.width()
	fmt.Fprintf(w, "%-24s %-18s %5s %7s %4s %4s %4s  %s\n", "capture point", "what it is", "pkts", "largest", ">MTU", ">MSS", "lost", "ICMP errors")
	for _, s := range lo.laneStats(opt) {
		lost := "-"
		if s.Lost > 0 {
			lost = strconv.Itoa(s.Lost)
		}
		var ic []string
		for k, v := range s.ICMPErrors {
			ic = append(ic, fmt.Sprintf("%d %s", v, strings.ReplaceAll(strings.ReplaceAll(k, ", mtu", ""), "packet too big", "too big")))
		}
		slices.Sort(ic)
		icmp := strings.Join(ic, "; ")
		if icmp == "" {
			icmp = "-"
		}
		l := fmt.Sprintf("%-24s %-18s %5d %7d %4d %4d %4s  %s", fit(s.Title, 24), fit(shortRole(s.Role), 18), s.Packets, s.Largest, s.AboveMTU, s.AboveMSS, lost, icmp)
		fmt.Fprintln(w, fit(l, width))
		if opt.Checksums || s.Bad > 0 {
			fmt.Fprintln(w, fit(fmt.Sprintf("%24s   checksums: %d complete, %d partial, %d bad", "", s.Checked, s.Partial, s.Bad), width))
		}
	}
	legend := fmt.Sprintf("(>MTU: IP length above %d; >MSS: TCP payload above %d", opt.mtu(), opt.mss())
	if opt.Checksums {
		legend += "; partial: the NIC completes it, bad: a receiver drops it"
	}
	for _, l := range wrapLines("", legend+")", width, 1) {
		fmt.Fprintln(w, l)
	}
	rows := lo.lossRows(opt.Counters)
	var lost, events []LossRow
	for _, r := range rows {
		if r.Event {
			events = append(events, r)
		} else {
			lost = append(lost, r)
		}
	}
	if len(lost) == 0 {
		fmt.Fprintln(w, "did not arrive: nothing")
	} else {
		fmt.Fprintln(w, "did not arrive:")
		for _, r := range lost {
			n := r.Counted
			seen := ""
			switch {
			case r.Counted == 0:
				n = uint64(r.Seen)
			case uint64(r.Seen) != r.Counted:
				seen = fmt.Sprintf(" (%d of them in this view)", r.Seen)
			}
			text := r.Where + ": " + r.Reason
			if r.Example != "" {
				text += ", e.g. " + r.Example
			}
			for _, l := range wrapLines(fmt.Sprintf("%6d  ", n), text+seen, width, 8) {
				fmt.Fprintln(w, l)
			}
		}
	}
	if len(events) > 0 {
		fmt.Fprintln(w, "events (not losses):")
		for _, r := range events {
			for _, l := range wrapLines(fmt.Sprintf("%6d  ", r.Counted), r.Where+": "+r.Reason, width, 8) {
				fmt.Fprintln(w, l)
			}
		}
	}
}

// wrapLines writes prefix then text wrapped to width columns at spaces,
// continuation lines indented by indent.
func wrapLines(prefix, text string, width, indent int) []string {
	var out []string
	ind := strings.Repeat(" ", indent)
	cur := prefix
	fresh := true
	for _, word := range strings.Fields(text) {
		switch {
		case fresh:
			cur += word
			fresh = false
		case utf8.RuneCountInString(cur)+1+utf8.RuneCountInString(word) <= width:
			cur += " " + word
		default:
			out = append(out, cur)
			cur = ind + word
		}
	}
	return append(out, fit(cur, width))
}

// fit cuts s to w columns, ending in "~" when cut.
func fit(s string, w int) string {
	if utf8.RuneCountInString(s) <= w {
		return s
	}
	r := []rune(s)
	return string(r[:w-1]) + "~"
}

func pad(s string, w int) string {
	if n := utf8.RuneCountInString(s); n < w {
		return s + strings.Repeat(" ", w-n)
	}
	return s
}

func padLeft(s string, w int) string {
	if n := utf8.RuneCountInString(s); n < w {
		return strings.Repeat(" ", w-n) + s
	}
	return s
}

// shortRole shortens a lane's role for the summary table.
func shortRole(r string) string {
	if i := strings.Index(r, "'s tcpdump -i "); i > 0 {
		return r[:i] + " tcpdump"
	}
	return r
}
