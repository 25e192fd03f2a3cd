package afpacket_test

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

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"vnic/vnic/afpacket"
	"vnic/vnic/ethtool"
	"vnic/vnic/kerneltest"
	"vnic/vnic/l2test"
	"vnic/vnic/pkttest"
)

type recorder struct {
	mu     sync.Mutex
	frames [][]byte
	more   chan struct{}
}

func newRecorder() *recorder { return &recorder{more: make(chan struct{}, 1)} }

func (r *recorder) Inject(frames [][]byte) {
	r.mu.Lock()
	for _, f := range frames {
		r.frames = append(r.frames, bytes.Clone(f))
	}
	r.mu.Unlock()
	select {
	case r.more <- struct{}{}:
	default:
	}
}

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

var (
	nicMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0a}
	nicIP  = netip.MustParseAddr("198.18.0.1")
	hostIP = netip.MustParseAddr("198.18.0.2")
)

// setup is the daemon's namespace D with v1, whose veth peer v2 is in
// the host namespace H with hostIP, and a permanent neighbour for the
// NIC's address (no stack answers ARP on our side of the wire).
func setup(t *testing.T) (d, h *kerneltest.Netns) {
	d, h = kerneltest.NewNetns(t), kerneltest.NewNetns(t)
	l2test.Veth(t, d, "v1", h, "v2", 0)
	l2test.Configure(t, h, "v2", netip.PrefixFrom(hostIP, 24))
	l2test.Run(t, h, "ip", "neigh", "add", nicIP.String(), "lladdr", nicMAC.String(), "dev", "v2", "nud", "permanent")
	return d, h
}

func open(t *testing.T, ns *kerneltest.Netns, cfg afpacket.Config) *afpacket.Wire {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	var w *afpacket.Wire
	if err := ns.Do(func() error {
		var err error
		w, err = afpacket.Open(cfg)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

func ether(dst, src net.HardwareAddr, typ tcpip.NetworkProtocolNumber, payload []byte) []byte {
	b := make([]byte, header.EthernetMinimumSize+len(payload))
	header.Ethernet(b).Encode(&header.EthernetFields{SrcAddr: tcpip.LinkAddress(src), DstAddr: tcpip.LinkAddress(dst), Type: typ})
	copy(b[header.EthernetMinimumSize:], payload)
	return b
}

func arpRequest(mac net.HardwareAddr, sender, target netip.Addr) []byte {
	a := header.ARP(make([]byte, header.ARPSize))
	a.SetIPv4OverEthernet()
	a.SetOp(header.ARPRequest)
	copy(a.HardwareAddressSender(), mac)
	copy(a.ProtocolAddressSender(), sender.AsSlice())
	copy(a.ProtocolAddressTarget(), target.AsSlice())
	return ether(net.HardwareAddr(header.EthernetBroadcastAddress), mac, header.ARPProtocolNumber, a)
}

// sendUDP sends datagrams from H to the NIC's address: with gso > 0 as
// one UDP GSO send of len(payload)/gso datagrams.
func sendUDP(t *testing.T, h *kerneltest.Netns, payload []byte, gso int) {
	t.Helper()
	if err := h.Do(func() error {
		c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(nicIP, 9)))
		if err != nil {
			return err
		}
		defer c.Close()
		if gso == 0 {
			_, err = c.Write(payload)
			return err
		}
		oob := make([]byte, unix.CmsgSpace(2))
		ch := (*unix.Cmsghdr)(unsafePointer(&oob[0]))
		ch.Level, ch.Type = unix.IPPROTO_UDP, unix.UDP_SEGMENT
		ch.SetLen(unix.CmsgLen(2))
		binary.NativeEndian.PutUint16(oob[unix.CmsgLen(0):], uint16(gso))
		_, _, err = c.WriteMsgUDP(payload, oob, nil)
		return err
	}); err != nil {
		t.Fatal(err)
	}
}

func ipOf(f []byte) []byte { return f[header.EthernetMinimumSize:] }

// TestFramesBothWays: an ARP request the wire sends reaches the host on
// the other end of the veth, and its reply comes back.
func TestFramesBothWays(t *testing.T) {
	d, h := setup(t)
	w := open(t, d, afpacket.Config{Dev: "v1", MTU: 1500})
	rec := newRecorder()
	w.Start(rec)
	w.Inject([][]byte{arpRequest(nicMAC, nicIP, hostIP)})
	v2 := l2test.MAC(t, h, "v2")
	rec.wait(t, "the host's ARP reply", func(fs [][]byte) bool {
		for _, f := range fs {
			if header.Ethernet(f).Type() == header.ARPProtocolNumber {
				a := header.ARP(f[14:])
				return a.Op() == header.ARPReply && bytes.Equal(a.HardwareAddressSender(), v2) && bytes.Equal(f[:6], nicMAC)
			}
		}
		return false
	})
	if st := statsWhen(w, func(s afpacket.Stats) bool { return s.InPackets >= 1 }); st.OutPackets != 1 || st.InPackets < 1 || len(st.Drops) != 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestSuperPacketsArriveWireSize: a UDP GSO super-packet and a datagram
// with a partial checksum, which the veth peer hands over as they are,
// reach the NIC as the cable would carry them — wire-size frames with
// complete checksums.
func TestSuperPacketsArriveWireSize(t *testing.T) {
	d, h := setup(t)
	w := open(t, d, afpacket.Config{Dev: "v1", MTU: 1500})
	rec := newRecorder()
	w.Start(rec)
	payload := pkttest.Payload(10*1400, 3)
	sendUDP(t, h, payload, 1400)
	sendUDP(t, h, []byte("a small one"), 0)
	fs := rec.wait(t, "11 UDP frames", func(fs [][]byte) bool {
		n := 0
		for _, f := range fs {
			if header.Ethernet(f).Type() == header.IPv4ProtocolNumber {
				n++
			}
		}
		return n >= 11
	})
	var got []byte
	n := 0
	for _, f := range fs {
		if header.Ethernet(f).Type() != header.IPv4ProtocolNumber {
			continue
		}
		if len(f) > 1514 {
			t.Errorf("a %d-byte frame", len(f))
		}
		if err := pkttest.Verify(ipOf(f)); err != nil {
			t.Errorf("frame %d: %v", n, err)
		}
		if n < 10 {
			got = append(got, ipOf(f)[28:]...)
		} else if string(ipOf(f)[28:]) != "a small one" {
			t.Errorf("last datagram %q", ipOf(f)[28:])
		}
		n++
	}
	if !bytes.Equal(got, payload) {
		t.Errorf("the 10 datagrams carry %d bytes, not the payload sent", len(got))
	}
	st := statsWhen(w, func(s afpacket.Stats) bool { return s.InPackets >= 11 })
	if st.InSuper != 1 || st.InCsum != 1 {
		t.Errorf("cut %d super-packets and completed %d checksums, want 1 and 1 (%+v)", st.InSuper, st.InCsum, st)
	}
}

// TestVLANTagPutBack: a tagged frame reaches the NIC with its tag, which
// the kernel took out (skb_vlan_untag) before the socket saw it.
func TestVLANTagPutBack(t *testing.T) {
	d, h := setup(t)
	w := open(t, d, afpacket.Config{Dev: "v1", MTU: 1500})
	rec := newRecorder()
	w.Start(rec)
	p := pkttest.Packet{Src: hostIP, Dst: nicIP, Proto: pkttest.ProtoUDP, SrcPort: 5, DstPort: 9, Payload: []byte("tagged")}
	f := ether(nicMAC, l2test.MAC(t, h, "v2"), header.IPv4ProtocolNumber, p.Build())
	tagged := append(append(bytes.Clone(f[:12]), 0x81, 0x00, 0x20, 0x64), f[12:]...) // VLAN 100, PCP 1
	sendRaw(t, h, "v2", tagged)
	fs := rec.wait(t, "the tagged datagram", func(fs [][]byte) bool {
		for _, f := range fs {
			if bytes.HasSuffix(f, []byte("tagged")) {
				return true
			}
		}
		return false
	})
	for _, f := range fs {
		if bytes.HasSuffix(f, []byte("tagged")) && !bytes.Equal(f, tagged) {
			t.Fatalf("got\n% x\nwant\n% x", f, tagged)
		}
	}
}

// sendRaw sends frame out of dev in ns through a packet socket.
func sendRaw(t *testing.T, ns *kerneltest.Netns, dev string, frame []byte) {
	t.Helper()
	if err := ns.Do(func() error {
		l, err := net.InterfaceByName(dev)
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		return unix.Sendto(fd, frame, 0, &unix.SockaddrLinklayer{Ifindex: l.Index})
	}); err != nil {
		t.Fatal(err)
	}
}

// TestMergingFeaturesOffWhileOpen: GRO on the interface is switched off
// for as long as the wire is open, and back on after.
func TestMergingFeaturesOffWhileOpen(t *testing.T) {
	d, _ := setup(t)
	if err := d.SetFeature("v1", "rx-gro", true); err != nil {
		t.Fatal(err)
	}
	gro := func() bool {
		f, err := ethtool.Features(d.Name, "v1")
		if err != nil {
			t.Fatal(err)
		}
		return f["rx-gro"]
	}
	w := open(t, d, afpacket.Config{Dev: "v1", MTU: 1500})
	if gro() {
		t.Error("rx-gro on while the wire is open")
	}
	if st := w.Stats(); len(st.Switched) != 1 || st.Switched[0] != "rx-gro" {
		t.Errorf("switched off %v, want [rx-gro]", st.Switched)
	}
	w.Close()
	if !gro() {
		t.Error("rx-gro not restored on Close")
	}
}

// TestOpenErrorsChangeNothing: bad interfaces are refused with what to
// do, and the interface is left as it was.
func TestOpenErrorsChangeNothing(t *testing.T) {
	d, _ := setup(t)
	l2test.Bridge(t, d, "br0")
	if err := d.SetFeature("v1", "rx-gro", true); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cfg  afpacket.Config
		want string
	}{
		{"missing", afpacket.Config{Dev: "nope0"}, "no such interface in this namespace"},
		{"bridge", afpacket.Config{Dev: "br0"}, "is a bridge; give the NIC a port of its own"},
		{"loopback", afpacket.Config{Dev: "lo"}, "not an Ethernet interface"},
		{"mtu", afpacket.Config{Dev: "v1", MTU: 9000}, "--mtu 9000 is larger than dev:v1's MTU 1500"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Logger = slog.New(slog.DiscardHandler)
			err := d.Do(func() error {
				_, err := afpacket.Open(tc.cfg)
				return err
			})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one saying %q", err, tc.want)
			}
		})
	}
	if f, err := ethtool.Features(d.Name, "v1"); err != nil || !f["rx-gro"] {
		t.Errorf("v1's rx-gro changed by a failed Open (%v)", err)
	}
}

// TestDownInterfaceIsSetUpThenDown: a down interface is set up for the
// wire and down again on Close.
func TestDownInterfaceIsSetUpThenDown(t *testing.T) {
	d, _ := setup(t)
	l2test.Run(t, d, "ip", "link", "set", "v1", "down")
	w := open(t, d, afpacket.Config{Dev: "v1"})
	up := func() bool {
		l, err := l2test.Handle(t, d).LinkByName("v1")
		if err != nil {
			t.Fatal(err)
		}
		return l.Attrs().Flags&net.FlagUp != 0
	}
	if !up() {
		t.Error("v1 down while the wire is open")
	}
	w.Close()
	if up() {
		t.Error("v1 left up after Close")
	}
}

// statsWhen returns the wire's counters once ok holds of them, or after
// 5 s: the wire counts a batch after handing its frames on, so a test
// that saw the frames may be first.
func statsWhen(w *afpacket.Wire, ok func(afpacket.Stats) bool) afpacket.Stats {
	st := w.Stats()
	for deadline := time.Now().Add(5 * time.Second); !ok(st) && time.Now().Before(deadline); st = w.Stats() {
		time.Sleep(5 * time.Millisecond)
	}
	return st
}
