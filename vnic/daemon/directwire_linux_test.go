package daemon_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"vnic/vnic/daemon"
	"vnic/vnic/drop"
	"vnic/vnic/kerneltest"
	"vnic/vnic/nic"
	"vnic/vnic/nsutil"
	"vnic/vnic/router"
)

// TestDirectWire: two namespaces, a NIC in each, wired straight to each
// other (daemon.OpenNIC + Connect, as vnic lab and make bench-nic do).
// With vnic's engine the transmitting NIC segments straight into the
// receiving NIC's batch and the receiver trusts the checksums it
// computed; this checks the bytes arrive intact both ways, at the
// usual MSS and at a small one (super-packets of more segments than a
// batch holds), that each NIC's wire counters agree with the other's and
// that GRO merged. The same with wireguard-go's engine in both NICs (the
// reference of make bench-nic).
func TestDirectWire(t *testing.T) {
	kerneltest.RequireRoot(t)
	for _, engine := range []nic.Engine{daemon.EngineVNIC, daemon.EngineWireGuard} {
		t.Run(string(engine), func(t *testing.T) {
			a, b, nsA, nsB := directPair(t, engine)
			for _, mss := range []int{0, 88} {
				n := 4 << 20
				if mss != 0 {
					n = 1 << 20
				}
				transferChecked(t, nsA, nsB, "198.18.40.2", mss, n) // A → B
				transferChecked(t, nsB, nsA, "198.18.40.1", mss, n) // B → A
			}
			if engine == daemon.EngineVNIC {
				// GRO off: every wire packet reaches the host alone, and
				// the checksums the sender left partial are completed
				// one by one.
				needTool(t, "ethtool")
				nsExec(t, nsB, "ethtool", "-K", "vnic0", "gro", "off")
				if !waitFor(5*time.Second, func() bool { return !b.Stats().GRO }) {
					t.Fatal("B did not follow ethtool -K gro off")
				}
				merged := b.Stats().HostRXMerged
				transferChecked(t, nsA, nsB, "198.18.40.2", 0, 2<<20)
				if m := b.Stats().HostRXMerged; m != merged {
					t.Errorf("GRO off, yet B merged %d packets", m-merged)
				}
			}
			// tcp_v4_rcv / tcp_checksum_complete: a packet with a wrong
			// checksum is dropped and counted, and TCP retransmits, so a
			// bad checksum would not show in the bytes.
			for _, ns := range []string{nsA, nsB} {
				if n := tcpInCsumErrors(t, ns); n != 0 {
					t.Errorf("%s: TcpInCsumErrors %d", ns, n)
				}
			}
			// The counters are added once per batch: wait for the last
			// packets of the teardown to be counted on both sides.
			var sa, sb nic.Stats
			waitFor(5*time.Second, func() bool {
				sa, sb = a.Stats(), b.Stats()
				return sa.WireOut == sb.WireIn && sb.WireOut == sa.WireIn
			})
			if sa.WireOut != sb.WireIn || sb.WireOut != sa.WireIn {
				t.Errorf("wire counters disagree: A out %+v, B in %+v; B out %+v, A in %+v", sa.WireOut, sb.WireIn, sb.WireOut, sa.WireIn)
			}
			if engine == daemon.EngineVNIC {
				if sa.HostTXSuper == 0 || sb.HostRXMerged == 0 {
					t.Errorf("A sent %d super-packets, B's GRO merged %d: want both > 0", sa.HostTXSuper, sb.HostRXMerged)
				}
				if sb.WireIn.Packets <= sb.HostRX.Packets {
					t.Errorf("B: %d wire packets in, %d to the host: GRO merged nothing", sb.WireIn.Packets, sb.HostRX.Packets)
				}
			}
			for _, s := range []nic.Stats{sa, sb} {
				total := s.DropTotal()
				if n := s.Dropped(nic.HostTX, drop.TooManySegments); engine == daemon.EngineWireGuard && n != 0 {
					// wireguard-go splits into one caller buffer per segment
					// and drops a super-packet of more segments than the
					// 256 it is given (see TestE2ESmallMSS); TCP recovers.
					t.Logf("%s: wireguard-go dropped %d super-packets of more than 256 segments", s.Netns, n)
					total -= n
				}
				if total != 0 {
					t.Errorf("%s drops: %v", s.Netns, s.Drops)
				}
			}
			t.Logf("A: host-tx %d (%d super) → wire %d; B: wire-in %d → host-rx %d (%d merged)",
				sa.HostTX.Packets, sa.HostTXSuper, sa.WireOut.Packets, sb.WireIn.Packets, sb.HostRX.Packets, sb.HostRXMerged)
		})
	}
}

// directPair opens two NICs of the engine in two new namespaces, A
// 198.18.40.1/24 and B 198.18.40.2/24, wired to each other.
func directPair(t *testing.T, engine nic.Engine) (a, b *nic.NIC, nsA, nsB string) {
	t.Helper()
	nsA, nsB = uniqueNetns(t), uniqueNetns(t)
	for _, ns := range []string{nsA, nsB} {
		if _, err := nsutil.Create(ns); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = nsutil.Delete(ns) })
	}
	open := func(ns, addr string) *nic.NIC {
		n, err := nic.Open(context.Background(), nic.Options{Netns: ns, Engine: engine,
			Addrs: []netip.Prefix{netip.MustParsePrefix(addr)}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		return n
	}
	a, b = open(nsA, "198.18.40.1/24"), open(nsB, "198.18.40.2/24")
	a.Connect(b)
	b.Connect(a)
	a.Start()
	b.Start()
	return a, b, nsA, nsB
}

// transferChecked sends n random bytes over TCP from a socket in from to
// a listener on addr:5001 in to (with TCP_MAXSEG mss on the sender unless
// 0) and compares what arrived.
func transferChecked(t *testing.T, from, to, addr string, mss, n int) {
	t.Helper()
	var ln net.Listener
	if err := nsutil.Do(to, func() error {
		var err error
		ln, err = net.Listen("tcp", net.JoinHostPort(addr, "5001"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		sum [32]byte
		n   int64
		err error
	}
	got := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- result{err: err}
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		h := sha256.New()
		m, err := io.Copy(h, c)
		var r result
		copy(r.sum[:], h.Sum(nil))
		r.n, r.err = m, err
		got <- r
	}()
	data := randomBytes(n)
	var c net.Conn
	if err := nsutil.Do(from, func() error {
		dl := net.Dialer{Timeout: 5 * time.Second}
		if mss != 0 {
			dl.Control = func(_, _ string, rc syscall.RawConn) error {
				var serr error
				err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_MAXSEG, mss) })
				return errors.Join(err, serr)
			}
		}
		var err error
		c, err = dl.Dial("tcp", net.JoinHostPort(addr, "5001"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.Copy(c, bytes.NewReader(data)); err != nil {
		t.Fatalf("send %d bytes (mss %d): %v", n, mss, err)
	}
	c.Close()
	r := <-got
	if r.err != nil {
		t.Fatalf("receive (mss %d): %v after %d bytes", mss, r.err, r.n)
	}
	if want := sha256.Sum256(data); r.n != int64(n) || r.sum != want {
		t.Fatalf("mss %d: received %d bytes, want %d; sha256 match %v", mss, r.n, n, r.sum == want)
	}
}

// tcpInCsumErrors is the namespace's TcpInCsumErrors (/proc/net/snmp).
func tcpInCsumErrors(t *testing.T, ns string) int {
	t.Helper()
	var names []string
	for _, line := range strings.Split(nsExec(t, ns, "cat", "/proc/net/snmp"), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "Tcp:" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		for i, name := range names {
			if name == "InCsumErrors" && i < len(f) {
				n, err := strconv.Atoi(f[i])
				if err != nil {
					t.Fatal(err)
				}
				return n
			}
		}
	}
	t.Fatalf("%s: no Tcp InCsumErrors in /proc/net/snmp", ns)
	return 0
}

// TestNoCsumThroughRouter: NIC A leaves checksums partial on its wire
// (ModelNoCsum, docs/stories.md story 5); the gVisor router forwards what it
// gets without checking L4 checksums (a router never does), and NIC B's
// receive side must still verify them, as a NIC with rx-checksumming
// does — so B's kernel drops them (TcpInCsumErrors, tcp_v4_rcv) and no
// connection opens. With the standard model the same path works.
func TestNoCsumThroughRouter(t *testing.T) {
	kerneltest.RequireRoot(t)
	for _, model := range []nic.Model{nic.ModelStandard, nic.ModelNoCsum} {
		t.Run(string(model), func(t *testing.T) {
			nsA, nsB := uniqueNetns(t), uniqueNetns(t)
			for _, ns := range []string{nsA, nsB} {
				if _, err := nsutil.Create(ns); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = nsutil.Delete(ns) })
			}
			open := func(ns, addr string, model nic.Model) *nic.NIC {
				n, err := nic.Open(context.Background(), nic.Options{Netns: ns, Model: model,
					Addrs: []netip.Prefix{netip.MustParsePrefix(addr)}})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { n.Close() })
				return n
			}
			a, b := open(nsA, "198.18.42.2/24", nic.ModelStandard), open(nsB, "198.18.43.2/24", nic.ModelStandard)
			rt, err := router.New(router.Options{Ifaces: []router.Iface{
				{Addrs: []netip.Prefix{netip.MustParsePrefix("198.18.42.1/24")}, Output: a.Output},
				{Addrs: []netip.Prefix{netip.MustParsePrefix("198.18.43.1/24")}, Output: b.Output},
			}})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { rt.Close() })
			a.Connect(nic.InjectFunc(func(p [][]byte) { rt.Inject(0, p) }))
			b.Connect(nic.InjectFunc(func(p [][]byte) { rt.Inject(1, p) }))
			a.Start()
			b.Start()
			nsExec(t, nsA, "ip", "route", "add", "198.18.43.0/24", "via", "198.18.42.1")
			nsExec(t, nsB, "ip", "route", "add", "198.18.42.0/24", "via", "198.18.43.1")
			if model == nic.ModelStandard {
				transferChecked(t, nsA, nsB, "198.18.43.2", 0, 1<<20)
				if n := tcpInCsumErrors(t, nsB); n != 0 {
					t.Errorf("standard model: B's TcpInCsumErrors %d", n)
				}
				return
			}
			// Open the connection with complete checksums, then switch A
			// to no-csum: its data segments now carry partial checksums.
			// Merged by B's GRO without a check they would reach B's
			// kernel as one CHECKSUM_PARTIAL packet and be accepted.
			var ln net.Listener
			if err := nsutil.Do(nsB, func() error {
				var err error
				ln, err = net.Listen("tcp", "198.18.43.2:5002")
				return err
			}); err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			got := make(chan int64, 1)
			go func() {
				c, err := ln.Accept()
				if err != nil {
					got <- -1
					return
				}
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(4 * time.Second))
				n, _ := io.Copy(io.Discard, c)
				got <- n
			}()
			var c net.Conn
			if err := nsutil.Do(nsA, func() error {
				var err error
				c, err = net.DialTimeout("tcp", "198.18.43.2:5002", 3*time.Second)
				return err
			}); err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := a.SetModel(model); err != nil {
				t.Fatal(err)
			}
			const n = 1 << 20
			go func() { _, _ = c.Write(randomBytes(n)) }()
			if m := <-got; m != 0 {
				t.Errorf("B's application received %d of the %d bytes sent with partial checksums: B's GRO merged them unchecked (%d merged)", m, n, b.Stats().HostRXMerged)
			}
			if n := tcpInCsumErrors(t, nsB); n == 0 {
				t.Error("B's kernel counted no TcpInCsumErrors")
			}
		})
	}
}
