package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"vnic/vnic/capture"
	"vnic/vnic/daemon"
	"vnic/vnic/kerneltest"
	"vnic/vnic/traffic"
	"vnic/vnic/tsharktest"
)

// TestMain lets the test binary play the vnic command: Wireshark runs it
// as its extcap (a symlink called vnic-extcap), and the tests run it as
// `vnic capture` (VNIC_TEST_MAIN=1).
func TestMain(m *testing.M) {
	if isExtcapCall(os.Args) || os.Getenv("VNIC_TEST_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// need returns a tool's path; without it the test skips, or fails with
// CI=true.
func need(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s not found (CI=true): bash scripts/install-deps.sh", name)
	}
	t.Skipf("%s not found: bash scripts/install-deps.sh", name)
	return ""
}

// upDaemon starts `vnic up` in a fresh namespace, recording into dir
// (vnic.pcapng and its per-point files); it is closed at the end of the
// test, and must have removed its namespace.
func upDaemon(t *testing.T, dir string) *daemon.Daemon {
	t.Helper()
	kerneltest.RequireRoot(t)
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	suffix := hex.EncodeToString(rnd[:])
	var logs bytes.Buffer
	cfg := daemon.Config{Name: "vx" + suffix[:6], Netns: "vnic-capt-" + suffix, Pcap: filepath.Join(dir, "vnic.pcapng"),
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))}
	d, err := daemon.Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("vnic up: %v\n%s", err, logs.String())
	}
	t.Cleanup(func() {
		d.Close() // again is harmless
		if t.Failed() {
			t.Logf("daemon log:\n%s", logs.String())
		}
		if _, err := os.Stat(filepath.Join("/run/netns", cfg.Netns)); err == nil {
			t.Errorf("namespace %s left behind", cfg.Netns)
		}
	})
	return d
}

// TestExtcapLive: the extcap lists the capture points of a running vnic,
// and `tshark -i NAME@wire -c 4` captures its wire live through it, as
// does `vnic capture NAME@wire -c N -w -`. tshark is run in a private
// mount namespace whose Wireshark extcap directory holds only this test's
// extcap (as root, Wireshark ignores WIRESHARK_EXTCAP_DIR), so nothing is
// installed on the machine.
func TestExtcapLive(t *testing.T) {
	if testing.Short() {
		t.Skip("root: runs vnic up and tshark")
	}
	tshark := need(t, "tshark")
	need(t, "unshare")
	d := upDaemon(t, t.TempDir())
	name := d.Config().Name
	ns := d.Config().Netns

	folders, err := exec.Command(tshark, "-G", "folders").Output()
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^Extcap path:\s+(\S+)`).FindSubmatch(folders)
	if m == nil {
		t.Fatalf("no extcap path in tshark -G folders:\n%s", folders)
	}
	extcapDir := string(m[1])
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	mine := t.TempDir()
	if err := os.Symlink(self, filepath.Join(mine, "vnic-extcap")); err != nil {
		t.Fatal(err)
	}

	// The extcap's own answers.
	out, err := exec.Command(filepath.Join(mine, "vnic-extcap"), "--extcap-interfaces", "--extcap-version=4.0").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"host-tx", "wire", "host-rx"} {
		if !strings.Contains(string(out), "interface {value="+name+"@"+p+"}") {
			t.Errorf("--extcap-interfaces lacks %s@%s:\n%s", name, p, out)
		}
	}
	out, err = exec.Command(filepath.Join(mine, "vnic-extcap"), "--extcap-dlts", "--extcap-interface", name+"@wire").Output()
	if err != nil || !strings.HasPrefix(string(out), "dlt {number=12}") {
		t.Errorf("--extcap-dlts: %q, %v", out, err)
	}

	// Traffic while tshark listens: ping, every 100 ms.
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	pinger := exec.CommandContext(ctx, "ip", "netns", "exec", ns, "ping", "-n", "-i", "0.1", "-c", "800", "198.18.0.2")
	if err := pinger.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = pinger.Wait() }()

	script := fmt.Sprintf(`mount --bind %q %q && %q -D && %q -i %q -c 4 -a duration:60 -T fields -e frame.interface_name -e icmp.type`,
		mine, extcapDir, tshark, tshark, name+"@wire")
	cmd := exec.CommandContext(ctx, "unshare", "--mount", "--propagation", "private", "sh", "-c", script)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("tshark through the extcap: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	if !strings.Contains(stdout.String(), name+"@wire") {
		t.Errorf("tshark -D does not list %s@wire:\n%s", name, stdout.String())
	}
	var icmp int
	for _, line := range strings.Split(stdout.String(), "\n") {
		if f := strings.Split(line, "\t"); len(f) == 2 && (f[1] == "8" || f[1] == "0") {
			icmp++
		}
	}
	if icmp != 4 {
		t.Errorf("tshark -i %s@wire -c 4 captured %d ICMP echo packets, want 4:\n%s\n%s", name, icmp, stdout.String(), stderr.String())
	}

	// vnic capture NAME@wire -c 6 -w - | tcpdump -nr -
	vc := exec.CommandContext(ctx, self, "capture", name+"@wire", "-c", "6", "-w", "-")
	vc.Env = append(os.Environ(), "VNIC_TEST_MAIN=1")
	stream, err := vc.Output()
	if err != nil {
		t.Fatalf("vnic capture: %v", err)
	}
	recs, err := capture.Read(bytes.NewReader(stream))
	if err != nil || len(recs) != 6 {
		t.Fatalf("vnic capture -c 6: %d records, %v", len(recs), err)
	}
	if tcpdump, err := exec.LookPath("tcpdump"); err == nil {
		td := exec.Command(tcpdump, "-nr", "-")
		td.Stdin = bytes.NewReader(stream)
		out, err := td.Output()
		if err != nil || strings.Count(string(out), "ICMP echo") != 6 {
			t.Errorf("tcpdump -r - on vnic capture's stream: %v\n%s", err, out)
		}
	}
}

// TestUpCaptureWiresharkClean: a vnic up session recorded with --pcap
// (downloads, uploads and pings through the peer) gives per-point files
// in which tshark's TCP analysis finds nothing that did not happen: no
// malformed packets or overlapping fragments, and no retransmission,
// out-of-order segment or duplicate ACK that is the same packet recorded
// twice (see package tsharktest); and a combined file in strict time
// order.
func TestUpCaptureWiresharkClean(t *testing.T) {
	if testing.Short() {
		t.Skip("root: runs vnic up and tshark")
	}
	tshark := tsharktest.Tool(t)
	dir := t.TempDir()
	if keep := os.Getenv("VNIC_KEEP"); keep != "" {
		dir = keep // keep the files to look at them
	}
	d := upDaemon(t, dir)
	ns := d.Config().Netns
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	peer := netip.MustParseAddr("198.18.0.2")
	for i := range 3 {
		if _, err := traffic.Send(ctx, traffic.Options{Netns: ns, Addr: netip.AddrPortFrom(peer, traffic.PortDiscard).String(), Bytes: 1 << 20}); err != nil {
			t.Fatalf("upload %d: %v", i, err)
		}
		out, err := exec.CommandContext(ctx, "ip", "netns", "exec", ns, "curl", "-sS", "-o", "/dev/null", "-w", "%{size_download}",
			fmt.Sprintf("http://198.18.0.2/bytes/%d", 500000+i*1000)).Output()
		if err != nil {
			t.Fatalf("download %d: %v", i, err)
		}
		if n, _ := strconv.Atoi(string(out)); n != 500000+i*1000 {
			t.Fatalf("download %d: %s bytes", i, out)
		}
		if _, err := traffic.Ping(ctx, ns, "fd00::2", 3000, 2); err != nil {
			t.Fatalf("ping: %v", err)
		}
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	st := d.Stats() // final: the NIC and the capture writer are closed
	files, _ := filepath.Glob(filepath.Join(dir, "vnic.*.pcapng"))
	if len(files) != 3 {
		t.Fatalf("per-point files: %v, want vnic.host-tx/wire/host-rx.pcapng", files)
	}
	// Each point's file holds each packet that passed it once: as many
	// records as the NIC counted there (when the writer kept up). This
	// is what rules out an ACK recorded twice (see SameACKs).
	want := map[string]uint64{
		"vnic.host-tx.pcapng": st.HostTX.Packets,
		"vnic.wire.pcapng":    st.WireOut.Packets + st.WireIn.Packets,
		"vnic.host-rx.pcapng": st.HostRX.Packets,
	}
	if c := st.Capture; c == nil || c.Dropped+c.Failed > 0 {
		t.Logf("capture %+v: the writer did not record every packet; records not counted against the NIC", c)
		want = nil
	}
	for _, f := range files {
		name := filepath.Base(f)
		if n, ok := want[name]; ok {
			recs, err := capture.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if uint64(len(recs)) != n {
				t.Errorf("%s: %d records, the NIC counted %d packets there", name, len(recs), n)
			}
		}
		rep := tsharktest.Expert(t, tshark, f)
		if n := rep.Events[tsharktest.Malformed] + rep.Events[tsharktest.Overlap]; n > 0 {
			t.Errorf("%s: tshark reports %d malformed packets or overlapping fragments", name, n)
		}
		for _, p := range rep.Phantoms {
			t.Errorf("%s: an event that did not happen: %s", name, p)
		}
		// What remains happened (the peer's TCP retransmits when its
		// output is late on a loaded machine, and answers the duplicate
		// with a duplicate ACK): logged.
		t.Logf("%s: %v; identical duplicate ACKs: %v", name, rep.Events, rep.SameACKs)
	}
	// The checker does see artefacts: in the combined file the same ACK is
	// at host-tx and on the wire.
	if rep := tsharktest.Expert(t, tshark, filepath.Join(dir, "vnic.pcapng")); len(rep.Phantoms)+len(rep.SameACKs) == 0 {
		t.Errorf("the combined file shows no packet twice: the phantom check is blind (%v)", rep.Events)
	}
	if capinfos, err := exec.LookPath("capinfos"); err == nil {
		out, err := exec.Command(capinfos, "-o", filepath.Join(dir, "vnic.pcapng")).Output()
		if err != nil || !regexp.MustCompile(`Strict time order:\s+True`).Match(out) {
			t.Errorf("combined file not in strict time order: %v\n%s", err, out)
		}
	}
}
