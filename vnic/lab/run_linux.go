package lab

import (
	"context"
	"crypto/rand"
	"encoding/hex"

	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gopacket/gopacket/layers"

	"vnic/vnic/capture"
	"vnic/vnic/nic"
	"vnic/vnic/nsutil"
	"vnic/vnic/packet"
	"vnic/vnic/peer"
	"vnic/vnic/safefile"
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
	ns      map[string]string         // host → namespace
	nics    map[string]*nic.NIC       // "host.nic" → NIC
	info    map[string]nicInfo        // "host.nic", a router's name → what expectations need
	addrs   map[string][]netip.Prefix // host, "host.nic" or peer → addresses
	discard map[string]*discardService
	wires   map[string]*wire.Wire // "a→b"
	routers map[string]*labRouter
	pcap    *capture.Writer
	tap     *capture.Tap // live capture of every NIC (vnic capture, the extcap)

	mu      sync.Mutex
	closers []func()
}

type stepRun struct {
	start, end time.Time
	// sendNIC and recvNIC are the NICs the traffic leaves and arrives by
	// ("host.nic"; recvNIC "" when it is not a lab host's).
	sendNIC, recvNIC string
	res              stepResult
	drops            map[string]uint64
	setupLog         []string
	trafficLog       string
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
	if os.Geteuid() != 0 {
		return res, ErrNotRoot
	}
	opt.normalize()
	cleanLeftovers(opt.Stdout, opt.Logger) // of runs killed earlier
	if err := safefile.MkdirAll(opt.Out, 0o755); err != nil {
		return res, fmt.Errorf("lab: --out %s: %w", opt.Out, err)
	}
	var rnd [3]byte
	_, _ = rand.Read(rnd[:])
	r := &runner{s: s, opt: opt, log: opt.Logger, suffix: hex.EncodeToString(rnd[:]),
		ns: map[string]string{}, nics: map[string]*nic.NIC{}, info: map[string]nicInfo{},
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
	if s.tap() {
		// The report reads IP packets; the pcap keeps the Ethernet
		// headers for Wireshark.
		recs = ipRecords(recs)
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
		// Recorded as this run's, so that if it is killed the next run
		// or `vnic lab clean` removes it (Clean).
		lease, err := nsutil.Use(ns, ownerPrefix+s.Name)
		if err != nil {
			return fmt.Errorf("lab: creating namespace %s: %w", ns, err)
		}
		if !lease.Created() {
			_, _ = lease.Release()
			return fmt.Errorf("lab: namespace %s exists already (not this run's): run again", ns)
		}
		r.ns[h.Name] = ns
		r.onClose(func() {
			if _, err := lease.Release(); err != nil {
				r.log.Warn("removing namespace", "netns", ns, "err", err)
			}
		})
	}

	var ifnames []string
	for _, h := range s.Hosts {
		for _, n := range h.Nics() {
			ifnames = append(ifnames, nicID(h.Name, n.Name))
		}
	}
	var err error
	co := capture.Options{Ifnames: ifnames, Block: true, Logger: r.log,
		Comment: "vnic lab run " + s.Name + ": " + s.Title, PointFile: capture.PointPath(pcapPath, true), Reorder: 200 * time.Millisecond}
	if s.tap() {
		co.LinkType = layers.LinkTypeEthernet
	}
	r.pcap, err = capture.Create(pcapPath, co)
	if err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	r.onClose(func() {
		if err := r.pcap.Close(); err != nil {
			r.log.Warn("closing the capture", "err", err)
		}
	})
	r.tap = r.listenTap()

	for _, h := range s.Hosts {
		for _, nc := range h.Nics() {
			id := nicID(h.Name, nc.Name)
			var addrs []netip.Prefix
			for _, a := range nc.Addrs {
				addrs = append(addrs, netip.MustParsePrefix(a)) // Validate checked them
			}
			r.addrs[id] = addrs
			r.addrs[h.Name] = append(r.addrs[h.Name], addrs...)
			if s.tap() {
				r.pcap.NIC(id).SetLinkType(layers.LinkTypeEthernet) // the live tap's too
			}
			n, err := nic.Open(ctx, nic.Options{Name: nc.Name, Netns: r.ns[h.Name], Addrs: addrs, MTU: nc.MTU,
				HWMTU: nc.HWMTU, Model: nic.Model(nc.Model), Mode: nic.Mode(nc.Mode), Capture: r.tap.Add(r.pcap.NIC(id), h.Name+"'s "+nc.Name), Logger: r.log.With("host", h.Name)})
			if err != nil {
				return fmt.Errorf("lab: host %s: %w", h.Name, err)
			}
			r.nics[id] = n
			o := n.Options()
			r.info[id] = nicInfo{ifname: id, mtu: o.MTU, hwMTU: o.HWMTU}
			r.onClose(func() {
				_ = n.Close()
				select {
				case <-n.Done():
				case <-time.After(2 * time.Second):
				}
			})
		}
		if h.Forwarding {
			// A Linux router: the kernel forwards between the host's
			// NICs, each with its own GRO.
			for _, kv := range [][2]string{{"net.ipv4.ip_forward", "1"}, {"net.ipv6.conf.all.forwarding", "1"}} {
				if err := nsutil.Sysctl(r.ns[h.Name], kv[0], kv[1]); err != nil {
					return fmt.Errorf("lab: host %s: %w", h.Name, err)
				}
			}
		}
	}

	for _, l := range s.Links {
		a := r.nicOf(l.A)
		switch l.Kind {
		case LinkWire:
			b := r.nicOf(l.B)
			ab, err := r.newWire(l, b)
			if err != nil {
				return err
			}
			ba, err := r.newWire(l, a)
			if err != nil {
				return err
			}
			r.wires[l.A+"→"+l.B], r.wires[l.B+"→"+l.A] = ab, ba
			a.Connect(nic.InjectFunc(ab.Send))
			b.Connect(nic.InjectFunc(ba.Send))
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
	for _, n := range r.nics {
		n.Start()
	}
	return ctx.Err()
}

// dropName is how a lab names a NIC's drop counter: its reason (the
// reasons tell the places apart), or for what the far end's NIC could
// not segment, "far end" and the reason.
func dropName(d nic.Drop) string {
	if d.Place == nic.FarTX.String() {
		return "far end " + d.Reason
	}
	return d.Reason
}

// listenTap offers the run's NICs live (vnic capture, the Wireshark
// extcap) as lab-NAME-SUFFIX/HOST.NIC@POINT; nil (and a warning) when it
// cannot.
func (r *runner) listenTap() *capture.Tap {
	t, err := capture.ListenTap(capture.TapPath("lab-"+r.s.Name+"-"+r.suffix), "vnic lab run "+r.s.Name, r.log)
	if err != nil {
		r.log.Warn("no live capture of the lab's NICs", "err", err)
		return nil
	}
	r.onClose(func() { _ = t.Close() })
	return t
}

func (r *runner) newWire(l Link, to *nic.NIC) (*wire.Wire, error) {
	im := l.Impair
	w, err := wire.New(wire.Options{Loss: im.Loss, Duplicate: im.Duplicate, Corrupt: im.Corrupt, Reorder: im.Reorder,
		Delay: im.Delay, Jitter: im.Jitter, Seed: im.Seed, Deliver: to.Inject})
	if err != nil {
		return nil, fmt.Errorf("lab: link %s–%s: %w", l.A, l.B, err)
	}
	r.onClose(w.Close)
	return w, nil
}

func (r *runner) newPeer(l Link, a *nic.NIC) error {
	var addrs []netip.Prefix
	for _, s := range l.PeerAddrs {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return fmt.Errorf("lab: peer %s: address %q: %w", l.B, s, err)
		}
		addrs = append(addrs, p)
	}
	if len(addrs) == 0 {
		for _, p := range r.addrs[r.nicKey(l.A)] {
			addrs = append(addrs, netip.PrefixFrom(p.Addr().Next(), p.Bits()))
		}
	}
	r.addrs[l.B] = addrs
	var mac net.HardwareAddr
	if a.Options().Mode == nic.ModeTAP {
		mac = nic.DefaultMAC(a.Options().Netns, "peer\x00"+l.B)
	}
	p, err := peer.New(peer.Options{Addrs: addrs, MTU: uint32(a.Options().MTU), GSOMaxSize: peer.MaxGSOSize,
		Output: a.Output, Logger: r.log.With("host", l.B), OnLinkOnly: true, GRO: true, MAC: mac})
	if err != nil {
		return fmt.Errorf("lab: peer %s: %w", l.B, err)
	}
	r.onClose(func() { _ = p.Close() })
	a.Connect(p)
	return nil
}

// ipRecords returns the records of a TAP lab's capture as IP packets
// (their Ethernet headers off, frames that are not IP left out).
func ipRecords(recs []capture.Record) []capture.Record {
	out := recs[:0:0]
	for _, rc := range recs {
		ip, ok := packet.EthernetIP(rc.Data)
		if !ok {
			continue
		}
		rc.Len -= len(rc.Data) - len(ip)
		rc.Data = ip
		out = append(out, rc)
	}
	return out
}

// nicKey resolves a reference to a NIC ("host.nic", or "host" for a host
// with one NIC; Validate checked it) to its nicID.
func (r *runner) nicKey(ref string) string {
	h, n, err := r.s.nicRef(ref)
	if err != nil {
		return ref
	}
	return nicID(h.Name, n.Name)
}

// nicOf returns the NIC a reference names.
func (r *runner) nicOf(ref string) *nic.NIC { return r.nics[r.nicKey(ref)] }

// hostNICs returns the nicIDs of host's NICs, in order.
func (r *runner) hostNICs(host string) []string {
	h := r.s.host(host)
	if h == nil {
		return nil
	}
	var ids []string
	for _, n := range h.Nics() {
		ids = append(ids, nicID(host, n.Name))
	}
	return ids
}

// routeNIC is the NIC of host the kernel sends to dst by (`ip route get
// DST`), or the host's first NIC.
func (r *runner) routeNIC(ctx context.Context, host string, dst netip.Addr) string {
	ids := r.hostNICs(host)
	if len(ids) == 0 {
		return ""
	}
	if len(ids) > 1 && dst.IsValid() {
		out, err := r.shell(ctx, host, "ip -o route get "+dst.String())
		if f := strings.Fields(out); err == nil {
			for i := 0; i+1 < len(f); i++ {
				if f[i] == "dev" {
					if id := nicID(host, f[i+1]); slices.Contains(ids, id) {
						return id
					}
				}
			}
		}
	}
	return ids[0]
}

// ownerNIC is the lab NIC whose addresses include a ("" for none).
func (r *runner) ownerNIC(a netip.Addr) string {
	for id := range r.nics {
		for _, p := range r.addrs[id] {
			if p.Addr() == a {
				return id
			}
		}
	}
	return ""
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
		ids := r.hostNICs(h.Name)
		for _, id := range ids {
			for _, d := range r.nics[id].Stats().Drops {
				m[id+": "+dropName(d)] += d.Packets
			}
		}
		for k, v := range kernelCounters(r.ns[h.Name]) {
			m[ids[0]+": "+k] = v
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

// ip runs `ip -n NS args...` for host, without a shell, so that what
// comes from a scenario file stays arguments to ip.
func (r *runner) ip(ctx context.Context, host string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"-n", r.ns[host]}, args...)...)
	cmd.Env = shellEnv()
	cmd.WaitDelay = 2 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("[%s] ip %s: %w: %s", host, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// shell runs command in host's namespace, as root, with only PATH, HOME,
// TERM and LANG of the caller's environment (shellEnv).
func (r *runner) shell(ctx context.Context, host, command string) (string, error) {
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", r.ns[host], "sh", "-c", command)
	cmd.Env = shellEnv()
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
		n := r.nicOf(m.Host)
		if err := n.SetModel(nic.Model(m.Model)); err != nil {
			return sr, fmt.Errorf("host %s: %w", m.Host, err)
		}
		host, _, _ := strings.Cut(m.Host, ".")
		sr.setupLog = append(sr.setupLog, fmt.Sprintf("[%s] vnic NIC model of %s → %s    (the daemon's own knob: no ethtool switch for this)", host, n.Name(), m.Model))
	}
	if len(st.Setup)+len(st.Router)+len(st.Models) > 0 {
		time.Sleep(50 * time.Millisecond) // let the NICs follow ethtool
		sr.start = time.Now()             // the window shows the traffic only
	}
	t := st.Traffic
	if dst, err := r.target(t); err == nil {
		sr.sendNIC, sr.recvNIC = r.routeNIC(ctx, t.From, dst), r.ownerNIC(dst)
	} else {
		sr.sendNIC = r.routeNIC(ctx, t.From, netip.Addr{})
	}
	switch t.Kind {
	case TrafficSend:
		dst, err := r.target(t)
		if err != nil {
			return sr, err
		}
		d := r.discard[t.To]
		if h, _, _ := strings.Cut(sr.recvNIC, "."); d == nil && h != "" {
			d = r.discard[h] // To is one of a host's addresses
		}
		var recv0, corrupt0 int64
		if d != nil {
			recv0, corrupt0 = d.bytes.Load(), d.corrupt.Load()
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
			sr.res.corrupt = d.corrupt.Load() - corrupt0
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
// HTML report. Per step the terminal gets a summary first — per capture
// point, what did not arrive and why, the events — then the side-by-side
// rows around the step's first interesting event (all of them with
// Options.Full), the expectations and the explanation, in Options.Width
// columns.
func (r *runner) report(recs []capture.Record, runs []stepRun, res Result) (Result, error) {
	w := r.opt.Stdout
	s := r.s
	width := r.opt.width()
	rep := view.Report{Title: s.Title, Scenario: s.Story}
	fmt.Fprintf(w, "lab %s: %s\n%s\n", s.Name, s.Title, wrap(s.Story, width))
	res.Passed = true
	hw := map[string]int{}
	for _, n := range r.info {
		hw[n.ifname] = n.hwMTU
	}
	for i, st := range s.Steps {
		sr := runs[i]
		res.Steps = append(res.Steps, StepWindow{Name: st.Name, Start: sr.start, End: sr.end})
		var sub []capture.Record
		for _, rec := range recs {
			if !rec.TS.Before(sr.start) && !rec.TS.After(sr.end) {
				sub = append(sub, rec)
			}
		}
		pkts := view.Decode(sub)
		opts := r.viewOptions(st, sr)
		if len(opts.Hops) == 0 && opts.Receiver != opts.Sender {
			// Hosts between them that are not the lab's gVisor routers
			// (a Linux router host's NICs): found in the capture.
			opts.Hops = view.PathHops(pkts, opts.Sender, opts.Receiver)
		}
		opts.Counters = s.counters(sr.drops, hw)
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
			host := sr.sendNIC
			if e.Host != "" {
				host = e.Host
				if _, ok := r.info[host]; !ok { // a NIC, not a router
					host = r.nicKey(host)
				}
			}
			x := evaluate(e, r.info[host], pkts, sr.res)
			exps = append(exps, x)
			res.Expectations++
			if !x.Pass {
				res.Failed++
				res.Passed = false
			}
		}

		fmt.Fprintf(w, "\n━━ Step %d/%d: %s ━━\n%s\n", i+1, len(s.Steps), st.Name, wrap(st.Description, width))
		for _, l := range sr.setupLog {
			fmt.Fprintln(w, wrapLog(l, width))
		}
		fmt.Fprintln(w, wrapLog(sr.trafficLog, width))
		fmt.Fprintln(w)
		textOpts := opts
		textOpts.Filter = nil
		textOpts.Width = width
		if !r.opt.Full {
			textOpts.MaxRows = maxRows
		}
		if err := view.WriteSummary(w, shown, textOpts); err != nil {
			return res, err
		}
		fmt.Fprintln(w)
		if err := view.SideBySide(w, shown, textOpts); err != nil {
			return res, err
		}
		fmt.Fprintln(w, "expectations:")
		for _, x := range exps {
			mark := "PASS"
			if !x.Pass {
				mark = "FAIL"
			}
			fmt.Fprintln(w, wrapIndent(fmt.Sprintf("  %s  %s — %s", mark, x.Text, x.Detail), width, 8))
		}
		fmt.Fprintf(w, "why:\n%s\n", wrap(st.Explanation, width))

		viewOpts := opts
		viewOpts.Filter = nil
		viewOpts.Width = 0
		rep.Steps = append(rep.Steps, view.Step{Name: st.Name, Description: st.Description, Explanation: st.Explanation,
			Packets: shown, View: viewOpts, Expectations: exps})
	}
	f, err := capture.CreateFile(res.Report)
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
	base := strings.TrimSuffix(res.Pcap, ".pcapng")
	fmt.Fprintf(w, "\nlab %s %s: %d of %d expectations hold\n", s.Name, verdict, res.Expectations-res.Failed, res.Expectations)
	fmt.Fprintln(w, wrapIndent("capture: "+base+".<host>.<nic>.<point>.pcapng, one file per capture point (use these for Wireshark's TCP analysis); "+
		res.Pcap+" has every point in time order, for the comments and the picture", width, 9))
	fmt.Fprintf(w, "report:  %s\n", res.Report)
	return res, nil
}

// maxRows is how many side-by-side rows a step prints without --full.
const maxRows = 32

// viewOptions: the sender's host-tx, its wire, the routers' interfaces on
// the way, the receiver's host-rx; only the traffic's protocol.
func (r *runner) viewOptions(st Step, sr stepRun) view.TextOptions {
	t := st.Traffic
	// The wire's MTU is the hardware's (the forcedeth NIC's 1500 under an
	// MTU of 9000): the summary counts host-tx packets above what the
	// wire can carry.
	o := view.TextOptions{Sender: sr.sendNIC, Receiver: sr.sendNIC, MTU: r.info[sr.sendNIC].hwMTU, Color: r.opt.Color}
	if sr.recvNIC != "" {
		o.Receiver = sr.recvNIC
		o.Hops = r.s.hops(sr.sendNIC, sr.recvNIC)
	}
	if t.IPv6 {
		o.MSS = o.MTU - 72
	}
	for _, e := range st.Expect {
		if strings.Contains(e.Kind, "checksums") || e.Reason == "kernel TcpInCsumErrors" {
			o.Checksums = true
		}
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

// clip cuts each line of s to width columns.
func clip(s string, width int) string {
	var b strings.Builder
	for i, l := range strings.Split(s, "\n") {
		if i > 0 {
			b.WriteString("\n")
		}
		if r := []rune(l); len(r) > width {
			l = string(r[:width-1]) + "~"
		}
		b.WriteString(l)
	}
	return b.String()
}

// wrapLog wraps each line of a command's log at width, continuation
// lines indented under it.
func wrapLog(s string, width int) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		ind := len(l) - len(strings.TrimLeft(l, " "))
		lines[i] = wrapIndent(l, width, ind+4)
	}
	return strings.Join(lines, "\n")
}

// wrapIndent wraps s at width, continuation lines indented.
func wrapIndent(s string, width, indent int) string {
	words := strings.Fields(s)
	lead := s[:len(s)-len(strings.TrimLeft(s, " "))]
	var b strings.Builder
	b.WriteString(lead)
	n := len(lead)
	for i, w := range words {
		lw := len([]rune(w))
		if i > 0 && n+1+lw > width {
			b.WriteString("\n" + strings.Repeat(" ", indent))
			n = indent
		} else if i > 0 {
			b.WriteString(" ")
			n++
		}
		b.WriteString(w)
		n += lw
	}
	return clip(b.String(), width)
}

func wrap(s string, width int) string {
	var b strings.Builder
	n := 0
	for _, w := range strings.Fields(s) {
		if n > 0 && n+1+len([]rune(w)) > width {
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
	lns   []net.Listener
	bytes atomic.Int64
	// corrupt counts the bytes read that differ from traffic.Pattern at
	// their offset: corruption that reached the application.
	corrupt atomic.Int64
	active  atomic.Int64
	mu      sync.Mutex
	conns   map[net.Conn]bool
	wg      sync.WaitGroup
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
				var off int64
				for {
					n, err := c.Read(buf)
					d.bytes.Add(int64(n))
					// What traffic.Send wrote is its pattern: count the
					// bytes the application got wrong.
					d.corrupt.Add(int64(traffic.PatternErrors(off, buf[:n])))
					off += int64(n)
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
