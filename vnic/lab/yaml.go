package lab

import (
	"bytes"
	"fmt"
	"io"
	"net/netip"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Error is one problem in a scenario file: where (file, line, column and
// the path of the key, e.g. hosts[1].nic.addrs[0]), what is wrong and,
// in Msg, what to do about it.
type Error struct {
	File         string
	Line, Column int
	// Path is the dotted path of the value, e.g. steps[0].traffic.kind
	// ("" for the document itself).
	Path string
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d:%d", e.Line, e.Column)
	}
	b.WriteString(": ")
	if e.Path != "" {
		b.WriteString(e.Path + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors are all the problems Load found in a file, in file order.
type Errors []*Error

func (es Errors) Error() string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

// maxErrors is how many problems Load reports before giving up.
const maxErrors = 20

// LoadFile reads the scenario file path (see Load).
func LoadFile(path string) (*Scenario, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	defer f.Close()
	return Load(f, path)
}

// Load reads one scenario in YAML from r; name is the file name used in
// the errors. Decoding is strict: an unknown key, a value of the wrong
// type, a bad address or duration, a missing required field or an
// unknown kind, host or service is an error, and the scenario must pass
// Validate. The error is an Errors with each problem's line and column
// and, where possible, a suggestion ("did you mean `mtu`?"), or a plain
// error for YAML that does not parse.
func Load(r io.Reader, name string) (*Scenario, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, Errors{syntaxError(name, data, err)}
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil, Errors{{File: name, Msg: "empty file: start from `vnic lab show tso-capture`"}}
	}
	c := &checker{file: name, nodes: map[string]*yaml.Node{}}
	root := doc.Content[0]
	c.nodes[""] = root
	c.walk(root, reflect.TypeFor[Scenario](), "")
	if len(c.errs) > 0 {
		return nil, c.errs
	}
	var s Scenario
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&s); err != nil {
		// The walk should have caught it; the decoder's messages carry
		// line numbers too.
		return nil, fmt.Errorf("%s: %s", name, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, Errors{c.errorAt(&extra, "", "a second YAML document (---): one scenario per file")}
	}
	c.semantic(&s)
	if len(c.errs) > 0 {
		slices.SortStableFunc(c.errs, func(a, b *Error) int {
			if a.Line != b.Line {
				return a.Line - b.Line
			}
			return a.Column - b.Column
		})
		return nil, c.errs
	}
	if err := s.Validate(); err != nil {
		return nil, Errors{{File: name, Msg: err.Error()}}
	}
	return &s, nil
}

// Marshal returns s as YAML, the format Load reads: `vnic lab show`.
func Marshal(s *Scenario) ([]byte, error) {
	var n yaml.Node
	if err := n.Encode(s); err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	flowLists(&n)
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(&n); err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	return b.Bytes(), nil
}

// flowLists writes lists of plain values on one line: sizes: [1448,
// 1448, 1312], services: [discard]. Lists with a ':' (IPv6 addresses)
// stay one per line, where they need no quotes.
func flowLists(n *yaml.Node) {
	if n.Kind == yaml.SequenceNode && len(n.Content) > 0 {
		flow := true
		for _, e := range n.Content {
			flow = flow && e.Kind == yaml.ScalarNode && len(e.Value) < 40 && !strings.ContainsAny(e.Value, ":#,[]{}'\"")
		}
		if flow {
			n.Style = yaml.FlowStyle
		}
	}
	for _, e := range n.Content {
		flowLists(e)
	}
}

// checker walks a document's nodes against the Go types, remembering
// every value's node by path for the semantic checks.
type checker struct {
	file  string
	errs  Errors
	nodes map[string]*yaml.Node
}

func (c *checker) errorAt(n *yaml.Node, path, format string, args ...any) *Error {
	e := &Error{File: c.file, Path: path, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		e.Line, e.Column = n.Line, n.Column
	}
	return e
}

func (c *checker) add(n *yaml.Node, path, format string, args ...any) {
	if len(c.errs) < maxErrors {
		c.errs = append(c.errs, c.errorAt(n, path, format, args...))
	}
}

// at returns the node of path or, when it is missing, of its nearest
// ancestor that is there.
func (c *checker) at(path string) *yaml.Node {
	for {
		if n, ok := c.nodes[path]; ok {
			return n
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			return c.nodes[""]
		}
		path = path[:i]
	}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

var durationType = reflect.TypeFor[time.Duration]()

// kindOf names a node's YAML kind for the messages.
func kindOf(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping (key: value)"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!str":
			return fmt.Sprintf("the text %q", n.Value)
		case "!!int", "!!float":
			return "the number " + n.Value
		case "!!bool":
			return "the boolean " + n.Value
		case "!!null":
			return "nothing (null)"
		}
		return fmt.Sprintf("%q", n.Value)
	}
	return "an unknown node"
}

// yamlName is a struct field's key, "" for a field YAML skips.
func yamlName(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	tag := f.Tag.Get("yaml")
	if tag == "-" {
		return ""
	}
	name, _, _ := strings.Cut(tag, ",")
	if name == "" {
		name = strings.ToLower(f.Name)
	}
	return name
}

// walk checks node n against type t.
func (c *checker) walk(n *yaml.Node, t reflect.Type, path string) {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	c.nodes[path] = n
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return // the zero value
	}
	switch t.Kind() {
	case reflect.Pointer:
		c.walk(n, t.Elem(), path)
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			c.add(n, path, "want a mapping (key: value lines), got %s", kindOf(n))
			return
		}
		fields := map[string]reflect.StructField{}
		var names []string
		for i := range t.NumField() {
			f := t.Field(i)
			if name := yamlName(f); name != "" {
				fields[name] = f
				names = append(names, name)
			}
		}
		seen := map[string]int{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			f, ok := fields[k.Value]
			if !ok {
				msg := fmt.Sprintf("unknown field `%s`", k.Value)
				if s := suggest(k.Value, names); s != "" {
					msg += fmt.Sprintf(": did you mean `%s`?", s)
				} else {
					msg += fmt.Sprintf(" (known: %s)", strings.Join(names, ", "))
				}
				c.add(k, path, "%s", msg)
				continue
			}
			if line, dup := seen[k.Value]; dup {
				c.add(k, join(path, k.Value), "repeated field (first at line %d): keep one", line)
				continue
			}
			seen[k.Value] = k.Line
			c.walk(v, f.Type, join(path, k.Value))
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			c.add(n, path, "want a list ([a, b] or lines starting with \"- \"), got %s", kindOf(n))
			return
		}
		for i, e := range n.Content {
			c.walk(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i))
		}
	default:
		if n.Kind != yaml.ScalarNode {
			c.add(n, path, "want a single value, got %s", kindOf(n))
			return
		}
		c.scalar(n, t, path)
	}
}

// scalar checks a scalar node against a basic type.
func (c *checker) scalar(n *yaml.Node, t reflect.Type, path string) {
	tag := n.ShortTag()
	switch {
	case t == durationType:
		if tag == "!!int" && n.Value == "0" {
			return
		}
		if _, err := time.ParseDuration(n.Value); err != nil || tag != "!!str" {
			c.add(n, path, "%s is not a duration: write a number with a unit, e.g. 5ms, 1.5s or 200us", kindOf(n))
		}
	case t.Kind() == reflect.String:
		// Any scalar reads as text.
	case t.Kind() == reflect.Bool:
		if tag != "!!bool" {
			c.add(n, path, "want true or false, got %s", kindOf(n))
		}
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Int64:
		if tag != "!!int" {
			c.add(n, path, "want a whole number (e.g. 1500), got %s", kindOf(n))
			return
		}
		if _, err := strconv.ParseInt(strings.ReplaceAll(n.Value, "_", ""), 0, t.Bits()); err != nil {
			c.add(n, path, "the number %s is out of range for this field", n.Value)
		}
	case t.Kind() == reflect.Float32 || t.Kind() == reflect.Float64:
		if tag != "!!float" && tag != "!!int" {
			c.add(n, path, "want a number (e.g. 0.01), got %s", kindOf(n))
		}
	}
}

// suggest returns the name closest to s when it is close enough to be
// a typo.
func suggest(s string, names []string) string {
	best, bestD := "", 0
	for _, n := range names {
		d := editDistance(strings.ToLower(s), n)
		if best == "" || d < bestD {
			best, bestD = n, d
		}
	}
	if best == "" || bestD > max(1, min(3, len(best)/3)) {
		// Also a prefix: "addr" for "addrs", "peer" for "peer_addrs".
		for _, n := range names {
			if len(s) >= 3 && (strings.HasPrefix(n, s) || strings.HasPrefix(s, n)) {
				return n
			}
		}
		return ""
	}
	return best
}

// editDistance is the edit distance of a and b (Levenshtein, with a
// swap of two neighbours counting as one edit: "nmae" is 1 from "name").
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	d := make([][]int, len(ra)+1)
	for i := range d {
		d[i] = make([]int, len(rb)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(ra); i++ {
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(ra)][len(rb)]
}

// nicModels are the NIC models Validate accepts.
var nicModels = []string{"standard", "tso-passthrough", "no-csum", "rx-csum-trusting"}

var scenarioName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)

// oneOf checks that the value at path is one of allowed.
func (c *checker) oneOf(path, v, what string, allowed []string) {
	if slices.Contains(allowed, v) {
		return
	}
	msg := fmt.Sprintf("unknown %s %q", what, v)
	if s := suggest(v, allowed); s != "" {
		msg += fmt.Sprintf(": did you mean %q?", s)
	}
	c.add(c.at(path), path, "%s (use one of: %s)", msg, strings.Join(allowed, ", "))
}

// required reports a missing (empty) field.
func (c *checker) required(path, v, hint string) bool {
	if v != "" {
		return true
	}
	if n, ok := c.nodes[path]; ok {
		c.add(n, path, "must not be empty: %s", hint)
	} else {
		i := strings.LastIndex(path, ".")
		c.add(c.at(path), path[:max(i, 0)], "missing required field `%s`: %s", path[i+1:], hint)
	}
	return false
}

// addrList matches the path of an element of an address list.
var addrList = regexp.MustCompile(`(^|\.)(addrs|peer_addrs)\[\d+\]$`)

// topName matches the name of an element of a top-level list.
var topName = regexp.MustCompile(`^[a-z_]+\[\d+\]\.name$`)

// prefix checks the ADDR/PREFIX a at path.
func (c *checker) prefix(path, a string) {
	pf, err := netip.ParsePrefix(a)
	switch {
	case err != nil:
		c.add(c.at(path), path, "%q: not an address/prefix, e.g. 198.18.0.1/15 or fd00::1/64", a)
	case pf.Addr().Zone() != "":
		c.add(c.at(path), path, "%q: no zones (%%...) in lab addresses", a)
	}
}

// owner names who an address list path belongs to: "hosts[1].nic" for
// hosts[1].nic.addrs[0].
func owner(path string) string {
	i := strings.LastIndex(path, ".")
	if i < 0 {
		return path
	}
	return path[:i]
}

// semantic checks the decoded scenario with the nodes' positions:
// required fields, kinds, addresses and the names that must refer to
// hosts.
func (c *checker) semantic(s *Scenario) {
	if c.required("name", s.Name, "the name `vnic lab run` takes, e.g. tso-jumbo") && !scenarioName.MatchString(s.Name) {
		c.add(c.at("name"), "name", "%q: use lower case letters, digits and '-', e.g. tso-jumbo", s.Name)
	}
	// Every list of addresses, wherever it is (NICs, peers, routers).
	var addrPaths []string
	for path, n := range c.nodes {
		if addrList.MatchString(path) && n.Kind == yaml.ScalarNode {
			addrPaths = append(addrPaths, path)
		}
	}
	slices.SortFunc(addrPaths, func(a, b string) int { return c.nodes[a].Line - c.nodes[b].Line })
	for _, path := range addrPaths {
		c.prefix(path, c.nodes[path].Value)
	}
	// The same address twice (two hosts, a host and a router...).
	first := map[netip.Addr]string{}
	for _, path := range addrPaths {
		pf, err := netip.ParsePrefix(c.nodes[path].Value)
		if err != nil {
			continue
		}
		if prev, ok := first[pf.Addr()]; ok {
			c.add(c.at(path), path, "%s is already %s's (line %d): every host, peer and router interface needs its own address",
				pf.Addr(), owner(prev), c.nodes[prev].Line)
			continue
		}
		first[pf.Addr()] = path
	}
	if len(s.Hosts) == 0 {
		c.add(c.at("hosts"), "hosts", "a scenario needs at least one host, e.g. hosts: [{name: ginger, nic: {addrs: [198.18.0.1/15]}}]")
	}
	hosts := map[string]bool{}
	for i, h := range s.Hosts {
		p := fmt.Sprintf("hosts[%d]", i)
		if c.required(p+".name", h.Name, "the host's name, e.g. ginger") {
			if hosts[h.Name] {
				c.add(c.at(p+".name"), p+".name", "host %q is already defined: give every host its own name", h.Name)
			} else if msg := checkName(h.Name); msg != "" {
				c.add(c.at(p+".name"), p+".name", "%s", msg)
			}
			hosts[h.Name] = true
		}
		nicPaths := []string{p + ".nic"}
		if len(h.NICs) > 0 {
			nicPaths = nil
			for j := range h.NICs {
				nicPaths = append(nicPaths, fmt.Sprintf("%s.nics[%d]", p, j))
			}
		}
		for j, n := range h.Nics() {
			np := nicPaths[j]
			if msg := checkIfname(n.Name); msg != "" {
				c.add(c.at(np+".name"), np+".name", "%s", msg)
			}
			if msg := checkHWMTU(n.HWMTU, n.MTU); msg != "" && n.HWMTU >= 68 && n.HWMTU <= 65535 {
				c.add(c.at(np+".hw_mtu"), np+".hw_mtu", "%s", msg)
			}
			if len(n.Addrs) == 0 {
				c.add(c.at(np+".addrs"), np, "missing required field `addrs`: the NIC's addresses, e.g. addrs: [198.18.0.1/15, fd00::1/64]")
			}
			for _, f := range []struct {
				key string
				v   int
			}{{"mtu", n.MTU}, {"hw_mtu", n.HWMTU}} {
				if f.v != 0 && (f.v < 68 || f.v > 65535) {
					path := np + "." + f.key
					c.add(c.at(path), path, "%d is not an MTU: use 68 to 65535 (1500 is Ethernet, 9000 jumbo frames)", f.v)
				}
			}
			if n.Model != "" {
				c.oneOf(np+".model", n.Model, "NIC model", nicModels)
			}
		}
		for j, sv := range h.Services {
			c.oneOf(fmt.Sprintf("%s.services[%d]", p, j), sv, "service", []string{"discard"})
		}
	}
	// Other named things at the top level (routers, ...) can be
	// traffic targets and expectation hosts too.
	peers := map[string]bool{}
	for path, n := range c.nodes {
		if topName.MatchString(path) && !strings.HasPrefix(path, "hosts[") && !strings.HasPrefix(path, "steps[") {
			peers[n.Value] = true
		}
	}
	names := func() []string {
		var out []string
		for _, h := range s.Hosts {
			out = append(out, h.Name)
		}
		for p := range peers {
			out = append(out, p)
		}
		slices.Sort(out)
		return slices.Compact(out)
	}
	isHost := func(path, v, hint string) {
		if c.required(path, v, hint) && !hosts[v] {
			var hs []string
			for _, h := range s.Hosts {
				hs = append(hs, h.Name)
			}
			c.oneOf(path, v, "host", hs)
		}
	}
	// isNIC checks a reference to a host's NIC: host.nic, or host for a
	// host with one NIC.
	isNIC := func(path, v, hint string) {
		if !c.required(path, v, hint) {
			return
		}
		if hn, _, _ := strings.Cut(v, "."); !hosts[hn] {
			isHost(path, hn, hint)
			return
		}
		if _, _, err := s.nicRef(v); err != nil {
			c.add(c.at(path), path, "%v", err)
		}
	}
	for i, l := range s.Links {
		p := fmt.Sprintf("links[%d]", i)
		if c.required(p+".kind", l.Kind, "wire (a cable between two hosts) or peer (a gVisor peer host)") {
			c.oneOf(p+".kind", l.Kind, "link kind", []string{LinkWire, LinkPeer})
		}
		isNIC(p+".a", l.A, "the host (or host.nic) at one end, e.g. ginger")
		switch l.Kind {
		case LinkWire:
			isNIC(p+".b", l.B, "the host (or host.nic) at the other end, e.g. basil")
		case LinkPeer:
			if c.required(p+".b", l.B, "the peer's name, e.g. basil") && hosts[l.B] {
				c.add(c.at(p+".b"), p+".b", "%q is a host: the peer needs a name of its own", l.B)
			}
			peers[l.B] = true
		}
		im := l.Impair
		for _, f := range []struct {
			key string
			v   float64
		}{{"loss", im.Loss}, {"duplicate", im.Duplicate}, {"corrupt", im.Corrupt}, {"reorder", im.Reorder}} {
			if f.v < 0 || f.v > 1 {
				path := p + ".impair." + f.key
				c.add(c.at(path), path, "%v is not a probability: use 0 to 1, e.g. 0.01 for 1%%", f.v)
			}
		}
		for _, f := range []struct {
			key string
			v   time.Duration
		}{{"delay", im.Delay}, {"jitter", im.Jitter}} {
			if f.v < 0 {
				path := p + ".impair." + f.key
				c.add(c.at(path), path, "%v: durations must not be negative", f.v)
			}
		}
	}
	if len(s.Steps) == 0 {
		c.add(c.at("steps"), "steps", "a scenario needs at least one step (traffic and expectations)")
	}
	for i, st := range s.Steps {
		p := fmt.Sprintf("steps[%d]", i)
		c.required(p+".name", st.Name, "the step's heading, e.g. GSO on")
		for j, cmd := range st.Setup {
			q := fmt.Sprintf("%s.setup[%d]", p, j)
			isHost(q+".host", cmd.Host, "the host whose namespace runs the command")
			c.required(q+".run", cmd.Run, "a shell command, e.g. ethtool -K eth0 gso off tso off")
		}
		t := st.Traffic
		q := p + ".traffic"
		if c.required(q+".kind", t.Kind, "send, ping or command") {
			c.oneOf(q+".kind", t.Kind, "traffic kind", []string{TrafficSend, TrafficPing, TrafficCommand})
		}
		isHost(q+".from", t.From, "the sending host")
		switch t.Kind {
		case TrafficSend, TrafficPing:
			if c.required(q+".to", t.To, "a host, a peer or an address, e.g. basil") {
				if _, err := netip.ParseAddr(t.To); err != nil && !hosts[t.To] && !peers[t.To] {
					c.oneOf(q+".to", t.To, "host, peer or address", names())
				}
			}
			if t.Size < 0 || t.Count < 0 {
				c.add(c.at(q), q, "size and count must not be negative")
			}
		case TrafficCommand:
			c.required(q+".command", t.Command, "a shell command run in the sender's namespace, e.g. ping -c1 198.18.0.2")
		}
		for j, e := range st.Expect {
			q := fmt.Sprintf("%s.expect[%d]", p, j)
			if c.required(q+".kind", e.Kind, "what to check, e.g. host-tx-above-mss") {
				c.oneOf(q+".kind", e.Kind, "expectation", expectKinds)
			}
			if hn, _, _ := strings.Cut(e.Host, "."); e.Host != "" && !hosts[hn] && !peers[e.Host] {
				c.oneOf(q+".host", e.Host, "host", names())
			} else if e.Host != "" && hosts[hn] {
				isNIC(q+".host", e.Host, "")
			}
			if (e.Kind == ExpectHostTXPayloads || e.Kind == ExpectHostRXPayloads) && len(e.Sizes) == 0 {
				c.add(c.at(q+".sizes"), q, "%s needs `sizes`, the payload lengths in order, e.g. sizes: [1448, 1448, 1104]", e.Kind)
			}
			if e.Kind == ExpectHostTXMax && e.Size <= 0 {
				c.add(c.at(q+".size"), q, "host-tx-max needs `size`, the largest payload allowed, e.g. size: 2896")
			}
		}
	}
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// syntaxError turns a YAML parse error into an Error at its line (the
// column of the line's first character; the parser gives no column) with
// what to do about the usual causes.
func syntaxError(name string, data []byte, err error) *Error {
	e := &Error{File: name, Msg: strings.TrimPrefix(err.Error(), "yaml: ")}
	m := yamlLine.FindStringSubmatch(err.Error())
	if m == nil {
		return e
	}
	e.Line, _ = strconv.Atoi(m[1])
	e.Column = 1
	what := m[2]
	lines := strings.Split(string(data), "\n")
	text := ""
	if e.Line >= 1 && e.Line <= len(lines) {
		text = lines[e.Line-1]
		e.Column = len(text) - len(strings.TrimLeft(text, " ")) + 1
	}
	hint := "check the YAML syntax on this line and the one before"
	switch {
	case strings.Contains(text, "\t"):
		hint = "a tab: YAML indents with spaces only"
	case strings.Contains(what, "mapping values are not allowed"):
		hint = "a value with ': ' in it: quote it, e.g. run: \"ip route add 198.18.2.0/24 dev eth0\""
	case strings.Contains(what, "did not find expected key"), strings.Contains(what, "did not find expected '-' indicator"):
		hint = "the indentation does not line up with the keys above: indent each level by the same number of spaces"
	case strings.Contains(what, "did not find expected node content"), strings.Contains(what, "did not find expected ',' or ']'"),
		strings.Contains(what, "did not find expected ',' or '}'"), strings.Contains(what, "unexpected end of stream"):
		hint = "a [list] or {map} is not closed, or a value is missing: close every [ with ] and { with }"
	case strings.Contains(what, "could not find expected ':'"):
		hint = "a key without ':' — write key: value"
	case strings.Contains(what, "found unknown escape character"), strings.Contains(what, "found unexpected end of stream"):
		hint = "a quoted string is not closed, or has a backslash: close the quotes, or use single quotes"
	}
	e.Msg = what + ": " + hint
	return e
}
