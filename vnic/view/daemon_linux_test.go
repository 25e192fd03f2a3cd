package view

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"vnic/vnic/capture"
	"vnic/vnic/daemon"
	"vnic/vnic/kerneltest"
)

// nsRun runs a command in the namespace.
//
// Equivalent to: ip netns exec NS CMD...
func nsRun(t *testing.T, ns string, stdin []byte, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns}, args...)...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns exec %s %s: %v\n%s", ns, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestRealCapture runs the daemon (vnic0 and its gVisor peer in a fresh
// namespace), sends 10,000 bytes with nc, downloads 200,000 bytes with
// curl, turns TSO/GSO off and sends again, pings with 3000 bytes, and
// checks what the views make of the capture.
func TestRealCapture(t *testing.T) {
	kerneltest.RequireRoot(t)
	for _, tool := range []string{"nc", "curl", "ethtool", "ping"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s not found", tool)
			}
			t.Skipf("%s not found", tool)
		}
	}
	var rb [4]byte
	rand.Read(rb[:])
	ns := "vnic-view-" + hex.EncodeToString(rb[:])
	pcap := filepath.Join(t.TempDir(), "v.pcapng")
	d, err := daemon.Start(context.Background(), daemon.Config{Netns: ns, Pcap: pcap})
	if err != nil {
		t.Fatalf("daemon.Start: %v", err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			d.Close()
		}
	})
	zeros := make([]byte, 10000)
	nsRun(t, ns, zeros, "nc", "-N", "198.18.0.2", "9")
	if out := nsRun(t, ns, nil, "curl", "-s", "-o", "/dev/null", "-w", "%{size_download}", "198.18.0.2/bytes/200000"); out != "200000" {
		t.Errorf("curl downloaded %q bytes, want 200000", out)
	}
	mark := time.Now()
	nsRun(t, ns, nil, "ethtool", "-K", "vnic0", "tso", "off", "gso", "off")
	nsRun(t, ns, zeros, "nc", "-N", "198.18.0.2", "9")
	nsRun(t, ns, nil, "ping", "-c1", "-s", "3000", "198.18.0.2")
	closed = true
	if err := d.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	recs, err := capture.ReadFile(pcap)
	if err != nil {
		t.Fatal(err)
	}
	pkts := Decode(recs)
	var supers, partial, bigWire, merged, frags, undecodable int
	var after []Packet
	for _, p := range pkts {
		if !p.Valid {
			undecodable++
		}
		switch p.Point {
		case capture.HostTX:
			if p.Super() && p.IPLen > 1500 {
				supers++
			}
			if p.Csum == CsumPartial {
				partial++
			}
		case capture.Wire:
			if p.IPLen > 1500 {
				bigWire++
			}
			if p.Frag {
				frags++
			}
			if p.Csum == CsumBad || p.Csum == CsumPartial {
				t.Errorf("wire packet with a %v checksum: %s", p.Csum, Summary(&p))
			}
		case capture.HostRX:
			if p.Merged > 1 {
				merged++
			}
		}
		if !p.TS.Before(mark) {
			after = append(after, p)
		}
	}
	if undecodable > 0 || supers == 0 || partial == 0 || bigWire > 0 || merged == 0 || frags < 2 {
		t.Errorf("undecodable %d, host-tx super-packets above 1500: %d, partial checksums at host-tx: %d, wire packets above 1500: %d, merged host-rx: %d, wire fragments: %d",
			undecodable, supers, partial, bigWire, merged, frags)
	}
	for _, p := range after {
		if p.Point == capture.HostTX && p.IPLen > 1500 {
			t.Errorf("with TSO/GSO off, host-tx still has %s", Summary(&p))
		}
	}
	opt := TextOptions{Sender: "vnic0", Receiver: "vnic0"}
	var b bytes.Buffer
	if err := SideBySide(&b, pkts, opt); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	if !strings.Contains(out, "gso 1448") || !strings.Contains(out, " gro ") || !strings.Contains(out, "frag ") {
		t.Errorf("side by side lacks a GSO super-packet, a GRO merge or a fragment:\n%s", out)
	}
	lo := buildLayout(pkts, &opt)
	for _, p := range lo.lanes[2].pkts {
		if p.Valid && p.Merged > 0 && len(lo.up[p]) != p.Merged {
			t.Errorf("host-rx #%d (merged %d) is linked to %d wire packets", p.Num, p.Merged, len(lo.up[p]))
		}
	}
	t.Logf("side by side:\n%s", out)

	report := Report{Title: "vnic0 and its peer", Steps: []Step{
		{Name: "TSO/GSO on", Packets: pkts, View: opt},
		{Name: "TSO/GSO off, then ping -s 3000", Packets: after, View: opt},
	}}
	dir := t.TempDir()
	if o := os.Getenv("VNIC_VIEW_OUT"); o != "" {
		dir = o
	}
	html := filepath.Join(dir, "real.html")
	var hb bytes.Buffer
	if err := WriteHTML(&hb, report); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(html, hb.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := exec.LookPath("chromium"); err == nil || os.Getenv("CI") == "true" {
		dom := renderInChromium(t, chromium(t), html, filepath.Join(dir, "real.png"))
		checkDOM(t, dom, 6, -1)
	}
}
