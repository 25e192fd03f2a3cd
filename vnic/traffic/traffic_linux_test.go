package traffic_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"vnic/vnic/daemon"
	"vnic/vnic/kerneltest"
	"vnic/vnic/nsutil"
	"vnic/vnic/traffic"
)

const (
	peer4 = "198.18.0.2"
	peer6 = "[fd00::2]"
)

// startDaemon brings a vnic up in a fresh namespace "vnic-tr-<hex>" that
// the daemon creates and, on Close in t.Cleanup, deletes.
func startDaemon(t *testing.T) (*daemon.Daemon, string) {
	t.Helper()
	kerneltest.RequireRoot(t)
	var b [4]byte
	rand.Read(b[:])
	ns := "vnic-tr-" + hex.EncodeToString(b[:])
	d, err := daemon.Start(context.Background(), daemon.Config{
		Netns:  ns,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatalf("daemon.Start: %v", err)
	}
	t.Cleanup(func() {
		d.Close()
		if nsutil.Exists(ns) {
			t.Errorf("netns %s still exists after Close", ns)
			nsutil.Delete(ns)
		}
	})
	return d, ns
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestSendBytesReachDiscard(t *testing.T) {
	d, ns := startDaemon(t)
	for _, tc := range []struct {
		addr    string
		streams int
		bytes   int64
	}{
		{peer4 + ":9", 1, 16 << 20},
		{peer4 + ":9", 3, 64<<20 + 12345},
		{peer6 + ":9", 2, 32 << 20},
	} {
		before := d.Stats().Peer.Discarded
		res, err := traffic.Send(ctxT(t, time.Minute), traffic.Options{Netns: ns, Addr: tc.addr, Bytes: tc.bytes, Streams: tc.streams})
		if err != nil {
			t.Fatalf("Send %s ×%d: %v", tc.addr, tc.streams, err)
		}
		got := d.Stats().Peer.Discarded - before
		t.Logf("Send %s ×%d: %v (peer discarded %d)", tc.addr, tc.streams, res, got)
		if res.Bytes != tc.bytes || int64(got) != tc.bytes {
			t.Errorf("Send %s ×%d: sent %d, peer discarded %d, want both %d", tc.addr, tc.streams, res.Bytes, got, tc.bytes)
		}
		if len(res.PerStream) != tc.streams || res.Gbps <= 0 || res.Elapsed <= 0 {
			t.Errorf("Send: bad result %+v", res)
		}
		for i, b := range res.PerStream {
			if b == 0 {
				t.Errorf("stream %d moved nothing", i)
			}
		}
	}
	if s := d.Stats(); s.HostTXSuper == 0 {
		t.Errorf("the NIC saw no TSO super-packets: %+v", s.HostTX)
	}
}

func TestSendDuration(t *testing.T) {
	d, ns := startDaemon(t)
	before := d.Stats().Peer.Discarded
	const dur = 700 * time.Millisecond
	res, err := traffic.Send(ctxT(t, time.Minute), traffic.Options{Netns: ns, Addr: peer6 + ":9", Duration: dur, Streams: 2})
	if err != nil {
		t.Fatal(err)
	}
	got := int64(d.Stats().Peer.Discarded - before)
	t.Logf("Send for %v: %v", dur, res)
	if res.Bytes == 0 || got != res.Bytes {
		t.Errorf("sent %d, peer discarded %d", res.Bytes, got)
	}
	if res.Elapsed < dur || res.Elapsed > dur+traffic.DefaultTimeout {
		t.Errorf("Elapsed %v for Duration %v", res.Elapsed, dur)
	}
}

func TestReceiveFromChargen(t *testing.T) {
	d, ns := startDaemon(t)
	for _, tc := range []struct {
		addr    string
		streams int
		bytes   int64
	}{
		{peer4 + ":19", 1, 8 << 20},
		{peer4 + ":19", 4, 64<<20 + 7},
		{peer6 + ":19", 2, 16 << 20},
	} {
		before := d.Stats().HostRX.Bytes
		res, err := traffic.Receive(ctxT(t, time.Minute), traffic.Options{Netns: ns, Addr: tc.addr, Bytes: tc.bytes, Streams: tc.streams})
		if err != nil {
			t.Fatalf("Receive %s ×%d: %v", tc.addr, tc.streams, err)
		}
		t.Logf("Receive %s ×%d: %v", tc.addr, tc.streams, res)
		if res.Bytes != tc.bytes {
			t.Errorf("received %d, want %d", res.Bytes, tc.bytes)
		}
		if rx := int64(hostRXSince(d, before, uint64(tc.bytes))); rx < tc.bytes {
			t.Errorf("the NIC handed the kernel %d bytes, fewer than the %d received", rx, tc.bytes)
		}
	}
	// For a duration: it stops after it, without error, and reports no
	// more than the NIC handed the host. How much that is in 300 ms is
	// the scheduler's business (a first segment lost at a full TUN queue
	// waits out gVisor's initial 1 s RTO); the counts above are exact.
	rx0 := d.Stats().HostRX.Bytes
	res, err := traffic.Receive(ctxT(t, time.Minute), traffic.Options{Netns: ns, Addr: peer4 + ":19", Duration: 300 * time.Millisecond})
	// The NIC counts a batch once its write returned, which can be just
	// after the reader got the bytes: give the count a moment.
	rx := hostRXSince(d, rx0, uint64(res.Bytes))
	t.Logf("Receive for 300ms: %v (the NIC handed the host %d bytes of packets)", res, rx)
	if err != nil || res.Elapsed < 300*time.Millisecond || uint64(res.Bytes) > rx {
		t.Errorf("Receive for 300ms: %v, %v; the NIC handed the host %d bytes", res, err, rx)
	}
	if s := d.Stats(); s.HostRXMerged == 0 {
		t.Errorf("no GRO-merged packets handed to the kernel: %+v", s.HostRX)
	}
}

// hostRXSince returns the bytes the NIC handed the host since it had
// counted from, once that is at least want or after 5 s. The NIC counts a
// batch when its write has returned, which can be just after the reader
// got the bytes.
func hostRXSince(d *daemon.Daemon, from, want uint64) uint64 {
	var rx uint64
	for end := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if rx = d.Stats().HostRX.Bytes - from; rx >= want || time.Now().After(end) {
			return rx
		}
	}
}

func TestEchoVerifies(t *testing.T) {
	_, ns := startDaemon(t)
	big := make([]byte, 3<<20+5)
	rand.Read(big)
	for _, tc := range []struct {
		addr    string
		streams int
		data    []byte
	}{
		{peer4 + ":7", 1, big},
		{peer4 + ":7", 3, big[:100000]},
		{peer6 + ":7", 1, big[:1<<20]},
		{peer4 + ":7", 1, []byte("x")},
		{peer4 + ":7", 1, nil},
	} {
		if err := traffic.Echo(ctxT(t, time.Minute), traffic.Options{Netns: ns, Addr: tc.addr, Streams: tc.streams, Write: 9000}, tc.data); err != nil {
			t.Errorf("Echo %s ×%d, %d bytes: %v", tc.addr, tc.streams, len(tc.data), err)
		}
	}
	// A server that returns something else is caught: chargen is not an
	// echo.
	err := traffic.Echo(ctxT(t, time.Minute), traffic.Options{Netns: ns, Addr: peer4 + ":19", Timeout: time.Second}, big[:1000])
	if err == nil || !strings.Contains(err.Error(), "differs") {
		t.Errorf("Echo against chargen: %v, want a 'differs' error", err)
	}
}

// udpLedger is where the datagrams of one UDPSend went, each counted at
// a named place: read by the peer's discard service, or dropped by the
// kernel (the TUN's queue was full: the NIC did not read in time), by the
// NIC, by the peer's link or by gVisor's UDP layer.
type udpLedger struct {
	sent      int64  // datagrams the sends made
	arrived   uint64 // datagrams the peer's discard service read
	bytes     uint64 // their payload bytes
	perFrame  int64  // datagrams in one frame the kernel hands the NIC
	tunDrop   uint64 // ip -s link show vnic0: TX dropped (frames)
	nicDrop   uint64 // daemon Stats().Drops (frames)
	linkDrop  uint64 // the peer's link, Stats().Peer.Drops
	udpDrop   uint64 // gVisor: UDP receive buffer full, bad checksum, malformed
	stackDrop uint64 // gVisor: IP malformed, DroppedPackets
}

// lost is the number of datagrams sent and not read by the peer.
func (l udpLedger) lost() int64 { return l.sent - int64(l.arrived) }

// counted is the most datagrams the drops counted can stand for: a frame
// dropped before segmentation carries perFrame of them.
func (l udpLedger) counted() int64 {
	return int64(l.tunDrop+l.nicDrop)*l.perFrame + int64(l.linkDrop+l.udpDrop+l.stackDrop)
}

func (l udpLedger) String() string {
	return fmt.Sprintf("%d datagrams sent: %d read by the peer (%d bytes); dropped: kernel TUN queue %d frames, NIC %d frames, peer link %d, gVisor UDP %d, gVisor IP %d (%d datagrams a frame)",
		l.sent, l.arrived, l.bytes, l.tunDrop, l.nicDrop, l.linkDrop, l.udpDrop, l.stackDrop, l.perFrame)
}

// udpCounters reads every counter of a udpLedger but sent and perFrame.
func udpCounters(t *testing.T, d *daemon.Daemon, h *netlink.Handle) udpLedger {
	t.Helper()
	l, err := h.LinkByName("vnic0")
	if err != nil {
		t.Fatalf("vnic0: %v", err)
	}
	s := d.Stats()
	var nic uint64
	for _, v := range s.Drops {
		nic += v.Packets
	}
	st := s.Peer.Stack
	return udpLedger{
		arrived:   s.Peer.DiscardedDatagrams,
		bytes:     s.Peer.Discarded,
		tunDrop:   l.Attrs().Statistics.TxDropped,
		nicDrop:   nic,
		linkDrop:  s.Peer.Drops.Total(),
		udpDrop:   st.UDPRcvBufErrors + st.UDPChecksumErrors + st.UDPMalformed,
		stackDrop: st.IPMalformed + st.Dropped,
	}
}

// udpAccount waits until every datagram of res is accounted for (read by
// the peer or counted as dropped), or 30 s, and returns the ledger of what
// happened since before.
func udpAccount(t *testing.T, d *daemon.Daemon, h *netlink.Handle, before udpLedger, res traffic.Result, perFrame int64) udpLedger {
	t.Helper()
	var l udpLedger
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		now := udpCounters(t, d, h)
		l = udpLedger{
			sent: res.Datagrams, perFrame: perFrame,
			arrived: now.arrived - before.arrived, bytes: now.bytes - before.bytes,
			tunDrop: now.tunDrop - before.tunDrop, nicDrop: now.nicDrop - before.nicDrop,
			linkDrop: now.linkDrop - before.linkDrop, udpDrop: now.udpDrop - before.udpDrop,
			stackDrop: now.stackDrop - before.stackDrop,
		}
		if l.lost() <= l.counted() || time.Now().After(deadline) {
			return l
		}
	}
}

// TestUDPSend: every datagram sent is read by the peer or counted as
// dropped at a named place. UDP promises nothing, and on a loaded machine
// the kernel drops at the TUN when the NIC's transmit loop is not
// scheduled for a while (the TUN has no backpressure: a full queue drops,
// ip -s link shows it as TX dropped); what must never happen is a
// datagram that vanishes uncounted.
func TestUDPSend(t *testing.T) {
	d, ns := startDaemon(t)
	h, err := nsutil.Handle(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	for _, tc := range []struct {
		addr  string
		gso   int
		write int
		bytes int64
	}{
		{peer4 + ":9", 1400, 0, 8 << 20},
		{peer4 + ":9", 0, 0, 4 << 20},
		{peer6 + ":9", 1200, 1200*10 + 100, 4 << 20},
	} {
		s0 := d.Stats()
		before := udpCounters(t, d, h)
		res, err := traffic.UDPSend(ctxT(t, time.Minute), traffic.Options{Netns: ns, Addr: tc.addr, Bytes: tc.bytes, Write: tc.write, Rate: 0.2}, tc.gso)
		if err != nil {
			t.Fatalf("UDPSend %s gso %d: %v", tc.addr, tc.gso, err)
		}
		perFrame := int64(1)
		if tc.gso > 0 {
			perFrame = 64 // traffic's default Write: 64 segments
			if tc.write > 0 {
				perFrame = int64((tc.write + tc.gso - 1) / tc.gso)
			}
		}
		l := udpAccount(t, d, h, before, res, perFrame)
		s1 := d.Stats()
		t.Logf("UDPSend %s gso %d: %v, %d sends; %v; NIC super-packets %d",
			tc.addr, tc.gso, res, res.Calls, l, s1.HostTXSuper-s0.HostTXSuper)
		if res.Bytes != tc.bytes {
			t.Errorf("sent %d bytes, want %d", res.Bytes, tc.bytes)
		}
		switch {
		case l.arrived == 0 || l.lost() < 0:
			t.Errorf("the peer read %d of %d datagrams", l.arrived, l.sent)
		case l.lost() > l.counted():
			t.Errorf("%d datagrams lost, at most %d counted as dropped: %v", l.lost(), l.counted(), l)
		case l.lost() == 0 && int64(l.bytes) != res.Bytes:
			t.Errorf("every datagram read, but %d bytes of %d", l.bytes, res.Bytes)
		case int64(l.bytes) > res.Bytes:
			t.Errorf("the peer read %d bytes of %d sent", l.bytes, res.Bytes)
		}
		supers := s1.HostTXSuper - s0.HostTXSuper
		if tc.gso > 0 && supers == 0 {
			t.Errorf("gso %d: the NIC saw no USO super-packets", tc.gso)
		}
		if tc.gso == 0 && res.Datagrams != res.Calls {
			t.Errorf("without GSO: %d datagrams in %d sends", res.Datagrams, res.Calls)
		}
		if tc.gso > 0 && res.Datagrams <= res.Calls {
			t.Errorf("gso %d: %d datagrams in %d sends", tc.gso, res.Datagrams, res.Calls)
		}
	}
	// Unpaced, for a duration.
	res, err := traffic.UDPSend(ctxT(t, time.Minute), traffic.Options{Netns: ns, Addr: peer4 + ":9", Duration: 300 * time.Millisecond}, 1472)
	if err != nil || res.Bytes == 0 {
		t.Errorf("UDPSend for 300ms: %v, %v", res, err)
	}
	// A GSO size beyond the MTU is refused by the kernel, not hung on.
	if _, err := traffic.UDPSend(ctxT(t, time.Minute), traffic.Options{Netns: ns, Addr: peer4 + ":9", Bytes: 1 << 20}, 9000); err == nil {
		t.Errorf("UDPSend with gso 9000 over MTU 1500: no error")
	}
}

// waitAddrUsable waits until addr is on dev in the handle's namespace and
// usable: not tentative (IPv6 duplicate address detection done), and
// delivered locally — the kernel's own route lookup (ip route get ADDR)
// answers with a local route. An IPv6 address added before the link came
// up shows without the tentative flag a moment before addrconf installs
// its local route; a reply to it in between is dropped as an address
// error (Ip6InAddrErrors).
func waitAddrUsable(t *testing.T, h *netlink.Handle, dev string, addr netip.Addr) {
	t.Helper()
	l, err := h.LinkByName(dev)
	if err != nil {
		t.Fatalf("%s: %v", dev, err)
	}
	family := netlink.FAMILY_V4
	if addr.Is6() {
		family = netlink.FAMILY_V6
	}
	usable := func() (bool, string) {
		addrs, err := h.AddrList(l, family)
		if err != nil {
			t.Fatalf("ip addr show %s: %v", dev, err)
		}
		found := false
		for _, a := range addrs {
			if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.Unmap() == addr && a.Flags&(unix.IFA_F_TENTATIVE|unix.IFA_F_DADFAILED) == 0 {
				found = true
			}
		}
		if !found {
			return false, fmt.Sprintf("not on %s (or tentative): %v", dev, addrs)
		}
		rs, err := h.RouteGet(addr.AsSlice())
		if err != nil || len(rs) == 0 || rs[0].Type != unix.RTN_LOCAL {
			return false, fmt.Sprintf("no local route yet (ip route get: %v, %v)", rs, err)
		}
		return true, ""
	}
	var why, why0 string
	start := time.Now()
	for deadline := start.Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		var ok bool
		if ok, why = usable(); ok {
			if why0 != "" {
				t.Logf("%v usable after %v (at first: %s)", addr, time.Since(start).Round(time.Millisecond), why0)
			}
			return
		}
		if why0 == "" {
			why0 = why
		}
	}
	t.Fatalf("%v not usable after 10 s: %s", addr, why)
}

// pingDrops sums the counters of every place an echo request or its reply
// can be dropped on the way host → NIC → peer → NIC → host: the kernel's
// TUN queue and receive path (ip -s link: TX and RX dropped), the NIC's
// drops (either direction), the peer's link and gVisor's IP layer, and the
// kernel's IP and ICMP input (kernelIPInDrops).
func pingDrops(t *testing.T, d *daemon.Daemon, h *netlink.Handle, ns string) map[string]uint64 {
	t.Helper()
	l, err := h.LinkByName("vnic0")
	if err != nil {
		t.Fatalf("vnic0: %v", err)
	}
	s := d.Stats()
	var nic uint64
	for _, v := range s.Drops {
		nic += v.Packets
	}
	ks := l.Attrs().Statistics
	return map[string]uint64{
		"kernel vnic0 TX dropped": ks.TxDropped,
		"kernel vnic0 RX dropped": ks.RxDropped,
		"NIC":                     nic,
		"peer link":               s.Peer.Drops.Total(),
		"gVisor IP":               s.Peer.Stack.IPMalformed + s.Peer.Stack.Dropped,
		"kernel IP input":         kernelIPInDrops(t, ns),
	}
}

// kernelIPInDrops sums the namespace's counters of received IPv4/IPv6
// packets and ICMP messages the kernel dropped (/proc/net/snmp, snmp6).
func kernelIPInDrops(t *testing.T, ns string) uint64 {
	t.Helper()
	k, err := traffic.KernelCounters(ns)
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, c := range []string{
		"Ip.InHdrErrors", "Ip.InAddrErrors", "Ip.InUnknownProtos", "Ip.InDiscards", "Icmp.InErrors",
		"Ip6.Ip6InHdrErrors", "Ip6.Ip6InAddrErrors", "Ip6.Ip6InNoRoutes", "Ip6.Ip6InTruncatedPkts", "Ip6.Ip6InDiscards", "Ip6.Ip6InUnknownProtos", "Icmp6.Icmp6InErrors",
	} {
		n += k[c]
	}
	return n
}

// pingPathKeys are the counters along an echo request's way and its
// reply's, in order: kernel, NIC, peer, NIC, kernel.
var pingPathKeys = []string{"kernel echo requests out", "NIC host-tx", "NIC wire out", "peer in", "peer echo replies", "peer out", "NIC wire in", "NIC host-rx", "kernel echo replies in"}

func pingPath(t *testing.T, d *daemon.Daemon, ns string) map[string]uint64 {
	t.Helper()
	k, err := traffic.KernelCounters(ns)
	if err != nil {
		t.Fatal(err)
	}
	s := d.Stats()
	return map[string]uint64{
		"kernel echo requests out": k["Icmp.OutEchos"] + k["Icmp6.Icmp6OutEchos"],
		"NIC host-tx":              s.HostTX.Packets,
		"NIC wire out":             s.WireOut.Packets,
		"peer in":                  s.Peer.In.Packets,
		"peer echo replies":        s.Peer.Stack.ICMPEchoReplies,
		"peer out":                 s.Peer.Out.Packets,
		"NIC wire in":              s.WireIn.Packets,
		"NIC host-rx":              s.HostRX.Packets,
		"kernel echo replies in":   k["Icmp.InEchoReps"] + k["Icmp6.Icmp6InEchoReplies"],
	}
}

// TestPing: every echo request is answered with its own payload, or its
// loss is counted at a named place. The address must be usable first (no
// pings into duplicate address detection); a reply a slow scheduler
// delays past its second is late, not lost.
func TestPing(t *testing.T) {
	d, ns := startDaemon(t)
	h, err := nsutil.Handle(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	for _, addr := range []string{"198.18.0.2", "fd00::2"} {
		local := netip.MustParseAddr("198.18.0.1")
		if strings.Contains(addr, ":") {
			local = netip.MustParseAddr("fd00::1")
		}
		waitAddrUsable(t, h, "vnic0", local)
		k0, _ := traffic.KernelCounters(ns)
		before, path0 := pingDrops(t, d, h, ns), pingPath(t, d, ns)
		r, err := traffic.PingDetail(ctxT(t, time.Minute), ns, addr, 1000, 3, 10*time.Second)
		after, path1 := pingDrops(t, d, h, ns), pingPath(t, d, ns)
		if r.Missing() > 0 {
			k1, _ := traffic.KernelCounters(ns)
			var changed []string
			for k, v := range k1 {
				if v != k0[k] {
					changed = append(changed, fmt.Sprintf("%s +%d", k, v-k0[k]))
				}
			}
			sort.Strings(changed)
			t.Logf("Ping %s: kernel counters that moved: %s", addr, strings.Join(changed, ", "))
		}
		var path []string
		for _, k := range pingPathKeys {
			path = append(path, fmt.Sprintf("%s +%d", k, path1[k]-path0[k]))
		}
		t.Logf("Ping %s, on the way: %s", addr, strings.Join(path, ", "))
		var dropped uint64
		where := ""
		for k, v := range after {
			if n := v - before[k]; n > 0 {
				dropped += n
				where += fmt.Sprintf(" %s %d", k, n)
			}
		}
		t.Logf("Ping %s: %v; dropped:%s", addr, r, where)
		switch {
		case err != nil:
			t.Errorf("Ping %s: %v", addr, err)
		case r.Sent != 3 || r.Bad != 0:
			t.Errorf("Ping %s: %v", addr, r)
		case uint64(r.Missing()) > dropped:
			t.Errorf("Ping %s: %v, and %d drops counted (%s): a reply lost nowhere", addr, r, dropped, where)
		}
	}
	// Nobody at .99: every request is lost, no error.
	start := time.Now()
	n, err := traffic.Ping(ctxT(t, time.Minute), ns, "198.18.0.99", 56, 1)
	if err != nil || n != 0 || time.Since(start) > 3*traffic.PingTimeout {
		t.Errorf("Ping nobody: %d, %v after %v", n, err, time.Since(start))
	}
}

func TestNothingHangs(t *testing.T) {
	d, ns := startDaemon(t)
	quick := 400 * time.Millisecond
	check := func(name string, f func() error, want string) {
		t.Helper()
		start := time.Now()
		err := f()
		el := time.Since(start)
		t.Logf("%s: %v after %v", name, err, el.Round(time.Millisecond))
		if err == nil || (want != "" && !strings.Contains(err.Error(), want)) {
			t.Errorf("%s: error %v, want one containing %q", name, err, want)
		}
		if el > quick+2*time.Second {
			t.Errorf("%s took %v", name, el)
		}
	}
	check("closed port", func() error {
		_, err := traffic.Send(context.Background(), traffic.Options{Netns: ns, Addr: peer4 + ":12345", Bytes: 1, Timeout: quick})
		return err
	}, "refused")
	check("nobody there", func() error {
		_, err := traffic.Send(context.Background(), traffic.Options{Netns: ns, Addr: "198.18.0.99:9", Bytes: 1, Timeout: quick})
		return err
	}, "timeout")
	check("silent server", func() error { // discard never sends
		_, err := traffic.Receive(context.Background(), traffic.Options{Netns: ns, Addr: peer4 + ":9", Bytes: 1 << 20, Timeout: quick})
		return err
	}, "no progress")
	check("echo from a server that says more", func() error { // chargen
		return traffic.Echo(context.Background(), traffic.Options{Netns: ns, Addr: peer4 + ":19", Timeout: quick}, nil)
	}, "more came back")
	check("echo to a server that closes", func() error { // discard
		return traffic.Echo(context.Background(), traffic.Options{Netns: ns, Addr: peer4 + ":9", Timeout: quick}, []byte("hello"))
	}, "closed after 0 of 5 bytes")

	// A server that accepts and then neither reads nor writes nor closes,
	// inside the namespace (on vnic0's own address, through lo).
	h, err := nsutil.Handle(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if lo, err := h.LinkByName("lo"); err != nil || h.LinkSetUp(lo) != nil {
		t.Fatalf("lo up: %v", err)
	}
	var ln net.Listener
	if err := nsutil.Do(ns, func() (err error) {
		ln, err = net.Listen("tcp", "198.18.0.1:0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	accepted := make(chan struct{})
	defer func() { ln.Close(); <-accepted }()
	go func() {
		defer close(accepted)
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	mute := ln.Addr().String()
	check("mute echo", func() error {
		return traffic.Echo(context.Background(), traffic.Options{Netns: ns, Addr: mute, Timeout: quick}, []byte("hello"))
	}, "no progress")
	check("mute echo with Duration", func() error {
		return traffic.Echo(context.Background(), traffic.Options{Netns: ns, Addr: mute, Duration: quick}, []byte("hello"))
	}, "not done within")
	check("mute sink", func() error { // writes fill the buffers, then stall
		_, err := traffic.Send(context.Background(), traffic.Options{Netns: ns, Addr: mute, Bytes: 1 << 30, Timeout: quick})
		return err
	}, "no progress")
	check("sink that does not close", func() error {
		_, err := traffic.Send(context.Background(), traffic.Options{Netns: ns, Addr: mute, Bytes: 1000, Timeout: quick})
		return err
	}, "did not close")
	check("no such netns", func() error {
		_, err := traffic.Send(context.Background(), traffic.Options{Netns: "vnic-tr-missing", Addr: peer4 + ":9", Bytes: 1})
		return err
	}, "does not exist")

	// Cancellation stops a long run at once and returns what moved. The
	// run is cancelled once the far end has counted some of its traffic
	// (not after a fixed time, which a loaded machine may spend
	// connecting), and what it returns must agree with what was counted:
	// a sender reports at least what the peer had received when it was
	// cancelled, a receiver at most what the NIC had handed the host.
	for _, f := range []struct {
		name   string
		run    func(context.Context) (traffic.Result, error)
		moved  func(daemon.Stats) uint64
		sender bool
	}{
		{"Send", func(ctx context.Context) (traffic.Result, error) {
			return traffic.Send(ctx, traffic.Options{Netns: ns, Addr: peer4 + ":9", Duration: time.Hour, Streams: 2})
		}, func(s daemon.Stats) uint64 { return s.Peer.Discarded }, true},
		{"Receive", func(ctx context.Context) (traffic.Result, error) {
			return traffic.Receive(ctx, traffic.Options{Netns: ns, Addr: peer4 + ":19", Duration: time.Hour, Streams: 2})
		}, func(s daemon.Stats) uint64 { return s.HostRX.Bytes }, false},
		{"UDPSend", func(ctx context.Context) (traffic.Result, error) {
			return traffic.UDPSend(ctx, traffic.Options{Netns: ns, Addr: peer4 + ":9", Duration: time.Hour}, 1400)
		}, func(s daemon.Stats) uint64 { return s.Peer.Discarded }, true},
	} {
		before := f.moved(d.Stats())
		ctx, cancel := context.WithCancel(context.Background())
		type result struct {
			res traffic.Result
			err error
		}
		done := make(chan result, 1)
		go func() {
			res, err := f.run(ctx)
			done <- result{res, err}
		}()
		deadline := time.Now().Add(30 * time.Second)
		for f.moved(d.Stats()) == before && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		atCancel := f.moved(d.Stats()) - before
		cancel()
		start := time.Now()
		r := <-done
		el := time.Since(start)
		atReturn := f.moved(d.Stats()) - before
		t.Logf("%s cancelled with %d bytes counted at the far end: %v, %v, %v after the cancel", f.name, atCancel, r.res, r.err, el.Round(time.Millisecond))
		switch {
		case atCancel == 0:
			t.Errorf("%s: nothing counted at the far end in 30 s", f.name)
		case !errors.Is(r.err, context.Canceled):
			t.Errorf("%s cancelled: error %v, want context.Canceled", f.name, r.err)
		case el > 2*time.Second:
			t.Errorf("%s returned %v after the cancel", f.name, el)
		case f.sender && uint64(r.res.Bytes) < atCancel:
			t.Errorf("%s reports %d bytes sent, the peer had counted %d when it was cancelled", f.name, r.res.Bytes, atCancel)
		case !f.sender && uint64(r.res.Bytes) > atReturn:
			t.Errorf("%s reports %d bytes received, the NIC had handed the host %d", f.name, r.res.Bytes, atReturn)
		}
	}
}
