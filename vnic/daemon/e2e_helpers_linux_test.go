package daemon_test

// Helpers of the end-to-end tests in e2e_linux_test.go: a daemon in a
// fresh namespace, sockets dialled inside it, commands run inside it, a
// small IP/TCP/UDP parser for the capture, and the vnic binary.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"vnic/vnic/capture"
	"vnic/vnic/daemon"
	"vnic/vnic/kerneltest"
	"vnic/vnic/nsutil"
)

// binDir holds the vnic binary built once per package run (vnicBinary);
// TestMain removes it.
var (
	binOnce sync.Once
	binDir  string
	binPath string
	binErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// vnicBinary builds cmd/vnic once per test binary run and returns its path.
//
// Equivalent to: go build -o $TMP/vnic ./cmd/vnic
func vnicBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		goTool, err := exec.LookPath("go")
		if err != nil {
			goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
		}
		binDir, binErr = os.MkdirTemp("", "vnic-e2e-bin-")
		if binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "vnic")
		cmd := exec.Command(goTool, "build", "-o", binPath, "vnic/cmd/vnic")
		out, err := cmd.CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build -o %s vnic/cmd/vnic: %v\n%s", binPath, err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// uniqueNetns returns a fresh namespace name, "vnic-e2e-<hex>", and
// registers a last-resort cleanup that removes it should anything have
// left it behind (the tests check that nothing did).
func uniqueNetns(t *testing.T) string {
	t.Helper()
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	ns := "vnic-e2e-" + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		if nsutil.Exists(ns) {
			t.Errorf("namespace %s left behind; removing it", ns)
			_ = nsutil.Delete(ns)
		}
		_ = os.Remove(nsutil.RecordPath(ns))
		_ = os.Remove(daemon.ControlPath(ns, "vnic0"))
	})
	return ns
}

// logBuf collects a daemon's logs; they are shown only when the test
// fails.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// testDaemon is a daemon started for one test.
type testDaemon struct {
	*daemon.Daemon
	t    *testing.T
	ns   string
	pcap string
	logs *logBuf
	once sync.Once
}

// startDaemon starts a daemon in a fresh namespace with cfg (Netns, Pcap
// and Logger filled in; set cfg.Pcap to "-" to record nothing). Close is
// registered with t.Cleanup, followed by a check that the namespace is
// gone.
func startDaemon(t *testing.T, cfg daemon.Config) *testDaemon {
	t.Helper()
	kerneltest.RequireRoot(t)
	logs := &logBuf{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("daemon log:\n%s", logs.String())
		}
	})
	ns := uniqueNetns(t)
	cfg.Netns = ns
	if cfg.Mode == "" {
		cfg.Mode = e2eMode // TestE2ETAPMode runs the TUN tests again as TAP
	}
	switch cfg.Pcap {
	case "-":
		cfg.Pcap = ""
	case "":
		cfg.Pcap = filepath.Join(t.TempDir(), "vnic.pcapng")
	}
	cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	d, err := daemon.Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("daemon.Start(netns %s): %v\n%s", ns, err, logs.String())
	}
	td := &testDaemon{Daemon: d, t: t, ns: ns, pcap: cfg.Pcap, logs: logs}
	t.Cleanup(td.close)
	return td
}

// close closes the daemon (once) and checks that it removed its namespace
// and control socket.
func (d *testDaemon) close() {
	d.t.Helper()
	d.once.Do(func() {
		if err := d.Daemon.Close(); err != nil {
			d.t.Errorf("Close: %v", err)
		}
		if nsutil.Exists(d.ns) {
			d.t.Errorf("namespace %s still exists after Close", d.ns)
		}
		if _, err := os.Stat(nsutil.Path(d.ns)); err == nil {
			d.t.Errorf("%s still exists after Close", nsutil.Path(d.ns))
		}
		if _, err := os.Stat(d.Config().Control); err == nil {
			d.t.Errorf("control socket %s still exists after Close", d.Config().Control)
		}
	})
}

// records closes the daemon (flushing the capture) and reads its pcapng.
func (d *testDaemon) records() []capture.Record {
	d.t.Helper()
	d.close()
	recs, err := capture.ReadFile(d.pcap)
	if err != nil {
		d.t.Fatalf("reading the capture: %v", err)
	}
	if d.Config().Mode == daemon.ModeTAP {
		recs = ipRecords(recs)
	}
	return recs
}

// stats returns d.Stats() and checks that the capture dropped nothing, so
// that counting packets in the file means something.
func (d *testDaemon) stats() daemon.Stats {
	d.t.Helper()
	s := d.Stats()
	if s.Capture != nil && s.Capture.Dropped != 0 {
		d.t.Errorf("the capture dropped %d packets (writer behind): packet counts in the file are incomplete", s.Capture.Dropped)
	}
	return s
}

// dial connects from inside the namespace: the socket is created on a
// thread inside ns and stays there.
func dial(t *testing.T, ns, network, addr string) net.Conn {
	t.Helper()
	var c net.Conn
	err := nsutil.Do(ns, func() error {
		var err error
		c, err = net.DialTimeout(network, addr, 5*time.Second)
		return err
	})
	if err != nil {
		t.Fatalf("dial %s %s in netns %s: %v", network, addr, ns, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// localPort is the local port of a connection.
func localPort(c net.Conn) uint16 {
	return netip.MustParseAddrPort(c.LocalAddr().String()).Port()
}

// httpClient returns an HTTP client whose connections are dialled inside
// ns.
func httpClient(ns string) *http.Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var c net.Conn
			err := nsutil.Do(ns, func() error {
				var d net.Dialer
				var err error
				c, err = d.DialContext(ctx, network, addr)
				return err
			})
			return c, err
		},
		DisableKeepAlives: true,
	}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// download GETs /bytes/n from url's host and checks the body (byte i is i
// mod 251).
func download(t *testing.T, ns, host string, n int) {
	t.Helper()
	resp, err := httpClient(ns).Get(fmt.Sprintf("http://%s/bytes/%d", host, n))
	if err != nil {
		t.Fatalf("GET /bytes/%d: %v", n, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET /bytes/%d: reading the body after %d bytes: %v", n, len(body), err)
	}
	if resp.StatusCode != http.StatusOK || len(body) != n {
		t.Fatalf("GET /bytes/%d: status %s, %d bytes", n, resp.Status, len(body))
	}
	for i, b := range body {
		if b != byte(i%251) {
			t.Fatalf("GET /bytes/%d: byte %d is %d, want %d", n, i, b, i%251)
		}
	}
}

// upload POSTs n bytes to / and checks the peer counted them.
func upload(t *testing.T, ns, host string, n int) {
	t.Helper()
	resp, err := httpClient(ns).Post("http://"+host+"/", "application/octet-stream", bytes.NewReader(make([]byte, n)))
	if err != nil {
		t.Fatalf("POST / with %d bytes: %v", n, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if got := strings.TrimSpace(string(body)); resp.StatusCode != http.StatusOK || got != strconv.Itoa(n) {
		t.Fatalf("POST / with %d bytes: status %s, body %q", n, resp.Status, got)
	}
}

// readHTTPBody reads an HTTP response from c and returns its body.
func readHTTPBody(t *testing.T, c net.Conn) []byte {
	t.Helper()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("reading the HTTP response: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the HTTP body after %d bytes: %v", len(body), err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("HTTP status %s", resp.Status)
	}
	return body
}

// run runs a command with a timeout and returns its combined output.
func run(t *testing.T, timeout time.Duration, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// runStdout runs a command with a timeout and returns its standard output;
// the error carries its standard error.
func runStdout(t *testing.T, timeout time.Duration, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir()) // no user profile
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		err = fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	return string(out), err
}

// nsExec runs a command inside ns and fails the test if it fails.
//
// Equivalent to: ip netns exec NS name args...
func nsExec(t *testing.T, ns string, name string, args ...string) string {
	t.Helper()
	out, err := run(t, 30*time.Second, "ip", append([]string{"netns", "exec", ns, name}, args...)...)
	if err != nil {
		t.Fatalf("ip netns exec %s %s %s: %v\n%s", ns, name, strings.Join(args, " "), err, out)
	}
	return out
}

// needTool returns a tool's path, skipping the test without it (failing
// with CI=true).
func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s not found and CI=true: install it (make deps)", name)
	}
	t.Skipf("%s not found: make deps installs it", name)
	return ""
}

// waitFor polls cond every 10ms until it holds or timeout passes.
func waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// randomBytes returns n random bytes.
func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// echoCheck sends data to the echo service over c and checks that the
// same bytes come back.
func echoCheck(t *testing.T, c net.Conn, data []byte) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(data)
		errc <- err
	}()
	got := make([]byte, len(data))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("echo: read: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("echo: write: %v", err)
	}
	if !bytes.Equal(got, data) {
		i := 0
		for i < len(got) && got[i] == data[i] {
			i++
		}
		t.Fatalf("echo: %d bytes came back different from byte %d on", len(data), i)
	}
}

// Packet parsing for the capture: just enough IP, TCP and UDP.

const (
	protoICMP   = 1
	protoTCP    = 6
	protoUDP    = 17
	protoICMPv6 = 58
	tcpFIN      = 0x01
	tcpSYN      = 0x02
)

type pkt struct {
	v6           bool
	proto        uint8
	src, dst     netip.Addr
	sport, dport uint16
	tcpFlags     uint8
	seq          uint32
	l4           int // offset of the L4 header
	payload      int // L4 payload bytes (IP payload for fragments)
	frag         bool
	mss          int // the TCP MSS option, 0 if absent
}

// parse parses an IP packet; ok is false for anything it cannot read.
func parse(b []byte) (p pkt, ok bool) {
	if len(b) < 1 {
		return p, false
	}
	switch b[0] >> 4 {
	case 4:
		if len(b) < 20 {
			return p, false
		}
		ihl := int(b[0]&0xf) * 4
		tl := int(binary.BigEndian.Uint16(b[2:]))
		if ihl < 20 || tl > len(b) || ihl > tl {
			return p, false
		}
		b = b[:tl]
		p.proto = b[9]
		p.src = netip.AddrFrom4([4]byte(b[12:16]))
		p.dst = netip.AddrFrom4([4]byte(b[16:20]))
		fo := binary.BigEndian.Uint16(b[6:])
		p.frag = fo&0x2000 != 0 || fo&0x1fff != 0
		p.l4 = ihl
		if fo&0x1fff != 0 {
			p.payload = tl - ihl
			return p, true
		}
	case 6:
		if len(b) < 40 {
			return p, false
		}
		tl := 40 + int(binary.BigEndian.Uint16(b[4:]))
		if tl > len(b) {
			return p, false
		}
		b = b[:tl]
		p.v6 = true
		p.src = netip.AddrFrom16([16]byte(b[8:24]))
		p.dst = netip.AddrFrom16([16]byte(b[24:40]))
		next, off := b[6], 40
		for {
			switch next {
			case 0, 43, 60: // hop-by-hop, routing, destination options
				if off+8 > len(b) {
					return p, false
				}
				next, off = b[off], off+(int(b[off+1])+1)*8
				continue
			case 44: // fragment
				if off+8 > len(b) {
					return p, false
				}
				p.frag = true
				fo := binary.BigEndian.Uint16(b[off+2:]) &^ 7
				next, off = b[off], off+8
				if fo != 0 {
					p.proto, p.l4, p.payload = next, off, len(b)-off
					return p, true
				}
				continue
			}
			break
		}
		p.proto, p.l4 = next, off
	default:
		return p, false
	}
	l4 := b[p.l4:]
	switch p.proto {
	case protoTCP:
		if len(l4) < 20 {
			return p, false
		}
		p.sport, p.dport = binary.BigEndian.Uint16(l4), binary.BigEndian.Uint16(l4[2:])
		p.seq = binary.BigEndian.Uint32(l4[4:])
		p.tcpFlags = l4[13]
		doff := int(l4[12]>>4) * 4
		if doff < 20 || doff > len(l4) {
			return p, false
		}
		p.payload = len(l4) - doff
		opts := l4[20:doff]
		for len(opts) > 0 {
			if opts[0] == 0 {
				break
			}
			if opts[0] == 1 {
				opts = opts[1:]
				continue
			}
			if len(opts) < 2 || int(opts[1]) < 2 || int(opts[1]) > len(opts) {
				break
			}
			if opts[0] == 2 && opts[1] == 4 {
				p.mss = int(binary.BigEndian.Uint16(opts[2:]))
			}
			opts = opts[opts[1]:]
		}
	case protoUDP:
		if len(l4) < 8 {
			return p, false
		}
		p.sport, p.dport = binary.BigEndian.Uint16(l4), binary.BigEndian.Uint16(l4[2:])
		p.payload = len(l4) - 8
	default:
		p.payload = len(l4)
	}
	return p, true
}

// rec is a capture record with its parsed packet.
type rec struct {
	capture.Record
	pkt
}

func (r rec) String() string {
	return fmt.Sprintf("%s/%s len=%d proto=%d %d→%d flags=%#x payload=%d frag=%v %q",
		r.Point, r.Dir, r.Len, r.proto, r.sport, r.dport, r.tcpFlags, r.payload, r.frag, r.Comment)
}

// flow selects the records at point (and dir, unless DirUnknown) of the
// given L4 protocol that have port as source or destination port.
func flow(t *testing.T, recs []capture.Record, point capture.Point, dir capture.Dir, proto uint8, port uint16) []rec {
	t.Helper()
	var out []rec
	for _, r := range recs {
		if r.Point != point || (dir != capture.DirUnknown && r.Dir != dir) {
			continue
		}
		if len(r.Data) != r.Len {
			t.Fatalf("capture cut a packet: %d of %d bytes", len(r.Data), r.Len)
		}
		p, ok := parse(r.Data)
		if !ok || p.proto != proto || (p.sport != port && p.dport != port) {
			continue
		}
		out = append(out, rec{r, p})
	}
	return out
}

// data returns the records that carry payload.
func data(rs []rec) []rec {
	var out []rec
	for _, r := range rs {
		if r.payload > 0 {
			out = append(out, r)
		}
	}
	return out
}

// payloadSum sums the L4 payload of rs.
func payloadSum(rs []rec) int {
	n := 0
	for _, r := range rs {
		n += r.payload
	}
	return n
}

var gsoSizeRE = regexp.MustCompile(`gso_size=(\d+)`)

// gsoSize reads gso_size from a host-tx/host-rx comment.
func gsoSize(comment string) int {
	m := gsoSizeRE.FindStringSubmatch(comment)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

var mergedRE = regexp.MustCompile(`merged (\d+) wire packets?`)

// mergedCount reads "merged N wire packets" from a host-rx comment.
func mergedCount(comment string) int {
	m := mergedRE.FindStringSubmatch(comment)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// dump logs records, for failures.
func dump(t *testing.T, what string, rs []rec) {
	t.Helper()
	var b strings.Builder
	for i, r := range rs {
		if i == 60 {
			fmt.Fprintf(&b, "  ... %d more\n", len(rs)-i)
			break
		}
		fmt.Fprintf(&b, "  %s\n", r)
	}
	t.Logf("%s (%d):\n%s", what, len(rs), b.String())
}
