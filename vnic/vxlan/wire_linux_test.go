package vxlan_test

import (
	"bytes"
	"encoding/binary"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"vnic/vnic/drop"
	"vnic/vnic/kerneltest"
	"vnic/vnic/l2test"
	"vnic/vnic/pkttest"
	"vnic/vnic/vxlan"
)

// recorder is a Receiver that keeps copies of what it gets.
type recorder struct {
	mu     sync.Mutex
	frames [][]byte
	calls  int
	more   chan struct{}
}

func newRecorder() *recorder { return &recorder{more: make(chan struct{}, 1)} }

func (r *recorder) Inject(frames [][]byte) {
	r.mu.Lock()
	for _, f := range frames {
		r.frames = append(r.frames, bytes.Clone(f))
	}
	r.calls++
	r.mu.Unlock()
	select {
	case r.more <- struct{}{}:
	default:
	}
}

// wait waits until ok holds for the frames received so far.
func (r *recorder) wait(t *testing.T, what string, ok func([][]byte) bool) [][]byte {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		r.mu.Lock()
		fs := r.frames
		done := ok(fs)
		r.mu.Unlock()
		if done {
			return fs
		}
		select {
		case <-r.more:
		case <-deadline:
			t.Fatalf("timed out waiting for %s (%d frames so far)", what, len(fs))
		}
	}
}

// open opens a wire in ns.
func open(t *testing.T, ns *kerneltest.Netns, cfg vxlan.Config) *vxlan.Wire {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	var w *vxlan.Wire
	if err := ns.Do(func() error {
		var err error
		w, err = vxlan.Open(cfg)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

var (
	macA = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0a}
	ipA  = netip.MustParseAddr("198.18.0.1")
	ipB  = netip.MustParseAddr("198.18.0.2")
)

// arpRequest is who-has target tell sender, from mac, built with gVisor's
// header views.
func arpRequest(mac net.HardwareAddr, sender, target netip.Addr) []byte {
	b := make([]byte, header.EthernetMinimumSize+header.ARPSize)
	header.Ethernet(b).Encode(&header.EthernetFields{SrcAddr: tcpip.LinkAddress(mac), DstAddr: header.EthernetBroadcastAddress, Type: header.ARPProtocolNumber})
	a := header.ARP(b[header.EthernetMinimumSize:])
	a.SetIPv4OverEthernet()
	a.SetOp(header.ARPRequest)
	copy(a.HardwareAddressSender(), mac)
	copy(a.ProtocolAddressSender(), sender.AsSlice())
	copy(a.ProtocolAddressTarget(), target.AsSlice())
	return b
}

func ethType(f []byte) uint16 { return binary.BigEndian.Uint16(f[12:]) }

// TestInteropWithLinuxVXLAN: frames from the wire reach a plain Linux
// vxlan device on the other "machine" and its answers come back: ARP
// resolved both ways, a UDP datagram delivered each way.
func TestInteropWithLinuxVXLAN(t *testing.T) {
	u := l2test.NewUnderlay(t, 0)
	l2test.AddVXLAN(t, u.B, l2test.VXLAN{Name: "vx0", VNI: 42, Remote: u.AddrA, Local: u.AddrB, Addrs: []netip.Prefix{netip.PrefixFrom(ipB, 24)}})
	vxMAC := l2test.MAC(t, u.B, "vx0")
	w := open(t, u.A, vxlan.Config{Remote: u.AddrB, VNI: 42, MTU: 1450})
	rec := newRecorder()
	w.Start(rec)

	w.Inject([][]byte{arpRequest(macA, ipA, ipB)})
	fs := rec.wait(t, "an ARP reply from vx0", func(fs [][]byte) bool { return len(fs) > 0 })
	reply := fs[0]
	if ethType(reply) != uint16(header.ARPProtocolNumber) {
		t.Fatalf("first frame back has ethertype %#04x, want ARP", ethType(reply))
	}
	a := header.ARP(reply[header.EthernetMinimumSize:])
	if a.Op() != header.ARPReply || !bytes.Equal(a.HardwareAddressSender(), vxMAC) || !bytes.Equal(a.HardwareAddressTarget(), macA) {
		t.Fatalf("not vx0's reply to us: op %d, sender %x, target %x", a.Op(), a.HardwareAddressSender(), a.HardwareAddressTarget())
	}

	// A UDP datagram into B's stack, through vx0.
	var got []byte
	var wg sync.WaitGroup
	var lc net.PacketConn
	if err := u.B.Do(func() error {
		var err error
		lc, err = net.ListenPacket("udp4", ipB.String()+":9999")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer lc.Close()
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 2000)
		lc.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, _, err := lc.ReadFrom(buf)
		if err == nil {
			got = buf[:n]
		}
	}()
	p := pkttest.Packet{Src: ipA, Dst: ipB, Proto: pkttest.ProtoUDP, SrcPort: 5555, DstPort: 9999, Payload: []byte("over vxlan")}
	w.Inject([][]byte{ether(vxMAC, macA, p.Build())})
	wg.Wait()
	if string(got) != "over vxlan" {
		t.Fatalf("vx0's host received %q", got)
	}

	// And one from B's stack back to us (vx0 learned our MAC from the ARP
	// request).
	if err := u.B.Do(func() error {
		c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(ipA, 7777)))
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write([]byte("back over vxlan"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	rec.wait(t, "the UDP datagram from vx0's host", func(fs [][]byte) bool {
		for _, f := range fs {
			if ethType(f) == uint16(header.IPv4ProtocolNumber) && bytes.HasSuffix(f, []byte("back over vxlan")) {
				if !bytes.Equal(f[:6], macA) {
					t.Errorf("sent to %x, want our MAC %x", f[:6], macA)
				}
				return true
			}
		}
		return false
	})
	st := statsWhen(w, func(s vxlan.Stats) bool { return s.InPackets >= 2 })
	if st.OutPackets != 2 || st.InPackets < 2 || len(st.Drops) != 0 {
		t.Errorf("stats: %+v", st)
	}
}

// ether puts an IP packet in an Ethernet frame.
func ether(dst, src net.HardwareAddr, pkt []byte) []byte {
	b := make([]byte, header.EthernetMinimumSize+len(pkt))
	typ := header.IPv4ProtocolNumber
	if pkt[0]>>4 == 6 {
		typ = header.IPv6ProtocolNumber
	}
	header.Ethernet(b).Encode(&header.EthernetFields{SrcAddr: tcpip.LinkAddress(src), DstAddr: tcpip.LinkAddress(dst), Type: typ})
	copy(b[header.EthernetMinimumSize:], pkt)
	return b
}

// TestTwoWiresCarryBatchesWithGSOAndGRO: a batch of frames of mixed sizes
// crosses whole and in order between two vnic wires, in UDP GSO sends of
// runs of equal-size frames and fewer receive calls than datagrams.
func TestTwoWiresCarryBatchesWithGSOAndGRO(t *testing.T) {
	u := l2test.NewUnderlay(t, 1550)
	a := open(t, u.A, vxlan.Config{Remote: u.AddrB, VNI: 7})
	b := open(t, u.B, vxlan.Config{Remote: u.AddrA, VNI: 7})
	if !a.Underlay().Fits() || a.Underlay().Dev != u.DevA || a.Underlay().MTU != 1550 {
		t.Fatalf("underlay %+v, want %s with MTU 1550, fitting", a.Underlay(), u.DevA)
	}
	rec := newRecorder()
	b.Start(rec)
	a.Start(newRecorder())

	var sent [][]byte
	for i := range 600 {
		n := 1514 // a TSO run: full frames, then a short one
		switch {
		case i%50 == 49:
			n = 300 + i
		case i%97 == 0:
			n = 60
		}
		f := make([]byte, n)
		for j := range f {
			f[j] = byte(i + j)
		}
		binary.BigEndian.PutUint32(f, uint32(i))
		sent = append(sent, f)
	}
	for i := 0; i < len(sent); i += 200 {
		a.Inject(sent[i : i+200])
	}
	got := rec.wait(t, "600 frames", func(fs [][]byte) bool { return len(fs) >= len(sent) })
	for i := range sent {
		if !bytes.Equal(got[i], sent[i]) {
			t.Fatalf("frame %d: %d bytes starting % x, want %d bytes starting % x", i, len(got[i]), got[i][:8], len(sent[i]), sent[i][:8])
		}
	}
	// The counters are added after each batch is handed on.
	deadline := time.Now().Add(5 * time.Second)
	for b.Stats().InPackets < 600 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	sa, sb := a.Stats(), b.Stats()
	t.Logf("sender: %d frames in %d sendmmsg calls, %d GSO sends; receiver: %d frames in %d recvmmsg calls, %d GRO runs",
		sa.OutPackets, sa.SendCalls, sa.GSOSends, sb.InPackets, sb.RecvCalls, sb.GRORecvs)
	if sa.OutPackets != 600 || sb.InPackets != 600 || len(sa.Drops)+len(sb.Drops) != 0 {
		t.Errorf("counters: sender %+v, receiver %+v", sa, sb)
	}
	if !sa.GSO || sa.GSOSends == 0 || sa.SendCalls > 12 {
		t.Errorf("UDP GSO: %v, %d GSO sends, %d sendmmsg calls for 3 batches", sa.GSO, sa.GSOSends, sa.SendCalls)
	}
	if !sb.GRO || sb.RecvCalls >= 600 {
		t.Errorf("UDP GRO: %v, %d recvmmsg calls for 600 datagrams", sb.GRO, sb.RecvCalls)
	}
}

// TestMalformedDatagramsCountedByReason: whatever arrives on the port is
// either a frame for the NIC or a drop with its reason.
func TestMalformedDatagramsCountedByReason(t *testing.T) {
	u := l2test.NewUnderlay(t, 0)
	l2test.Configure(t, u.B, u.DevB, netip.MustParsePrefix("198.19.0.3/24"))
	w := open(t, u.A, vxlan.Config{Remote: u.AddrB, VNI: 42})
	rec := newRecorder()
	w.Start(rec)
	good := append(hdr(0x08, 42, [4]byte{}), frame...)
	send := func(from string, ds ...[]byte) {
		t.Helper()
		if err := u.B.Do(func() error {
			c, err := net.DialUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(from+":0")), net.UDPAddrFromAddrPort(netip.AddrPortFrom(u.AddrA, 4789)))
			if err != nil {
				return err
			}
			defer c.Close()
			for _, d := range ds {
				if _, err := c.Write(d); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	send("198.19.0.2",
		[]byte{},
		[]byte{0x08, 0, 0},
		append(hdr(0x00, 42, [4]byte{}), frame...),
		append(hdr(0x08, 43, [4]byte{}), frame...),
		append(hdr(0x88, 42, [4]byte{}), frame...),
		append(hdr(0x08, 42, [4]byte{0, 0, 0, 9}), frame...),
		append(hdr(0x08, 42, [4]byte{}), frame[:10]...),
		good)
	send("198.19.0.3", good, good)
	send("198.19.0.2", good)
	rec.wait(t, "the two good frames from REMOTE", func(fs [][]byte) bool { return len(fs) == 2 })
	want := map[string]uint64{
		"underlay_rx/vxlan_short": 2, "underlay_rx/vxlan_flags": 1, "underlay_rx/vxlan_vni": 1,
		"underlay_rx/vxlan_reserved": 2, "underlay_rx/ether_short": 1, "underlay_rx/vxlan_source": 2,
	}
	got := map[string]uint64{}
	st := statsWhen(w, func(s vxlan.Stats) bool {
		var n uint64
		for _, d := range s.Drops {
			n += d.Packets
		}
		return n >= 9
	})
	for _, d := range st.Drops {
		got[d.Place+"/"+d.Reason] += d.Packets
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %d, want %d", k, got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("drops %v, want %v", got, want)
	}
}

// logBuf collects what a wire logs.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) { l.mu.Lock(); defer l.mu.Unlock(); return l.b.Write(p) }
func (l *logBuf) String() string              { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// TestUnderlayMTUMismatchIsReported: an underlay that cannot carry the
// NIC's MTU in VXLAN is reported at Open with the numbers and what to
// set, and frames still cross (fragmented, as Linux's vxlan does with df
// unset) — the mismatch stays reproducible.
func TestUnderlayMTUMismatchIsReported(t *testing.T) {
	u := l2test.NewUnderlay(t, 1500)
	var lb logBuf
	log := slog.New(slog.NewTextHandler(&lb, nil))
	a := open(t, u.A, vxlan.Config{Remote: u.AddrB, MTU: 1500, Logger: log})
	b := open(t, u.B, vxlan.Config{Remote: u.AddrA, MTU: 1500, Logger: slog.New(slog.DiscardHandler)})
	if a.Underlay().Fits() || a.Underlay().Need != 1550 || a.Underlay().MTU != 1500 {
		t.Errorf("underlay %+v, want MTU 1500 needing 1550", a.Underlay())
	}
	for _, want := range []string{"makes an outer one of 1550", "MTU is 1500", "Set --mtu 1450", "ip link set ua mtu 1550"} {
		if !strings.Contains(lb.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, lb.String())
		}
	}
	rec := newRecorder()
	b.Start(rec)
	full := make([]byte, 1514)
	a.Inject([][]byte{full, full, full})
	rec.wait(t, "3 full-size frames, fragmented on the way", func(fs [][]byte) bool { return len(fs) == 3 })
}

func TestOpenErrorsLeaveNothing(t *testing.T) {
	u := l2test.NewUnderlay(t, 0)
	for _, tc := range []struct {
		name string
		cfg  vxlan.Config
		want string
	}{
		{"unreachable", vxlan.Config{Remote: mustAddr("198.19.7.7")}, "unreachable from this namespace"},
		{"local address", vxlan.Config{Remote: u.AddrA}, "an address of this namespace"},
		{"local not ours", vxlan.Config{Remote: u.AddrB, Local: mustAddr("198.19.0.9")}, "not an address of this namespace"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Logger = slog.New(slog.DiscardHandler)
			err := u.A.Do(func() error {
				_, err := vxlan.Open(tc.cfg)
				return err
			})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one saying %q", err, tc.want)
			}
		})
	}
	t.Run("port taken", func(t *testing.T) {
		w := open(t, u.A, vxlan.Config{Remote: u.AddrB})
		err := u.A.Do(func() error {
			_, err := vxlan.Open(vxlan.Config{Remote: u.AddrB, Logger: slog.New(slog.DiscardHandler)})
			return err
		})
		if err == nil || !strings.Contains(err.Error(), "UDP port 4789 is taken") {
			t.Fatalf("error %v", err)
		}
		w.Close()
		// Nothing left behind: the port is free again.
		open(t, u.A, vxlan.Config{Remote: u.AddrB})
	})
	if out, _ := l2test.Output(u.A, "ss", "-uan"); strings.Count(out, ":4789") > 1 {
		t.Errorf("sockets left on 4789:\n%s", out)
	}
}

// TestLinuxVXLANDropsWhatDecodeDrops: the kernel's vxlan_rcv is the
// oracle for Decode's strictness — a datagram without the I flag, with
// another VNI, or with a reserved bit set gets no answer from a Linux
// vxlan device, while the same ARP request in a clean header does.
func TestLinuxVXLANDropsWhatDecodeDrops(t *testing.T) {
	u := l2test.NewUnderlay(t, 0)
	l2test.AddVXLAN(t, u.B, l2test.VXLAN{Name: "vx0", VNI: 42, Remote: u.AddrA, Local: u.AddrB, Addrs: []netip.Prefix{netip.PrefixFrom(ipB, 24)}})
	w := open(t, u.A, vxlan.Config{Remote: u.AddrB, VNI: 42})
	rec := newRecorder()
	w.Start(rec)
	var c *net.UDPConn
	if err := u.A.Do(func() error {
		var err error
		c, err = net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(u.AddrB, 4789)))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	bad := []struct {
		name string
		h    []byte
	}{
		{"no I flag", hdr(0x00, 42, [4]byte{})},
		{"another VNI", hdr(0x08, 43, [4]byte{})},
		{"GBP bit", hdr(0x88, 42, [4]byte{})},
		{"reserved byte 1", hdr(0x08, 42, [4]byte{1, 0, 0, 0})},
		{"reserved last byte", hdr(0x08, 42, [4]byte{0, 0, 0, 1})},
	}
	// Each bad datagram asks for B's MAC in the name of a sender address
	// of its own; the good one last. The kernel answers in order.
	for i, b := range bad {
		from := netip.AddrFrom4([4]byte{198, 18, 0, byte(10 + i)})
		if _, err := c.Write(append(b.h, arpRequest(macA, from, ipB)...)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Write(append(hdr(0x08, 42, [4]byte{}), arpRequest(macA, ipA, ipB)...)); err != nil {
		t.Fatal(err)
	}
	fs := rec.wait(t, "the reply to the clean request", func(fs [][]byte) bool {
		for _, f := range fs {
			if ethType(f) == uint16(header.ARPProtocolNumber) && bytes.Equal(header.ARP(f[14:]).ProtocolAddressTarget(), ipA.AsSlice()) {
				return true
			}
		}
		return false
	})
	for _, f := range fs {
		if ethType(f) != uint16(header.ARPProtocolNumber) {
			continue
		}
		to := header.ARP(f[14:]).ProtocolAddressTarget()
		if to[3] >= 10 {
			t.Errorf("Linux answered the request with %s", bad[to[3]-10].name)
		}
	}
	for _, b := range bad {
		if _, r := vxlan.Decode(append(b.h, frame...), 42); r == drop.None {
			t.Errorf("Decode takes a datagram with %s", b.name)
		}
	}
}

// counter is a Receiver that only counts (no allocation of its own).
type counter struct{ n chan int }

func (c *counter) Inject(frames [][]byte) { c.n <- len(frames) }

// TestNoAllocationPerBatch: sending a batch and receiving it allocate
// nothing, on either side.
func TestNoAllocationPerBatch(t *testing.T) {
	u := l2test.NewUnderlay(t, 1550)
	a := open(t, u.A, vxlan.Config{Remote: u.AddrB})
	b := open(t, u.B, vxlan.Config{Remote: u.AddrA})
	c := &counter{n: make(chan int, 1024)}
	b.Start(c)
	batch := make([][]byte, 64)
	for i := range batch {
		batch[i] = make([]byte, 1514)
	}
	run := func() {
		a.Inject(batch)
		for got := 0; got < len(batch); {
			got += <-c.n
		}
	}
	run()
	if allocs := testing.AllocsPerRun(50, run); allocs != 0 {
		t.Errorf("%.1f allocations per batch of 64 frames, want 0", allocs)
	}
}

// statsWhen returns the wire's counters once ok holds of them, or after
// 5 s: the wire counts a batch after handing its frames on, so a test
// that saw the frames may be first.
func statsWhen(w *vxlan.Wire, ok func(vxlan.Stats) bool) vxlan.Stats {
	st := w.Stats()
	for deadline := time.Now().Add(5 * time.Second); !ok(st) && time.Now().Before(deadline); st = w.Stats() {
		time.Sleep(5 * time.Millisecond)
	}
	return st
}
