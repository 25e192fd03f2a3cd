package daemon_test

// End-to-end tests of --mode tap: the TUN tests again with an Ethernet
// NIC (TestE2ETAPMode), ARP and tcpdump -e, and the far ends that leave
// the process — a VXLAN tunnel to a plain Linux vxlan device on another
// "machine" and an interface in a Linux bridge — with the daemon run as
// `vnic up` inside the namespace that plays its machine (vnicProc).
// "Two machines" are two namespaces joined by a veth underlay on
// 198.19.0.0/24 (l2test.NewUnderlay).

import (
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"vnic/vnic/capture"
	"vnic/vnic/daemon"
	"vnic/vnic/nic"
	"vnic/vnic/packet"
)

// e2eMode, when set, is the mode startDaemon gives every daemon whose
// test left Mode unset.
var e2eMode nic.Mode

// ipRecords returns a TAP daemon's capture as a TUN daemon's would be:
// each record's IP packet without its Ethernet header (VLAN tags
// included); frames that are not IP (ARP) are left out.
func ipRecords(recs []capture.Record) []capture.Record {
	var out []capture.Record
	for _, r := range recs {
		ip, ok := packet.EthernetIP(r.Data)
		if !ok {
			continue
		}
		r.Len -= len(r.Data) - len(ip)
		r.Data = ip
		out = append(out, r)
	}
	return out
}

// TestE2ETAPMode runs the end-to-end checks of a TUN NIC — the three
// views, ethtool -K tso/gso/gro off, USO, IPv6, the pair with iperf3 —
// again with --mode tap: the same results behind Ethernet headers, with
// the kernel resolving the far end by ARP and neighbour discovery.
func TestE2ETAPMode(t *testing.T) {
	e2eMode = nic.ModeTAP
	defer func() { e2eMode = "" }()
	for _, c := range []struct {
		name string
		f    func(*testing.T)
	}{
		{"TSO", TestE2ETSOSuperPacketsOnHostTXSegmentsOnWire},
		{"IPv6", TestE2EIPv6},
		{"TSOOff", TestE2ETSOOffHostTXEqualsWire},
		{"GROOff", TestE2EGROOffHostRXEqualsWire},
		{"USO", TestE2EUSO},
		{"Stat", TestE2EStatOverControlSocket},
		{"PairIperf3", TestPairIperf3},
	} {
		t.Run(c.name, c.f)
	}
}

// TestE2ETAPARPAndTcpdumpE: a TAP NIC is an Ethernet interface with the
// derived MAC address; the kernel resolves the gVisor peer by ARP and
// neighbour discovery (gVisor's own answers), and tcpdump -e shows the
// Ethernet headers.
func TestE2ETAPARPAndTcpdumpE(t *testing.T) {
	tcpdump := needTool(t, "tcpdump")
	d := startDaemon(t, daemon.Config{Mode: daemon.ModeTAP, Pcap: "-"})
	mac := nic.DefaultMAC(d.ns, "vnic0").String()
	if out := nsExec(t, d.ns, "ip", "link", "show", "vnic0"); !strings.Contains(out, "link/ether "+mac) {
		t.Fatalf("ip link show vnic0: want link/ether %s\n%s", mac, out)
	}
	dump := exec.Command("ip", "netns", "exec", d.ns, tcpdump, "-e", "-n", "-l", "-c", "4", "-i", "vnic0", "icmp")
	var out logBuf
	dump.Stdout, dump.Stderr = &out, &out
	dump.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := dump.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = dump.Process.Kill(); _ = dump.Wait() }()
	waitFor(5*time.Second, func() bool { return strings.Contains(out.String(), "listening on") })
	ping(t, d.ns, "198.18.0.2")
	ping(t, d.ns, "fd00::2")
	waitFor(5*time.Second, func() bool { return strings.Count(out.String(), "ethertype IPv4") >= 4 })
	if n := strings.Count(out.String(), "ethertype IPv4"); n < 4 || !strings.Contains(out.String(), mac) {
		t.Errorf("tcpdump -e: want 4 ICMP frames with Ethernet headers from %s:\n%s", mac, out.String())
	}
	neigh := nsExec(t, d.ns, "ip", "neigh", "show", "dev", "vnic0")
	for _, a := range []string{"198.18.0.2 ", "fd00::2 "} {
		if !strings.Contains(neigh, a) || !regexp.MustCompile(regexp.QuoteMeta(a)+`lladdr [0-9a-f:]{17} (REACHABLE|STALE|DELAY|PROBE)`).MatchString(neigh) {
			t.Errorf("ip neigh: %s not resolved:\n%s", a, neigh)
		}
	}
	if s := d.Stats(); s.Mode != nic.ModeTAP || s.MAC != mac || s.DropTotal() != 0 {
		t.Errorf("stats: mode %q, MAC %q, drops %v", s.Mode, s.MAC, s.DropMap())
	}
}
