// Command soak runs a vnic NIC at full speed in both directions for a long
// time and fails on any loss, growth or leak. It is `make soak` (10
// minutes; `make soak SOAK=60m` for longer), run as root; it is not part
// of CI.
//
// The run is a list of phases, each a fresh NIC (daemon.Start in a
// namespace of its own, removed after) with the same load on it:
//
//   - an upload into the peer's discard service (two TCP streams): every
//     byte the kernel accepted must reach the service (the peer's
//     Discarded counter);
//   - a download of GET /bytes/N from the peer's HTTP server, N at a time:
//     every body must be N bytes of the server's pattern;
//   - echo round trips of 1 MiB, compared byte for byte.
//
// Phases: "plain" (no capture), "capture" (a pcapng at --snaplen 128,
// for a fifth of the time, at most 2 minutes; the file is removed) and
// "pair" (below, as long as "capture"). Every
// 30 s a line reports throughput, the NIC's drops by reason, the kernel's
// TUN queue drops, the peer's retransmissions and the host's DSACKs, and
// the process's RSS, heap in use and goroutines. At the end of each phase
// the drops must be zero and the byte counts equal; over the run RSS, heap
// and goroutines must stay flat within each phase (the last sample at most
// 1.5× / +5 the first), and the open file descriptors and goroutines after
// the last NIC closed must be those before the first one. Exit status 1
// on any of those, 2 on a setup error.
//
// Phase "pair" is the same load across a pair (`vnic up --wire netns:B`):
// two vnic NICs, the far one in a second namespace where this program
// runs the three services itself (discard, echo, HTTP /bytes/N), so every
// byte is counted at both ends; the far NIC's drops count too.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"vnic/vnic/daemon"
	"vnic/vnic/nsutil"
	"vnic/vnic/traffic"

	"github.com/vishvananda/netlink"
)

func main() {
	dur := flag.Duration("duration", 10*time.Minute, "total soak time")
	every := flag.Duration("sample", 30*time.Second, "how often to report and sample memory")
	snaplen := flag.Int("snaplen", 128, "bytes of each packet the capture phase records")
	only := flag.String("phases", "plain,capture,pair", "the phases to run, comma-separated")
	flag.Parse()
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "soak: run as root (it creates network namespaces and TUN devices)")
		os.Exit(2)
	}
	if *dur < 2*time.Minute {
		fmt.Fprintln(os.Stderr, "soak: -duration below 2m leaves no room for warm-up and samples")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	tmp, err := os.MkdirTemp("", "vnic-soak-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(2)
	}
	defer os.RemoveAll(tmp)
	var ps []phase
	for _, p := range phases(*dur, *snaplen, tmp) {
		if slices.Contains(strings.Split(*only, ","), p.name) {
			ps = append(ps, p)
		}
	}
	if len(ps) == 0 {
		fmt.Fprintf(os.Stderr, "soak: -phases %q names none of plain, capture, pair\n", *only)
		os.Exit(2)
	}
	os.Exit(run(ctx, ps, *every))
}

// target is where a phase's load goes, as the host sees it.
type target struct {
	discard, echo, http string // host:port
}

// peerTarget is the daemon's gVisor peer.
var peerTarget = target{discard: "198.18.0.2:9", echo: "198.18.0.2:7", http: "198.18.0.2:80"}

// pairTarget is the far NIC of a pair, where the soak runs its own
// services (pairServers).
var pairTarget = target{discard: pairAddr + ":9", echo: pairAddr + ":7", http: pairAddr + ":80"}

// pairAddr is the far NIC's address (the daemon's default --peer).
const pairAddr = "198.18.0.2"

// phase is one NIC under the load for dur.
type phase struct {
	name string
	dur  time.Duration
	cfg  daemon.Config // Netns, Logger and a pair's Wire are filled in
	to   target
	pair bool // the far end is a second vnic NIC (--wire netns:B)
}

// phases splits the run: a fifth (at most 2 minutes) with capture on, a
// fifth (at most 2 minutes) across a pair, the rest through the peer
// without capture.
func phases(total time.Duration, snaplen int, tmp string) []phase {
	capDur := min(total/5, 2*time.Minute)
	return []phase{
		{name: "plain", dur: total - 2*capDur, to: peerTarget},
		{name: "capture", dur: capDur, to: peerTarget,
			cfg: daemon.Config{Pcap: filepath.Join(tmp, "soak.pcapng"), Snaplen: snaplen}},
		{name: "pair", dur: capDur, to: pairTarget, pair: true},
	}
}

func run(ctx context.Context, ps []phase, every time.Duration) int {
	// The runtime's network poller keeps two descriptors (epoll, eventfd)
	// from its first use on: start it before counting.
	if r, w, err := os.Pipe(); err == nil {
		r.Close()
		w.Close()
	}
	fds0, g0 := openFDs(), runtime.NumGoroutine()
	fmt.Printf("soak: %d phases, %v; before: %d fds, %d goroutines\n", len(ps), total(ps), fds0, g0)
	var failures []string
	for _, p := range ps {
		f, err := p.run(ctx, every)
		if err != nil {
			fmt.Fprintf(os.Stderr, "soak: phase %s: %v\n", p.name, err)
			return 2
		}
		failures = append(failures, f...)
		if ctx.Err() != nil {
			fmt.Fprintln(os.Stderr, "soak: interrupted")
			return 2
		}
	}
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()
	// Goroutines that end with a closed NIC may take a moment to go.
	var fds1, g1 int
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		fds1, g1 = openFDs(), runtime.NumGoroutine()
		if (fds1 <= fds0 && g1 <= g0) || time.Now().After(deadline) {
			break
		}
	}
	fmt.Printf("soak: after: %d fds (before %d), %d goroutines (before %d)\n", fds1, fds0, g1, g0)
	if fds1 != fds0 {
		failures = append(failures, fmt.Sprintf("open file descriptors: %d before, %d after", fds0, fds1))
	}
	if g1 > g0 {
		failures = append(failures, fmt.Sprintf("goroutines: %d before, %d after", g0, g1))
	}
	if len(failures) > 0 {
		fmt.Println("soak: FAIL")
		for _, f := range failures {
			fmt.Println("  -", f)
		}
		return 1
	}
	fmt.Println("soak: PASS")
	return 0
}

func total(ps []phase) time.Duration {
	var d time.Duration
	for _, p := range ps {
		d += p.dur
	}
	return d
}

// load is what the workers moved, in bytes.
type load struct {
	up, down, echo atomic.Int64
	errs           struct {
		sync.Mutex
		list []string
	}
}

func (l *load) fail(format string, args ...any) {
	l.errs.Lock()
	l.errs.list = append(l.errs.list, fmt.Sprintf(format, args...))
	l.errs.Unlock()
}

// sample is one report line's worth of counters.
type sample struct {
	at                 time.Duration
	up, down, echo     int64
	rss, heap          uint64
	goroutines         int
	drops              map[string]uint64
	tunDrop            uint64
	synRetrans         uint64 // SYNs and SYN-ACKs sent again, both ends
	listenDrops        uint64 // SYNs a listener dropped (the far end of a pair)
	retrans, rtos      uint64
	dsacks             uint64
	captured, capDrops uint64
}

func (p phase) run(ctx context.Context, every time.Duration) ([]string, error) {
	ns := fmt.Sprintf("vnic-soak-%d-%s", os.Getpid(), p.name)
	nsB := ns + "-b"
	cfg := p.cfg
	cfg.Netns = ns
	if p.pair {
		cfg.Wire = "netns:" + nsB
	}
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	d, err := daemon.Start(ctx, cfg)
	if err != nil {
		return nil, err
	}
	var srv *pairServers
	closed := false
	closeNIC := func() {
		if !closed {
			closed = true
			if srv != nil {
				srv.close()
			}
			d.Close()
		}
	}
	defer closeNIC()
	if p.pair {
		if srv, err = startPairServers(nsB); err != nil {
			return nil, err
		}
	}
	// received is what the discard service has counted.
	received := func(s daemon.Stats) uint64 {
		if srv != nil {
			return uint64(srv.discarded.Load())
		}
		return s.Peer.Discarded
	}
	h, err := nsutil.Handle(ns)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	var hB *netlink.Handle
	if p.pair {
		if hB, err = nsutil.Handle(nsB); err != nil {
			return nil, err
		}
		defer hB.Close()
	}
	s0 := d.Stats()
	recv0 := received(s0)
	read := func(at time.Duration, l *load) sample {
		s := d.Stats()
		k, _ := traffic.KernelCounters(ns)
		var retrans, rtos uint64
		if s.Peer != nil {
			retrans, rtos = s.Peer.Stack.TCPRetransmits, s.Peer.Stack.TCPTimeouts
		} else { // a pair: the far end is a kernel, with its own counters
			kb, _ := traffic.KernelCounters(nsB)
			retrans, rtos = kb["Tcp.RetransSegs"], kb["TcpExt.TCPTimeouts"]
		}
		var tun uint64
		if link, err := h.LinkByName(d.Config().Name); err == nil {
			tun = link.Attrs().Statistics.TxDropped
		}
		synRetrans, listenDrops := k["TcpExt.TCPSynRetrans"], k["TcpExt.ListenDrops"]
		if hB != nil { // the far NIC's kernel side too
			if link, err := hB.LinkByName(d.Config().Name); err == nil {
				tun += link.Attrs().Statistics.TxDropped
			}
			kb, _ := traffic.KernelCounters(nsB)
			synRetrans += kb["TcpExt.TCPSynRetrans"]
			listenDrops += kb["TcpExt.ListenDrops"]
		}
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		smp := sample{
			// The upload's live count is what the discard service got
			// (Send reports its own total only at the end).
			at: at, up: int64(received(s) - recv0), down: l.down.Load(), echo: l.echo.Load(),
			rss: rss(), heap: m.HeapInuse, goroutines: runtime.NumGoroutine(),
			drops: allDrops(s), tunDrop: tun, retrans: retrans, rtos: rtos,
			synRetrans: synRetrans, listenDrops: listenDrops,
			dsacks: k["TcpExt.TCPDSACKOldSent"] + k["TcpExt.TCPDSACKOfoSent"],
		}
		if s.Capture != nil {
			smp.captured, smp.capDrops = s.Capture.Written, s.Capture.Dropped
		}
		return smp
	}

	fmt.Printf("== phase %s: %v, netns %s%s\n", p.name, p.dur, ns, capNote(cfg))
	var l load
	lctx, cancel := context.WithTimeout(ctx, p.dur)
	defer cancel()
	var wg sync.WaitGroup
	var upRes traffic.Result
	wg.Go(func() { // upload: Send waits for the discard service to close, so every counted byte arrived
		var err error
		upRes, err = traffic.Send(context.Background(), traffic.Options{Netns: ns, Addr: p.to.discard, Duration: p.dur, Streams: 2})
		l.up.Store(upRes.Bytes)
		if err != nil {
			l.fail("upload: %v after %d bytes", err, upRes.Bytes)
		}
	})
	wg.Go(func() { download(lctx, ns, p.to.http, &l) })
	wg.Go(func() { echo(lctx, ns, p.to.echo, &l) })

	start := time.Now()
	first := read(0, &l)
	prev := first
	var samples []sample
	tick := time.NewTicker(every)
	for done := false; !done; {
		select {
		case <-tick.C:
		case <-lctx.Done():
			done = true
		}
		s := read(time.Since(start), &l)
		report(s, prev, first)
		samples = append(samples, s)
		prev = s
	}
	tick.Stop()
	wg.Wait()
	end := d.Stats()
	last := read(time.Since(start), &l)
	closeNIC()

	var f []string
	l.errs.Lock()
	f = append(f, l.errs.list...)
	l.errs.Unlock()
	discarded := int64(received(end) - recv0)
	fmt.Printf("   %s: up %d bytes sent, %d received by the discard service; down %d bytes in whole verified bodies; echo %d bytes compared\n",
		p.name, upRes.Bytes, discarded, l.down.Load(), l.echo.Load())
	peerDrops := "none (no gVisor peer)"
	if end.Peer != nil {
		peerDrops = fmt.Sprintf("%+v", end.Peer.Drops)
	}
	fmt.Printf("   %s: NIC drops %v; peer link drops %s; kernel TUN queue drops %d; far end's retransmissions %d (RTOs %d), host DSACKs %d, of %d packets the far end put on the wire\n",
		p.name, allDrops(end), peerDrops, last.tunDrop-first.tunDrop, last.retrans-first.retrans, last.rtos-first.rtos, last.dsacks-first.dsacks, end.WireIn.Packets-s0.WireIn.Packets)
	if end.Capture != nil {
		fmt.Printf("   %s: capture %d packets written, %d not recorded (the writer fell behind; counted, not traffic loss)\n", p.name, end.Capture.Written, end.Capture.Dropped)
	}
	if upRes.Bytes == 0 || upRes.Bytes != discarded {
		f = append(f, fmt.Sprintf("%s: upload sent %d bytes, the discard service received %d", p.name, upRes.Bytes, discarded))
	}
	if l.down.Load() == 0 || l.echo.Load() == 0 {
		f = append(f, fmt.Sprintf("%s: a direction moved nothing: down %d, echo %d", p.name, l.down.Load(), l.echo.Load()))
	}
	if m := allDrops(end); len(m) != 0 {
		f = append(f, fmt.Sprintf("%s: the NIC dropped %v", p.name, m))
	}
	if srv != nil {
		if e := srv.errors(); len(e) > 0 {
			f = append(f, fmt.Sprintf("%s: the far namespace's services: %s", p.name, strings.Join(e, "; ")))
		}
	}
	if end.Peer == nil {
		// A pair: the far NIC's drops are in allDrops.
	} else if n := end.Peer.Drops.Total(); n != 0 {
		f = append(f, fmt.Sprintf("%s: the peer's link dropped %d: %+v", p.name, n, end.Peer.Drops))
	}
	f = append(f, flat(p.name, samples)...)
	return f, nil
}

// allDrops is every drop the NICs counted, by place and reason; a pair's
// far NIC's prefixed "far/".
func allDrops(s daemon.Stats) map[string]uint64 {
	m := s.DropMap()
	if s.Far != nil {
		for k, v := range s.Far.DropMap() {
			m["far/"+k] = v
		}
	}
	return m
}

// pairServers are the services a pair's far namespace runs for the
// load, as the gVisor peer's: discard (port 9; counts what it read, then
// closes), echo (port 7; sends back what it read until the client's FIN)
// and HTTP GET /bytes/N (port 80; N bytes, byte i = i mod 251).
type pairServers struct {
	ls        []net.Listener
	http      *http.Server
	discarded atomic.Int64
	wg        sync.WaitGroup
	mu        sync.Mutex
	errs      []string
}

func startPairServers(ns string) (*pairServers, error) {
	s := &pairServers{}
	listen := func(port string) (net.Listener, error) {
		var l net.Listener
		err := nsutil.Do(ns, func() (err error) {
			l, err = net.Listen("tcp", net.JoinHostPort(pairAddr, port))
			return err
		})
		if err == nil {
			s.ls = append(s.ls, l)
		}
		return l, err
	}
	dl, err := listen("9")
	if err != nil {
		return nil, err
	}
	el, err := listen("7")
	if err != nil {
		s.close()
		return nil, err
	}
	hl, err := listen("80")
	if err != nil {
		s.close()
		return nil, err
	}
	s.serve(dl, func(c net.Conn) error {
		buf := make([]byte, 256<<10)
		for {
			n, err := c.Read(buf)
			s.discarded.Add(int64(n))
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return err
			}
		}
	})
	s.serve(el, func(c net.Conn) error {
		if _, err := io.Copy(c, c); err != nil {
			return err
		}
		return c.(*net.TCPConn).CloseWrite()
	})
	pattern := make([]byte, 251*256)
	for i := range pattern {
		pattern[i] = byte(i % 251)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /bytes/{n}", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.ParseInt(r.PathValue("n"), 10, 64)
		if err != nil || n < 0 {
			http.Error(w, "bad length", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		for n > 0 {
			k := min(n, int64(len(pattern)))
			if _, err := w.Write(pattern[:k]); err != nil {
				return
			}
			n -= k
		}
	})
	s.http = &http.Server{Handler: mux}
	s.wg.Go(func() { s.http.Serve(hl) })
	return s, nil
}

// serve runs handle on every connection l accepts, each closed after.
func (s *pairServers) serve(l net.Listener, handle func(net.Conn) error) {
	s.wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return // closed
			}
			s.wg.Go(func() {
				defer c.Close()
				// A client that stops at the end of the phase resets
				// its connections: that is not the service failing.
				if err := handle(c); err != nil && !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, syscall.EPIPE) && !errors.Is(err, net.ErrClosed) {
					s.mu.Lock()
					s.errs = append(s.errs, fmt.Sprintf("%v: %v", l.Addr(), err))
					s.mu.Unlock()
				}
			})
		}
	})
}

func (s *pairServers) errors() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.errs...)
}

func (s *pairServers) close() {
	if s.http != nil {
		s.http.Close()
	}
	for _, l := range s.ls {
		l.Close()
	}
	s.wg.Wait()
}

func capNote(cfg daemon.Config) string {
	if cfg.Pcap == "" {
		return ""
	}
	return fmt.Sprintf(", capture on (--snaplen %d)", cfg.Snaplen)
}

// flat checks that RSS, heap and goroutines did not grow within a phase:
// the first sample is taken after a full interval of load (windows grown,
// pools filled), the last may be at most 1.5× its memory and 5 more
// goroutines.
func flat(name string, samples []sample) []string {
	if len(samples) < 3 {
		return []string{fmt.Sprintf("%s: %d samples, too few to tell growth", name, len(samples))}
	}
	a, z := samples[0], samples[len(samples)-1]
	var f []string
	if float64(z.rss) > 1.5*float64(a.rss) {
		f = append(f, fmt.Sprintf("%s: RSS grew from %s to %s", name, mib(a.rss), mib(z.rss)))
	}
	if float64(z.heap) > 1.5*float64(a.heap) {
		f = append(f, fmt.Sprintf("%s: heap in use grew from %s to %s", name, mib(a.heap), mib(z.heap)))
	}
	if z.goroutines > a.goroutines+5 {
		f = append(f, fmt.Sprintf("%s: goroutines grew from %d to %d", name, a.goroutines, z.goroutines))
	}
	return f
}

func report(s, prev, first sample) {
	secs := (s.at - prev.at).Seconds()
	gbps := func(a, b int64) float64 {
		if secs <= 0 {
			return 0
		}
		return float64(a-b) * 8 / secs / 1e9
	}
	var drops []string
	for r, n := range s.drops {
		drops = append(drops, fmt.Sprintf("%s=%d", r, n))
	}
	sort.Strings(drops)
	capt := ""
	if s.captured+s.capDrops > 0 {
		capt = fmt.Sprintf(" capture %d written %d dropped;", s.captured-first.captured, s.capDrops-first.capDrops)
	}
	fmt.Printf("%6v up %5.2f down %5.2f echo %5.2f Gbit/s; drops NIC [%s] TUN %d;%s retrans %d (RTO %d, SYN %d) DSACK %d listen drops %d; RSS %s heap %s goroutines %d\n",
		s.at.Round(time.Second), gbps(s.up, prev.up), gbps(s.down, prev.down), gbps(s.echo, prev.echo),
		strings.Join(drops, " "), s.tunDrop-first.tunDrop, capt, s.retrans-first.retrans, s.rtos-first.rtos, s.synRetrans-first.synRetrans, s.dsacks-first.dsacks, s.listenDrops-first.listenDrops,
		mib(s.rss), mib(s.heap), s.goroutines)
}

func mib(b uint64) string { return fmt.Sprintf("%.1fMiB", float64(b)/(1<<20)) }

// download fetches GET /bytes/N over and over and checks each body: N
// bytes, byte i = i mod 251 (the peer's pattern).
func download(ctx context.Context, ns, addr string, l *load) {
	const n = 256 << 20
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, a string) (c net.Conn, err error) {
			err = nsutil.Do(ns, func() error {
				c, err = (&net.Dialer{}).DialContext(ctx, network, a)
				return err
			})
			return c, err
		},
	}}
	defer client.CloseIdleConnections()
	pattern := make([]byte, 251*256)
	for i := range pattern {
		pattern[i] = byte(i % 251)
	}
	buf := make([]byte, len(pattern))
	for ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/bytes/"+strconv.Itoa(n), nil)
		resp, err := client.Do(req)
		if err != nil {
			if !ended(ctx) {
				l.fail("download: %v", err)
			}
			return
		}
		var got int64
		for {
			k, err := io.ReadFull(resp.Body, buf)
			if k > 0 {
				off := int(got % int64(len(pattern)))
				// pattern has a whole number of periods, so a read that
				// starts at off continues it.
				if !bytes.Equal(buf[:k], pattern[off:off+k]) {
					l.fail("download: body differs from the pattern within bytes %d..%d", got, got+int64(k))
					resp.Body.Close()
					return
				}
				got += int64(k)
			}
			if err != nil {
				if (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)) && got == n {
					break
				}
				if !ended(ctx) {
					l.fail("download: %v after %d of %d bytes", err, got, n)
				}
				resp.Body.Close()
				return // the phase ended in the middle of a body: not counted
			}
		}
		resp.Body.Close()
		l.down.Add(got)
	}
}

// ended reports whether the phase is over: its context is done, or its
// deadline has passed — a dial or read that ran into the deadline can
// return ("i/o timeout") a moment before the context says it is done.
func ended(ctx context.Context) bool {
	d, ok := ctx.Deadline()
	return ctx.Err() != nil || ok && !time.Now().Before(d)
}

// echo sends 1 MiB round trips through the echo service and compares them.
func echo(ctx context.Context, ns, addr string, l *load) {
	data := make([]byte, 1<<20)
	rand.Read(data)
	for ctx.Err() == nil {
		err := traffic.Echo(ctx, traffic.Options{Netns: ns, Addr: addr, Write: 64 << 10}, data)
		if err != nil {
			if !ended(ctx) {
				l.fail("echo: %v", err)
			}
			return
		}
		l.echo.Add(int64(len(data)))
	}
}

// rss is the process's resident set size (VmRSS).
func rss() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseUint(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// openFDs counts the process's open file descriptors.
func openFDs() int {
	es, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(es) - 1 // the directory being read
}
