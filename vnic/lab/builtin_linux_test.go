package lab

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"vnic/vnic/capture"
	"vnic/vnic/kerneltest"
	"vnic/vnic/tsharktest"
	"vnic/vnic/view"
)

// builtinWants are, per built-in lab, strings its terminal output must
// show.
var builtinWants = map[string][]string{
	"tso-capture":    {"Step 1/4: TSO on", "gso 1448", "did not arrive: nothing"},
	"forcedeth":      {"server1's NIC: above its hardware MTU 1500", "IP len 8996 > hardware MTU 1500"},
	"gro-router":     {"router (forwarding): too big for the next link", "ethtool -K eth1 gro off", "GRO merged packet handed to forwarding whole", "router.eth1"},
	"jumbo-firewall": {"firewall (firewall rule drop-jumbo): above 1500 bytes", "--set-mss 1400", "MSS of a SYN clamped", "ethtool -K eth0 tso off"},
	"checksum":       {"basil's kernel: bad TCP checksum (TcpInCsumErrors)", "ethtool -K eth0 tx off", "no-csum", "BAD CSUM"},
	"csum-trust":     {"server's kernel: bad TCP checksum (TcpInCsumErrors)", "rx-csum-trusting", "not the bytes sent"},
	"gvisor-gro":     {"dropped without a word (no ICMP)", "sandbox.eth1"},
}

// TestBuiltinLabs runs every built-in lab once, as a teacher would, and
// checks what it shows a class:
//   - every expectation holds, and no namespace is left;
//   - the terminal output is at most 400 lines of at most 100 columns;
//   - the figures in the intro, the step descriptions and explanations are
//     ones the run shows (or the lab's own settings), never contradicted;
//   - report.html in headless Chromium at 1024 px: a drop mark for every
//     packet counted as not arrived, a lane per router interface where
//     the lab has a router, no two texts of a picture overlapping, no text
//     under 12 px, each picture within a 768-pixel screen;
//   - tshark -z expert on every per-point pcapng: no malformed packet, no
//     overlapping fragments, no retransmission, out-of-order segment or
//     duplicate ACK that is a packet recorded twice — and none at all in
//     the labs where nothing is lost.
func TestBuiltinLabs(t *testing.T) {
	if testing.Short() {
		t.Skip("root lab runs")
	}
	kerneltest.RequireRoot(t)
	for _, s := range Builtin() {
		t.Run(s.Name, func(t *testing.T) {
			out := t.TempDir()
			if d := os.Getenv("VNIC_LAB_OUT"); d != "" {
				out = filepath.Join(d, s.Name) // keep the files to look at them
			}
			var stdout bytes.Buffer
			res, err := Run(t.Context(), s, Options{Out: out, Stdout: &stdout})
			if err != nil {
				t.Fatalf("%v\n%s", err, stdout.String())
			}
			text := stdout.String()
			if !res.Passed || res.Expectations == 0 {
				t.Errorf("%d of %d expectations failed:\n%s", res.Failed, res.Expectations, text)
			}
			if got := leftovers(res); len(got) != 0 || len(res.Namespaces) == 0 {
				t.Errorf("namespaces left: %v (of %v)", got, res.Namespaces)
			}
			flat := strings.Join(strings.Fields(text), " ") // wrapped lines joined
			for _, want := range append(builtinWants[s.Name], "PASSED") {
				if !strings.Contains(flat, want) {
					t.Errorf("the output lacks %q", want)
				}
			}
			checkTerminal(t, text)
			if raceEnabled {
				return
			}
			recs, err := capture.ReadFile(res.Pcap)
			if err != nil {
				t.Fatal(err)
			}
			checkFigures(t, s, res, recs)
			checkReport(t, s, res.Report)
			checkWireshark(t, s, res)
			if t.Failed() {
				t.Logf("output:\n%s", text)
			}
		})
	}
}

// crosses reports whether traffic t goes through router rt: its
// receiver's NIC (a host's first, or the one with To's address) is
// wired to one of the router's interfaces.
func crosses(s *Scenario, rt *Router, t Traffic) bool {
	recv := ""
	if h := s.host(t.To); h != nil {
		recv = nicID(h.Name, h.Nics()[0].Name)
	} else if a, err := netip.ParseAddr(t.To); err == nil {
		for _, h := range s.Hosts {
			for _, n := range h.Nics() {
				for _, p := range n.Addrs {
					if pf, err := netip.ParsePrefix(p); err == nil && pf.Addr() == a {
						recv = nicID(h.Name, n.Name)
					}
				}
			}
		}
	}
	for _, f := range rt.Ifaces {
		if s.nicName(f.Host) == recv {
			return true
		}
	}
	return false
}

// checkTerminal: at most 400 lines of at most 100 columns.
func checkTerminal(t *testing.T, text string) {
	t.Helper()
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	if len(lines) > 400 {
		t.Errorf("the terminal output is %d lines, want at most 400", len(lines))
	}
	for i, l := range lines {
		if n := utf8.RuneCountInString(l); n > 100 {
			t.Errorf("line %d is %d columns, want at most 100: %q", i+1, n, l)
		}
	}
}

// storyOnly are figures a lab's text names that its run does not show,
// each with the reason the text gives for it.
var storyOnly = map[string]map[int]string{
	"forcedeth":  {26577: "the story's sequence numbers", 35265: "the story's sequence numbers", 32369: "the story's sequence numbers"},
	"gro-router": {2014: "the story's year"},
	"csum-trust": {2016: "the story's year"},
	"gvisor-gro": {14011: "the story's issue number", 2026: "the story's year", 2868: "a frame size the story's reporter saw",
		20076: "a frame size the story's reporter saw", 1466: "the story's link MTU", 2014: "the year of the gro-router story"},
}

var figure = regexp.MustCompile(`\d[\d,]*\d|\d`)

// figures returns the numbers of at least 100 in text ("10,000" is
// 10000; "2.6.26" and "MCP55" give none).
func figures(text string) []int {
	var out []int
	for _, m := range figure.FindAllStringIndex(text, -1) {
		// Not part of a word, a version (2.6.26) or an address (fd00:101::1).
		if m[0] > 0 && (isWordByte(text[m[0]-1]) || text[m[0]-1] == '.' || text[m[0]-1] == ':') ||
			m[1] < len(text) && (isWordByte(text[m[1]]) || text[m[1]] == ':' || text[m[1]] == '.' && m[1]+1 < len(text) && text[m[1]+1] >= '0' && text[m[1]+1] <= '9') {
			continue
		}
		n, err := strconv.Atoi(strings.ReplaceAll(text[m[0]:m[1]], ",", ""))
		if err == nil && n >= 100 {
			out = append(out, n)
		}
	}
	return out
}

func isWordByte(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b == '_'
}

// settings are the numbers a lab sets itself: MTUs and the MSS they give,
// sizes, limits, and whatever its setup commands say.
func settings(s Scenario) map[int]bool {
	m := map[int]bool{}
	add := func(ns ...int) {
		for _, n := range ns {
			if n > 0 {
				m[n] = true
			}
		}
	}
	mtu := func(v int) {
		v = mtuOr1500(v)
		add(v, v-40, v-52, v-60, v-72)
	}
	for _, h := range s.Hosts {
		mtu(h.NIC.MTU)
		if h.NIC.HWMTU > 0 {
			mtu(h.NIC.HWMTU)
		}
	}
	for _, rt := range s.Routers {
		for _, f := range rt.Ifaces {
			mtu(f.MTU)
			add(f.MaxReceive)
		}
		for _, f := range rt.Firewall {
			add(f.DropAbove, f.ClampMSS)
		}
	}
	for _, st := range s.Steps {
		add(int(st.Traffic.Bytes), st.Traffic.Size, st.Traffic.Size+8)
		for _, c := range st.Setup {
			add(figures(c.Run)...)
		}
		for _, c := range st.Router {
			if c.Firewall != nil {
				for _, f := range *c.Firewall {
					add(f.DropAbove, f.ClampMSS)
				}
			}
		}
	}
	return m
}

// seen are the numbers a step's packets show: payloads, IP lengths,
// fragment payloads, the MTUs ICMP errors name, the windows of SYNs.
func seen(pkts []view.Packet) map[int]bool {
	m := map[int]bool{}
	for _, p := range pkts {
		if !p.Valid {
			continue
		}
		m[p.Payload], m[p.IPLen], m[p.Len], m[p.IPLen-p.HdrLen] = true, true, true, true
		if p.Flags&view.FlagSYN != 0 {
			m[int(p.Window)] = true
		}
		if p.ICMP != nil {
			m[p.ICMP.MTU] = true
			if q := p.ICMP.Quote; q != nil {
				m[q.IPLen] = true
			}
		}
	}
	return m
}

// checkFigures: every figure in the intro, the descriptions and the
// explanations is one the run shows (the step's own packets for a step's
// text, any step's for the intro), one of the lab's settings, or a figure
// of the original story the text attributes to it (storyOnly).
func checkFigures(t *testing.T, s Scenario, res Result, recs []capture.Record) {
	t.Helper()
	set := settings(s)
	all := map[int]bool{}
	steps := make([]map[int]bool, len(res.Steps))
	for i, w := range res.Steps {
		var sub []capture.Record
		for _, r := range recs {
			if !r.TS.Before(w.Start) && !r.TS.After(w.End) {
				sub = append(sub, r)
			}
		}
		steps[i] = seen(view.Decode(sub))
		for k := range steps[i] {
			all[k] = true
		}
	}
	check := func(where, text string, ok map[int]bool) {
		for _, n := range figures(text) {
			if ok[n] || set[n] {
				continue
			}
			if why, ok := storyOnly[s.Name][n]; ok {
				t.Logf("%s: %d is %s", where, n, why)
				continue
			}
			t.Errorf("%s names %d, which the run does not show (nor the lab's settings):\n%s", where, n, text)
		}
	}
	check("the intro", s.Story, all)
	for i, st := range s.Steps {
		check(fmt.Sprintf("step %d's description", i+1), st.Description, steps[i])
		check(fmt.Sprintf("step %d's explanation", i+1), st.Explanation, steps[i])
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
		t.Fatal("chromium not found (CI=true): bash scripts/install-deps.sh")
	}
	t.Skip("chromium not found: bash scripts/install-deps.sh")
	return ""
}

// measure is run in the page: per picture its lanes, its drop marks, the
// texts that overlap, the smallest text and its size on screen.
const measure = `<script>
(function () {
  var out = [];
  document.querySelectorAll('section.step').forEach(function (sec, si) {
    var svg = sec.querySelector('svg.lanes');
    var table = sec.querySelector('table.drops[data-lost-seen]');
    var r = {step: si + 1, lostSeen: table ? +table.dataset.lostSeen : 0};
    if (svg) {
      var texts = Array.prototype.slice.call(svg.querySelectorAll('text'));
      var boxes = texts.map(function (t) { return t.getBoundingClientRect(); });
      var overlaps = [];
      for (var i = 0; i < boxes.length; i++) for (var j = i + 1; j < boxes.length; j++) {
        var a = boxes[i], b = boxes[j];
        if (a.width && b.width && a.left < b.right - 0.5 && b.left < a.right - 0.5 && a.top < b.bottom - 0.5 && b.top < a.bottom - 0.5)
          overlaps.push(texts[i].textContent + ' / ' + texts[j].textContent);
      }
      var minFont = 1e9, minText = '';
      texts.forEach(function (t) {
        var fs = parseFloat(getComputedStyle(t).fontSize) * t.getScreenCTM().a;
        if (fs < minFont) { minFont = fs; minText = t.textContent; }
      });
      var box = svg.getBoundingClientRect();
      r.lanes = Array.prototype.map.call(svg.querySelectorAll('g.lane'), function (g) { return g.querySelector('text').textContent; });
      r.lost = +svg.dataset.lost; r.lostDrawn = +svg.dataset.lostDrawn;
      r.crosses = svg.querySelectorAll('g.drop').length; r.ticks = svg.querySelectorAll('.drop-tick').length;
      r.overlaps = overlaps; r.minFont = minFont; r.minText = minText; r.width = box.width; r.height = box.height;
    }
    out.push(r);
  });
  var pre = document.createElement('pre');
  pre.id = 'vnic-measure';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
</script>`

type measured struct {
	Step      int      `json:"step"`
	LostSeen  int      `json:"lostSeen"`
	Lanes     []string `json:"lanes"`
	Lost      int      `json:"lost"`
	LostDrawn int      `json:"lostDrawn"`
	Crosses   int      `json:"crosses"`
	Ticks     int      `json:"ticks"`
	Overlaps  []string `json:"overlaps"`
	MinFont   float64  `json:"minFont"`
	MinText   string   `json:"minText"`
	Width     float64  `json:"width"`
	Height    float64  `json:"height"`
}

// checkReport renders the report in headless Chromium at 1024 px and
// checks every step's picture.
func checkReport(t *testing.T, s Scenario, report string) {
	t.Helper()
	bin := chromium(t)
	page, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	probe := filepath.Join(t.TempDir(), "measure.html")
	page = bytes.Replace(page, []byte("</body>"), []byte(measure+"</body>"), 1)
	if err := os.WriteFile(probe, page, 0o600); err != nil {
		t.Fatal(err)
	}
	// Equivalent to: chromium --headless --window-size=1024,768 --dump-dom file://measure.html
	cmd := exec.CommandContext(t.Context(), bin, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--user-data-dir="+t.TempDir(),
		"--window-size=1024,768", "--virtual-time-budget=5000", "--dump-dom", "file://"+probe)
	dom, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium --dump-dom: %v", err)
	}
	m := regexp.MustCompile(`(?s)<pre id="vnic-measure">(.*?)</pre>`).FindSubmatch(dom)
	if m == nil {
		t.Fatal("the measuring script did not run")
	}
	var steps []measured
	js := strings.NewReplacer("&quot;", `"`, "&amp;", "&", "&lt;", "<", "&gt;", ">", "&#39;", "'").Replace(string(m[1]))
	if err := json.Unmarshal([]byte(js), &steps); err != nil {
		t.Fatalf("%v: %s", err, js)
	}
	if len(steps) != len(s.Steps) {
		t.Fatalf("%d steps in the report, want %d", len(steps), len(s.Steps))
	}
	for i, st := range steps {
		where := fmt.Sprintf("report step %d", i+1)
		if st.Lanes == nil {
			t.Errorf("%s has no picture", where)
			continue
		}
		if st.Lost != st.LostSeen || st.Ticks != st.Lost || st.Crosses != st.LostDrawn {
			t.Errorf("%s: %d packets counted as not arrived, %d in the picture's data, %d marks on the whole-step strip, %d crosses for %d drawn",
				where, st.LostSeen, st.Lost, st.Ticks, st.Crosses, st.LostDrawn)
		}
		if st.LostSeen > 0 && st.Crosses == 0 {
			t.Errorf("%s: packets did not arrive but none is crossed out in the picture", where)
		}
		for _, rt := range s.Routers {
			if s.Steps[i].Traffic.Kind == TrafficSend && crosses(&s, &rt, s.Steps[i].Traffic) &&
				!slices.ContainsFunc(st.Lanes, func(l string) bool { return strings.HasPrefix(l, rt.Name+".") }) {
				t.Errorf("%s: no lane for router %s (lanes %v)", where, rt.Name, st.Lanes)
			}
		}
		if len(st.Overlaps) > 0 {
			t.Errorf("%s: %d texts overlap, e.g. %q", where, len(st.Overlaps), st.Overlaps[:min(3, len(st.Overlaps))])
		}
		if st.MinFont < 12 {
			t.Errorf("%s: a text is %.1f px at 1024 px wide: %q", where, st.MinFont, st.MinText)
		}
		if st.Width > 1024 || st.Height > 768 {
			t.Errorf("%s: the picture is %.0f × %.0f px: more than a 1024 × 768 screen", where, st.Width, st.Height)
		}
	}
}

// checkWireshark runs tshark's expert analysis on every per-point file.
func checkWireshark(t *testing.T, s Scenario, res Result) {
	t.Helper()
	tshark := tsharktest.Tool(t)
	files, _ := filepath.Glob(strings.TrimSuffix(res.Pcap, ".pcapng") + ".*.pcapng")
	if len(files) < 2*len(s.Hosts) {
		t.Fatalf("per-point files: %v", files)
	}
	// Labs where nothing is lost must show no TCP event at all.
	lossy := len(s.Routers) > 0
	for _, st := range s.Steps {
		for _, e := range st.Expect {
			if e.Kind == ExpectStalls || e.Kind == ExpectDrop && e.Reason != "" && strings.Contains(e.Reason, "Tcp") {
				lossy = true
			}
		}
	}
	reps := make([]tsharktest.Report, len(files))
	// A sending kernel may retransmit on its own on a loaded machine (a
	// tail-loss probe when an ACK comes late): its own capture (host-tx)
	// then shows the retransmission, which is real, not the NIC's doing,
	// and so are the receiver's duplicate ACK and what follows downstream.
	kernelRetrans := false
	for i, f := range files {
		reps[i] = tsharktest.Expert(t, tshark, f)
		if strings.HasSuffix(f, ".host-tx.pcapng") && reps[i].Events[tsharktest.Retrans] > 0 {
			kernelRetrans = true
		}
	}
	for i, f := range files {
		rep := reps[i]
		name := filepath.Base(f)
		if n := rep.Events[tsharktest.Malformed] + rep.Events[tsharktest.Overlap]; n > 0 {
			t.Errorf("%s: %d malformed packets or overlapping fragments", name, n)
		}
		for _, p := range rep.Phantoms {
			t.Errorf("%s: an event that did not happen: %s", name, p)
		}
		if lossy {
			continue
		}
		if n := rep.Events[tsharktest.OutOfOrder]; n > 0 {
			t.Errorf("%s: %d out-of-order segments in a lab where nothing is lost (the NIC never reorders): %v", name, n, rep.Events)
		}
		if n := rep.Events[tsharktest.Retrans] + rep.Events[tsharktest.DupACK]; n > 0 {
			if kernelRetrans {
				t.Logf("%s: %v: a sending kernel retransmitted on its own (its host-tx shows it)", name, rep.Events)
				continue
			}
			t.Errorf("%s: %d TCP analysis events in a lab where nothing is lost: %v", name, n, rep.Events)
		}
	}
}
