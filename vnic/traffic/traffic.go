package traffic

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"vnic/vnic/nsutil"
)

// Defaults for the zero values of Options.
const (
	// DefaultWrite is the TCP write (and read) size.
	DefaultWrite = 128 << 10
	// DefaultTimeout bounds a connect and any read or write that makes no
	// progress.
	DefaultTimeout = 5 * time.Second
	// DefaultDuration is the length of a run when neither Duration nor
	// Bytes is given.
	DefaultDuration = 10 * time.Second
)

// Well-known ports of the services the gVisor peer runs.
const (
	PortEcho    = 7
	PortDiscard = 9
	PortChargen = 19
)

// Options describe one run.
type Options struct {
	// Netns is the named network namespace (as `ip netns` names them) the
	// sockets are created in; "" is the caller's.
	Netns string
	// Addr is the server, "IP:port", e.g. "198.18.0.2:9" or "[fd00::2]:19".
	Addr string
	// Duration stops the run after this long (counted from when every
	// stream is connected). With Bytes also set, whichever comes first
	// wins; with neither, DefaultDuration.
	Duration time.Duration
	// Bytes stops the run after this many bytes in total over all streams,
	// if > 0. The total is exact: the last writes (reads) are cut to fit.
	Bytes int64
	// Streams is the number of parallel connections (sockets for
	// UDPSend); 0 means 1.
	Streams int
	// Write is the size of each write (read) call; 0 means DefaultWrite for
	// TCP. For UDPSend it is the size of one send: one datagram without
	// GSO, a super-datagram of several gsoSize segments with it; 0 means
	// the largest that fits a 1500-byte MTU (no GSO) or 64 segments.
	Write int
	// Timeout bounds the connect, every read or write that makes no
	// progress, and Send's final wait for the server to close; 0 means
	// DefaultTimeout.
	Timeout time.Duration
	// Rate, for UDPSend only, paces each stream to this many Gbit/s of
	// payload; 0 sends as fast as the socket takes it.
	Rate float64
}

// Result is what a run moved.
type Result struct {
	// Bytes is the payload moved over all streams (see the package
	// documentation for what counts).
	Bytes int64
	// Elapsed is the time from the start of the transfer (all streams
	// connected) to the end of the last stream.
	Elapsed time.Duration
	// Gbps is Bytes × 8 / Elapsed in 10⁹ bits per second.
	Gbps float64
	// PerStream is the bytes of each stream.
	PerStream []int64
	// Calls is the number of write (read) system calls that moved data.
	Calls int64
	// Datagrams is, for UDPSend, the number of UDP datagrams the sends
	// make on the wire (a GSO send of N bytes is ceil(N/gsoSize) of them).
	Datagrams int64
}

func (r *Result) finish(start, end time.Time) {
	r.Elapsed = end.Sub(start)
	for _, b := range r.PerStream {
		r.Bytes += b
	}
	if s := r.Elapsed.Seconds(); s > 0 {
		r.Gbps = float64(r.Bytes) * 8 / s / 1e9
	}
}

func (r Result) String() string {
	return fmt.Sprintf("%d bytes in %v: %.2f Gbit/s", r.Bytes, r.Elapsed.Round(time.Millisecond), r.Gbps)
}

// normalize fills in defaults and checks o.
func (o *Options) normalize(tcp bool) error {
	if o.Addr == "" {
		return errors.New("traffic: Options.Addr is empty: want IP:port, e.g. 198.18.0.2:9")
	}
	if o.Streams == 0 {
		o.Streams = 1
	}
	if o.Streams < 0 || o.Streams > 1024 {
		return fmt.Errorf("traffic: Streams %d: between 1 and 1024", o.Streams)
	}
	if o.Write < 0 {
		return fmt.Errorf("traffic: negative Write %d", o.Write)
	}
	if tcp && o.Write == 0 {
		o.Write = DefaultWrite
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Timeout < 0 || o.Duration < 0 || o.Bytes < 0 || o.Rate < 0 {
		return errors.New("traffic: negative Timeout, Duration, Bytes or Rate")
	}
	if o.Duration == 0 && o.Bytes == 0 {
		o.Duration = DefaultDuration
	}
	return nil
}

// resolve turns o.Addr into a literal address, resolving a host name in
// the caller's namespace (a lookup inside Do could run on other threads,
// in the wrong namespace).
func resolve(ctx context.Context, addr string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(addr); err == nil {
		return ap, nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("traffic: address %q: want IP:port: %w", addr, err)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("traffic: address %q: bad port %q", addr, port)
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil || len(ips) == 0 {
		return netip.AddrPort{}, fmt.Errorf("traffic: resolving %q: %w", host, err)
	}
	return netip.AddrPortFrom(ips[0].Unmap(), uint16(p)), nil
}

// dial opens n connections of network ("tcp" or "udp") to o.Addr inside
// o.Netns. On error every connection already open is closed.
func dial(ctx context.Context, o Options, network string, n int) ([]net.Conn, error) {
	ap, err := resolve(ctx, o.Addr)
	if err != nil {
		return nil, err
	}
	var conns []net.Conn
	// A negative FallbackDelay keeps the dial on this goroutine (no
	// Happy Eyeballs racing on other threads, which would be outside the
	// namespace).
	d := net.Dialer{Timeout: o.Timeout, FallbackDelay: -1}
	err = nsutil.Do(o.Netns, func() error {
		for range n {
			c, err := d.DialContext(ctx, network, ap.String())
			if err != nil {
				return err
			}
			conns = append(conns, c)
		}
		return nil
	})
	if err != nil {
		for _, c := range conns {
			c.Close()
		}
		where := ""
		if o.Netns != "" {
			where = " in netns " + o.Netns
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("traffic: connecting to %v%s: %w", ap, where, ctx.Err())
		}
		return nil, fmt.Errorf("traffic: connecting to %v%s: %w", ap, where, err)
	}
	return conns, nil
}

// run is the machinery shared by the bulk transfers: it holds the end of
// the run, the byte budget, and aborts every connection when ctx is done.
type run struct {
	ctx     context.Context
	o       Options
	conns   []net.Conn
	end     time.Time // zero: no time limit
	budget  atomic.Int64
	limited bool
}

func newRun(ctx context.Context, o Options, conns []net.Conn) *run {
	r := &run{ctx: ctx, o: o, conns: conns}
	if o.Duration > 0 {
		r.end = time.Now().Add(o.Duration)
	}
	if o.Bytes > 0 {
		r.limited = true
		r.budget.Store(o.Bytes)
	}
	return r
}

// abortOnCancel makes every pending and future I/O on the connections fail
// at once when ctx is done. The returned stop must be called.
func (r *run) abortOnCancel() (stop func() bool) {
	return context.AfterFunc(r.ctx, func() {
		for _, c := range r.conns {
			c.SetDeadline(time.Unix(1, 0))
		}
	})
}

// take reserves up to want bytes of the budget; 0 means the budget is
// spent.
func (r *run) take(want int) int {
	if !r.limited {
		return want
	}
	for {
		left := r.budget.Load()
		if left <= 0 {
			return 0
		}
		n := int64(want)
		if n > left {
			n = left
		}
		if r.budget.CompareAndSwap(left, left-n) {
			return int(n)
		}
	}
}

// giveBack returns reserved bytes that were not moved.
func (r *run) giveBack(n int) {
	if r.limited && n > 0 {
		r.budget.Add(int64(n))
	}
}

// deadline is the deadline of the next I/O: the end of the run or a stall
// timeout from now, whichever is first.
func (r *run) deadline() time.Time {
	d := time.Now().Add(r.o.Timeout)
	if !r.end.IsZero() && r.end.Before(d) {
		return r.end
	}
	return d
}

// over reports whether the run's time is up.
func (r *run) over() bool { return !r.end.IsZero() && !time.Now().Before(r.end) }

// ioErr classifies an I/O error: nil when the run simply ended (its time
// is up), ctx's error when cancelled, else a stall or a real error.
func (r *run) ioErr(what string, stream int, err error) error {
	if r.ctx.Err() != nil {
		return r.ctx.Err()
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		if r.over() {
			return nil
		}
		return fmt.Errorf("traffic: %s %s stream %d: no progress for %v", what, r.o.Addr, stream, r.o.Timeout)
	}
	return fmt.Errorf("traffic: %s %s stream %d: %w", what, r.o.Addr, stream, err)
}

// parallel runs f for every stream and joins the errors (ctx's error
// once, not per stream).
func (r *run) parallel(f func(i int, c net.Conn) error) error {
	errs := make([]error, len(r.conns))
	var wg sync.WaitGroup
	for i, c := range r.conns {
		wg.Go(func() { errs[i] = f(i, c) })
	}
	wg.Wait()
	if err := r.ctx.Err(); err != nil {
		return err
	}
	return errors.Join(errs...)
}

func closeAll(conns []net.Conn) {
	for _, c := range conns {
		c.Close()
	}
}

// Send is a TCP bulk transfer to a discard service (o.Addr, e.g.
// 198.18.0.2:9) over o.Streams connections: it writes until o.Duration or
// o.Bytes, then half-closes each connection and waits (up to o.Timeout)
// for the server to close, so that every counted byte has been delivered.
// Each stream carries Pattern: a receiver can tell corrupted bytes (when
// o.Write is a multiple of 256, as the default is).
// On cancellation it returns what was written so far with ctx.Err().
//
// Equivalent to: ip netns exec NS iperf3 -c HOST -P STREAMS -t DURATION
// (against a discard server instead of iperf3's).
func Send(ctx context.Context, o Options) (Result, error) {
	if err := o.normalize(true); err != nil {
		return Result{}, err
	}
	conns, err := dial(ctx, o, "tcp", o.Streams)
	if err != nil {
		return Result{}, err
	}
	defer closeAll(conns)
	res := Result{PerStream: make([]int64, len(conns))}
	var calls atomic.Int64
	start := time.Now()
	r := newRun(ctx, o, conns)
	stop := r.abortOnCancel()
	defer stop()
	err = r.parallel(func(i int, c net.Conn) error {
		buf := make([]byte, o.Write)
		for j := range buf {
			buf[j] = byte(j)
		}
		for {
			n := r.take(len(buf))
			if n == 0 {
				break
			}
			c.SetWriteDeadline(r.deadline())
			if ctx.Err() != nil { // after the deadline: see abortOnCancel
				return ctx.Err()
			}
			w, err := c.Write(buf[:n])
			res.PerStream[i] += int64(w)
			r.giveBack(n - w)
			if w > 0 {
				calls.Add(1)
			}
			if err != nil {
				if err := r.ioErr("send to", i, err); err != nil {
					return err
				}
				break
			}
		}
		// Half-close and wait for the server's close: every byte
		// counted has then been read by it.
		if tc, ok := c.(*net.TCPConn); ok {
			if err := tc.CloseWrite(); err != nil {
				return r.ioErr("send to", i, err)
			}
		}
		c.SetDeadline(time.Now().Add(o.Timeout))
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if _, err := io.Copy(io.Discard, c); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return fmt.Errorf("traffic: send to %s stream %d: the server did not close within %v of our FIN (is it a discard service?)", o.Addr, i, o.Timeout)
			}
			return fmt.Errorf("traffic: send to %s stream %d: waiting for the server to close: %w", o.Addr, i, err)
		}
		return nil
	})
	res.Calls = calls.Load()
	res.finish(start, time.Now())
	return res, err
}

// Pattern is the byte Send puts at offset off of each stream: 0, 1, ...,
// 255, 0, 1, ...
func Pattern(off int64) byte { return byte(off) }

// PatternErrors counts the bytes of b, found at offset off of a stream
// Send wrote, that are not Pattern's.
func PatternErrors(off int64, b []byte) int {
	n := 0
	for i, c := range b {
		if c != byte(off+int64(i)) {
			n++
		}
	}
	return n
}

// Receive is a TCP bulk transfer from a chargen service (o.Addr, e.g.
// 198.18.0.2:19) over o.Streams connections: it reads until o.Duration or
// o.Bytes, then closes. On cancellation it returns what was read so far
// with ctx.Err().
//
// Equivalent to: ip netns exec NS iperf3 -c HOST -R -P STREAMS -t DURATION
func Receive(ctx context.Context, o Options) (Result, error) {
	if err := o.normalize(true); err != nil {
		return Result{}, err
	}
	conns, err := dial(ctx, o, "tcp", o.Streams)
	if err != nil {
		return Result{}, err
	}
	defer closeAll(conns)
	res := Result{PerStream: make([]int64, len(conns))}
	var calls atomic.Int64
	var mu sync.Mutex
	var last time.Time
	start := time.Now()
	r := newRun(ctx, o, conns)
	stop := r.abortOnCancel()
	defer stop()
	err = r.parallel(func(i int, c net.Conn) error {
		buf := make([]byte, o.Write)
		defer func() {
			now := time.Now()
			mu.Lock()
			if now.After(last) {
				last = now
			}
			mu.Unlock()
		}()
		for {
			n := r.take(len(buf))
			if n == 0 {
				return nil
			}
			c.SetReadDeadline(r.deadline())
			if ctx.Err() != nil {
				return ctx.Err()
			}
			m, err := c.Read(buf[:n])
			res.PerStream[i] += int64(m)
			r.giveBack(n - m)
			if m > 0 {
				calls.Add(1)
			}
			if err != nil {
				if errors.Is(err, io.EOF) {
					if r.limited {
						return fmt.Errorf("traffic: receive from %s stream %d: the server closed after %d bytes", o.Addr, i, res.PerStream[i])
					}
					return nil
				}
				return r.ioErr("receive from", i, err)
			}
		}
	})
	res.Calls = calls.Load()
	res.finish(start, last)
	return res, err
}

// Echo sends data to an echo service (o.Addr, e.g. 198.18.0.2:7) over
// o.Streams connections in o.Write-sized writes while reading it back, and
// checks that each connection returns exactly data: the same bytes, then
// end of stream after its half-close. o.Duration, if set, bounds the whole
// exchange; o.Bytes is ignored.
//
// Equivalent to: ip netns exec NS nc HOST 7 < data | cmp - data
func Echo(ctx context.Context, o Options, data []byte) error {
	dur, parent := o.Duration, ctx
	o.Bytes = 0
	if err := o.normalize(true); err != nil {
		return err
	}
	if dur > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, dur)
		defer cancel()
	}
	conns, err := dial(ctx, o, "tcp", o.Streams)
	if err != nil {
		return err
	}
	defer closeAll(conns)
	r := &run{ctx: ctx, o: o, conns: conns}
	stop := r.abortOnCancel()
	defer stop()
	err = r.parallel(func(i int, c net.Conn) error {
		werr := make(chan error, 1)
		go func() {
			for off := 0; off < len(data); {
				n := min(o.Write, len(data)-off)
				c.SetWriteDeadline(time.Now().Add(o.Timeout))
				if ctx.Err() != nil {
					werr <- ctx.Err()
					return
				}
				w, err := c.Write(data[off : off+n])
				off += w
				if err != nil {
					werr <- r.ioErr("echo to", i, err)
					return
				}
			}
			if tc, ok := c.(*net.TCPConn); ok {
				if err := tc.CloseWrite(); err != nil {
					werr <- r.ioErr("echo to", i, err)
					return
				}
			}
			werr <- nil
		}()
		rerr := func() error {
			buf := make([]byte, max(o.Write, 64<<10))
			got := 0
			for {
				c.SetReadDeadline(time.Now().Add(o.Timeout))
				if ctx.Err() != nil {
					return ctx.Err()
				}
				n, err := c.Read(buf)
				if n > 0 {
					m := min(n, len(data)-got)
					if !bytes.Equal(buf[:m], data[got:got+m]) {
						k := 0
						for buf[k] == data[got+k] {
							k++
						}
						return fmt.Errorf("traffic: echo from %s stream %d: byte %d differs: sent %#02x, got %#02x", o.Addr, i, got+k, data[got+k], buf[k])
					}
					if m < n {
						return fmt.Errorf("traffic: echo from %s stream %d: more came back than the %d bytes sent", o.Addr, i, len(data))
					}
					got += n
				}
				if errors.Is(err, io.EOF) {
					if got != len(data) {
						return fmt.Errorf("traffic: echo from %s stream %d: the server closed after %d of %d bytes", o.Addr, i, got, len(data))
					}
					return nil
				}
				if err != nil {
					return r.ioErr("echo from", i, err)
				}
			}
		}()
		if rerr != nil {
			c.SetDeadline(time.Unix(1, 0)) // unblock the writer
			<-werr
			return rerr
		}
		return <-werr
	})
	if err != nil && dur > 0 && errors.Is(err, context.DeadlineExceeded) && parent.Err() == nil {
		return fmt.Errorf("traffic: echo %s: not done within Duration %v", o.Addr, dur)
	}
	return err
}
