package daemon_test

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"vnic/vnic/capture"
	"vnic/vnic/daemon"
	"vnic/vnic/kerneltest"
	"vnic/vnic/nic"
	"vnic/vnic/nsutil"
)

// iperf3Result is what the test reads of `iperf3 -J`.
type iperf3Result struct {
	End struct {
		SumSent          struct{ Bytes uint64 } `json:"sum_sent"`
		SumReceived      struct{ Bytes uint64 } `json:"sum_received"`
		SumSentBidir     struct{ Bytes uint64 } `json:"sum_sent_bidir_reverse"`
		SumReceivedBidir struct{ Bytes uint64 } `json:"sum_received_bidir_reverse"`
	} `json:"end"`
	Error string `json:"error"`
}

// iperf3 runs `iperf3 -s -1` in srvNS and `iperf3 -c addr args -J` in
// cliNS, and returns the client's report.
func iperf3(t *testing.T, srvNS, cliNS, addr string, port int, args ...string) iperf3Result {
	t.Helper()
	bin := needTool(t, "iperf3")
	srv := exec.Command("ip", "netns", "exec", srvNS, bin, "-s", "-1", "-p", fmt.Sprint(port))
	srv.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = srv.Process.Kill()
		_ = srv.Wait()
	}()
	// iperf3 -c does not retry: wait for the server to listen.
	if !waitFor(10*time.Second, func() bool {
		out, _ := run(t, 5*time.Second, "ip", "netns", "exec", srvNS, "ss", "-Hltn", fmt.Sprintf("sport = :%d", port))
		return strings.Contains(out, fmt.Sprintf(":%d", port))
	}) {
		t.Fatalf("iperf3 -s -p %d in %s does not listen", port, srvNS)
	}
	out, err := runStdout(t, 60*time.Second, "ip", append([]string{"netns", "exec", cliNS, bin, "-c", addr, "-p", fmt.Sprint(port), "-J"}, args...)...)
	var r iperf3Result
	if jerr := json.Unmarshal([]byte(out), &r); jerr != nil || err != nil || r.Error != "" {
		t.Fatalf("iperf3 -c %s %v: %v %s\n%s", addr, args, err, r.Error, out)
	}
	return r
}

// TestPairIperf3: `vnic up --netns A --wire netns:B` is a pair of
// offloading NICs that the real iperf3 runs across, both ways and both
// at once, over IPv4 and IPv6, every byte arriving: super-packets on A's
// host-tx, nothing above the MTU on the wire, GRO merging into B; with
// `ethtool -K gro off` on B, B's host-rx is the wire. Both namespaces are
// created for the daemon and gone after it.
func TestPairIperf3(t *testing.T) {
	nsB := uniqueNetns(t)
	d := startDaemon(t, daemon.Config{Wire: "netns:" + nsB, Snaplen: 128})
	if !nsutil.Exists(nsB) {
		t.Fatalf("the far namespace %s was not created", nsB)
	}
	// iperf3 both ways, IPv4 and IPv6. (Its receiver stops counting
	// when the sender's end-of-test message arrives, which may overtake
	// the last data: it reports at most what was sent, not exactly.)
	const n = 40 << 20
	for i, c := range []struct {
		name, addr string
		args       []string
	}{
		{"A→B IPv4", "198.18.0.2", []string{"-n", fmt.Sprint(n)}},
		{"B→A IPv4 (-R)", "198.18.0.2", []string{"-n", fmt.Sprint(n), "-R"}},
		{"A→B IPv6", "fd00::2", []string{"-n", fmt.Sprint(n)}},
		{"B→A IPv6 (-R)", "fd00::2", []string{"-n", fmt.Sprint(n), "-R"}},
	} {
		r := iperf3(t, nsB, d.ns, c.addr, 5201+i, c.args...)
		if r.End.SumSent.Bytes < n || r.End.SumReceived.Bytes == 0 || r.End.SumReceived.Bytes > r.End.SumSent.Bytes {
			t.Errorf("%s: sent %d, received %d bytes (want ≥ %d sent, 0 < received ≤ sent)", c.name, r.End.SumSent.Bytes, r.End.SumReceived.Bytes, n)
		}
	}
	r := iperf3(t, nsB, d.ns, "198.18.0.2", 5210, "-t", "2", "--bidir")
	e := r.End
	if e.SumReceived.Bytes == 0 || e.SumReceivedBidir.Bytes == 0 || e.SumReceived.Bytes > e.SumSent.Bytes || e.SumReceivedBidir.Bytes > e.SumSentBidir.Bytes {
		t.Errorf("--bidir: A→B sent %d received %d, B→A sent %d received %d", e.SumSent.Bytes, e.SumReceived.Bytes, e.SumSentBidir.Bytes, e.SumReceivedBidir.Bytes)
	}
	// Every byte, checked: the same transfers with a SHA-256 of the data.
	transferChecked(t, d.ns, nsB, "198.18.0.2", 0, 8<<20)
	transferChecked(t, nsB, d.ns, "198.18.0.1", 0, 8<<20)
	transferChecked(t, d.ns, nsB, "fd00::2", 0, 8<<20)
	transferChecked(t, nsB, d.ns, "fd00::1", 0, 8<<20)
	for _, ns := range []string{d.ns, nsB} {
		if n := tcpInCsumErrors(t, ns); n != 0 {
			t.Errorf("%s: TcpInCsumErrors %d", ns, n)
		}
	}
	s := d.Stats() // (the capture may drop at this speed: it is not counted on)
	if s.Far == nil || s.Wire != "netns:"+nsB {
		t.Fatalf("stats: wire %q, far NIC %v", s.Wire, s.Far)
	}
	if s.HostTXSuper == 0 || s.Far.HostRXMerged == 0 || s.Far.HostTXSuper == 0 || s.HostRXMerged == 0 {
		t.Errorf("super-packets: A host-tx %d, B merged %d; B host-tx %d, A merged %d: want all > 0", s.HostTXSuper, s.Far.HostRXMerged, s.Far.HostTXSuper, s.HostRXMerged)
	}
	if s.DropTotal()+s.Far.DropTotal() != 0 {
		t.Errorf("drops: A %v, B %v", s.Drops, s.Far.Drops)
	}

	// GRO off on B: B's host-rx is exactly the wire.
	nsExec(t, nsB, "ethtool", "-K", "vnic0", "gro", "off")
	far := func() nic.Stats { return *d.Stats().Far }
	if !waitFor(5*time.Second, func() bool { return !far().GRO }) {
		t.Fatal("B did not follow ethtool -K gro off")
	}
	b0 := far()
	iperf3(t, nsB, d.ns, "198.18.0.2", 5211, "-n", "4M")
	var b1 nic.Stats
	waitFor(5*time.Second, func() bool {
		b1 = far()
		return b1.HostRX.Packets-b0.HostRX.Packets == b1.WireIn.Packets-b0.WireIn.Packets
	})
	if rx, in := b1.HostRX.Packets-b0.HostRX.Packets, b1.WireIn.Packets-b0.WireIn.Packets; rx != in || b1.HostRXMerged != b0.HostRXMerged {
		t.Errorf("B with GRO off: %d wire packets in, %d frames to the host (%d merged)", in, rx, b1.HostRXMerged-b0.HostRXMerged)
	}

	// The capture: both NICs' three points; nothing above the MTU on the
	// wire, super-packets at A's host-tx.
	recs := d.records()
	counts := map[string]int{}
	maxWire, maxTX := 0, 0
	for _, r := range recs {
		counts[r.Ifname+"@"+r.Point.String()]++
		switch {
		case r.Point == capture.Wire && r.Len > maxWire:
			maxWire = r.Len
		case r.Point == capture.HostTX && strings.HasPrefix(r.Ifname, d.ns+".") && r.Len > maxTX:
			maxTX = r.Len
		}
	}
	for _, ns := range []string{d.ns, nsB} {
		for _, p := range []string{"host-tx", "wire", "host-rx"} {
			if name := ns + ".vnic0@" + p; counts[name] == 0 {
				t.Errorf("no packets recorded at %s (recorded: %v)", name, counts)
			}
		}
	}
	if maxWire > 1500 || maxTX <= 1500 {
		t.Errorf("largest wire packet %d (want ≤ 1500), largest at A's host-tx %d (want super-packets > 1500)", maxWire, maxTX)
	}
	if nsutil.Exists(nsB) {
		t.Errorf("the far namespace %s is left after Close", nsB)
	}
}

// TestNetnsByPath: --netns takes a namespace file, as a container
// runtime gives it: the NIC appears in the namespace of a process that
// has no name for it, and vnic never removes that namespace.
func TestNetnsByPath(t *testing.T) {
	kerneltest.RequireRoot(t)
	needTool(t, "unshare")
	sleeper := exec.Command("unshare", "--net", "sleep", "60")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = sleeper.Process.Kill()
		_ = sleeper.Wait()
	}()
	path := fmt.Sprintf("/proc/%d/ns/net", sleeper.Process.Pid)
	// unshare has entered the namespace once the link differs from ours.
	if !waitFor(5*time.Second, func() bool {
		a, _ := os.Readlink(path)
		b, _ := os.Readlink("/proc/self/ns/net")
		return a != "" && a != b
	}) {
		t.Fatal("unshare did not enter a new namespace")
	}
	nsB := uniqueNetns(t)
	logs := &logBuf{}
	cfg := daemon.Config{Netns: path, Wire: "netns:" + nsB}
	cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	dm, err := daemon.Start(t.Context(), cfg)
	if err != nil {
		t.Fatalf("vnic up --netns %s: %v\n%s", path, err, logs)
	}
	out, err := run(t, 10*time.Second, "nsenter", "--net="+path, "ip", "-o", "addr", "show", "dev", "vnic0")
	if err != nil || !strings.Contains(out, "198.18.0.1/15") {
		t.Errorf("vnic0 in %s: %v\n%s", path, err, out)
	}
	if out, err := run(t, 10*time.Second, "nsenter", "--net="+path, "ping", "-c", "1", "-W", "5", "198.18.0.2"); err != nil {
		t.Errorf("ping across the pair from the process's namespace: %v\n%s", err, out)
	}
	if err := dm.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Readlink(path); err != nil {
		t.Errorf("the process's namespace is gone: %v", err)
	}
	if out, err := run(t, 5*time.Second, "nsenter", "--net="+path, "ip", "-o", "link", "show", "vnic0"); err == nil {
		t.Errorf("vnic0 left in %s after Close:\n%s", path, out)

	}
	if nsutil.Exists(nsB) {
		t.Errorf("the far namespace %s is left after Close", nsB)
	}
}

// TestPairNameClash: the far namespace already has an interface of the
// NIC's name: a clear error naming it and the fix, and nothing left
// behind — the namespace the daemon created for A is gone again, the
// existing one and its interface untouched.
func TestPairNameClash(t *testing.T) {
	kerneltest.RequireRoot(t)
	nsA, nsB := uniqueNetns(t), uniqueNetns(t)
	if _, err := nsutil.Create(nsB); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nsutil.Delete(nsB) })
	nsExec(t, nsB, "ip", "tuntap", "add", "vnic0", "mode", "tun")
	_, err := daemon.Start(t.Context(), daemon.Config{Netns: nsA, Wire: "netns:" + nsB})
	if err == nil || !strings.Contains(err.Error(), nsB) || !strings.Contains(err.Error(), "vnic0 already exists") || !strings.Contains(err.Error(), "--name") {
		t.Fatalf("far name taken: %v; want an error naming %s, vnic0 and --name", err, nsB)
	}
	t.Logf("error: %v", err)
	if nsutil.Exists(nsA) {
		t.Errorf("the failed daemon left %s behind", nsA)
	}
	if !nsutil.Exists(nsB) {
		t.Fatalf("the failed daemon removed %s, which it did not create", nsB)
	}
	if _, err := run(t, 5*time.Second, "ip", "netns", "exec", nsB, "ip", "link", "show", "vnic0"); err != nil {
		t.Errorf("the existing vnic0 in %s is gone: %v", nsB, err)
	}
	if _, err := os.Stat(daemon.ControlPath(nsA, "vnic0")); err == nil {
		t.Errorf("the failed daemon left its control socket")
	}
}

// TestPairUnrecorded: a pair nothing records, where bulk TCP crosses the
// wire whole (segment then GRO is the identity for it): every byte
// arrives, checked, both ways, the receivers count no checksum errors,
// and the wire counters of the two NICs agree.
func TestPairUnrecorded(t *testing.T) {
	nsB := uniqueNetns(t)
	d := startDaemon(t, daemon.Config{Wire: "netns:" + nsB, Pcap: "-"})
	transferChecked(t, d.ns, nsB, "198.18.0.2", 0, 32<<20)
	transferChecked(t, nsB, d.ns, "198.18.0.1", 0, 32<<20)
	transferChecked(t, d.ns, nsB, "fd00::2", 0, 16<<20)
	transferChecked(t, d.ns, nsB, "198.18.0.2", 88, 2<<20)
	for _, ns := range []string{d.ns, nsB} {
		if n := tcpInCsumErrors(t, ns); n != 0 {
			t.Errorf("%s: TcpInCsumErrors %d", ns, n)
		}
	}
	var s daemon.Stats
	waitFor(5*time.Second, func() bool {
		s = d.Stats()
		return s.WireOut == s.Far.WireIn && s.Far.WireOut == s.WireIn
	})
	if s.WireOut != s.Far.WireIn || s.Far.WireOut != s.WireIn {
		t.Errorf("wire counters disagree: A out %+v, B in %+v; B out %+v, A in %+v", s.WireOut, s.Far.WireIn, s.Far.WireOut, s.WireIn)
	}
	if s.HostTXSuper == 0 || s.Far.HostRXMerged == 0 || s.DropTotal()+s.Far.DropTotal() != 0 {
		t.Errorf("A super-packets %d, B merged %d, drops %v %v", s.HostTXSuper, s.Far.HostRXMerged, s.Drops, s.Far.Drops)
	}
}

// TestPairKill9LeavesNothingToTripOver: kill -9 of `vnic up --wire
// netns:B` leaves both namespaces (their TUNs died with the process); the
// next `vnic up` with the same ends adopts both, works, and removes both
// on exit.
func TestPairKill9LeavesNothingToTripOver(t *testing.T) {
	kerneltest.RequireRoot(t)
	nsA, nsB := uniqueNetns(t), uniqueNetns(t)
	first := startCLI(t, nsA, "--wire", "netns:"+nsB)
	ping(t, nsA, "198.18.0.2")
	if err := first.signal(t, syscall.SIGKILL); err == nil {
		t.Fatal("vnic up exited 0 after SIGKILL")
	}
	for _, ns := range []string{nsA, nsB} {
		if !nsutil.Exists(ns) {
			t.Fatalf("namespace %s gone after kill -9: the test cannot check adoption", ns)
		}
		if out, err := run(t, 10*time.Second, "ip", "-n", ns, "link", "show", "vnic0"); err == nil {
			t.Errorf("vnic0 still exists in %s after kill -9:\n%s", ns, out)
		}
	}
	second := startCLI(t, nsA, "--wire", "netns:"+nsB)
	ping(t, nsA, "198.18.0.2")
	ping(t, nsB, "198.18.0.1")
	if err := second.signal(t, syscall.SIGTERM); err != nil {
		t.Errorf("vnic up after SIGTERM: %v", err)
	}
	for _, ns := range []string{nsA, nsB} {
		if nsutil.Exists(ns) {
			t.Errorf("namespace %s still there after the second daemon's SIGTERM", ns)
		}
		if _, err := os.Stat(nsutil.RecordPath(ns)); err == nil {
			t.Errorf("%s left behind", nsutil.RecordPath(ns))
		}
	}
}

// TestVXLANOverPair: a Linux VXLAN device stacked on each end of a vnic
// pair hands the NIC tunnel super-packets (the UDP tunnel offloads:
// `ethtool -k` shows tx-udp_tnl-segmentation on), which the NIC cuts as
// skb_udp_tunnel_segment does: every byte crosses the tunnel, both ways,
// nothing above the MTU on the wire, no checksum error anywhere.
func TestVXLANOverPair(t *testing.T) {
	nsB := uniqueNetns(t)
	d := startDaemon(t, daemon.Config{Wire: "netns:" + nsB, Snaplen: 128})
	if out := nsExec(t, d.ns, "ethtool", "-k", "vnic0"); !strings.Contains(out, "tx-udp_tnl-segmentation: on") {
		kerneltest.RequireFeature(t, "TUN's UDP tunnel offloads (Linux 6.17+): ethtool -k shows\n"+out)
	}
	for i, ns := range []string{d.ns, nsB} {
		me, far := i+1, 2-i
		nsExec(t, ns, "ip", "link", "add", "vx0", "type", "vxlan", "id", "42", "local", fmt.Sprintf("198.18.0.%d", me),
			"remote", fmt.Sprintf("198.18.0.%d", far), "dev", "vnic0", "dstport", "4789")
		nsExec(t, ns, "ip", "addr", "add", fmt.Sprintf("198.19.77.%d/24", me), "dev", "vx0")
		nsExec(t, ns, "ip", "link", "set", "vx0", "up")
	}
	transferChecked(t, d.ns, nsB, "198.19.77.2", 0, 8<<20)
	transferChecked(t, nsB, d.ns, "198.19.77.1", 0, 8<<20)
	for _, ns := range []string{d.ns, nsB} {
		if n := tcpInCsumErrors(t, ns); n != 0 {
			t.Errorf("%s: TcpInCsumErrors %d", ns, n)
		}
	}
	s := d.Stats()
	if s.HostTXTunnel == 0 || s.Far.HostTXTunnel == 0 {
		t.Errorf("tunnel super-packets: A %d, B %d: want both > 0", s.HostTXTunnel, s.Far.HostTXTunnel)
	}
	if s.DropTotal()+s.Far.DropTotal() != 0 {
		t.Errorf("drops: A %v, B %v", s.Drops, s.Far.Drops)
	}
	maxWire := 0
	for _, r := range d.records() {
		if r.Point == capture.Wire && r.Len > maxWire {
			maxWire = r.Len
		}
	}
	if maxWire > 1500 {
		t.Errorf("a %d-byte packet on the wire of an MTU-1500 NIC", maxWire)
	}
}
