package kerneltest

import (
	"bytes"
	"errors"
	"fmt"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"vnic/vnic/virtio"
)

// Offload sets for TUNSETOFFLOAD.
const (
	// offloadsAll is what the GSO oracle's `in` and the daemon's device
	// negotiate: checksum, TSO for both families with ECN, and USO.
	offloadsAll = unix.TUN_F_CSUM | unix.TUN_F_TSO4 | unix.TUN_F_TSO6 | unix.TUN_F_TSO_ECN |
		unix.TUN_F_USO4 | unix.TUN_F_USO6
)

// maxFrame is the largest frame a TUN read can return: a 64 KiB IP packet
// plus the virtio header, rounded up.
const maxFrame = 65535 + virtio.SizeMrg + 64

// tunDev is one TUN device opened with IFF_TUN|IFF_NO_PI|IFF_VNET_HDR. The
// file descriptor is non-blocking; reads wait with poll(2).
type tunDev struct {
	name string
	fd   int
	buf  []byte
}

// openTUN creates TUN device name in the calling thread's network
// namespace (call it inside Netns.Do) and sets its offloads.
//
// Equivalent to: ip tuntap add name NAME mode tun vnet_hdr [napi]; plus
// TUNSETOFFLOAD, which only a process holding the fd can do.
func openTUN(name string, napi bool, offloads int) (*tunDev, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("kerneltest: open /dev/net/tun: %w (modprobe tun)", err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("kerneltest: TUN name %q: %w", name, err)
	}
	flags := uint16(unix.IFF_TUN | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
	if napi {
		flags |= unix.IFF_NAPI
	}
	ifr.SetUint16(flags)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("kerneltest: TUNSETIFF %s: %w", name, err)
	}
	if err := unix.IoctlSetPointerInt(fd, unix.TUNSETVNETHDRSZ, virtio.Size); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("kerneltest: TUNSETVNETHDRSZ %s: %w", name, err)
	}
	if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, offloads); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("kerneltest: TUNSETOFFLOAD %s %#x: %w", name, offloads, err)
	}
	return &tunDev{name: name, fd: fd, buf: make([]byte, maxFrame)}, nil
}

func (d *tunDev) close() error {
	if d.fd < 0 {
		return nil
	}
	err := unix.Close(d.fd)
	d.fd = -1
	return err
}

// write writes one frame: the virtio header then the IP packet, in one
// write(2) (a TUN write is one packet).
func (d *tunDev) write(h virtio.Hdr, pkt []byte) error {
	frame := make([]byte, virtio.Size+len(pkt))
	h.Encode(frame)
	copy(frame[virtio.Size:], pkt)
	return d.writeRaw(frame)
}

// writeRaw writes a frame that already starts with its virtio header.
func (d *tunDev) writeRaw(frame []byte) error {
	var h virtio.Hdr
	h.Decode(frame)
	for {
		n, err := unix.Write(d.fd, frame)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("kerneltest: write %d-byte frame (%v) into %s: %w", len(frame), h, d.name, err)
		}
		if n != len(frame) {
			return fmt.Errorf("kerneltest: short write into %s: %d of %d bytes", d.name, n, len(frame))
		}
		return nil
	}
}

// errTimeout is returned by read when nothing arrived before the deadline.
var errTimeout = errors.New("kerneltest: read timeout")

// read returns the next frame, waiting until deadline at most. The frame is
// a fresh copy.
func (d *tunDev) read(deadline time.Time) (Frame, error) {
	for {
		n, err := unix.Read(d.fd, d.buf)
		if err == nil {
			if n < virtio.Size {
				return Frame{}, fmt.Errorf("kerneltest: %d-byte frame from %s", n, d.name)
			}
			var f Frame
			f.Hdr.Decode(d.buf)
			f.Pkt = bytes.Clone(d.buf[virtio.Size:n])
			return f, nil
		}
		if err != unix.EAGAIN && err != unix.EINTR {
			return Frame{}, fmt.Errorf("kerneltest: read %s: %w", d.name, err)
		}
		wait := time.Until(deadline)
		if wait <= 0 {
			return Frame{}, errTimeout
		}
		ms := int((wait + time.Millisecond - 1) / time.Millisecond)
		fds := []unix.PollFd{{Fd: int32(d.fd), Events: unix.POLLIN}}
		if _, err := unix.Poll(fds, ms); err != nil && err != unix.EINTR {
			return Frame{}, fmt.Errorf("kerneltest: poll %s: %w", d.name, err)
		}
	}
}

// drain discards every frame already queued.
func (d *tunDev) drain() {
	for {
		if _, err := unix.Read(d.fd, d.buf); err != nil && err != unix.EINTR {
			return
		}
	}
}

// collect reads frames until nothing has arrived for quiet after the last
// one (or for first before the first one), and at most for limit in all.
// When want >= 0 and the kept frames carry want TCP/UDP payload bytes in
// all, everything is out: collect then waits only grace for stragglers.
// Frames keep returns false for are dropped (and counted).
func (d *tunDev) collect(first, quiet, grace, limit time.Duration, want int, keep func(Frame) bool) ([]Frame, int, error) {
	start := time.Now()
	end := start.Add(limit)
	deadline := start.Add(first)
	var out []Frame
	dropped, got := 0, 0
	for {
		if deadline.After(end) {
			deadline = end
		}
		f, err := d.read(deadline)
		if errors.Is(err, errTimeout) {
			return out, dropped, nil
		}
		if err != nil {
			return out, dropped, err
		}
		if !keep(f) {
			dropped++
			continue
		}
		out = append(out, f)
		if n := PayloadLen(f.Pkt); n > 0 {
			got += n
		}
		if want >= 0 && got >= want {
			deadline = time.Now().Add(grace)
		} else {
			deadline = time.Now().Add(quiet)
		}
	}
}

// ethtool ioctl commands and string sets (include/uapi/linux/ethtool.h).
const (
	ethtoolGStrings  = 0x1b
	ethtoolGFeatures = 0x3a
	ethtoolSFeatures = 0x3b
	ethtoolGSSetInfo = 0x37
	ethSSFeatures    = 4
	ethGStringLen    = 32
)

// ifreqData is struct ifreq with ifr_data.
type ifreqData struct {
	name [unix.IFNAMSIZ]byte
	data unsafe.Pointer
	_    [24 - 8]byte
}

func ethtoolIoctl(fd int, dev string, data unsafe.Pointer) error {
	var ifr ifreqData
	copy(ifr.name[:], dev)
	ifr.data = data
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr)))
	if e != 0 {
		return e
	}
	return nil
}

// setFeature turns the ethtool feature called name (as `ethtool -k` lists
// it: "rx-udp-gro-forwarding", "rx-gro") on or off for dev in the calling
// thread's network namespace, and checks that it took effect.
//
// Equivalent to: ethtool -K dev name on|off
func setFeature(dev, name string, on bool) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("kerneltest: ethtool socket: %w", err)
	}
	defer unix.Close(fd)

	// ETHTOOL_GSSET_INFO: how many feature names.
	var sset struct {
		cmd      uint32
		reserved uint32
		mask     uint64
		count    uint32
	}
	sset.cmd = ethtoolGSSetInfo
	sset.mask = 1 << ethSSFeatures
	if err := ethtoolIoctl(fd, dev, unsafe.Pointer(&sset)); err != nil {
		return fmt.Errorf("kerneltest: ETHTOOL_GSSET_INFO %s: %w", dev, err)
	}
	n := int(sset.count)
	// ETHTOOL_GSTRINGS: the names, 32 bytes each.
	gs := make([]byte, 12+n*ethGStringLen)
	*(*uint32)(unsafe.Pointer(&gs[0])) = ethtoolGStrings
	*(*uint32)(unsafe.Pointer(&gs[4])) = ethSSFeatures
	*(*uint32)(unsafe.Pointer(&gs[8])) = uint32(n)
	if err := ethtoolIoctl(fd, dev, unsafe.Pointer(&gs[0])); err != nil {
		return fmt.Errorf("kerneltest: ETHTOOL_GSTRINGS %s: %w", dev, err)
	}
	bit := -1
	for i := 0; i < n; i++ {
		s := gs[12+i*ethGStringLen : 12+(i+1)*ethGStringLen]
		if j := bytes.IndexByte(s, 0); j >= 0 {
			s = s[:j]
		}
		if string(s) == name {
			bit = i
			break
		}
	}
	if bit < 0 {
		return fmt.Errorf("kerneltest: %s has no ethtool feature %q", dev, name)
	}
	blocks := (n + 31) / 32
	// ETHTOOL_SFEATURES: one {valid, requested} pair per 32 features.
	sf := make([]uint32, 2+2*blocks)
	sf[0] = ethtoolSFeatures
	sf[1] = uint32(blocks)
	sf[2+2*(bit/32)] = 1 << (bit % 32)
	if on {
		sf[3+2*(bit/32)] = 1 << (bit % 32)
	}
	if err := ethtoolIoctl(fd, dev, unsafe.Pointer(&sf[0])); err != nil {
		return fmt.Errorf("kerneltest: ETHTOOL_SFEATURES %s %s: %w", dev, name, err)
	}
	// ETHTOOL_GFEATURES: {available, requested, active, never_changed}.
	gf := make([]uint32, 2+4*blocks)
	gf[0] = ethtoolGFeatures
	gf[1] = uint32(blocks)
	if err := ethtoolIoctl(fd, dev, unsafe.Pointer(&gf[0])); err != nil {
		return fmt.Errorf("kerneltest: ETHTOOL_GFEATURES %s: %w", dev, err)
	}
	active := gf[2+4*(bit/32)+2]&(1<<(bit%32)) != 0
	if active != on {
		return fmt.Errorf("kerneltest: ethtool -K %s %s %v did not take effect (fixed feature?)", dev, name, onOff(on))
	}
	return nil
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// SetFeature turns the ethtool feature name on or off for device dev in
// the namespace.
//
// Equivalent to: ip netns exec NS ethtool -K dev name on|off
func (n *Netns) SetFeature(dev, name string, on bool) error {
	return n.Do(func() error { return setFeature(dev, name, on) })
}
