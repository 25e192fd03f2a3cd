package capture

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
)

// needTool returns the path of a packet tool. Without it the test is
// skipped on a workstation and fails in CI (CI=true), where the workflow
// installs tshark and tcpdump.
func needTool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	if ci := os.Getenv("CI"); ci != "" && ci != "false" && ci != "0" {
		t.Fatalf("%s not found and CI=%s: install it (apt-get install -y tshark tcpdump)", name, ci)
	}
	t.Skipf("%s not found: apt-get install -y tshark tcpdump", name)
	return ""
}

// runTool runs a tool and returns its stdout; stderr is only shown on
// failure (tshark warns about running as root there).
func runTool(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir()) // no user Wireshark profile
	err := cmd.Run()
	if err != nil {
		t.Logf("%s %s: %v\nstderr: %s", name, strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), err
}

// tsharkCommentField returns the field holding packet comments: frame.comment
// since Wireshark 3.6 (4.0 here), pkt_comment before.
func tsharkCommentField(t *testing.T, tshark string) string {
	out, err := runTool(t, tshark, "-G", "fields")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(out, "\n") {
		if f := strings.Split(line, "\t"); len(f) > 2 && f[0] == "F" && f[2] == "frame.comment" {
			return "frame.comment"
		}
	}
	return "pkt_comment"
}

// TestTshark: tshark opens the file, names every packet's interface, shows
// its comment and direction, and decodes IPv4 and IPv6 from the link type.
func TestTshark(t *testing.T) {
	tshark := needTool(t, "tshark")
	path, ws := writeFile(t)
	comment := tsharkCommentField(t, tshark)
	out, err := runTool(t, tshark, "-r", path, "-T", "fields", "-E", "separator=/t",
		"-e", "frame.interface_name", "-e", comment, "-e", "ip.len", "-e", "ipv6.plen", "-e", "frame.packet_flags_direction")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != len(ws) {
		t.Fatalf("tshark shows %d packets, want %d:\n%s", len(lines), len(ws), out)
	}
	for i, line := range lines {
		f := strings.Split(line, "\t")
		if len(f) != 5 {
			t.Fatalf("tshark line %d: %q", i, line)
		}
		w := ws[i]
		if f[0] != w.intf || f[1] != w.comment {
			t.Errorf("tshark packet %d: interface %q comment %q, want %q %q", i+1, f[0], f[1], w.intf, w.comment)
		}
		if w.data[0]>>4 == 4 && f[2] != strconv.Itoa(len(w.data)) {
			t.Errorf("tshark packet %d: ip.len %q, want %d", i+1, f[2], len(w.data))
		}
		if w.data[0]>>4 == 6 && f[3] != strconv.Itoa(len(w.data)-40) {
			t.Errorf("tshark packet %d: ipv6.plen %q, want %d", i+1, f[3], len(w.data)-40)
		}
		dir, err := strconv.ParseUint(f[4], 0, 32)
		if want := map[Dir]uint64{Out: 2, In: 1}[w.dir]; err != nil || dir&3 != want {
			t.Errorf("tshark packet %d: frame.packet_flags_direction %q, want %d", i+1, f[4], want)
		}
	}
}

// TestTcpdump: tcpdump (libpcap) reads a file with several interfaces and
// decodes every packet as IP or IP6.
func TestTcpdump(t *testing.T) {
	tcpdump := needTool(t, "tcpdump")
	path, ws := writeFile(t)
	out, err := runTool(t, tcpdump, "-n", "-r", path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != len(ws) {
		t.Fatalf("tcpdump shows %d packets, want %d:\n%s", len(lines), len(ws), out)
	}
	for i, line := range lines {
		want := " IP "
		if ws[i].data[0]>>4 == 6 {
			want = " IP6 "
		}
		if !strings.Contains(line, want) {
			t.Errorf("tcpdump packet %d: %q, want%s", i+1, line, want)
		}
	}
}

// TestLinkTypeRaw101: with the registry's LINKTYPE_RAW, tshark still
// decodes IPv4 and IPv6; tcpdump's verdict is logged (libpcap rejects a
// second LINKTYPE_RAW interface, which is why it is not the default).
func TestLinkTypeRaw101(t *testing.T) {
	tshark := needTool(t, "tshark")
	path := filepath.Join(t.TempDir(), "raw101.pcapng")
	w, err := Create(path, Options{Ifnames: []string{"vnic0"}, Block: true, LinkType: layers.LinkTypeRaw})
	if err != nil {
		t.Fatal(err)
	}
	ws := record(t, w)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	out, err := runTool(t, tshark, "-r", path, "-T", "fields", "-e", "frame.protocols")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != len(ws) {
		t.Fatalf("tshark shows %d packets, want %d", len(lines), len(ws))
	}
	for i, line := range lines {
		want := "raw:ip:"
		if ws[i].data[0]>>4 == 6 {
			want = "raw:ipv6:"
		}
		if !strings.HasPrefix(line, want) {
			t.Errorf("tshark packet %d: protocols %q, want %s...", i+1, line, want)
		}
	}
	if tcpdump, err := exec.LookPath("tcpdump"); err == nil {
		if _, err := runTool(t, tcpdump, "-n", "-r", path); err != nil {
			t.Logf("as expected, libpcap cannot read several LINKTYPE_RAW interfaces")
		} else {
			t.Logf("this libpcap reads several LINKTYPE_RAW interfaces: LinkTypeDLTRaw may no longer be needed")
		}
	}
}

// TestTsharkSnaplen: a file with a snap length reads in tshark and tcpdump;
// every packet keeps its original length (frame.len) with only the first
// snaplen bytes captured (frame.cap_len), as with tcpdump -s. tshark shows
// a cut packet as "N bytes on wire, 128 bytes captured", and a dissector
// that runs out of captured bytes (a snap length inside the TCP header)
// as "[Packet size limited during capture: ...]".
func TestTsharkSnaplen(t *testing.T) {
	tshark := needTool(t, "tshark")
	for _, snaplen := range []int{128, 30} {
		path := filepath.Join(t.TempDir(), "snap.pcapng")
		w, err := Create(path, Options{Ifnames: []string{"vnic0"}, Block: true, Snaplen: snaplen})
		if err != nil {
			t.Fatal(err)
		}
		ws := record(t, w)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		out, err := runTool(t, tshark, "-r", path, "-T", "fields", "-E", "separator=/t",
			"-e", "frame.len", "-e", "frame.cap_len", "-e", "frame.interface_name")
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
		if len(lines) != len(ws) {
			t.Fatalf("snaplen %d: tshark shows %d packets, want %d:\n%s", snaplen, len(lines), len(ws), out)
		}
		for i, line := range lines {
			want := fmt.Sprintf("%d\t%d\t%s", len(ws[i].data), min(len(ws[i].data), snaplen), ws[i].intf)
			if line != want {
				t.Errorf("snaplen %d: tshark packet %d: len, cap_len, interface %q, want %q", snaplen, i+1, line, want)
			}
		}
		// Packet 1 is vnic0's 10,040-byte TCP super-packet.
		out, err = runTool(t, tshark, "-r", path, "-V", "-Y", "frame.number == 1")
		if err != nil {
			t.Fatal(err)
		}
		wantText := fmt.Sprintf("%d bytes on wire (%d bits), %d bytes captured", len(ws[0].data), 8*len(ws[0].data), snaplen)
		if snaplen < 40 {
			wantText = "Packet size limited during capture"
		}
		if !strings.Contains(out, wantText) {
			t.Errorf("snaplen %d: tshark -V on packet 1 does not say %q:\n%s", snaplen, wantText, out)
		}
		if tcpdump, err := exec.LookPath("tcpdump"); err == nil {
			out, err := runTool(t, tcpdump, "-n", "-r", path)
			if err != nil {
				t.Fatal(err)
			}
			if n := strings.Count(out, "\n"); n != len(ws) {
				t.Errorf("snaplen %d: tcpdump shows %d packets, want %d:\n%s", snaplen, n, len(ws), out)
			}
		}
	}
}
