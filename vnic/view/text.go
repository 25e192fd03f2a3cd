package view

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"vnic/vnic/capture"
)

// TextOptions choose what SideBySide (and a Step's picture) shows: which
// capture points make the columns, left to right (top to bottom in the
// picture): the sender's host-tx, one or more wires, the receiver's
// host-rx.
//
// Two-host lab: TextOptions{Sender: "a0", Receiver: "b0"} (the wire is
// a0's). Single host with the gVisor peer: TextOptions{Sender: "vnic0",
// Receiver: "vnic0"}: vnic0's host-tx, its wire (both directions, marked
// > out and < in) and its host-rx (the return direction).
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
	// Filter, if not nil, keeps only the packets it returns true for
	// (e.g. one TCP flow).
	Filter func(p *Packet) bool
	// Start is time zero for the timestamps; the zero Time means the
	// earliest packet kept.
	Start time.Time
	// Width is the line width in columns; 0 means 160.
	Width int
	// MTU is the wire MTU the summary counts packets above (IP length);
	// 0 means 1500.
	MTU int
	// MSS is the TCP MSS the summary counts payloads above; 0 means MTU −
	// 52 (IPv4, TCP with timestamps: 1448 for MTU 1500).
	MSS int
	// Checksums shows every checksum state ("csum partial"), not only
	// bad ones.
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

// ANSI escapes for TextOptions.Color.
const (
	ansiRed   = "\x1b[31m"
	ansiBold  = "\x1b[1m"
	ansiDim   = "\x1b[2m"
	ansiReset = "\x1b[0m"
)

// SideBySide writes one step's packets as columns in the tcpdump style:
// the sender's host-tx | the wire(s) | the receiver's host-rx, each wire
// packet on a row under the super-packet it was cut from, and each
// host-rx packet on the row of the first wire packet merged into it (a
// "|" continues a super-packet down the rows of its segments). Each cell
// is
//
//	00:00:00.000123 P. 1:7241 len 7240 gso 1448
//
// with the time relative to opt.Start, the TCP flags and relative
// sequence range as tcpdump prints them and the payload length. Wire
// cells start with > (out) or < (in). ICMP errors are marked "!!", drop
// notes "DROP". A summary per column follows: packets, largest IP length,
// how many above the MTU and how many TCP payloads above the MSS.
func SideBySide(w io.Writer, pkts []Packet, opt TextOptions) error {
	bw := bufio.NewWriter(w)
	lo := buildLayout(pkts, &opt)
	writeSideBySide(bw, lo, &opt)
	return bw.Flush()
}

func writeSideBySide(w *bufio.Writer, lo *layout, opt *TextOptions) {
	width := opt.Width
	if width <= 0 {
		width = 160
	}
	n := len(lo.lanes)
	if n == 0 {
		fmt.Fprintln(w, "(no columns: set TextOptions.Sender, Wires or Receiver)")
		return
	}
	const sep = " | "
	colW := (width - len(sep)*(n-1)) / n
	colW = max(colW, 20)
	line := func(cells []string, colors []string) {
		var b strings.Builder
		for i, c := range cells {
			if i > 0 {
				b.WriteString(sep)
			}
			c = fit(c, colW)
			if i < n-1 {
				c = pad(c, colW)
			} else {
				c = strings.TrimRight(c, " ")
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
		roles[i] = "(" + ln.role + ")"
		rules[i] = strings.Repeat("-", colW)
	}
	line(titles, nil)
	line(roles, nil)
	line(rules, nil)
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
			cells := make([][]string, n)
			colors := make([]string, n)
			height := 1
			for li, p := range row {
				if p == nil {
					if c := cont[r][li]; c != "" {
						cells[li] = []string{strings.Repeat(" ", 16) + c}
					}
					continue
				}
				var parts []string
				parts, colors[li] = cell(p, lo, opt)
				cells[li] = wrapParts(parts, colW, 18)
				height = max(height, len(cells[li]))
			}
			for k := 0; k < height; k++ {
				out := make([]string, n)
				for li := range cells {
					switch {
					case k < len(cells[li]):
						out[li] = cells[li][k]
					case r+1 < len(rows) && cont[r+1][li] != "":
						out[li] = strings.Repeat(" ", 16) + "|"
					}
				}
				line(out, colors)
			}
		}
	}
	line(rules, nil)
	s1 := make([]string, n)
	s2 := make([]string, n)
	for i, ln := range lo.lanes {
		s1[i], s2[i] = summary(ln, opt)
	}
	line(s1, nil)
	line(s2, nil)
	if lo.other > 0 {
		fmt.Fprintf(w, "(%d more packets of this step were captured at points not shown)\n", lo.other)
	}
}

// summary is a column's two summary lines.
func summary(ln *lane, opt *TextOptions) (string, string) {
	maxLen, above, aboveMSS, maxPay := 0, 0, 0, 0
	for _, p := range ln.pkts {
		l := p.IPLen
		if !p.Valid {
			l = p.Len
		}
		maxLen = max(maxLen, l)
		if l > opt.mtu() {
			above++
		}
		if p.IsTCP() {
			maxPay = max(maxPay, p.Payload)
			if p.Payload > opt.mss() {
				aboveMSS++
			}
		}
	}
	s1 := fmt.Sprintf("%d packets, max IP len %d", len(ln.pkts), maxLen)
	if maxPay > 0 {
		s1 += fmt.Sprintf(", max TCP len %d", maxPay)
	}
	s2 := fmt.Sprintf("%d above MTU %d, %d TCP len above MSS %d", above, opt.mtu(), aboveMSS, opt.mss())
	return s1, s2
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

// cell formats one packet as parts to be joined by ", "; the second
// result is its ANSI colour.
func cell(p *Packet, lo *layout, opt *TextOptions) ([]string, string) {
	var b strings.Builder
	b.WriteString(reltime(p.TS.Sub(lo.start)))
	b.WriteByte(' ')
	if p.Point == capture.Wire {
		switch p.Dir {
		case capture.Out:
			b.WriteString("> ")
		case capture.In:
			b.WriteString("< ")
		}
	}
	b.WriteString(Summary(p))
	color := ""
	if p.Super() || p.Merged > 1 {
		color = ansiBold
	} else if p.IsTCP() && p.Payload == 0 {
		color = ansiDim
	}
	var extra []string
	if p.Dropped != "" {
		extra = append(extra, "DROP "+p.Dropped)
		color = ansiRed
	}
	if p.ICMP != nil && p.ICMP.Error {
		color = ansiRed
	}
	switch {
	case p.Csum == CsumBad, p.Csum == CsumPartial && p.Point == capture.Wire:
		extra = append(extra, "BAD CSUM ("+p.Csum.String()+")")
		color = ansiRed
	case opt.Checksums && p.Csum == CsumComplete:
		extra = append(extra, "csum ok")
	case opt.Checksums && p.Csum != CsumUnknown:
		extra = append(extra, "csum "+p.Csum.String())
	}
	if p.Point == capture.Wire && p.Origin.Count > 1 {
		fmt.Fprintf(&b, " [%d/%d]", p.Origin.Index+1, p.Origin.Count)
	}
	return append([]string{b.String()}, extra...), color
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

// wrapParts joins parts with ", " into lines of at most w columns,
// breaking between parts (or, for a part too long for a line, at a
// space), indenting continuation lines by indent.
func wrapParts(parts []string, w, indent int) []string {
	var out []string
	cur := ""
	ind := strings.Repeat(" ", indent)
	for i, p := range parts {
		if i < len(parts)-1 {
			p += ","
		}
		switch {
		case cur == "":
			cur = p
		case utf8.RuneCountInString(cur)+1+utf8.RuneCountInString(p) <= w:
			cur += " " + p
		default:
			out = append(out, cur)
			cur = ind + p
		}
		for utf8.RuneCountInString(cur) > w && w > indent+8 {
			r := []rune(cur)
			cut := w
			for j := w; j > indent+8; j-- {
				if r[j] == ' ' {
					cut = j
					break
				}
			}
			out = append(out, strings.TrimRight(string(r[:cut]), " "))
			cur = ind + strings.TrimLeft(string(r[cut:]), " ")
		}
	}
	return append(out, cur)
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
