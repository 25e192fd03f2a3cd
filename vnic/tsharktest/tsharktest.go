// Package tsharktest runs Wireshark's TCP analysis (tshark -z expert) on
// a capture file for tests, and tells the events it reports that happened
// from those that are artefacts of how the file was recorded.
//
// A per-point file of vnic shows each packet once, so a retransmission or
// a duplicate ACK tshark finds there was sent twice — by a kernel, or by
// the gVisor peer's TCP after a loss or a timeout — and differs from the
// first copy (a new IPv4 ID, a later TCP timestamp, other SACK blocks).
// The same packet recorded twice (at two capture points in one file, or
// twice at one) is byte for byte the same, with the same timestamp: that
// is a phantom, an event that never happened. (A real retransmission of
// IPv6, which has no ID, within the millisecond of its TCP timestamp is
// byte for byte the same too, but sent later.)
package tsharktest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// Events counts what tshark -z expert reports, by kind.
type Events map[string]int

// Kinds of events counted.
const (
	Malformed  = "malformed"
	Overlap    = "fragment overlap"
	OutOfOrder = "out-of-order"
	Retrans    = "retransmission"
	DupACK     = "duplicate ACK"
)

// Report is tshark's verdict on one file.
type Report struct {
	Events Events
	// Phantoms are the flagged frames that are byte-identical copies of an
	// earlier frame of the file, described: a packet recorded twice.
	Phantoms []string
	// SameACKs are the frames tshark flags only as duplicate ACKs that
	// are identical to an earlier pure ACK, down to the time: a real
	// duplicate ACK is such a copy (same ack, no data, same window; the
	// same TSval within a millisecond), and the capture stamps a batch of
	// packets with one time, so two real ones in one batch cannot be told
	// from one ACK recorded twice. Not counted as Phantoms; a test that
	// must rule the second out counts the records of each point against
	// the NIC's counters.
	SameACKs []string
	// Flagged are the frame numbers tshark flags as retransmission,
	// out-of-order or duplicate ACK, with their times (seconds since the
	// epoch).
	Flagged map[int]float64
}

// Tool returns tshark's path, skipping the test without it (failing with
// CI=true).
func Tool(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("tshark")
	if err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("tshark not found (CI=true): bash scripts/install-deps.sh")
	}
	t.Skip("tshark not found: bash scripts/install-deps.sh")
	return ""
}

var expertLine = regexp.MustCompile(`^\s+(\d+)\s+(\S+)\s+(\S+)\s+(.*)$`)

// Expert runs tshark -z expert and a field dump on file.
func Expert(t testing.TB, tshark, file string) Report {
	t.Helper()
	run := func(args ...string) []byte {
		cmd := exec.Command(tshark, append([]string{"-r", file}, args...)...)
		cmd.Env = append(os.Environ(), "HOME="+t.TempDir()) // no user profile
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("tshark %v on %s: %v\n%s", args, file, err, stderr.String())
		}
		return out
	}
	rep := Report{Events: Events{}, Flagged: map[int]float64{}}
	// Without TCP reassembly for the protocols above it: an HTTP body
	// reassembled across a real retransmission can come out "malformed",
	// which says nothing about the capture. IP reassembly stays on, so
	// fragments seen twice still show as overlapping.
	for _, line := range strings.Split(string(run("-o", "tcp.desegment_tcp_streams:FALSE", "-q", "-z", "expert")), "\n") {
		m := expertLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		n, _ := strconv.Atoi(m[1])
		group, summary := m[2], m[4]
		switch {
		case group == "Malformed" || strings.Contains(summary, "Malformed"):
			rep.Events[Malformed] += n
		case strings.Contains(summary, "overlaps"):
			rep.Events[Overlap] += n
		case strings.Contains(summary, "out-of-order"):
			rep.Events[OutOfOrder] += n
		case strings.Contains(summary, "retransmission"):
			rep.Events[Retrans] += n
		case strings.Contains(summary, "Duplicate ACK"):
			rep.Events[DupACK] += n
		}
	}
	// Every TCP frame's identity, and which are flagged.
	fields := []string{"frame.number", "frame.time_epoch", "tcp.stream", "ip.src", "ipv6.src", "tcp.srcport", "tcp.seq_raw", "tcp.ack_raw",
		"tcp.len", "tcp.flags", "ip.id", "tcp.options.timestamp.tsval", "tcp.options.sack_le", "tcp.options.sack_re", "tcp.window_size_value",
		"tcp.analysis.retransmission", "tcp.analysis.out_of_order", "tcp.analysis.duplicate_ack", "tcp.analysis.fast_retransmission",
		"tcp.analysis.spurious_retransmission"}
	args := []string{"-Y", "tcp", "-T", "fields", "-E", "separator=|"}
	for _, f := range fields {
		args = append(args, "-e", f)
	}
	seen := map[string]int{}
	for _, line := range strings.Split(string(run(args...)), "\n") {
		f := strings.Split(line, "|")
		if len(f) != len(fields) {
			continue
		}
		num, _ := strconv.Atoi(f[0])
		ts, _ := strconv.ParseFloat(f[1], 64)
		key := f[1] + "|" + strings.Join(f[2:15], "|")
		flagged := strings.Join(f[15:], "") != ""
		if flagged {
			rep.Flagged[num] = ts
			if first, ok := seen[key]; ok {
				d := fmt.Sprintf("frame %d is frame %d again (%s)", num, first, key)
				// tcp.len 0, flags ACK alone, flagged as a duplicate ACK
				// and nothing else.
				pureDupACK := f[8] == "0" && f[9] == "0x0010" && f[17] != "" && f[15]+f[16]+f[18]+f[19] == ""
				if pureDupACK {
					rep.SameACKs = append(rep.SameACKs, d)
				} else {
					rep.Phantoms = append(rep.Phantoms, d)
				}
			}
		}
		if _, ok := seen[key]; !ok {
			seen[key] = num
		}
	}
	return rep
}
