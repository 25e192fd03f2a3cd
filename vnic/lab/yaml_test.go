package lab

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// examples is where the documented scenario files are.
const examples = "../../docs/examples"

func TestMarshalLoadRoundTrip(t *testing.T) {
	for _, s := range Builtin() {
		b, err := Marshal(&s)
		if err != nil {
			t.Fatalf("%s: %v", s.Name, err)
		}
		got, err := Load(strings.NewReader(string(b)), s.Name+".yaml")
		if err != nil {
			t.Fatalf("%s: %v\n%s", s.Name, err, b)
		}
		if d := diff("", reflect.ValueOf(*got), reflect.ValueOf(s)); d != "" {
			t.Errorf("%s: round trip differs: %s\n%s", s.Name, d, b)
		}
	}
}

// TestMarshalReadable: durations and addresses are written the way a
// teacher would write them.
func TestMarshalReadable(t *testing.T) {
	s, _ := Lookup("tso-capture")
	s.Links[0].Impair = Impairments{Delay: 5_000_000, Jitter: 1500, Loss: 0.01}
	b, err := Marshal(&s)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"delay: 5ms", "jitter: 1.5µs", "- fd00::1/64", "sizes: [1448, 1448, 1448, 1448, 1448, 1448, 1312]", "loss: 0.01", "services: [discard]"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("Marshal lacks %q:\n%s", want, b)
		}
	}
	got, err := Load(strings.NewReader(string(b)), "x.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if d := diff("", reflect.ValueOf(*got), reflect.ValueOf(s)); d != "" {
		t.Errorf("round trip with impairments differs: %s", d)
	}
}

// diff is reflect.DeepEqual that takes a nil and an empty slice as
// equal (`links: []` reads back as an empty list), like cmp with
// cmpopts.EquateEmpty: "" when a and b are equal, else the first
// difference.
func diff(path string, a, b reflect.Value) string {
	switch a.Kind() {
	case reflect.Struct:
		for i := range a.NumField() {
			if d := diff(path+"."+a.Type().Field(i).Name, a.Field(i), b.Field(i)); d != "" {
				return d
			}
		}
		return ""
	case reflect.Slice:
		if a.Len() != b.Len() {
			return fmt.Sprintf("%s: %d vs %d elements", path, a.Len(), b.Len())
		}
		for i := range a.Len() {
			if d := diff(fmt.Sprintf("%s[%d]", path, i), a.Index(i), b.Index(i)); d != "" {
				return d
			}
		}
		return ""
	case reflect.Pointer:
		if a.IsNil() || b.IsNil() {
			if a.IsNil() != b.IsNil() {
				return fmt.Sprintf("%s: %v vs %v", path, a, b)
			}
			return ""
		}
		return diff(path, a.Elem(), b.Elem())
	}
	if !reflect.DeepEqual(a.Interface(), b.Interface()) {
		return fmt.Sprintf("%s: %#v vs %#v", path, a.Interface(), b.Interface())
	}
	return ""
}

func TestExamplesValid(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(examples, "*.y*ml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no scenario files in %s", examples)
	}
	for _, f := range files {
		s, err := LoadFile(f)
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		if base := strings.TrimSuffix(filepath.Base(f), filepath.Ext(f)); s.Name != base {
			t.Errorf("%s: name %q, want the file's name %q", f, s.Name, base)
		}
	}
}

// minimal is a valid scenario the error tests break one line of. Line
// numbers: 1 name, 2 hosts, 3 - name: ginger, 4 nic, 5 addrs, 6 mtu,
// 7 - name: basil, 8 nic, 9 services, 10 links, 11 - kind, 12 steps,
// 13 - name, 14 traffic, 15 expect.
const minimal = `name: mini
hosts:
  - name: ginger
    nic:
      addrs: [198.18.0.1/15]
      mtu: 1500
  - name: basil
    nic: {addrs: [198.18.0.2/15]}
    services: [discard]
links:
  - {kind: wire, a: ginger, b: basil}
steps:
  - name: send
    traffic: {kind: send, from: ginger, to: basil, bytes: 1000}
    expect: [{kind: bytes-arrive}]
`

// TestLoadSeveralNICs: a host with two NICs, each linked once, named
// host.nic; a Linux router host.
func TestLoadSeveralNICs(t *testing.T) {
	src := `name: two
hosts:
  - name: a
    nic: {addrs: [198.18.1.2/24]}
    routes: [198.18.2.0/24 via 198.18.1.1]
  - name: r
    forwarding: true
    nics:
      - {addrs: [198.18.1.1/24]}
      - {addrs: [198.18.2.1/24]}
  - name: b
    nic: {addrs: [198.18.2.2/24]}
    routes: [198.18.1.0/24 via 198.18.2.1]
    services: [discard]
links:
  - {kind: wire, a: a, b: r.eth0}
  - {kind: wire, a: r.eth1, b: b}
steps:
  - name: send
    traffic: {kind: send, from: a, to: b, bytes: 1000}
    expect: [{kind: bytes-arrive}, {kind: host-rx-above-mtu, host: r.eth0}]
`
	s, err := Load(strings.NewReader(src), "two.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if n := s.host("r").Nics(); len(n) != 2 || n[0].Name != "eth0" || n[1].Name != "eth1" || !s.host("r").Forwarding {
		t.Errorf("router host: %+v", s.host("r"))
	}
	twice := strings.Replace(src, "a: r.eth1, b: b", "a: r.eth0, b: b", 1)
	if _, err := Load(strings.NewReader(twice), "two.yaml"); err == nil || !strings.Contains(err.Error(), "NIC r.eth0 is already linked") {
		t.Errorf("a NIC linked twice: %v", err)
	}
	both := strings.Replace(src, "    forwarding: true\n", "    forwarding: true\n    nic: {addrs: [198.18.3.1/24]}\n", 1)
	if _, err := Load(strings.NewReader(both), "two.yaml"); err == nil || !strings.Contains(err.Error(), "give `nic` (one NIC) or `nics` (several), not both") {
		t.Errorf("nic and nics: %v", err)
	}
}

func TestLoadMinimal(t *testing.T) {
	s, err := Load(strings.NewReader(minimal), "mini.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if s.Hosts[0].NIC.MTU != 1500 || s.Steps[0].Traffic.Bytes != 1000 {
		t.Errorf("decoded %+v", s)
	}
}

func TestLoadErrors(t *testing.T) {
	for _, tc := range []struct {
		name     string
		old, new string
		want     []string // in the message
	}{
		{"unknown field", "      mtu: 1500", "      mtuu: 1500",
			[]string{"mini.yaml:6:7: hosts[0].nic: unknown field `mtuu`: did you mean `mtu`?"}},
		{"unknown field, far off", "      mtu: 1500", "      speed: 1000",
			[]string{"mini.yaml:6:7:", "unknown field `speed` (known: name, addrs, mtu, hw_mtu, model, mode)"}},
		{"bad address", "[198.18.0.2/15]", "[198.18.0.300/15]",
			[]string{`mini.yaml:8:19: hosts[1].nic.addrs[0]: "198.18.0.300/15": not an address/prefix, e.g. 198.18.0.1/15`}},
		{"address without prefix", "[198.18.0.1/15]", "[198.18.0.1]",
			[]string{"mini.yaml:5:15: hosts[0].nic.addrs[0]:", "not an address/prefix"}},
		{"bad duration", "  - {kind: wire, a: ginger, b: basil}", "  - {kind: wire, a: ginger, b: basil, impair: {delay: 5 seconds}}",
			[]string{"mini.yaml:11:55: links[0].impair.delay:", "not a duration", "e.g. 5ms"}},
		{"duration without unit", "  - {kind: wire, a: ginger, b: basil}", "  - {kind: wire, a: ginger, b: basil, impair: {delay: 5}}",
			[]string{"mini.yaml:11:55: links[0].impair.delay: the number 5 is not a duration"}},
		{"missing required field", "    traffic: {kind: send, from: ginger, to: basil, bytes: 1000}", "    traffic: {kind: send, to: basil, bytes: 1000}",
			[]string{"mini.yaml:14:14: steps[0].traffic: missing required field `from`"}},
		{"missing name", "name: mini\n", "",
			[]string{"mini.yaml:1:1: missing required field `name`"}},
		{"wrong type", "      mtu: 1500", "      mtu: big",
			[]string{`mini.yaml:6:12: hosts[0].nic.mtu: want a whole number (e.g. 1500), got the text "big"`}},
		{"quoted number", "bytes: 1000", `bytes: "1000"`,
			[]string{`mini.yaml:14:59: steps[0].traffic.bytes: want a whole number (e.g. 1500), got the text "1000"`}},
		{"list for a mapping", "    nic: {addrs: [198.18.0.2/15]}", "    nic: [198.18.0.2/15]",
			[]string{"mini.yaml:8:10: hosts[1].nic: want a mapping"}},
		{"unknown kind", "kind: bytes-arrive", "kind: bytes-arive",
			[]string{`mini.yaml:15:21: steps[0].expect[0].kind: unknown expectation "bytes-arive": did you mean "bytes-arrive"?`}},
		{"unknown host", "from: ginger", "from: gigner",
			[]string{`mini.yaml:14:33: steps[0].traffic.from: unknown host "gigner": did you mean "ginger"?`}},
		{"unknown service", "[discard]", "[dicsard]",
			[]string{`mini.yaml:9:16: hosts[1].services[0]: unknown service "dicsard"`}},
		{"repeated key", "      mtu: 1500", "      mtu: 1500\n      mtu: 9000",
			[]string{"mini.yaml:7:7: hosts[0].nic.mtu: repeated field (first at line 6)"}},
		{"bad mtu", "mtu: 1500", "mtu: 20",
			[]string{"mini.yaml:6:12: hosts[0].nic.mtu: 20 is not an MTU"}},
		{"link to a host of several NICs", "    nic: {addrs: [198.18.0.2/15]}", "    nics: [{addrs: [198.18.0.2/15]}, {addrs: [198.19.0.2/24]}]",
			[]string{"mini.yaml:11:32: links[0].b: host basil has 2 NICs: name one, e.g. basil.eth0"}},
		{"link to a NIC that is not there", "b: basil}", "b: basil.eth3}",
			[]string{`mini.yaml:11:32: links[0].b: host basil has no NIC "eth3" (it has eth0)`}},
		{"hw_mtu above mtu", "      mtu: 1500", "      mtu: 1500\n      hw_mtu: 9000",
			[]string{"mini.yaml:7:15: hosts[0].nic.hw_mtu: hw_mtu 9000 is above the mtu 1500"}},
		{"one address, two hosts", "[198.18.0.2/15]", "[198.18.0.1/15]",
			[]string{"mini.yaml:8:19: hosts[1].nic.addrs[0]: 198.18.0.1 is already hosts[0].nic's (line 5)"}},
		{"host name the namespace cannot take", "  - name: basil", "  - name: basil.lab",
			[]string{`mini.yaml:7:11: hosts[1].name: "basil.lab": use letters, digits`}},
		{"interface name the kernel refuses", "    nic: {addrs: [198.18.0.2/15]}", "    nic: {name: eth0-to-the-router, addrs: [198.18.0.2/15]}",
			[]string{`hosts[1].nic.name: "eth0-to-the-router": the kernel takes interface names of at most 15 characters`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := strings.Replace(minimal, tc.old, tc.new, 1)
			if src == minimal {
				t.Fatalf("%q not in the scenario", tc.old)
			}
			_, err := Load(strings.NewReader(src), "mini.yaml")
			if err == nil {
				t.Fatalf("accepted:\n%s", src)
			}
			var es Errors
			if !errors.As(err, &es) || len(es) == 0 || es[0].Line == 0 {
				t.Errorf("error without a position: %v", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error\n  %v\nlacks\n  %s", err, w)
				}
			}
		})
	}
}

func TestLoadSyntaxError(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{"name: x\nhosts: [\n", "broken.yaml:2:1: did not find expected node content: a [list] or {map} is not closed"},
		{"name: x\nhosts:\n\t- name: a\n", "broken.yaml:3:1: found character that cannot start any token: a tab: YAML indents with spaces only"},
		{"name: x\nsteps:\n  - run: ip route: x\n", "broken.yaml:3:"},
	} {
		_, err := Load(strings.NewReader(tc.src), "broken.yaml")
		var es Errors
		if err == nil || !errors.As(err, &es) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("syntax error in %q: %v, want %q (FILE:LINE:COLUMN: what and how to fix)", tc.src, err, tc.want)
		}
	}
	_, err := Load(strings.NewReader(""), "empty.yaml")
	if err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("empty file: %v", err)
	}
}

func TestLoadFileMissing(t *testing.T) {
	_, err := LoadFile(filepath.Join(t.TempDir(), "nope.yaml"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func TestSuggest(t *testing.T) {
	names := []string{"name", "addrs", "mtu", "hw_mtu", "model"}
	for in, want := range map[string]string{"mtuu": "mtu", "adrs": "addrs", "addr": "addrs", "hwmtu": "hw_mtu", "nmae": "name", "speed": "", "x": ""} {
		if got := suggest(in, names); got != want {
			t.Errorf("suggest(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestDocsExampleInSync: the worked example in docs/scenarios.md is the
// file in docs/examples.
func TestDocsExampleInSync(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join(examples, "..", "scenarios.md"))
	if err != nil {
		t.Fatal(err)
	}
	file, err := os.ReadFile(filepath.Join(examples, "tso-capture-jumbo.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(doc), "## A worked example")
	if !ok {
		t.Fatal("scenarios.md has no worked example")
	}
	_, block, _ := strings.Cut(after, "```yaml\n")
	block, _, _ = strings.Cut(block, "```\n")
	if block != string(file) {
		t.Error("the example in docs/scenarios.md differs from docs/examples/tso-capture-jumbo.yaml")
	}
}
