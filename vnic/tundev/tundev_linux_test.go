package tundev_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"vnic/vnic/kerneltest"
	"vnic/vnic/nsutil"
	"vnic/vnic/tundev"
	"vnic/vnic/virtio"
)

// Addresses: the device has 198.18.0.1 (fd00::1), the "peer" behind it,
// whose packets the tests write, is 198.18.0.2 (fd00::2).
var (
	devAddr  = netip.MustParsePrefix("198.18.0.1/15")
	peerAddr = netip.MustParseAddr("198.18.0.2")
)

var quiet = slog.New(slog.DiscardHandler)

// newNS returns a fresh namespace (deleted in t.Cleanup) with IPv6 off, so
// the kernel sends no MLD or router solicitations out of the device.
func newNS(t *testing.T) string {
	t.Helper()
	ns := kerneltest.NewNetns(t).Name
	for _, k := range []string{"net.ipv6.conf.all.disable_ipv6", "net.ipv6.conf.default.disable_ipv6"} {
		if err := nsutil.Sysctl(ns, k, "1"); err != nil {
			t.Fatal(err)
		}
	}
	return ns
}

// open opens a device in ns and closes it in t.Cleanup.
func open(t *testing.T, ns string, cfg tundev.Config) *tundev.Device {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quiet
	}
	var d *tundev.Device
	if err := nsutil.Do(ns, func() error {
		var err error
		d, err = tundev.Open(cfg)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// up gives the device its address and brings it up.
func up(t *testing.T, ns string, d *tundev.Device) {
	t.Helper()
	h, err := nsutil.Handle(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if err := nsutil.ConfigureLink(h, d.Name(), nsutil.LinkConfig{Addrs: []netip.Prefix{devAddr}, Up: true}); err != nil {
		t.Fatal(err)
	}
}

func csum(b []byte, sum uint32) uint16 {
	for len(b) >= 2 {
		sum += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// echoFrame returns a frame (zero virtio header) holding an ICMP echo
// request from src to dst.
func echoFrame(src, dst netip.Addr, id, seq uint16, payload int) []byte {
	f := make([]byte, virtio.Size+20+8+payload)
	ip := f[virtio.Size:]
	ip[0], ip[8], ip[9] = 0x45, 64, 1
	binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)))
	s4, d4 := src.As4(), dst.As4()
	copy(ip[12:], s4[:])
	copy(ip[16:], d4[:])
	binary.BigEndian.PutUint16(ip[10:], csum(ip[:20], 0))
	icmp := ip[20:]
	icmp[0] = 8
	binary.BigEndian.PutUint16(icmp[4:], id)
	binary.BigEndian.PutUint16(icmp[6:], seq)
	for i := range payload {
		icmp[8+i] = byte(i)
	}
	binary.BigEndian.PutUint16(icmp[2:], csum(icmp, 0))
	return f
}

// frame is one frame read from a device.
type frame struct {
	hdr virtio.Hdr
	pkt []byte
}

// readUntil reads frames until match accepts one, or fails the test after
// a second.
func readUntil(t *testing.T, d *tundev.Device, what string, match func(frame) bool) frame {
	t.Helper()
	bufs := [][]byte{make([]byte, tundev.MaxFrame), make([]byte, tundev.MaxFrame)}
	sizes := make([]int, len(bufs))
	d.SetReadDeadline(time.Now().Add(time.Second))
	defer d.SetReadDeadline(time.Time{})
	var seen []string
	for {
		n, err := d.Read(bufs, sizes, 0)
		if err != nil {
			t.Fatalf("waiting for %s: %v (saw %v)", what, err, seen)
		}
		for i := range n {
			var f frame
			f.hdr.Decode(bufs[i])
			f.pkt = bytes.Clone(bufs[i][virtio.Size:sizes[i]])
			if match(f) {
				return f
			}
			seen = append(seen, fmt.Sprintf("%dB %v", len(f.pkt), f.hdr))
		}
	}
}

func isICMP(f frame, typ byte, src, dst netip.Addr) bool {
	p := f.pkt
	return len(p) >= 28 && p[0] == 0x45 && p[9] == 1 && p[20] == typ &&
		netip.AddrFrom4([4]byte(p[12:16])) == src && netip.AddrFrom4([4]byte(p[16:20])) == dst
}

// TestOpenInvalidName needs no root: names are checked before the TUN
// driver is asked.
func TestOpenInvalidName(t *testing.T) {
	for _, name := range []string{"0123456789abcdef", "a/b", "a:b", "a b", ".", ".."} {
		_, err := tundev.Open(tundev.Config{Name: name})
		if !errors.Is(err, tundev.ErrInvalidName) {
			t.Errorf("Open(%q): %v, want ErrInvalidName", name, err)
		}
	}
}

func TestOpenBadVnetHdrSize(t *testing.T) {
	if _, err := tundev.Open(tundev.Config{Name: "x", VnetHdrSize: 11}); err == nil {
		t.Error("VnetHdrSize 11 accepted")
	}
}

func TestOpenGrantsAllOffloads(t *testing.T) {
	ns := newNS(t)
	d := open(t, ns, tundev.Config{Name: "vnic0", Offloads: tundev.All})
	if d.Name() != "vnic0" {
		t.Errorf("name %q", d.Name())
	}
	if got := d.Offloads(); got != tundev.All {
		t.Errorf("granted %v, want %v", got, tundev.All)
	}
	if d.VnetHdrSize() != 10 {
		t.Errorf("VnetHdrSize %d", d.VnetHdrSize())
	}
}

// TestOpenFallsBackWhenRefused: USO4 without USO6 is refused by the
// kernel (set_offload wants both), so it is dropped, and logged.
func TestOpenFallsBackWhenRefused(t *testing.T) {
	ns := newNS(t)
	var log bytes.Buffer
	d := open(t, ns, tundev.Config{
		Name: "vnic0", Offloads: tundev.CSUM | tundev.TSO4 | tundev.USO4 | tundev.UFO,
		Logger: slog.New(slog.NewTextHandler(&log, nil)),
	})
	if got, want := d.Offloads(), tundev.CSUM|tundev.TSO4; got != want {
		t.Errorf("granted %v, want %v", got, want)
	}
	if !strings.Contains(log.String(), "refused=ufo|uso4") {
		t.Errorf("log does not name the refused offloads:\n%s", log.String())
	}
}

// TestOpenUDPTunnelOffloads: Linux 6.17+ grants TUN_F_UDP_TUNNEL_GSO and
// _CSUM; with VnetHdrSize 0 the device then uses the 24-byte
// virtio_net_hdr_v1_hash_tunnel. Without the tunnel offloads (refused,
// or not asked for) the header stays 10 bytes.
func TestOpenUDPTunnelOffloads(t *testing.T) {
	ns := newNS(t)
	want := tundev.All | tundev.UDPTunnel | tundev.UDPTunnelCsum
	var log bytes.Buffer
	d := open(t, ns, tundev.Config{Name: "vnic0", Offloads: want, Logger: slog.New(slog.NewTextHandler(&log, nil))})
	got := d.Offloads()
	t.Logf("granted %v, vnet_hdr_size %d", got, d.VnetHdrSize())
	switch {
	case got == want:
		if d.VnetHdrSize() != virtio.SizeTunnel {
			t.Errorf("tunnel offloads granted, VnetHdrSize %d, want %d", d.VnetHdrSize(), virtio.SizeTunnel)
		}
	case got == tundev.All:
		// A kernel before 6.17: refused, logged, the plain header.
		if d.VnetHdrSize() != 10 || !strings.Contains(log.String(), "no UDP tunnel offloads") {
			t.Errorf("fallback: VnetHdrSize %d, log:\n%s", d.VnetHdrSize(), log.String())
		}
	default:
		t.Errorf("granted %v, want %v (or %v before 6.17)", got, want, tundev.All)
	}
	// UDP_TUNNEL_GSO_CSUM without UDP_TUNNEL_GSO: refused, dropped.
	d2 := open(t, ns, tundev.Config{Name: "vnic1", Offloads: tundev.All | tundev.UDPTunnelCsum, Logger: quiet})
	if d2.Offloads() != tundev.All || d2.VnetHdrSize() != 10 {
		t.Errorf("csum alone: granted %v, vnet_hdr_size %d", d2.Offloads(), d2.VnetHdrSize())
	}
	// An explicit 10-byte header: the tunnel offloads are not asked for
	// (the kernel would grant them and write 24 bytes of header).
	d3 := open(t, ns, tundev.Config{Name: "vnic2", Offloads: want, VnetHdrSize: 10, Logger: quiet})
	if d3.Offloads() != tundev.All || d3.VnetHdrSize() != 10 {
		t.Errorf("10-byte header: granted %v, vnet_hdr_size %d", d3.Offloads(), d3.VnetHdrSize())
	}
}

func TestOpenNameTaken(t *testing.T) {
	ns := newNS(t)
	open(t, ns, tundev.Config{Name: "vnic0", Offloads: tundev.All})
	for _, name := range []string{"vnic0", "lo"} {
		err := nsutil.Do(ns, func() error {
			d, err := tundev.Open(tundev.Config{Name: name, Logger: quiet})
			if err == nil {
				d.Close()
			}
			return err
		})
		if !errors.Is(err, tundev.ErrNameTaken) {
			t.Errorf("second %s: %v, want ErrNameTaken", name, err)
			continue
		}
		want := fmt.Sprintf("interface %s already exists: choose another --name or delete it with `ip link del %s`", name, name)
		if err.Error() != want {
			t.Errorf("message %q\nwant    %q", err, want)
		}
	}
}

func TestOpenKernelChoosesName(t *testing.T) {
	ns := newNS(t)
	d := open(t, ns, tundev.Config{Name: "vt%d"})
	if d.Name() != "vt0" {
		t.Errorf("name %q, want vt0", d.Name())
	}
}

// TestPingRoundTrip writes an ICMP echo request from the peer into the
// device and reads the kernel's echo reply back.
func TestPingRoundTrip(t *testing.T) {
	ns := newNS(t)
	d := open(t, ns, tundev.Config{Name: "vnic0", Offloads: tundev.All})
	up(t, ns, d)
	n, err := d.Write([][]byte{echoFrame(peerAddr, devAddr.Addr(), 7, 1, 56)}, 0)
	if n != 1 || err != nil {
		t.Fatalf("write: %d, %v", n, err)
	}
	f := readUntil(t, d, "echo reply", func(f frame) bool { return isICMP(f, 0, devAddr.Addr(), peerAddr) })
	if len(f.pkt) != 20+8+56 || binary.BigEndian.Uint16(f.pkt[24:]) != 7 {
		t.Errorf("reply %x", f.pkt)
	}
	if s := d.Stats(); s.WrittenFrames != 1 || s.ReadFrames < 1 {
		t.Errorf("stats %+v", s)
	}
}

// TestTCPSYNIsRead: a connection attempt from a socket in the namespace
// to the peer comes out of the device as a SYN, its checksum left to the
// device (CSUM offload: NEEDS_CSUM, csum_start 20, csum_offset 16).
func TestTCPSYNIsRead(t *testing.T) {
	ns := newNS(t)
	d := open(t, ns, tundev.Config{Name: "vnic0", Offloads: tundev.All})
	up(t, ns, d)
	go nsutil.Do(ns, func() error {
		c, err := (&net.Dialer{Timeout: 2 * time.Second}).Dial("tcp4", "198.18.0.2:9")
		if err == nil {
			c.Close()
		}
		return nil
	})
	f := readUntil(t, d, "SYN", func(f frame) bool {
		p := f.pkt
		return len(p) >= 40 && p[0] == 0x45 && p[9] == 6 && netip.AddrFrom4([4]byte(p[16:20])) == peerAddr &&
			binary.BigEndian.Uint16(p[22:]) == 9 && p[33]&0x12 == 0x02
	})
	h := f.hdr
	if h.Flags != virtio.FlagNeedsCsum || h.GSOType != virtio.GSONone || h.CsumStart != 20 || h.CsumOffset != 16 {
		t.Errorf("SYN header %v, want NEEDS_CSUM csum_start 20 csum_offset 16", h)
	}
}

// TestUSOSuperPacketIsRead: 65,000 bytes sent with UDP_SEGMENT 1400 leave
// the socket as one super-packet, and the device reads it as one frame,
// gso_type UDP_L4, gso_size 1400.
func TestUSOSuperPacketIsRead(t *testing.T) {
	ns := newNS(t)
	d := open(t, ns, tundev.Config{Name: "vnic0", Offloads: tundev.All})
	up(t, ns, d)
	const size = 65000
	err := nsutil.Do(ns, func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if err := unix.SetsockoptInt(fd, unix.SOL_UDP, unix.UDP_SEGMENT, 1400); err != nil {
			return fmt.Errorf("UDP_SEGMENT: %w", err)
		}
		return unix.Sendto(fd, make([]byte, size), 0, &unix.SockaddrInet4{Port: 9, Addr: peerAddr.As4()})
	})
	if err != nil {
		t.Fatal(err)
	}
	f := readUntil(t, d, "UDP super-packet", func(f frame) bool { return len(f.pkt) > 20 && f.pkt[9] == 17 })
	h := f.hdr
	if len(f.pkt) != 20+8+size || h.GSOType != virtio.GSOUDPL4 || h.GSOSize != 1400 ||
		h.Flags != virtio.FlagNeedsCsum || h.CsumStart != 20 || h.CsumOffset != 6 {
		t.Errorf("got %d bytes, %v; want %d bytes, UDP_L4 gso_size 1400 NEEDS_CSUM 20/6", len(f.pkt), h, 20+8+size)
	}
}

func TestCloseUnblocksRead(t *testing.T) {
	ns := newNS(t)
	d := open(t, ns, tundev.Config{Name: "vnic0", Offloads: tundev.All})
	done := make(chan error, 1)
	go func() {
		_, err := d.Read([][]byte{make([]byte, tundev.MaxFrame)}, make([]int, 1), 0)
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrClosed) {
			t.Errorf("Read after Close: %v, want os.ErrClosed", err)
		}
	case <-time.After(time.Second):
		t.Fatal("Read still blocked a second after Close")
	}
	if _, err := d.Write([][]byte{make([]byte, 40)}, 0); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Write after Close: %v, want os.ErrClosed", err)
	}
	if err := d.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestWriteCountsRefusedFrames: frames the kernel refuses are counted by
// reason and skipped; the others are written.
func TestWriteCountsRefusedFrames(t *testing.T) {
	ns := newNS(t)
	d := open(t, ns, tundev.Config{Name: "vnic0", Offloads: tundev.All})
	ping := echoFrame(peerAddr, devAddr.Addr(), 7, 1, 8)

	// Down: EIO for every frame.
	n, err := d.Write([][]byte{ping, ping}, 0)
	var de *tundev.DropError
	if n != 0 || !errors.As(err, &de) || de.Dropped[tundev.DropDown] != 2 || !errors.Is(err, unix.EIO) {
		t.Fatalf("write while down: %d, %v; want 2 dropped (down, EIO)", n, err)
	}

	up(t, ns, d)
	bad := bytes.Clone(ping)
	bad[0] = virtio.FlagNeedsCsum
	binary.LittleEndian.PutUint16(bad[6:], 1000) // csum_start beyond the packet
	short := make([]byte, 5)                     // shorter than the virtio header
	n, err = d.Write([][]byte{ping, bad, ping, short}, 0)
	if n != 2 || !errors.As(err, &de) || de.Dropped[tundev.DropInvalid] != 2 || de.First != 1 || !errors.Is(err, unix.EINVAL) {
		t.Fatalf("write: %d, %v; want 2 written, frames 1 and 3 dropped (invalid, EINVAL)", n, err)
	}
	s := d.Stats()
	if s.WrittenFrames != 2 || s.Dropped[tundev.DropInvalid] != 2 || s.Dropped[tundev.DropDown] != 2 {
		t.Errorf("stats %+v", s)
	}
}

// TestReadWriteDoNotAllocate: a batch of pings written and their replies
// read back, with no allocation.
func TestReadWriteDoNotAllocate(t *testing.T) {
	ns := newNS(t)
	d := open(t, ns, tundev.Config{Name: "vnic0", Offloads: tundev.All})
	up(t, ns, d)
	const batch = 8
	const off = 16 // headroom
	wbufs := make([][]byte, batch)
	for i := range wbufs {
		wbufs[i] = append(make([]byte, off), echoFrame(peerAddr, devAddr.Addr(), 7, uint16(i), 100)...)
	}
	rbufs := make([][]byte, batch)
	for i := range rbufs {
		rbufs[i] = make([]byte, off+tundev.MaxFrame)
	}
	sizes := make([]int, batch)
	var failed error
	allocs := testing.AllocsPerRun(100, func() {
		if n, err := d.Write(wbufs, off); n != batch || err != nil {
			failed = fmt.Errorf("write: %d, %v", n, err)
			return
		}
		for got := 0; got < batch; {
			n, err := d.Read(rbufs[got:], sizes[got:], off)
			if err != nil {
				failed = err
				return
			}
			got += n
		}
	})
	if failed != nil {
		t.Fatal(failed)
	}
	if allocs != 0 {
		t.Errorf("%v allocations per batch of %d frames written and read, want 0", allocs, batch)
	}
	var f frame
	f.hdr.Decode(rbufs[0][off:])
	f.pkt = rbufs[0][off+virtio.Size : off+sizes[0]]
	if !isICMP(f, 0, devAddr.Addr(), peerAddr) {
		t.Errorf("frame 0 is not an echo reply: % x", f.pkt)
	}
}

// TestTryReadDoesNotWait returns at once with 0 frames on an idle device,
// even after a read deadline has passed.
func TestTryReadDoesNotWait(t *testing.T) {
	ns := newNS(t)
	d := open(t, ns, tundev.Config{Name: "vnic0", Offloads: tundev.All})
	d.SetReadDeadline(time.Now().Add(-time.Second))
	n, err := d.TryRead([][]byte{make([]byte, tundev.MaxFrame)}, make([]int, 1), 0)
	if n != 0 || err != nil {
		t.Errorf("TryRead: %d, %v", n, err)
	}
	_, err = d.Read([][]byte{make([]byte, tundev.MaxFrame)}, make([]int, 1), 0)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("Read past the deadline: %v", err)
	}
}

// TestReadShortBufferTruncates: a frame longer than the read buffer is
// cut to the buffer, and the rest of it is lost (tun_put_user).
func TestReadShortBufferTruncates(t *testing.T) {
	ns := newNS(t)
	d := open(t, ns, tundev.Config{Name: "vnic0", Offloads: tundev.All})
	up(t, ns, d)
	if _, err := d.Write([][]byte{echoFrame(peerAddr, devAddr.Addr(), 7, 1, 1000)}, 0); err != nil {
		t.Fatal(err)
	}
	sizes := make([]int, 1)
	d.SetReadDeadline(time.Now().Add(time.Second))
	n, err := d.Read([][]byte{make([]byte, 100)}, sizes, 0)
	if n != 1 || err != nil || sizes[0] != 100 {
		t.Fatalf("1038-byte frame into a 100-byte buffer: n=%d size=%d err=%v; want 1 frame of 100 bytes", n, sizes[0], err)
	}
	n, err = d.TryRead([][]byte{make([]byte, tundev.MaxFrame)}, sizes, 0)
	if n != 0 || err != nil {
		t.Errorf("after the truncated frame: n=%d size=%d err=%v; want nothing left", n, sizes[0], err)
	}
}
