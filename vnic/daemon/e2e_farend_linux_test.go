package daemon_test

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"vnic/vnic/capture"
	"vnic/vnic/daemon"
	"vnic/vnic/ethtool"
	"vnic/vnic/kerneltest"
	"vnic/vnic/l2test"
	"vnic/vnic/nsutil"
)

// vnicProc is `vnic up` run inside a namespace that plays its machine
// (ip netns exec NS vnic up ...): the far ends that leave the process
// (dev:, vxlan:) open their sockets in the daemon's own namespace.
type vnicProc struct {
	t    *testing.T
	cmd  *exec.Cmd
	logs *logBuf
	ctl  string
	done chan error
}

// startVnic starts `vnic up ARGS` in ns and waits until its control
// socket answers. The test's cleanup stops it by its PID (SIGTERM, then
// SIGKILL after 15 s).
func startVnic(t *testing.T, ns *kerneltest.Netns, args ...string) *vnicProc {
	t.Helper()
	p := &vnicProc{t: t, logs: &logBuf{}, ctl: filepath.Join(t.TempDir(), "vnic.sock"), done: make(chan error, 1)}
	p.cmd = exec.Command("ip", append([]string{"netns", "exec", ns.Name, vnicBinary(t), "up", "--control", p.ctl, "--log-level", "debug"}, args...)...)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("vnic up %s:\n%s", strings.Join(args, " "), p.logs.String())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := daemon.ReadStats(p.ctl); err == nil {
			return p
		}
		select {
		case err := <-p.done:
			p.done <- err
			t.Fatalf("vnic up %s exited: %v\n%s", strings.Join(args, " "), err, p.logs.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("vnic up %s: no control socket after 30 s\n%s", strings.Join(args, " "), p.logs.String())
		}
	}
}

// stop stops the daemon by its PID and waits for it.
func (p *vnicProc) stop() {
	if p.cmd.ProcessState != nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		p.done <- err
		if err != nil {
			p.t.Errorf("vnic up exited with %v after SIGTERM", err)
		}
	case <-time.After(15 * time.Second):
		p.t.Errorf("vnic up still running 15 s after SIGTERM: killed")
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func (p *vnicProc) stats() daemon.Stats {
	p.t.Helper()
	s, err := daemon.ReadStats(p.ctl)
	if err != nil {
		p.t.Fatal(err)
	}
	return s
}

// runVnic runs `vnic up ARGS` in ns (nil: the test's own namespace),
// expecting it to fail, and returns its output.
func runVnic(t *testing.T, ns *kerneltest.Netns, args ...string) string {
	t.Helper()
	argv := append([]string{vnicBinary(t), "up", "--control", filepath.Join(t.TempDir(), "vnic.sock")}, args...)
	if ns != nil {
		argv = append([]string{"ip", "netns", "exec", ns.Name}, argv...)
	}
	out, err := run(t, 60*time.Second, argv[0], argv[1:]...)
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("vnic up %s: want it to fail, got %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// background is a capture or server run by PID for the length of a test.
type background struct {
	cmd  *exec.Cmd
	out  *logBuf
	done chan struct{}
}

// startBG starts NAME ARGS in ns; stop (SIGINT, then SIGKILL) with
// bg.stop, also run at the end of the test.
func startBG(t *testing.T, ns string, name string, args ...string) *background {
	t.Helper()
	b := &background{out: &logBuf{}, done: make(chan struct{})}
	b.cmd = exec.Command("ip", append([]string{"netns", "exec", ns, name}, args...)...)
	b.cmd.Stdout, b.cmd.Stderr = b.out, b.out
	b.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = b.cmd.Wait(); close(b.done) }()
	t.Cleanup(b.stop)
	return b
}

func (b *background) stop() {
	select {
	case <-b.done:
		return
	default:
	}
	_ = b.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-b.done:
	case <-time.After(10 * time.Second):
		_ = b.cmd.Process.Kill()
		<-b.done
	}
}

// startCapture starts tcpdump on dev in ns writing to a file, and waits
// until it listens.
func startCapture(t *testing.T, ns, dev string, snaplen int, filter ...string) (*background, string) {
	t.Helper()
	file := filepath.Join(t.TempDir(), dev+".pcap")
	b := startBG(t, ns, needTool(t, "tcpdump"), append([]string{"-i", dev, "-s", strconv.Itoa(snaplen), "-U", "-w", file}, filter...)...)
	if !waitFor(10*time.Second, func() bool { return strings.Contains(b.out.String(), "listening on") }) {
		t.Fatalf("tcpdump -i %s in %s: %s", dev, ns, b.out.String())
	}
	return b, file
}

// tsharkFields reads file with tshark and returns the lines of the
// fields, every occurrence of a field comma-separated.
func tsharkFields(t *testing.T, file, filter string, fields ...string) [][]string {
	t.Helper()
	args := []string{"-r", file, "-n", "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=,"}
	if filter != "" {
		args = append(args, "-Y", filter)
	}
	for _, f := range fields {
		args = append(args, "-e", f)
	}
	out, err := runStdout(t, 120*time.Second, needTool(t, "tshark"), args...)
	if err != nil {
		t.Fatal(err)
	}
	var rows [][]string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line != "" {
			rows = append(rows, strings.Split(line, "\t"))
		}
	}
	return rows
}

func atoiList(s string) []int {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if n, err := strconv.Atoi(f); err == nil {
			out = append(out, n)
		}
	}
	return out
}

// setFeatures sets ethtool features of dev in ns.
func setFeatures(t *testing.T, ns, dev string, want map[string]bool) {
	t.Helper()
	if err := ethtool.SetFeatures(ns, dev, want); err != nil {
		t.Fatal(err)
	}
}

// TestE2EVXLANInteropWithLinux: a TAP vnic in namespace N1 whose wire is
// a VXLAN tunnel from the daemon's namespace U1 to a plain Linux vxlan
// device in U2 (`ip link add vx0 type vxlan id 42 remote 198.19.0.1
// dstport 4789`): ping both ways over IPv4 and IPv6 with ARP and
// neighbour discovery resolved, iperf3 and SHA-checked transfers both
// ways, every byte arriving; tshark on the underlay decodes VXLAN whose
// inner TCP segments fit the inner MTU while tcpdump in N1 sees
// super-packets; malformed datagrams are counted by reason.
//
// The underlay veths play a cable between two NICs: U1's has UDP
// segmentation off (a NIC without USO), so the kernel cuts the daemon's
// UDP GSO sends before the wire; U2's has transmit checksumming off, so
// the Linux side's kernel completes checksums and segments its tunnel
// super-packets before the wire, as a NIC would. (Across a veth with
// checksum offload on, the inner TCP checksum of what the vxlan device
// sends stays partial — the receiving kernel trusts CHECKSUM_PARTIAL —
// and a UDP socket cannot tell; the NIC then counts rx_csum_bad and the
// host drops the packets, see the README.) The capture on the underlay
// shows the packets that would cross a cable.
func TestE2EVXLANInteropWithLinux(t *testing.T) {
	needTool(t, "tshark")
	u := l2test.NewUnderlay(t, 1550)
	setFeatures(t, u.A.Name, u.DevA, map[string]bool{"tx-udp-segmentation": false})
	setFeatures(t, u.B.Name, u.DevB, map[string]bool{"tx": false})
	n1 := kerneltest.NewNetns(t)
	l2test.AddVXLAN(t, u.B, l2test.VXLAN{Name: "vx0", VNI: 42, Remote: u.AddrA, Local: u.AddrB, MTU: 1500,
		Addrs: []netip.Prefix{netip.MustParsePrefix("198.18.2.2/24"), netip.MustParsePrefix("fd00:2::2/64")}})
	vxMAC := l2test.MAC(t, u.B, "vx0").String()
	pcap := filepath.Join(t.TempDir(), "vnic.pcapng")
	p := startVnic(t, u.A, "--netns", nsutil.Path(n1.Name), "--mode", "tap", "--wire", "vxlan:198.19.0.2,vni=42",
		"--addr", "198.18.2.1/24", "--addr", "fd00:2::1/64", "--mtu", "1500", "--pcap", pcap, "--snaplen", "160")

	ping(t, n1.Name, "198.18.2.2")
	ping(t, u.B.Name, "198.18.2.1")
	ping(t, n1.Name, "fd00:2::2")
	ping(t, u.B.Name, "fd00:2::1")
	for _, a := range []string{"198.18.2.2", "fd00:2::2"} {
		if out := nsExec(t, n1.Name, "ip", "neigh", "show", a); !strings.Contains(out, "lladdr "+vxMAC) {
			t.Errorf("ip neigh show %s in N1: want vx0's address %s:\n%s", a, vxMAC, out)
		}
	}

	under, underFile := startCapture(t, u.A.Name, u.DevA, 200, "udp", "port", "4789")
	inner, innerFile := startCapture(t, n1.Name, "vnic0", 128, "tcp")
	const n = 16 << 20
	for i, c := range []struct {
		name string
		args []string
	}{{"N1→U2", []string{"-n", fmt.Sprint(n)}}, {"U2→N1 (-R)", []string{"-n", fmt.Sprint(n), "-R"}}} {
		r := iperf3(t, u.B.Name, n1.Name, "198.18.2.2", 5301+i, c.args...)
		if r.End.SumSent.Bytes < n || r.End.SumReceived.Bytes == 0 || r.End.SumReceived.Bytes > r.End.SumSent.Bytes {
			t.Errorf("iperf3 %s: sent %d, received %d bytes", c.name, r.End.SumSent.Bytes, r.End.SumReceived.Bytes)
		}
	}
	transferChecked(t, n1.Name, u.B.Name, "198.18.2.2", 0, 8<<20)
	transferChecked(t, u.B.Name, n1.Name, "198.18.2.1", 0, 8<<20)
	transferChecked(t, n1.Name, u.B.Name, "fd00:2::2", 0, 4<<20)
	transferChecked(t, u.B.Name, n1.Name, "fd00:2::1", 0, 4<<20)
	under.stop()
	inner.stop()

	// The underlay: real VXLAN (VNI 42) both ways, inner TCP segments
	// within the inner MTU.
	rows := tsharkFields(t, underFile, "vxlan && tcp && !ipv6", "vxlan.vni", "ip.src", "ip.len")
	fromVnic, fromLinux, innerMax := 0, 0, 0
	for _, r := range rows {
		if len(r) < 3 || r[0] != "42" {
			t.Fatalf("tshark row %v: want VNI 42", r)
		}
		lens := atoiList(r[2])
		if len(lens) != 2 {
			t.Fatalf("tshark row %v: want an outer and an inner IPv4 length", r)
		}
		innerMax = max(innerMax, lens[1])
		switch {
		case strings.HasPrefix(r[1], "198.19.0.1,"):
			fromVnic++
		case strings.HasPrefix(r[1], "198.19.0.2,"):
			fromLinux++
		}
	}
	if fromVnic < 1000 || fromLinux < 1000 || innerMax > 1500 || innerMax < 1400 {
		t.Errorf("underlay: %d VXLAN packets from vnic, %d from Linux, largest inner IP packet %d: want thousands each way, inner ≤ 1500 and full-size", fromVnic, fromLinux, innerMax)
	}
	// N1: super-packets both ways on vnic0 (TSO out, GRO in).
	big := 0
	for _, r := range tsharkFields(t, innerFile, "tcp", "frame.len") {
		if n, _ := strconv.Atoi(r[0]); n > 1514 {
			big++
		}
	}
	if big == 0 {
		t.Error("tcpdump in N1 saw no frame above 1514 bytes: no super-packets")
	}
	t.Logf("underlay: %d VXLAN TCP packets from vnic, %d from Linux, inner ≤ %d; N1: %d super-packets", fromVnic, fromLinux, innerMax, big)

	// Malformed datagrams from the remote, counted by reason.
	sendUDP(t, u.B.Name, "198.19.0.1:4789", []byte{0x00, 0, 0, 0, 0, 0, 42, 0, 1, 2, 3}, append([]byte{0x08, 0, 0, 0, 0, 0, 43, 0}, make([]byte, 60)...), []byte{0x08})
	if !waitFor(5*time.Second, func() bool { return len(p.stats().VXLAN.Drops) >= 3 }) {
		t.Errorf("drops after 3 malformed datagrams: %v", p.stats().VXLAN.Drops)
	}
	s := p.stats()
	got := map[string]uint64{}
	for _, d := range s.VXLAN.Drops {
		got[d.Place+"/"+d.Reason] = d.Packets
	}
	if got["underlay_rx/vxlan_flags"] != 1 || got["underlay_rx/vxlan_vni"] != 1 || got["underlay_rx/vxlan_short"] != 1 || len(got) != 3 {
		t.Errorf("VXLAN drops %v: want one each of vxlan_flags, vxlan_vni, vxlan_short", got)
	}
	if s.VXLAN.GSOSends == 0 || s.VXLAN.OutPackets == 0 || s.VXLAN.InPackets == 0 || s.DropTotal() != 0 {
		t.Errorf("stats: %+v, NIC drops %v", s.VXLAN, s.DropMap())
	}
	out, err := run(t, 10*time.Second, vnicBinary(t), "stat", "--control", p.ctl)
	if err != nil || !strings.Contains(out, "wire vxlan:198.19.0.2 vni 42") || !strings.Contains(out, "vxlan_flags") {
		t.Errorf("vnic stat: %v\n%s", err, out)
	}

	// The daemon's own three views, recorded: super-packets at host-tx,
	// wire-size frames on the wire.
	p.stop()
	recs, err := capture.ReadFile(pcap)
	if err != nil {
		t.Fatal(err)
	}
	maxWire, maxTX := 0, 0
	for _, r := range recs {
		switch r.Point {
		case capture.Wire:
			maxWire = max(maxWire, r.Len)
		case capture.HostTX:
			maxTX = max(maxTX, r.Len)
		}
	}
	if maxWire > 1514 || maxTX <= 1514 {
		t.Errorf("the daemon's pcap: largest wire frame %d (want ≤ 1514), largest host-tx frame %d (want super-packets)", maxWire, maxTX)
	}
}

// sendUDP sends each payload as a UDP datagram from ns to addr.
func sendUDP(t *testing.T, ns, addr string, payloads ...[]byte) {
	t.Helper()
	if err := nsutil.Do(ns, func() error {
		c, err := net.Dial("udp", addr)
		if err != nil {
			return err
		}
		defer c.Close()
		for _, p := range payloads {
			if _, err := c.Write(p); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// TestE2EDevWireOnBridge: a TAP vnic whose wire is one end (v1) of a
// veth pair whose other end is a port of a Linux bridge, with a plain
// veth host on another port: ping and iperf3 both ways between the vnic's
// host and the plain host, every byte arriving; tcpdump on the bridge
// port sees the vnic's frames at wire size; GRO, switched off on v1 while
// the wire is open, is back on after.
//
//	N1: vnic0 ── daemon in D: v1 ══ v2 ─┐ br0 (B) ┌─ hb ══ h0: H
func TestE2EDevWireOnBridge(t *testing.T) {
	d, b, h, n1 := kerneltest.NewNetns(t), kerneltest.NewNetns(t), kerneltest.NewNetns(t), kerneltest.NewNetns(t)
	l2test.Bridge(t, b, "br0")
	l2test.Veth(t, d, "v1", b, "v2", 0)
	l2test.Veth(t, b, "hb", h, "h0", 0)
	l2test.Enslave(t, b, "v2", "br0")
	l2test.Enslave(t, b, "hb", "br0")
	l2test.Configure(t, h, "h0", netip.MustParsePrefix("198.18.3.2/24"), netip.MustParsePrefix("fd00:3::2/64"))
	setFeatures(t, d.Name, "v1", map[string]bool{"rx-gro": true})
	gro := func() bool {
		f, err := ethtool.Features(d.Name, "v1")
		if err != nil {
			t.Fatal(err)
		}
		return f["rx-gro"]
	}

	p := startVnic(t, d, "--netns", nsutil.Path(n1.Name), "--mode", "tap", "--wire", "dev:v1",
		"--addr", "198.18.3.1/24", "--addr", "fd00:3::1/64")
	mac := p.stats().MAC
	if gro() {
		t.Error("rx-gro still on on v1 while the wire is open")
	}
	ping(t, n1.Name, "198.18.3.2")
	ping(t, h.Name, "198.18.3.1")
	ping(t, n1.Name, "fd00:3::2")
	ping(t, h.Name, "fd00:3::1")

	port, file := startCapture(t, b.Name, "v2", 96, "ether", "src", mac)
	const n = 16 << 20
	for i, args := range [][]string{{"-n", fmt.Sprint(n)}, {"-n", fmt.Sprint(n), "-R"}} {
		r := iperf3(t, h.Name, n1.Name, "198.18.3.2", 5401+i, args...)
		if r.End.SumSent.Bytes < n || r.End.SumReceived.Bytes == 0 || r.End.SumReceived.Bytes > r.End.SumSent.Bytes {
			t.Errorf("iperf3 %v: sent %d, received %d bytes", args, r.End.SumSent.Bytes, r.End.SumReceived.Bytes)
		}
	}
	transferChecked(t, n1.Name, h.Name, "198.18.3.2", 0, 8<<20)
	transferChecked(t, h.Name, n1.Name, "198.18.3.1", 0, 8<<20)
	transferChecked(t, h.Name, n1.Name, "fd00:3::1", 0, 4<<20)
	port.stop()
	frames, largest := 0, 0
	for _, r := range tsharkFields(t, file, "", "frame.len") {
		l, _ := strconv.Atoi(r[0])
		largest = max(largest, l)
		frames++
	}
	if frames < 1000 || largest > 1514 {
		t.Errorf("tcpdump on the bridge port v2: %d frames from the vnic, largest %d bytes: want thousands, none above 1514", frames, largest)
	}
	s := p.stats()
	if s.Dev == nil || s.Dev.InSuper == 0 || s.Dev.OutPackets == 0 || len(s.Dev.Drops) != 0 || s.DropTotal() != 0 {
		t.Errorf("stats: dev %+v, NIC drops %v: want super-packets from the bridge cut to wire size, no drops", s.Dev, s.DropMap())
	}
	if len(s.Dev.Switched) != 1 || s.Dev.Switched[0] != "rx-gro" {
		t.Errorf("switched off %v, want [rx-gro]", s.Dev.Switched)
	}
	t.Logf("bridge port: %d frames from the vnic, largest %d; wire: %d super-packets from the bridge cut", frames, largest, s.Dev.InSuper)
	p.stop()
	if !gro() {
		t.Error("rx-gro on v1 not restored after vnic up exited")
	}
}

// TestE2EFarEndBadInput: a wrong mode or wire, an unreachable REMOTE,
// an interface that does not exist, an MTU that cannot fit: vnic up says
// what is wrong and what to do, exits non-zero, and leaves nothing
// behind — the namespace it created for the NIC is gone, the
// interface's features are as they were.
func TestE2EFarEndBadInput(t *testing.T) {
	u := l2test.NewUnderlay(t, 0)
	l2test.Veth(t, u.A, "v1", u.B, "v2", 0)
	setFeatures(t, u.A.Name, "v1", map[string]bool{"rx-gro": true})
	for _, c := range []struct {
		name string
		ns   *kerneltest.Netns // where vnic up runs
		args []string
		want string
	}{
		{"unknown mode", nil, []string{"--mode", "ether"}, "--mode \"ether\": use tun"},
		{"unknown wire", nil, []string{"--mode", "tap", "--wire", "gre:1.2.3.4"}, "dev:IFNAME (an interface of this namespace; --mode tap)"},
		{"dev wire on a TUN", nil, []string{"--wire", "dev:v1"}, "carries Ethernet frames: add --mode tap"},
		{"bad VNI", nil, []string{"--mode", "tap", "--wire", "vxlan:198.19.0.2,vni=99999999"}, "vni=99999999: a number from 1 to 16777215"},
		{"MTU too big for VXLAN", nil, []string{"--mode", "tap", "--wire", "vxlan:198.19.0.2", "--mtu", "65500"}, "use --mtu 65485 or less"},
		{"unreachable REMOTE", u.A, []string{"--mode", "tap", "--wire", "vxlan:198.19.7.7"}, "REMOTE 198.19.7.7 is unreachable from this namespace"},
		{"missing interface", u.A, []string{"--mode", "tap", "--wire", "dev:nope0"}, "dev:nope0: no such interface in this namespace"},
		{"MTU above the interface's", u.A, []string{"--mode", "tap", "--wire", "dev:v1", "--mtu", "9000"}, "--mtu 9000 is larger than dev:v1's MTU 1500"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ns := uniqueNetns(t)
			out := runVnic(t, c.ns, append([]string{"--netns", ns}, c.args...)...)
			if !strings.Contains(out, c.want) {
				t.Errorf("output lacks %q:\n%s", c.want, out)
			}
			if _, err := os.Stat(nsutil.Path(ns)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s left behind (%v)", nsutil.Path(ns), err)
			}
		})
	}
	if f, err := ethtool.Features(u.A.Name, "v1"); err != nil || !f["rx-gro"] {
		t.Errorf("v1's rx-gro changed by a failed vnic up (%v)", err)
	}
}
