package tundev

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"vnic/vnic/drop"
)

const cloneDevice = "/dev/net/tun"

// Device is an open TUN device. Read and Write may run concurrently with
// each other (one reader and one writer at a time; concurrent Reads, or
// concurrent Writes, are serialised); Close may be called at any time.
type Device struct {
	name     string
	hdrLen   int
	offloads Offloads
	cfg      Config // for OpenQueue
	file     *os.File
	rc       syscall.RawConn

	closeOnce sync.Once
	closed    atomic.Bool
	closeErr  error

	// Read's state, shared with readFn (a method value made once in Open,
	// so that a Read allocates nothing).
	readMu sync.Mutex
	rbufs  [][]byte
	rsizes []int
	roff   int
	rn     int
	rbytes int
	rerr   error
	rwait  bool // wait for a first frame (Read) or not (TryRead)
	readFn func(fd uintptr) bool
	tryFn  func(fd uintptr)

	// Write's state, shared with writeFn.
	writeMu   sync.Mutex
	wbufs     [][]byte
	woff      int
	wi, wn    int
	wbytes    int
	werr      error
	wdrop     drop.Counts
	wfirst    int
	wfirstErr error
	writeFn   func(fd uintptr) bool

	readFrames, readBytes       atomic.Uint64
	writtenFrames, writtenBytes atomic.Uint64
	dropped                     drop.Counters
}

// validIfName mirrors the kernel's dev_valid_name ("" lets the kernel
// choose a name).
func validIfName(name string) error {
	bad := ""
	switch {
	case len(name) >= unix.IFNAMSIZ:
		bad = fmt.Sprintf("longer than %d bytes", unix.IFNAMSIZ-1)
	case name == "." || name == "..":
		bad = "not a name"
	default:
		for _, c := range []byte(name) {
			switch c {
			case '/', ':', ' ', '\t', '\n', '\v', '\f', '\r', 0:
				bad = fmt.Sprintf("contains %q", c)
			}
		}
	}
	if bad == "" {
		return nil
	}
	return &openError{
		msg:  fmt.Sprintf("invalid interface name %q: %s (at most %d bytes, no '/', ':' or whitespace)", name, bad, unix.IFNAMSIZ-1),
		kind: ErrInvalidName, err: unix.EINVAL,
	}
}

// Open creates a TUN device (IFF_TUN|IFF_NO_PI|IFF_VNET_HDR, plus IFF_NAPI
// if asked; IFF_TAP instead of IFF_TUN with Config.TAP) in the network namespace of the calling OS thread: to create
// it in another namespace, call Open inside nsutil.Do. The device belongs
// to that namespace for good, and the Device works from any goroutine and
// thread afterwards. The device is not persistent: it disappears when the
// Device is closed (or the process exits). It is created down, without
// addresses (see nsutil.ConfigureLink).
//
// The offloads are negotiated with TUNSETOFFLOAD: if the kernel refuses
// cfg.Offloads (EINVAL), Open drops, one step at a time, bits it does not
// know, then USO4|USO6 (kernels before 6.2), TSO_ECN, UFO, TSO4|TSO6 and
// CSUM, and retries; it logs what was refused. UFO is never granted: the
// kernel accepts the bit but ignores it (since 4.14). Offloads reports
// what was granted.
//
// Equivalent to: ip tuntap add name NAME mode tun|tap vnet_hdr [napi], plus
// TUNSETVNETHDRSZ and TUNSETOFFLOAD, which only the holder of the fd can
// do.
func Open(cfg Config) (*Device, error) {
	return open(cfg, false)
}

// OpenQueue attaches another queue to a multi-queue device (Config.
// MultiQueue) and returns it as a Device of its own, with the same
// header size and offloads. It must be called in the device's network
// namespace. The interface lives while any of its queues is open.
func (d *Device) OpenQueue() (*Device, error) {
	if !d.cfg.MultiQueue {
		return nil, fmt.Errorf("tundev: %s is not a multi-queue device", d.name)
	}
	c := d.cfg
	c.Name, c.Offloads = d.name, d.offloads
	return open(c, true)
}

func open(cfg Config, attach bool) (*Device, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	hdrLen := cfg.VnetHdrSize
	auto := hdrLen == 0
	if auto {
		hdrLen = 10
		if cfg.Offloads&(UDPTunnel|UDPTunnelCsum) != 0 {
			hdrLen = tunnelHdrLen
		}
	}
	if hdrLen != 10 && hdrLen != 12 && hdrLen != tunnelHdrLen {
		return nil, fmt.Errorf("tundev: VnetHdrSize %d: must be 10 (virtio_net_hdr), 12 (virtio_net_hdr_mrg_rxbuf) or 24 (virtio_net_hdr_v1_hash_tunnel)", cfg.VnetHdrSize)
	}
	want := cfg.Offloads
	if hdrLen < tunnelHdrLen && want&(UDPTunnel|UDPTunnelCsum) != 0 {
		// The kernel grants them anyway, then writes a 24-byte header
		// into the smaller one (tun_vnet_hdr_put): never ask.
		want &^= UDPTunnel | UDPTunnelCsum
		log.Warn("tundev: UDP tunnel offloads need the 24-byte virtio header: not asked for", "vnet_hdr_size", hdrLen)
	}
	if err := validIfName(cfg.Name); err != nil {
		return nil, err
	}

	fd, err := unix.Open(cloneDevice, unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		switch {
		case errors.Is(err, unix.ENOENT):
			return nil, &openError{msg: "no /dev/net/tun: run `modprobe tun`", kind: ErrNoTUN, err: err}
		case errors.Is(err, unix.ENODEV), errors.Is(err, unix.ENXIO):
			return nil, &openError{msg: "/dev/net/tun exists but the tun driver is not loaded: run `modprobe tun`", kind: ErrNoTUN, err: err}
		case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
			return nil, &openError{msg: "cannot open /dev/net/tun: creating a TUN device needs root or CAP_NET_ADMIN", kind: ErrPermission, err: err}
		}
		return nil, fmt.Errorf("tundev: open %s: %w", cloneDevice, err)
	}
	ok := false
	defer func() {
		if !ok {
			unix.Close(fd)
		}
	}()

	ifr, err := unix.NewIfreq(cfg.Name)
	if err != nil {
		return nil, &openError{msg: fmt.Sprintf("invalid interface name %q: %v", cfg.Name, err), kind: ErrInvalidName, err: err}
	}
	// IFF_TUN_EXCL: fail with EBUSY if the name exists, instead of
	// attaching to an existing persistent TUN of that name.
	flags := uint16(unix.IFF_TUN | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
	if cfg.TAP {
		flags = unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR
	}
	if !attach {
		flags |= unix.IFF_TUN_EXCL
	}
	if cfg.NAPI {
		flags |= unix.IFF_NAPI
	}
	if cfg.MultiQueue {
		flags |= unix.IFF_MULTI_QUEUE
	}
	ifr.SetUint16(flags)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		switch {
		case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
			return nil, &openError{msg: "creating a TUN device needs root or CAP_NET_ADMIN", kind: ErrPermission, err: err}
		case errors.Is(err, unix.EBUSY), errors.Is(err, unix.EEXIST):
			return nil, &openError{
				msg:  fmt.Sprintf("interface %s already exists: choose another --name or delete it with `ip link del %s`", cfg.Name, cfg.Name),
				kind: ErrNameTaken, err: err,
			}
		case errors.Is(err, unix.ENFILE):
			return nil, &openError{msg: fmt.Sprintf("no free interface name for pattern %q", cfg.Name), kind: ErrNameTaken, err: err}
		}
		return nil, fmt.Errorf("tundev: TUNSETIFF %q: %w", cfg.Name, err)
	}
	name := ifr.Name()

	if err := unix.IoctlSetPointerInt(fd, unix.TUNSETVNETHDRSZ, hdrLen); err != nil {
		return nil, fmt.Errorf("tundev: %s: TUNSETVNETHDRSZ %d: %w", name, hdrLen, err)
	}
	granted, err := negotiate(fd, want)
	if err != nil {
		return nil, fmt.Errorf("tundev: %s: %w", name, err)
	}
	if refused := cfg.Offloads &^ granted; refused != 0 {
		log.Warn("tundev: kernel refused offloads", "dev", name, "wanted", cfg.Offloads, "refused", refused, "granted", granted)
	}
	if auto && hdrLen == tunnelHdrLen && granted&UDPTunnel == 0 {
		// No UDP tunnel offloads (Linux before 6.17): back to the plain
		// header, which is all such a kernel parses.
		if err := unix.IoctlSetPointerInt(fd, unix.TUNSETVNETHDRSZ, 10); err != nil {
			return nil, fmt.Errorf("tundev: %s: TUNSETVNETHDRSZ 10: %w", name, err)
		}
		hdrLen = 10
		log.Warn("tundev: no UDP tunnel offloads: using the 10-byte virtio header", "dev", name)
	}
	log.Debug("tundev: opened", "dev", name, "offloads", granted, "napi", cfg.NAPI, "vnet_hdr_size", hdrLen)

	// The fd is non-blocking, so os.NewFile registers it with the
	// netpoller.
	file := os.NewFile(uintptr(fd), "tun:"+name)
	rc, err := file.SyscallConn()
	if err != nil {
		file.Close()
		ok = true // file owns the fd now
		return nil, fmt.Errorf("tundev: %s: %w", name, err)
	}
	ok = true
	d := &Device{name: name, hdrLen: hdrLen, offloads: granted, file: file, rc: rc, cfg: cfg}
	d.readFn = d.readCallback
	d.tryFn = func(fd uintptr) { d.readCallback(fd) }
	d.writeFn = d.writeCallback
	return d, nil
}

// negotiate sets the offloads, giving bits up in fallback order while the
// kernel refuses the set (set_offload: EINVAL for any bit left over).
func negotiate(fd int, want Offloads) (Offloads, error) {
	try := want
	for i := 0; ; {
		err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, int(try))
		if err == nil {
			break
		}
		if err != unix.EINVAL {
			return 0, fmt.Errorf("TUNSETOFFLOAD %v: %w", try, err)
		}
		for i < len(fallback) && try&fallback[i] == 0 {
			i++
		}
		if i == len(fallback) {
			return 0, fmt.Errorf("TUNSETOFFLOAD %v: %w", try, err)
		}
		try &^= fallback[i]
		i++
	}
	// set_offload clears TUN_F_UFO without an error: it is not granted.
	return try &^ UFO, nil
}

// SetOffloads changes the offloads of an open device to exactly o, with
// no fallback, and returns an error (EINVAL) when the kernel refuses the
// set. The virtio header size does not change. Not safe to call while
// another goroutine calls Offloads.
//
// Equivalent to: ioctl(fd, TUNSETOFFLOAD, o)
func (d *Device) SetOffloads(o Offloads) error {
	var serr error
	if err := d.rc.Control(func(fd uintptr) {
		serr = unix.IoctlSetInt(int(fd), unix.TUNSETOFFLOAD, int(o))
	}); err != nil {
		return d.opError("set offloads", err)
	}
	if serr != nil {
		return fmt.Errorf("tundev: %s: TUNSETOFFLOAD %v: %w", d.name, o, serr)
	}
	d.offloads = o &^ UFO
	return nil
}

// Name returns the interface name.
func (d *Device) Name() string { return d.name }

// Offloads returns the offloads the kernel granted.
func (d *Device) Offloads() Offloads { return d.offloads }

// VnetHdrSize returns the virtio header length in front of every frame
// (10, 12 or 24).
func (d *Device) VnetHdrSize() int { return d.hdrLen }

// Stats returns the device's counters.
func (d *Device) Stats() Stats {
	s := Stats{
		ReadFrames:    d.readFrames.Load(),
		ReadBytes:     d.readBytes.Load(),
		WrittenFrames: d.writtenFrames.Load(),
		WrittenBytes:  d.writtenBytes.Load(),
	}
	s.Dropped = d.dropped.Load()
	return s
}

// Read reads up to len(bufs) frames. It blocks (in Go's netpoller, without
// a thread) until at least one frame is available, then takes whatever
// else is already queued, without blocking. Frame i, its virtio header
// followed by the IP packet, is written to bufs[i][offset:] and its length
// to sizes[i]; Read returns the number of frames. Each bufs[i][offset:]
// should hold MaxFrame bytes: the kernel truncates a longer frame
// silently (tun_put_user copies what fits and drops the rest of the
// packet). After Close, Read returns an error matching os.ErrClosed.
// Read does not allocate.
func (d *Device) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	return d.read(bufs, sizes, offset, true)
}

// TryRead is Read without the wait: it returns 0 frames and no error when
// none is queued. The read deadline does not apply to it.
func (d *Device) TryRead(bufs [][]byte, sizes []int, offset int) (int, error) {
	return d.read(bufs, sizes, offset, false)
}

// SetReadDeadline sets the time after which a waiting Read returns an
// error matching os.ErrDeadlineExceeded; the zero time means no deadline.
func (d *Device) SetReadDeadline(t time.Time) error {
	return d.file.SetReadDeadline(t)
}

func (d *Device) read(bufs [][]byte, sizes []int, offset int, wait bool) (int, error) {
	if len(bufs) == 0 {
		return 0, nil
	}
	if len(sizes) < len(bufs) {
		return 0, fmt.Errorf("tundev: read %s: %d sizes for %d buffers", d.name, len(sizes), len(bufs))
	}
	for i, b := range bufs {
		if offset < 0 || len(b) < offset+d.hdrLen {
			return 0, fmt.Errorf("tundev: read %s: buffer %d has %d bytes, need offset %d + virtio header %d at least", d.name, i, len(b), offset, d.hdrLen)
		}
	}
	d.readMu.Lock()
	defer d.readMu.Unlock()
	d.rbufs, d.rsizes, d.roff, d.rn, d.rbytes, d.rerr, d.rwait = bufs, sizes, offset, 0, 0, nil, wait
	var err error
	if wait {
		err = d.rc.Read(d.readFn)
	} else {
		// Control runs the callback once, ignoring the read deadline.
		err = d.rc.Control(d.tryFn)
	}
	n, bytes, rerr := d.rn, d.rbytes, d.rerr
	d.rbufs, d.rsizes, d.rerr = nil, nil, nil
	if n > 0 {
		// An error after some frames comes back on the next Read.
		d.readFrames.Add(uint64(n))
		d.readBytes.Add(uint64(bytes))
		return n, nil
	}
	if err == nil {
		err = rerr
	}
	if err == nil { // TryRead, nothing queued
		return 0, nil
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return 0, fmt.Errorf("tundev: read %s: %w", d.name, err)
	}
	return 0, d.opError("read", err)
}

// readCallback is the RawConn.Read callback: it returns false (wait for the
// fd to become readable) only while no frame has been read.
func (d *Device) readCallback(fd uintptr) bool {
	for d.rn < len(d.rbufs) {
		n, err := unix.Read(int(fd), d.rbufs[d.rn][d.roff:])
		switch err {
		case nil:
			d.rsizes[d.rn] = n
			d.rn++
			d.rbytes += n
		case unix.EINTR:
		case unix.EAGAIN:
			return d.rn > 0 || !d.rwait
		default:
			d.rerr = err
			return true
		}
	}
	return true
}

// Write writes each bufs[i][offset:] (virtio header, then the IP packet)
// as one frame and returns how many frames the kernel took. A frame the
// kernel refuses (EINVAL: a bad header or packet; EIO: the interface is
// down; ENOMEM/ENOBUFS) is skipped and counted, and the other frames are
// still written: the error is then a *DropError (errors.Is ErrDropped)
// with the counts by DropReason, and written + Total() == len(bufs). Any
// other error stops the batch; after Close the error matches os.ErrClosed.
// Write does not allocate unless a frame is refused.
func (d *Device) Write(bufs [][]byte, offset int) (int, error) {
	for i, b := range bufs {
		if offset < 0 || len(b) < offset {
			return 0, fmt.Errorf("tundev: write %s: buffer %d has %d bytes, offset %d", d.name, i, len(b), offset)
		}
	}
	if len(bufs) == 0 {
		return 0, nil
	}
	d.writeMu.Lock()
	defer d.writeMu.Unlock()
	d.wbufs, d.woff, d.wi, d.wn, d.wbytes, d.werr = bufs, offset, 0, 0, 0, nil
	d.wdrop = drop.Counts{}
	d.wfirst, d.wfirstErr = -1, nil
	err := d.rc.Write(d.writeFn)
	n, bytes, werr := d.wn, d.wbytes, d.werr
	d.wbufs, d.werr = nil, nil
	d.writtenFrames.Add(uint64(n))
	d.writtenBytes.Add(uint64(bytes))
	var derr *DropError
	if d.wfirst >= 0 {
		derr = &DropError{Dropped: d.wdrop, First: d.wfirst, FirstErr: d.wfirstErr}
		d.dropped.Flush(&d.wdrop)
		d.wfirstErr = nil
	}
	if err == nil {
		err = werr
	}
	if err != nil {
		err = d.opError("write", err)
		if derr != nil {
			err = errors.Join(err, derr)
		}
		return n, err
	}
	if derr != nil {
		return n, derr
	}
	return n, nil
}

// writeCallback is the RawConn.Write callback.
func (d *Device) writeCallback(fd uintptr) bool {
	for d.wi < len(d.wbufs) {
		b := d.wbufs[d.wi][d.woff:]
		n, err := unix.Write(int(fd), b)
		var reason drop.Reason
		switch err {
		case nil:
			if n != len(b) { // a TUN write is one packet, all or nothing
				d.werr = fmt.Errorf("short write: %d of %d bytes", n, len(b))
				return true
			}
			d.wn++
			d.wbytes += n
			d.wi++
			continue
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		case unix.EINVAL:
			reason = DropInvalid
		case unix.EIO:
			reason = DropDown
		case unix.ENOMEM, unix.ENOBUFS:
			reason = DropNoMem
		default:
			d.werr = err
			return true
		}
		d.wdrop.Add(reason)
		if d.wfirst < 0 {
			d.wfirst, d.wfirstErr = d.wi, err
		}
		d.wi++
	}
	return true
}

// opError wraps a read or write error; once the device is closed (or the
// kernel detached it: EBADFD) it matches os.ErrClosed.
func (d *Device) opError(op string, err error) error {
	if d.closed.Load() || errors.Is(err, os.ErrClosed) || errors.Is(err, unix.EBADFD) {
		return fmt.Errorf("tundev: %s %s: %w", op, d.name, os.ErrClosed)
	}
	return fmt.Errorf("tundev: %s %s: %w", op, d.name, err)
}

// Close closes the device, which removes the interface (it is not
// persistent). A Read or Write waiting in another goroutine returns an
// error matching os.ErrClosed. Closing twice is not an error.
func (d *Device) Close() error {
	d.closeOnce.Do(func() {
		d.closed.Store(true)
		if err := d.file.Close(); err != nil {
			d.closeErr = fmt.Errorf("tundev: close %s: %w", d.name, err)
		}
	})
	return d.closeErr
}
