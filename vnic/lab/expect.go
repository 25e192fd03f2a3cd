package lab

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"vnic/vnic/capture"
	"vnic/vnic/view"
)

// stepResult is what a step's run left for the expectations.
type stepResult struct {
	bytesWanted int64             // send: Traffic.Bytes
	bytesSent   int64             // send: what traffic.Send counted
	bytesRecv   int64             // send: what the receiving discard service read (-1: not ours)
	corrupt     int64             // send: bytes the discard service read that differ from what was sent
	pings       int               // ping: requests
	replies     int               // ping: replies
	err         error             // traffic error
	ipv6        bool              // the traffic is IPv6
	drops       map[string]uint64 // the step's drops, "<capture name>: reason"
	duration    time.Duration     // send: Traffic.Duration
}

// nicInfo is what an expectation needs to know about a host's NIC.
type nicInfo struct {
	ifname string // capture name
	mtu    int
	hwMTU  int
}

// dataSeg is a TCP data segment: its relative sequence range.
type dataSeg struct{ seq, n int }

func tcpData(pkts []view.Packet, ifname string, point capture.Point, dir capture.Dir) []view.Packet {
	var out []view.Packet
	for _, p := range pkts {
		if p.Ifname != ifname || p.Point != point || !p.IsTCP() || p.Payload == 0 {
			continue
		}
		if dir != capture.DirUnknown && p.Dir != dir {
			continue
		}
		out = append(out, p)
	}
	return out
}

func lens(pkts []view.Packet) string {
	var b strings.Builder
	for i, p := range pkts {
		if i > 0 {
			b.WriteString(" ")
		}
		fmt.Fprint(&b, p.Payload)
	}
	if b.Len() == 0 {
		return "none"
	}
	return b.String()
}

// mss is the expectation's MSS: Size, or the NIC MTU minus the headers
// of the traffic (IPv4 or IPv6, TCP with timestamps).
func mss(e Expectation, n nicInfo, r stepResult) int {
	if e.Size > 0 {
		return e.Size
	}
	if r.ipv6 {
		return n.mtu - 72
	}
	return n.mtu - 52
}

// evaluate checks one expectation against a step's packets.
func evaluate(e Expectation, n nicInfo, pkts []view.Packet, r stepResult) view.ExpectationResult {
	switch e.Kind {
	case ExpectHostTXAboveMSS, ExpectHostTXWithinMSS:
		tx := tcpData(pkts, n.ifname, capture.HostTX, capture.DirUnknown)
		m := mss(e, n, r)
		above := 0
		for _, p := range tx {
			if p.Payload > m {
				above++
			}
		}
		detail := fmt.Sprintf("%d host-tx data segments, %d above %d: %s", len(tx), above, m, lens(tx))
		if e.Kind == ExpectHostTXAboveMSS {
			return view.ExpectationResult{Text: fmt.Sprintf("%s host-tx has TCP segments longer than the MSS (%d)", n.ifname, m), Pass: above > 0, Detail: detail}
		}
		return view.ExpectationResult{Text: fmt.Sprintf("no %s host-tx TCP segment is longer than the MSS (%d)", n.ifname, m), Pass: above == 0 && len(tx) > 0, Detail: detail}
	case ExpectHostTXPayloads, ExpectHostRXPayloads:
		point, name := capture.HostTX, "host-tx"
		if e.Kind == ExpectHostRXPayloads {
			point, name = capture.HostRX, "host-rx"
		}
		tx := tcpData(pkts, n.ifname, point, capture.DirUnknown)
		got := make([]int, len(tx))
		for i, p := range tx {
			got[i] = p.Payload
		}
		return view.ExpectationResult{Text: fmt.Sprintf("%s %s data segments are %v", n.ifname, name, e.Sizes), Pass: slices.Equal(got, e.Sizes), Detail: "seen: " + lens(tx)}
	case ExpectHostTXMax:
		tx := tcpData(pkts, n.ifname, capture.HostTX, capture.DirUnknown)
		largest := 0
		for _, p := range tx {
			largest = max(largest, p.Payload)
		}
		return view.ExpectationResult{Text: fmt.Sprintf("%s host-tx has TCP data, no segment longer than %d", n.ifname, e.Size),
			Pass: len(tx) > 0 && largest <= e.Size, Detail: fmt.Sprintf("%d data segments, largest %d: %s", len(tx), largest, lens(tx))}
	case ExpectWireMax:
		limit := e.Size
		if limit == 0 {
			limit = n.hwMTU
		}
		count, largest, above := 0, 0, 0
		for _, p := range pkts {
			if p.Ifname != n.ifname || p.Point != capture.Wire {
				continue
			}
			count++
			l := p.IPLen
			if !p.Valid || l == 0 {
				l = p.Len
			}
			largest = max(largest, l)
			if l > limit {
				above++
			}
		}
		return view.ExpectationResult{Text: fmt.Sprintf("no packet on %s's wire above %d bytes", n.ifname, limit), Pass: count > 0 && above == 0,
			Detail: fmt.Sprintf("%d wire packets, largest %d, %d above %d", count, largest, above, limit)}
	case ExpectHostTXEqualsWire:
		tx := tcpData(pkts, n.ifname, capture.HostTX, capture.DirUnknown)
		wire := tcpData(pkts, n.ifname, capture.Wire, capture.Out)
		segs := func(ps []view.Packet) []dataSeg {
			out := make([]dataSeg, len(ps))
			for i, p := range ps {
				out[i] = dataSeg{int(p.RelSeq), p.Payload}
			}
			return out
		}
		return view.ExpectationResult{Text: fmt.Sprintf("%s host-tx equals the wire (same TCP data segments)", n.ifname),
			Pass:   len(tx) > 0 && slices.Equal(segs(tx), segs(wire)),
			Detail: fmt.Sprintf("host-tx %d segments: %s; wire %d segments: %s", len(tx), lens(tx), len(wire), lens(wire))}
	case ExpectBytesArrive:
		if r.pings > 0 {
			want := e.Count
			if want == 0 {
				want = r.pings
			}
			return view.ExpectationResult{Text: fmt.Sprintf("%d ping replies arrive", want), Pass: r.replies >= want && r.err == nil,
				Detail: fmt.Sprintf("%d of %d replies%s", r.replies, r.pings, errNote(r.err))}
		}
		recv := "the receiver is not ours"
		ok := r.err == nil && r.bytesSent == r.bytesWanted
		if r.bytesRecv >= 0 {
			recv = fmt.Sprintf("received %d", r.bytesRecv)
			ok = ok && r.bytesRecv == r.bytesWanted
		}
		return view.ExpectationResult{Text: fmt.Sprintf("all %d bytes arrive", r.bytesWanted), Pass: ok,
			Detail: fmt.Sprintf("sent %d, %s%s", r.bytesSent, recv, errNote(r.err))}
	case ExpectDataIntact, ExpectDataCorrupt:
		if r.bytesRecv < 0 {
			return view.ExpectationResult{Text: e.Kind, Detail: "the receiver is not one of the lab's discard services"}
		}
		detail := fmt.Sprintf("received %d bytes, %d of them not the bytes sent%s", r.bytesRecv, r.corrupt, errNote(r.err))
		if e.Kind == ExpectDataIntact {
			return view.ExpectationResult{Text: fmt.Sprintf("the application receives all %d bytes, every one as sent", r.bytesWanted),
				Pass: r.bytesRecv == r.bytesWanted && r.corrupt == 0 && r.err == nil, Detail: detail}
		}
		return view.ExpectationResult{Text: "the application receives corrupted bytes", Pass: r.corrupt > 0, Detail: detail}
	case ExpectNoReply:
		return view.ExpectationResult{Text: "no ping reply comes back", Pass: r.pings > 0 && r.replies == 0,
			Detail: fmt.Sprintf("%d of %d replies%s", r.replies, r.pings, errNote(r.err))}
	case ExpectDrop, ExpectEvent:
		event := e.Kind == ExpectEvent
		total := uint64(0)
		var seen []string
		for k, v := range r.drops {
			nic, reason, _ := strings.Cut(k, ": ")
			if nic != n.ifname || isEvent(reason) != event {
				continue
			}
			seen = append(seen, fmt.Sprintf("%s %d", reason, v))
			if e.Reason == "" || reason == e.Reason {
				total += v
			}
		}
		slices.Sort(seen)
		detail := strings.Join(seen, ", ")
		if event {
			if detail == "" {
				detail = "no events counted"
			}
			return view.ExpectationResult{Text: fmt.Sprintf("%s counts %s", n.ifname, e.Reason), Pass: total > 0, Detail: detail}
		}
		what := "a packet"
		if e.Reason != "" {
			what = "a packet (" + e.Reason + ")"
		}
		if detail == "" {
			detail = "no drops"
		}
		return view.ExpectationResult{Text: fmt.Sprintf("%s drops %s and counts it", n.ifname, what), Pass: total > 0, Detail: detail}
	case ExpectNoICMPFragNeeded:
		count := 0
		for _, p := range pkts {
			if p.Ifname != n.ifname || p.Point != capture.Wire || p.Dir != capture.In || p.ICMP == nil {
				continue
			}
			if ic := p.ICMP; ic.V6 && ic.Type == 2 || !ic.V6 && ic.Type == 3 && ic.Code == 4 {
				count++
			}
		}
		return view.ExpectationResult{Text: fmt.Sprintf("nothing tells %s its packets are too big (no ICMP frag needed / packet too big)", n.ifname),
			Pass: count == 0, Detail: fmt.Sprintf("%d on %s's wire", count, n.ifname)}
	case ExpectICMPFragNeeded:
		want := e.Size
		if want == 0 {
			want = 1500
		}
		count, other := 0, map[int]int{}
		for _, p := range pkts {
			if p.Ifname != n.ifname || p.Point != capture.Wire || p.Dir != capture.In || p.ICMP == nil {
				continue
			}
			ic := p.ICMP
			if ic.V6 && ic.Type == 2 || !ic.V6 && ic.Type == 3 && ic.Code == 4 {
				if ic.MTU == want {
					count++
				} else {
					other[ic.MTU]++
				}
			}
		}
		detail := fmt.Sprintf("%d frag needed / packet too big with mtu %d on %s's wire", count, want, n.ifname)
		if len(other) > 0 {
			detail += fmt.Sprintf(", others by mtu: %v", other)
		}
		return view.ExpectationResult{Text: fmt.Sprintf("%s receives ICMP \"frag needed, mtu %d\"", n.ifname, want), Pass: count > 0, Detail: detail}
	case ExpectStalls:
		within := ""
		if r.duration > 0 {
			within = fmt.Sprintf(" within %v", r.duration)
		}
		ok := r.bytesSent < r.bytesWanted
		recv := "the receiver is not ours"
		if r.bytesRecv >= 0 {
			recv = fmt.Sprintf("received %d", r.bytesRecv)
			ok = r.bytesRecv < r.bytesWanted/2
		}
		return view.ExpectationResult{Text: fmt.Sprintf("the transfer of %d bytes stalls (less than half arrives%s)", r.bytesWanted, within), Pass: ok,
			Detail: fmt.Sprintf("sent %d, %s%s", r.bytesSent, recv, errNote(r.err))}
	case ExpectWireAbove:
		limit := e.Size
		if limit == 0 {
			limit = 1500
		}
		count, largest, above := 0, 0, 0
		for _, p := range pkts {
			if p.Ifname != n.ifname || p.Point != capture.Wire || p.Dir != capture.Out {
				continue
			}
			count++
			l := p.IPLen
			if !p.Valid || l == 0 {
				l = p.Len
			}
			largest = max(largest, l)
			if l > limit {
				above++
			}
		}
		return view.ExpectationResult{Text: fmt.Sprintf("%s puts packets above %d bytes on the wire", n.ifname, limit), Pass: above > 0,
			Detail: fmt.Sprintf("%d wire packets out, largest %d, %d above %d", count, largest, above, limit)}
	case ExpectHostRXAboveMTU:
		limit := e.Size
		if limit == 0 {
			limit = n.mtu
		}
		rx := tcpData(pkts, n.ifname, capture.HostRX, capture.DirUnknown)
		largest, above := 0, 0
		for _, p := range rx {
			largest = max(largest, p.IPLen)
			if p.IPLen > limit {
				above++
			}
		}
		return view.ExpectationResult{Text: fmt.Sprintf("%s host-rx (tcpdump on %s) shows TCP packets above %d bytes: GRO merged them", n.ifname, n.ifname, limit),
			Pass: above > 0, Detail: fmt.Sprintf("%d host-rx data packets, largest %d, %d above %d", len(rx), largest, above, limit)}
	case ExpectHostTXChecksumsPartial, ExpectWireChecksumsComplete, ExpectWireChecksumsBad:
		point, dir := capture.Wire, capture.Out
		if e.Kind == ExpectHostTXChecksumsPartial {
			point, dir = capture.HostTX, capture.DirUnknown
		}
		by := map[view.Csum]int{}
		total := 0
		for _, p := range pkts {
			if p.Ifname != n.ifname || p.Point != point || !p.IsTCP() || (dir != capture.DirUnknown && p.Dir != dir) {
				continue
			}
			total++
			by[p.Csum]++
		}
		detail := fmt.Sprintf("%d TCP packets: %d complete, %d partial, %d bad", total, by[view.CsumComplete], by[view.CsumPartial], by[view.CsumBad])
		switch e.Kind {
		case ExpectHostTXChecksumsPartial:
			return view.ExpectationResult{Text: fmt.Sprintf("%s host-tx shows partial (\"bad\") TCP checksums", n.ifname), Pass: by[view.CsumPartial] > 0, Detail: detail}
		case ExpectWireChecksumsComplete:
			return view.ExpectationResult{Text: fmt.Sprintf("every TCP checksum %s puts on the wire is complete", n.ifname), Pass: total > 0 && by[view.CsumComplete] == total, Detail: detail}
		default:
			return view.ExpectationResult{Text: fmt.Sprintf("the TCP checksums %s puts on the wire are bad", n.ifname), Pass: total > 0 && by[view.CsumComplete] == 0, Detail: detail}
		}
	}
	return view.ExpectationResult{Text: e.Kind, Detail: "unknown expectation"}
}

func errNote(err error) string {
	if err == nil {
		return ""
	}
	return " (" + err.Error() + ")"
}
