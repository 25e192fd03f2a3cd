package mmsg

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"vnic/vnic/drop"
)

// Hdr is one message of a batch: struct mmsghdr (a struct msghdr and the
// byte count the kernel fills in).
type Hdr struct {
	Msg unix.Msghdr
	// Len is the number of bytes received or sent.
	Len uint32
}

// SetIov points the message at iov (the caller keeps iov alive).
func (h *Hdr) SetIov(iov []unix.Iovec) {
	if len(iov) == 0 {
		h.Msg.Iov = nil
		h.Msg.SetIovlen(0)
		return
	}
	h.Msg.Iov = &iov[0]
	h.Msg.SetIovlen(len(iov))
}

// SetName points the message's address at b (a raw sockaddr: where a
// received datagram came from, or where to send one); nil for none.
func (h *Hdr) SetName(b []byte) {
	if len(b) == 0 {
		h.Msg.Name, h.Msg.Namelen = nil, 0
		return
	}
	h.Msg.Name, h.Msg.Namelen = &b[0], uint32(len(b))
}

// SetControl points the message's ancillary data at b; nil for none.
func (h *Hdr) SetControl(b []byte) {
	if len(b) == 0 {
		h.Msg.Control = nil
		h.Msg.SetControllen(0)
		return
	}
	h.Msg.Control = &b[0]
	h.Msg.SetControllen(len(b))
}

// Iov returns an iovec for b.
func Iov(b []byte) unix.Iovec {
	var v unix.Iovec
	if len(b) > 0 {
		v.Base = &b[0]
	}
	v.SetLen(len(b))
	return v
}

// Conn is a non-blocking datagram socket read and written in batches.
// One Recv and one Send may run at the same time (concurrent Recvs, or
// Sends, are serialised); Close may be called at any time.
type Conn struct {
	file *os.File
	rc   syscall.RawConn
	name string

	closeOnce sync.Once
	closed    atomic.Bool
	closeErr  error

	rmu    sync.Mutex
	rhdrs  []Hdr
	rflags int
	rn     int
	rerr   error
	readFn func(fd uintptr) bool

	wmu     sync.Mutex
	whdrs   []Hdr
	wn      int
	werr    error
	writeFn func(fd uintptr) bool
}

// New takes ownership of fd, a socket, makes it non-blocking and
// registers it with the netpoller. name is for errors ("vxlan underlay",
// "AF_PACKET on v1").
func New(fd int, name string) (*Conn, error) {
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("mmsg: %s: non-blocking: %w", name, err)
	}
	f := os.NewFile(uintptr(fd), name)
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("mmsg: %s: %w", name, err)
	}
	c := &Conn{file: f, rc: rc, name: name}
	c.readFn = c.readCallback
	c.writeFn = c.writeCallback
	return c, nil
}

// Control runs f with the socket's fd (setsockopt, bind, getsockname).
func (c *Conn) Control(f func(fd int) error) error {
	var ferr error
	if err := c.rc.Control(func(fd uintptr) { ferr = f(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

// Recv receives up to len(hdrs) datagrams into the buffers the headers
// point at, waiting (in the netpoller) until at least one is there; each
// header's Len, Msg.Namelen, Msg.Controllen and Msg.Flags are filled in.
// It returns how many it received. After Close the error matches
// os.ErrClosed. No allocation.
func (c *Conn) Recv(hdrs []Hdr) (int, error) {
	if len(hdrs) == 0 {
		return 0, nil
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	c.rhdrs, c.rn, c.rerr = hdrs, 0, nil
	err := c.rc.Read(c.readFn)
	n, rerr := c.rn, c.rerr
	c.rhdrs, c.rerr = nil, nil
	if n > 0 {
		return n, nil
	}
	if err == nil {
		err = rerr
	}
	return 0, c.opError("recvmmsg", err)
}

// RecvLoop receives batch after batch into hdrs until the Conn is
// closed: prepare resets the headers before each Recv (names, control
// buffers, flags), handle takes the n messages received. Any other
// receive error (an ICMP error queued on the socket, memory pressure) is
// not the end of the socket: it goes to warn, at most once per 10 s, and
// the loop goes on after a millisecond.
func (c *Conn) RecvLoop(hdrs []Hdr, prepare func(), handle func(n int), warn func(error)) {
	var lastErr time.Time
	for {
		prepare()
		n, err := c.Recv(hdrs)
		if err != nil {
			if errors.Is(err, os.ErrClosed) {
				return
			}
			if time.Since(lastErr) > 10*time.Second {
				warn(err)
				lastErr = time.Now()
			}
			time.Sleep(time.Millisecond)
			continue
		}
		handle(n)
	}
}

func (c *Conn) readCallback(fd uintptr) bool {
	for {
		n, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&c.rhdrs[0])), uintptr(len(c.rhdrs)),
			unix.MSG_DONTWAIT, 0, 0)
		switch errno {
		case 0:
			c.rn = int(n)
			return true
		case unix.EINTR:
		case unix.EAGAIN:
			return false
		default:
			c.rerr = errno
			return true
		}
	}
}

// Send sends every message of hdrs, waiting (in the netpoller) while the
// socket's buffer is full. It returns how many were sent; when that is
// less than len(hdrs), err is why the kernel refused hdrs[n] (the caller
// may skip it and send the rest). After Close the error matches
// os.ErrClosed. No allocation.
func (c *Conn) Send(hdrs []Hdr) (int, error) {
	if len(hdrs) == 0 {
		return 0, nil
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.whdrs, c.wn, c.werr = hdrs, 0, nil
	err := c.rc.Write(c.writeFn)
	n, werr := c.wn, c.werr
	c.whdrs, c.werr = nil, nil
	if err == nil {
		err = werr
	}
	if err != nil {
		return n, c.opError("sendmmsg", err)
	}
	return n, nil
}

func (c *Conn) writeCallback(fd uintptr) bool {
	for c.wn < len(c.whdrs) {
		rest := c.whdrs[c.wn:]
		n, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&rest[0])), uintptr(len(rest)),
			unix.MSG_DONTWAIT, 0, 0)
		switch errno {
		case 0:
			c.wn += int(n)
		case unix.EINTR:
		case unix.EAGAIN:
			return false
		default:
			c.werr = errno
			return true
		}
	}
	return true
}

// Close closes the socket; a waiting Recv or Send returns an error
// matching os.ErrClosed. Closing twice is not an error.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		c.closeErr = c.file.Close()
	})
	return c.closeErr
}

func (c *Conn) opError(op string, err error) error {
	if c.closed.Load() || errors.Is(err, os.ErrClosed) {
		return fmt.Errorf("mmsg: %s %s: %w", op, c.name, os.ErrClosed)
	}
	return fmt.Errorf("mmsg: %s %s: %w", op, c.name, err)
}

// SendReason names why the kernel refused a send, for the drop counters.
func SendReason(err error) drop.Reason {
	var errno unix.Errno
	if !errors.As(err, &errno) {
		return drop.SendError
	}
	switch errno {
	case unix.ENOBUFS, unix.ENOMEM, unix.EAGAIN:
		return drop.SendNoBufs
	case unix.EMSGSIZE:
		return drop.SendTooBig
	case unix.ENETUNREACH, unix.EHOSTUNREACH, unix.EHOSTDOWN, unix.ECONNREFUSED, unix.ENETDOWN, unix.ENXIO:
		return drop.SendUnreachable
	}
	return drop.SendError
}
