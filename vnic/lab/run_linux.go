package lab

import (
	"context"
	"crypto/rand"
	"encoding/hex"

	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"vnic/vnic/capture"
	"vnic/vnic/daemon"
	"vnic/vnic/nsutil"
	"vnic/vnic/peer"
	"vnic/vnic/traffic"
	"vnic/vnic/view"
	"vnic/vnic/wire"
)

// settle is how long a step waits after its traffic for the last ACKs
// and FINs to cross before its time window closes.
const settle = 200 * time.Millisecond

// runner is one run of a scenario.
type runner struct {
	s       Scenario
	opt     Options
	log     *slog.Logger
	suffix  string
	ns      map[string]string // host → namespace
	nics    map[string]*daemon.NIC
	info    map[string]nicInfo
	addrs   map[string][]netip.Prefix // host or peer → addresses
	discard map[string]*discardService
	wires   map[string]*wire.Wire // "a→b"
	routers map[string]*labRouter
	pcap    *capture.Writer

	mu      sync.Mutex
	closers []func()
}

type stepRun struct {
	start, end time.Time
	res        stepResult
	drops      map[string]uint64
	setupLog   []string
	trafficLog string
}

// Run runs scenario s: it creates a namespace and a vnic NIC per host,
// the links and services, runs every step, records one pcapng for the
// whole run, then removes everything (also on error and when ctx is
// cancelled) and evaluates, prints and writes the report. Result.Passed
// says whether every expectation held; err is for a run that could not be
// done.
func Run(ctx context.Context, s Scenario, opt Options) (res Result, err error) {
	if err := s.Validate(); err != nil {
		return res, err
	}
	opt.normalize()
	if err := os.MkdirAll(opt.Out, 0o755); err != nil {
		return res, fmt.Errorf("lab: --out %s: %w", opt.Out, err)
	}
	var rnd [3]byte
	_, _ = rand.Read(rnd[:])
	r := &runner{s: s, opt: opt, log: opt.Logger, suffix: hex.EncodeToString(rnd[:]),
		ns: map[string]string{}, nics: map[string]*daemon.NIC{}, info: map[string]nicInfo{},
		addrs: map[string][]netip.Prefix{}, discard: map[string]*discardService{}, wires: map[string]*wire.Wire{},
		routers: map[string]*labRouter{}}
	defer r.teardown()
	defer func() {
		for _, h := range s.Hosts {
			if ns := r.ns[h.Name]; ns != "" {
				res.Namespaces = append(res.Namespaces, ns)
			}
		}
	}()

	res.Pcap = filepath.Join(opt.Out, s.Name+".pcapng")
	res.Report = filepath.Join(opt.Out, "report.html")
	if err := r.setup(ctx, res.Pcap); err != nil {
		return res, err
	}
	runs := make([]stepRun, 0, len(s.Steps))
	for i := range s.Steps {
		sr, err := r.step(ctx, i)
		if err != nil {
			return res, fmt.Errorf("lab %s: step %d (%s): %w", s.Name, i+1, s.Steps[i].Name, err)
		}
		runs = append(runs, sr)
	}
	r.teardown() // flushes the capture
	recs, err := capture.ReadFile(res.Pcap)
	if err != nil {
		return res, fmt.Errorf("lab: reading back %s: %w", res.Pcap, err)
	}
	return r.report(recs, runs, res)
}

// namespace is the name of host's namespace in a run of scenario s:
// unique per run, so runs never collide and leftovers are recognisable.
func namespace(s, host, suffix string) string {
	return fmt.Sprintf("lab-%s-%s-%s", s, host, suffix)
}

func (r *runner) onClose(f func()) {
	r.mu.Lock()
	r.closers = append(r.closers, f)
	r.mu.Unlock()
}

// teardown undoes everything in reverse order; it may run twice.
func (r *runner) teardown() {
	r.mu.Lock()
	cs := r.closers
	r.closers = nil
	r.mu.Unlock()
	for i := len(cs) - 1; i >= 0; i-- {
		cs[i]()
	}
}

func (r *runner) setup(ctx context.Context, pcapPath string) error {
	s := r.s
	for _, h := range s.Hosts {
		ns := namespace(s.Name, h.Name, r.suffix)
		if _, err := nsutil.Create(ns); err != nil {
			return fmt.Errorf("lab: creating namespace %s: %w", ns, err)
		}
		r.ns[h.Name] = ns
		r.onClose(func() {
			if err := nsutil.Delete(ns); err != nil {
				r.log.Warn("removing namespace", "netns", ns, "err", err)
			}
		})
	}

	var ifnames []string
	for _, h := range s.Hosts {
		ifnames = append(ifnames, capName(h))
	}
	var err error
	r.pcap, err = capture.Create(pcapPath, capture.Options{Ifnames: ifnames, Block: true, Logger: r.log,
		Comment: "vnic lab run " + s.Name + ": " + s.Title})
	if err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	r.onClose(func() {
		if err := r.pcap.Close(); err != nil {
			r.log.Warn("closing the capture", "err", err)
		}
	})

	for _, h := range s.Hosts {
		var addrs []netip.Prefix
		for _, a := range h.NIC.Addrs {
			addrs = append(addrs, netip.MustParsePrefix(a)) // Validate checked them
		}
		r.addrs[h.Name] = addrs
		name := h.NIC.Name
		if name == "" {
			name = "eth0"
		}
		nic, err := daemon.OpenNIC(ctx, daemon.NICConfig{Name: name, Netns: r.ns[h.Name], Addrs: addrs, MTU: h.NIC.MTU,
			HWMTU: h.NIC.HWMTU, Model: h.NIC.Model, Capture: r.pcap.NIC(capName(h)), Logger: r.log.With("host", h.Name)})
		if err != nil {
			return fmt.Errorf("lab: host %s: %w", h.Name, err)
		}
		r.nics[h.Name] = nic
		cfg := nic.Config()
		r.info[h.Name] = nicInfo{ifname: capName(h), mtu: cfg.MTU, hwMTU: cfg.HWMTU}
		r.onClose(func() {
			_ = nic.Close()
			select {
			case <-nic.Done():
			case <-time.After(2 * time.Second):
			}
		})
	}

	for _, l := range s.Links {
		a := r.nics[l.A]
		switch l.Kind {
		case LinkWire:
			b := r.nics[l.B]
			ab, err := r.newWire(l, b)
			if err != nil {
				return err
			}
			ba, err := r.newWire(l, a)
			if err != nil {
				return err
			}
			r.wires[l.A+"→"+l.B], r.wires[l.B+"→"+l.A] = ab, ba
			a.Connect(daemon.InjectFunc(ab.Send))
			b.Connect(daemon.InjectFunc(ba.Send))
		case LinkPeer:
			if err := r.newPeer(l, a); err != nil {
				return err
			}
		}
	}

	if err := r.setupRouters(ctx); err != nil {
		return err
	}
	for _, h := range s.Hosts {
		for range h.Services { // only "discard" so far (Validate)
			d, err := startDiscard(r.ns[h.Name], traffic.PortDiscard)
			if err != nil {
				return fmt.Errorf("lab: host %s: discard service: %w", h.Name, err)
			}
			r.discard[h.Name] = d
			r.onClose(d.close)
		}
	}
	for _, h := range s.Hosts {
		r.nics[h.Name].Start()
	}
	return ctx.Err()
}

func (r *runner) newWire(l Link, to *daemon.NIC) (*wire.Wire, error) {
	im := l.Impair
	w, err := wire.New(wire.Options{Loss: im.Loss, Duplicate: im.Duplicate, Corrupt: im.Corrupt, Reorder: im.Reorder,
		Delay: im.Delay, Jitter: im.Jitter, Seed: im.Seed, Deliver: to.Inject})
	if err != nil {
		return nil, fmt.Errorf("lab: link %s–%s: %w", l.A, l.B, err)
	}
	r.onClose(w.Close)
	return w, nil
}

func (r *runner) newPeer(l Link, a *daemon.NIC) error {
	var addrs []netip.Prefix
	for _, s := range l.PeerAddrs {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return fmt.Errorf("lab: peer %s: address %q: %w", l.B, s, err)
		}
		addrs = append(addrs, p)
	}
	if len(addrs) == 0 {
		for _, p := range r.addrs[l.A] {
			addrs = append(addrs, netip.PrefixFrom(p.Addr().Next(), p.Bits()))
		}
	}
	r.addrs[l.B] = addrs
	p, err := peer.New(peer.Options{Addrs: addrs, MTU: uint32(a.Config().MTU), GSOMaxSize: peer.MaxGSOSize,
		Output: a.Output, Logger: r.log.With("host", l.B), OnLinkOnly: true, GRO: true})
	if err != nil {
		return fmt.Errorf("lab: peer %s: %w", l.B, err)
	}
	r.onClose(func() { _ = p.Close() })
	a.Connect(p)
	return nil
}

// capName is the NIC's name in the capture: host.ifname.
func capName(h Host) string {
	n := h.NIC.Name
	if n == "" {
		n = "eth0"
	}
	return h.Name + "." + n
}

// target returns To's address: a literal, or the host's (or peer's)
// first IPv4 (IPv6) address.
func (r *runner) target(t Traffic) (netip.Addr, error) {
	if a, err := netip.ParseAddr(t.To); err == nil {
		return a, nil
	}
	for _, p := range r.addrs[t.To] {
		if p.Addr().Is6() == t.IPv6 {
			return p.Addr(), nil
		}
	}
	fam := "IPv4"
	if t.IPv6 {
		fam = "IPv6"
	}
	return netip.Addr{}, fmt.Errorf("%s has no %s address", t.To, fam)
}

func (r *runner) drops() map[string]uint64 {
	m := map[string]uint64{}
	for _, h := range r.s.Hosts {
		for k, v := range r.nics[h.Name].Stats().Drops {
			m[capName(h)+": "+k] = v
		}
		for k, v := range kernelCounters(r.ns[h.Name]) {
			m[capName(h)+": "+k] = v
		}
	}
	for name, lr := range r.routers {
		for k, v := range lr.counters() {
			m[name+": "+k] = v
		}
	}
	for name, w := range r.wires {
		st := w.Stats()
		for k, v := range map[string]uint64{"lost": st.Lost, "corrupted": st.Corrupted, "duplicated": st.Duplicated, "discarded": st.Discarded} {
			if v > 0 {
				m["wire "+name+": "+k] = v
			}
		}
	}
	return m
}

// shell runs command in host's namespace.
func (r *runner) shell(ctx context.Context, host, command string) (string, error) {
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", r.ns[host], "sh", "-c", command)
	cmd.WaitDelay = 2 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("[%s] %s: %w: %s", host, command, err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

func (r *runner) step(ctx context.Context, i int) (stepRun, error) {
	st := r.s.Steps[i]
	sr := stepRun{start: time.Now(), res: stepResult{bytesRecv: -1, ipv6: st.Traffic.IPv6}}
	before := r.drops()
	for _, c := range st.Setup {
		out, err := r.shell(ctx, c.Host, c.Run)
		if err != nil {
			return sr, err
		}
		sr.setupLog = append(sr.setupLog, fmt.Sprintf("[%s]# %s%s", c.Host, c.Run, indent(out)))
	}
	for _, c := range st.Router {
		lines, err := r.routers[c.Router].apply(c)
		if err != nil {
			return sr, err
		}
		sr.setupLog = append(sr.setupLog, lines...)
	}
	for _, m := range st.Models {
		if err := r.nics[m.Host].SetModel(m.Model); err != nil {
			return sr, fmt.Errorf("host %s: %w", m.Host, err)
		}
		sr.setupLog = append(sr.setupLog, fmt.Sprintf("[%s] vnic NIC model of %s → %s    (the daemon's own knob: no ethtool switch for this)", m.Host, r.nics[m.Host].Name(), m.Model))
	}
	if len(st.Setup)+len(st.Router)+len(st.Models) > 0 {
		time.Sleep(50 * time.Millisecond) // let the NICs follow ethtool
		sr.start = time.Now()             // the window shows the traffic only
	}
	t := st.Traffic
	switch t.Kind {
	case TrafficSend:
		dst, err := r.target(t)
		if err != nil {
			return sr, err
		}
		d := r.discard[t.To]
		var recv0 int64
		if d != nil {
			recv0 = d.bytes.Load()
		}
		addr := net.JoinHostPort(dst.String(), fmt.Sprint(traffic.PortDiscard))
		res, err := traffic.Send(ctx, traffic.Options{Netns: r.ns[t.From], Addr: addr, Bytes: t.Bytes,
			Duration: t.Duration, Timeout: t.Timeout})
		if ctx.Err() != nil {
			return sr, ctx.Err()
		}
		sr.res.bytesWanted, sr.res.bytesSent, sr.res.err = t.Bytes, res.Bytes, err
		sr.res.duration = t.Duration
		if d != nil {
			d.waitIdle(time.Second)
			if d.active.Load() > 0 {
				// A stalled transfer: cut it off, so that what its
				// sender's kernel still retransmits is refused (RST)
				// rather than counted in the next step.
				d.abort()
			}
			sr.res.bytesRecv = d.bytes.Load() - recv0
		}
		sr.trafficLog = fmt.Sprintf("[%s] send %d bytes to %s: %d sent in %v%s", t.From, t.Bytes, addr, res.Bytes, res.Elapsed.Round(time.Microsecond), errNote(err))
	case TrafficPing:
		dst, err := r.target(t)
		if err != nil {
			return sr, err
		}
		count := max(t.Count, 1)
		got, err := traffic.Ping(ctx, r.ns[t.From], dst.String(), t.Size, count)
		if ctx.Err() != nil {
			return sr, ctx.Err()
		}
		sr.res.pings, sr.res.replies, sr.res.err = count, got, err
		sr.trafficLog = fmt.Sprintf("[%s] ping -c %d -s %d %s: %d replies%s", t.From, count, t.Size, dst, got, errNote(err))
	case TrafficCommand:
		out, err := r.shell(ctx, t.From, t.Command)
		if ctx.Err() != nil {
			return sr, ctx.Err()
		}
		sr.res.err = err
		sr.trafficLog = fmt.Sprintf("[%s]# %s%s", t.From, t.Command, indent(out))
	}
	time.Sleep(settle)
	sr.end = time.Now()
	after := r.drops()
	sr.drops = map[string]uint64{}
	for k, v := range after {
		if d := v - before[k]; d > 0 {
			sr.drops[k] = d
		}
	}
	sr.res.drops = sr.drops
	return sr, nil
}

func indent(out string) string {
	out = strings.TrimRight(out, "\n")
	if out == "" {
		return ""
	}
	return "\n    " + strings.ReplaceAll(out, "\n", "\n    ")
}

// report cuts the capture into steps, evaluates, prints and writes the
// HTML report.
func (r *runner) report(recs []capture.Record, runs []stepRun, res Result) (Result, error) {
	w := r.opt.Stdout
	s := r.s
	rep := view.Report{Title: s.Title, Scenario: s.Story}
	fmt.Fprintf(w, "lab %s: %s\n%s\n", s.Name, s.Title, wrap(s.Story, 100))
	res.Passed = true
	for i, st := range s.Steps {
		sr := runs[i]
		var sub []capture.Record
		for _, rec := range recs {
			if !rec.TS.Before(sr.start) && !rec.TS.After(sr.end) {
				sub = append(sub, rec)
			}
		}
		pkts := view.Decode(sub)
		opts := r.viewOptions(st)
		shown := pkts
		if opts.Filter != nil {
			shown = nil
			for _, p := range pkts {
				if opts.Filter(&p) {
					shown = append(shown, p)
				}
			}
		}
		var exps []view.ExpectationResult
		for _, e := range st.Expect {
			host := e.Host
			if host == "" {
				host = st.Traffic.From
			}
			x := evaluate(e, r.info[host], pkts, sr.res)
			exps = append(exps, x)
			res.Expectations++
			if !x.Pass {
				res.Failed++
				res.Passed = false
			}
		}

		fmt.Fprintf(w, "\n━━ Step %d/%d: %s ━━\n%s\n", i+1, len(s.Steps), st.Name, wrap(st.Description, 100))
		for _, l := range sr.setupLog {
			fmt.Fprintln(w, l)
		}
		fmt.Fprintln(w, sr.trafficLog)
		fmt.Fprintln(w)
		textOpts := opts
		textOpts.Filter = nil
		if err := view.SideBySide(w, shown, textOpts); err != nil {
			return res, err
		}
		fmt.Fprintf(w, "\ndrops: %s\n", dropsLine(sr.drops))
		fmt.Fprintln(w, "expectations:")
		for _, x := range exps {
			mark := "PASS"
			if !x.Pass {
				mark = "FAIL"
			}
			fmt.Fprintf(w, "  %s  %s — %s\n", mark, x.Text, x.Detail)
		}
		fmt.Fprintf(w, "why:\n%s\n", wrap(st.Explanation, 100))

		desc := st.Description
		rep.Steps = append(rep.Steps, view.Step{Name: st.Name, Description: desc, Explanation: st.Explanation,
			Packets: shown, View: textOpts, Drops: sr.drops, Expectations: exps})
	}
	f, err := os.Create(res.Report)
	if err != nil {
		return res, fmt.Errorf("lab: %w", err)
	}
	if err := view.WriteHTML(f, rep); err != nil {
		f.Close()
		return res, fmt.Errorf("lab: writing %s: %w", res.Report, err)
	}
	if err := f.Close(); err != nil {
		return res, fmt.Errorf("lab: %w", err)
	}
	verdict := "PASSED"
	if !res.Passed {
		verdict = "FAILED"
	}
	fmt.Fprintf(w, "\nlab %s %s: %d of %d expectations hold\ncapture: %s (tshark -r %s; interfaces <host>.<nic>@host-tx|wire|host-rx)\nreport:  %s\n",
		s.Name, verdict, res.Expectations-res.Failed, res.Expectations, res.Pcap, res.Pcap, res.Report)
	return res, nil
}

// viewOptions: the sender's host-tx, its wire, the receiver's host-rx,
// only the traffic's protocol.
func (r *runner) viewOptions(st Step) view.TextOptions {
	t := st.Traffic
	from := r.s.host(t.From)
	// The wire's MTU is the hardware's (the forcedeth NIC's 1500 under an
	// MTU of 9000): the summary counts host-tx packets above what the
	// wire can carry.
	o := view.TextOptions{Sender: capName(*from), Receiver: capName(*from), MTU: r.info[t.From].hwMTU, Color: r.opt.Color}
	if to := r.s.host(t.To); to != nil {
		o.Receiver = capName(*to)
	}
	if t.IPv6 {
		o.MSS = o.MTU - 72
	}
	switch t.Kind {
	case TrafficSend:
		// TCP, and the ICMP errors about it (a router's frag needed).
		o.Filter = func(p *view.Packet) bool {
			return p.Valid && (p.Proto == view.ProtoTCP || p.ICMP != nil && p.ICMP.Error)
		}
	case TrafficPing:
		o.Filter = func(p *view.Packet) bool { return !p.Valid || p.Proto == view.ProtoICMP || p.Proto == 58 }
	}
	return o
}

func dropsLine(m map[string]uint64) string {
	if len(m) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %d", k, m[k])
	}
	return b.String()
}

func wrap(s string, width int) string {
	var b strings.Builder
	n := 0
	for _, w := range strings.Fields(s) {
		if n > 0 && n+1+len(w) > width {
			b.WriteString("\n")
			n = 0
		} else if n > 0 {
			b.WriteString(" ")
			n++
		}
		b.WriteString(w)
		n += len(w)
	}
	return b.String()
}

// discardService is a TCP discard server (RFC 863) in a namespace: it
// reads each connection to EOF, counting, then closes it.
type discardService struct {
	lns    []net.Listener
	bytes  atomic.Int64
	active atomic.Int64
	mu     sync.Mutex
	conns  map[net.Conn]bool
	wg     sync.WaitGroup
}

func startDiscard(ns string, port int) (*discardService, error) {
	d := &discardService{conns: map[net.Conn]bool{}}
	// One listener per family: "tcp6" is IPV6_V6ONLY.
	if err := nsutil.Do(ns, func() error {
		for _, n := range []string{"tcp4", "tcp6"} {
			ln, err := net.Listen(n, fmt.Sprintf(":%d", port))
			if err != nil {
				return err
			}
			d.lns = append(d.lns, ln)
		}
		return nil
	}); err != nil {
		d.close()
		return nil, err
	}
	for _, ln := range d.lns {
		d.serve(ln)
	}
	return d, nil
}

func (d *discardService) serve(ln net.Listener) {
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			d.mu.Lock()
			d.conns[c] = true
			d.mu.Unlock()
			d.active.Add(1)
			d.wg.Add(1)
			go func() {
				defer d.wg.Done()
				defer d.active.Add(-1)
				buf := make([]byte, 64<<10)
				for {
					n, err := c.Read(buf)
					d.bytes.Add(int64(n))
					if err != nil {
						break
					}
				}
				_ = c.Close()
				d.mu.Lock()
				delete(d.conns, c)
				d.mu.Unlock()
			}()
		}
	}()
}

// waitIdle waits up to timeout for every connection to be done.
func (d *discardService) waitIdle(timeout time.Duration) {
	end := time.Now().Add(timeout)
	for d.active.Load() > 0 && time.Now().Before(end) {
		time.Sleep(5 * time.Millisecond)
	}
}

// abort closes the open connections (the listeners stay) and waits for
// their readers.
func (d *discardService) abort() {
	d.mu.Lock()
	for c := range d.conns {
		_ = c.Close()
	}
	d.mu.Unlock()
	d.waitIdle(time.Second)
}

func (d *discardService) close() {
	for _, ln := range d.lns {
		_ = ln.Close()
	}
	d.mu.Lock()
	for c := range d.conns {
		_ = c.Close()
	}
	d.mu.Unlock()
	d.wg.Wait()
}

// Options configure Run.
type Options struct {
	// Out is the directory for <scenario>.pcapng and report.html
	// (default "lab-out"); created if missing.
	Out string
	// Stdout receives the printed views (default os.Stdout).
	Stdout io.Writer
	// Logger receives the NICs' logs (default: warnings to stderr).
	Logger *slog.Logger
	// Color uses ANSI colours in the views.
	Color bool
}

func (o *Options) normalize() {
	if o.Out == "" {
		o.Out = "lab-out"
	}
	if o.Stdout == nil {
		o.Stdout = os.Stdout
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
}

// Result is a run's outcome.
type Result struct {
	// Passed: every expectation held.
	Passed bool
	// Expectations counts the expectations evaluated, Failed those that
	// did not hold.
	Expectations, Failed int
	// Pcap and Report are the files written.
	Pcap, Report string
	// Namespaces are the network namespaces the run created, one per host
	// (names unique to the run); every one is removed when Run returns.
	Namespaces []string
}
