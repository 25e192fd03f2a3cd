package view

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// exampleReport is the synthetic report the HTML tests render: story 1
// (GSO at the sender, GRO at the receiver) and story 3 (an ICMP frag
// needed and a drop note).
func exampleReport(t testing.TB) (Report, int) {
	s1 := Decode(story1(t, false))
	s3 := Decode(story3(t))
	r := Report{
		Title:    "Lab 1: <Len> is far bigger than the MSS",
		Scenario: "ginger sends 10,000 bytes with netcat to basil (MTU 1500, MSS 1448).\n\nThe capture point sits between the kernel and the NIC.",
		Steps: []Step{
			{
				Name:        "GSO on",
				Description: "ethtool -K a0 gso on; head -c 10000 /dev/zero | nc -N 198.18.0.2 9",
				Explanation: "The sender's tcpdump shows 7240 and 2760 bytes: the super-packets the kernel handed the NIC. The wire never carried them: it carried 6 × 1448 + 1312.",
				Packets:     s1,
				View:        TextOptions{Sender: "a0", Receiver: "b0"},
				Drops:       map[string]uint64{"a0/gso_size_zero": 0},
				Expectations: []ExpectationResult{
					{Text: "host-tx shows packets above the MSS", Pass: true, Detail: "7240, 2760"},
					{Text: "every wire packet ≤ 1500 bytes", Pass: true, Detail: "7 packets, largest 1500"},
				},
			},
			{
				Name:        "Router GRO on: frag needed",
				Description: "ethtool -K r0 gro on",
				Explanation: "The router merged two 1500-byte packets into one of 2948 and refused to forward it.",
				Packets:     s3,
				View:        TextOptions{Sender: "a0", Receiver: "a0"},
				Axis:        AxisOrder,
				Drops:       map[string]uint64{"r0/forward_mtu": 1, "no_place": 2},
				Expectations: []ExpectationResult{
					{Text: "the transfer completes", Pass: false, Detail: "stalled after 2896 bytes <script>alert(1)</script>"},
				},
			},
		},
	}
	// Marks: every packet, in capture order: story 1 a0 host-tx 3, a0
	// wire 8, b0 host-rx 2; story 3 a0 host-tx 2, a0 wire 4, a0 host-rx 1
	// (each ICMP error a triangle of its own).
	return r, 13 + 7
}

func TestWriteHTML(t *testing.T) {
	r, marks := exampleReport(t)
	var b bytes.Buffer
	if err := WriteHTML(&b, r); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"&lt;Len&gt; is far bigger",
		"&lt;script&gt;alert(1)&lt;/script&gt;",
		`<svg class="lanes"`,
		"frag needed, mtu 1500",
		"forward_mtu",
		"0 of 1 expectations met",
		"P. 1:7241 len 7240 gso 1448",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if strings.Contains(out, "<script>") || strings.Contains(out, "http://") && strings.Count(out, "http://") != strings.Count(out, `xmlns="http://www.w3.org/2000/svg"`) {
		t.Errorf("report has a script or an external reference")
	}
	if n := strings.Count(out, `class="pkt `); n != marks {
		t.Errorf("%d packet marks, want %d", n, marks)
	}
	if n := strings.Count(out, `class="lane"`); n != 6 {
		t.Errorf("%d lanes, want 6", n)
	}
	if n := strings.Count(out, "<line x1="); n < 7+7 {
		t.Errorf("%d link lines, want at least 14 (7 super → segment, 7 segment → merged)", n)
	}
}

// chromium returns the browser's path; it skips the test without one,
// unless CI=true.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium not found: apt-get install chromium (Debian package \"chromium\")")
	}
	t.Skip("chromium not found: apt-get install chromium to run the browser test")
	return ""
}

// renderInChromium screenshots the file and returns the DOM after layout.
//
// Equivalent to: chromium --headless --screenshot=out.png --window-size=1400,2000 file://report.html
func renderInChromium(t *testing.T, bin, html, png string) string {
	t.Helper()
	args := func(extra ...string) []string {
		return append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
			"--disable-background-networking", "--disable-component-update", "--disable-sync",
			"--user-data-dir=" + t.TempDir(), "--window-size=1400,2000"}, append(extra, "file://"+html)...)
	}
	if out, err := exec.Command(bin, args("--screenshot="+png)...).CombinedOutput(); err != nil {
		t.Fatalf("chromium --screenshot: %v\n%s", err, out)
	}
	if st, err := os.Stat(png); err != nil || st.Size() < 10000 {
		t.Fatalf("screenshot %s: %v (size %v)", png, err, st)
	}
	dom, err := exec.Command(bin, args("--dump-dom")...).Output()
	if err != nil {
		t.Fatalf("chromium --dump-dom: %v", err)
	}
	return string(dom)
}

func checkDOM(t *testing.T, dom string, lanes, marks int) {
	t.Helper()
	svgs := regexp.MustCompile(`<svg class="lanes"[^>]* width="(\d+)" height="(\d+)"`).FindAllStringSubmatch(dom, -1)
	if len(svgs) == 0 {
		t.Fatalf("the DOM has no lane picture")
	}
	for _, m := range svgs {
		if m[1] == "0" || m[2] == "0" {
			t.Errorf("SVG of size %sx%s", m[1], m[2])
		}
	}
	if n := strings.Count(dom, `class="lane"`); n != lanes {
		t.Errorf("DOM: %d lanes, want %d", n, lanes)
	}
	if marks >= 0 {
		if n := strings.Count(dom, `class="pkt `); n != marks {
			t.Errorf("DOM: %d packet marks, want %d", n, marks)
		}
	}
	if !strings.Contains(dom, `<pre class="sbs">`) {
		t.Errorf("DOM: no side-by-side text")
	}
}

func TestHTMLInChromium(t *testing.T) {
	bin := chromium(t)
	r, marks := exampleReport(t)
	dir := t.TempDir()
	if d := os.Getenv("VNIC_VIEW_OUT"); d != "" {
		dir = d // keep the files to look at them
	}
	html := filepath.Join(dir, "report.html")
	var b bytes.Buffer
	if err := WriteHTML(&b, r); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(html, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	dom := renderInChromium(t, bin, html, filepath.Join(dir, "report.png"))
	checkDOM(t, dom, 6, marks)
}
