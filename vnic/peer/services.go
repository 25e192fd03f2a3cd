package peer

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// Service is a set of the peer's services, for Options.Disable.
type Service uint32

// The services, on every peer address.
const (
	// ServiceEcho is TCP and UDP echo on port 7 (RFC 862).
	ServiceEcho Service = 1 << iota
	// ServiceDiscard is TCP and UDP discard on port 9 (RFC 863).
	ServiceDiscard
	// ServiceChargen is TCP chargen on port 19 (RFC 864).
	ServiceChargen
	// ServiceHTTP is HTTP on port 80: GET /bytes/N, POST /, GET /.
	ServiceHTTP

	// ServiceAll is every service.
	ServiceAll = ServiceEcho | ServiceDiscard | ServiceChargen | ServiceHTTP
)

// Well-known ports of the services.
const (
	PortEcho    = 7
	PortDiscard = 9
	PortChargen = 19
	PortHTTP    = 80
)

// MaxHTTPBytes is the largest N that GET /bytes/N serves.
const MaxHTTPBytes = 1 << 30

// ioBufSize is the read/write chunk of the stream services.
const ioBufSize = 64 << 10

// udpRcvBuf is the receive buffer of the UDP services, so that a burst of
// datagrams is not dropped before the service goroutine reads it.
const udpRcvBuf = 4 << 20

// services runs the peer's servers and tracks every goroutine and
// connection they start, so that close+wait leave nothing behind.
type services struct {
	log   *slog.Logger
	stats *counters
	http  *http.Server

	wg sync.WaitGroup

	mu        sync.Mutex
	closed    bool
	listeners []net.Listener
	conns     map[io.Closer]struct{}
}

func startServices(s *stack.Stack, addrs []netip.Prefix, disable Service, log *slog.Logger, stats *counters) (*services, error) {
	sv := &services{log: log, stats: stats, conns: make(map[io.Closer]struct{})}
	if disable&ServiceHTTP == 0 {
		sv.http = &http.Server{
			Handler:           sv.track(httpHandler()),
			ReadHeaderTimeout: 30 * time.Second,
			IdleTimeout:       2 * time.Minute,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		}
	}
	for _, a := range addrs {
		full := tcpip.FullAddress{NIC: nicID, Addr: tcpip.AddrFromSlice(a.Addr().AsSlice())}
		proto := ipv4.ProtocolNumber
		if a.Addr().Is6() {
			proto = ipv6.ProtocolNumber
		}
		tcps := []struct {
			svc  Service
			port uint16
			name string
			h    func(net.Conn)
		}{
			{ServiceEcho, PortEcho, "echo", sv.echo},
			{ServiceDiscard, PortDiscard, "discard", sv.discard},
			{ServiceChargen, PortChargen, "chargen", sv.chargen},
			{ServiceHTTP, PortHTTP, "http", nil},
		}
		for _, t := range tcps {
			if disable&t.svc != 0 {
				continue
			}
			full.Port = t.port
			ln, err := gonet.ListenTCP(s, full, proto)
			if err != nil {
				sv.close()
				sv.wait()
				return nil, fmt.Errorf("peer: %s service: listening on [%v]:%d: %w", t.name, a.Addr(), t.port, err)
			}
			sv.listeners = append(sv.listeners, ln)
			if t.h == nil {
				sv.wg.Go(func() {
					if err := sv.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
						sv.log.Warn("http service stopped", "addr", ln.Addr(), "err", err)
					}
				})
				continue
			}
			sv.wg.Go(func() { sv.acceptLoop(ln, t.name, t.h) })
		}
		udps := []struct {
			svc  Service
			port uint16
			name string
			echo bool
		}{
			{ServiceEcho, PortEcho, "udp echo", true},
			{ServiceDiscard, PortDiscard, "udp discard", false},
		}
		for _, u := range udps {
			if disable&u.svc != 0 {
				continue
			}
			full.Port = u.port
			c, err := listenUDP(s, full, proto)
			if err != nil {
				sv.close()
				sv.wait()
				return nil, fmt.Errorf("peer: %s service: binding [%v]:%d: %w", u.name, a.Addr(), u.port, err)
			}
			sv.conns[c] = struct{}{}
			sv.wg.Go(func() { sv.udpLoop(c, u.echo) })
		}
	}
	return sv, nil
}

// listenUDP is gonet.DialUDP with a larger receive buffer.
func listenUDP(s *stack.Stack, addr tcpip.FullAddress, proto tcpip.NetworkProtocolNumber) (*gonet.UDPConn, error) {
	var wq waiter.Queue
	ep, terr := s.NewEndpoint(udp.ProtocolNumber, proto, &wq)
	if terr != nil {
		return nil, errors.New(terr.String())
	}
	ep.SocketOptions().SetReceiveBufferSize(udpRcvBuf, true)
	if terr := ep.Bind(addr); terr != nil {
		ep.Close()
		return nil, errors.New(terr.String())
	}
	return gonet.NewUDPConn(&wq, ep), nil
}

// add registers a connection so close can interrupt it, and counts one
// more goroutine for wait. It fails once close has begun; every wg.Add
// thus happens before close, and close before wait.
func (sv *services) add(c io.Closer) bool {
	sv.mu.Lock()
	defer sv.mu.Unlock()
	if sv.closed {
		return false
	}
	if c != nil {
		sv.conns[c] = struct{}{}
	}
	sv.wg.Add(1)
	return true
}

func (sv *services) done(c io.Closer) {
	if c != nil {
		sv.mu.Lock()
		delete(sv.conns, c)
		sv.mu.Unlock()
	}
	sv.wg.Done()
}

// close stops accepting, closes every listener and connection and the
// HTTP server. The stack must then be closed (which wakes any reader still
// blocked) before wait.
func (sv *services) close() {
	sv.mu.Lock()
	sv.closed = true
	lns, conns := sv.listeners, sv.conns
	sv.listeners, sv.conns = nil, map[io.Closer]struct{}{}
	sv.mu.Unlock()
	if sv.http != nil {
		sv.http.Close() // closes its listeners and connections
	}
	for _, ln := range lns {
		ln.Close()
	}
	for c := range conns {
		c.Close()
	}
}

func (sv *services) wait() { sv.wg.Wait() }

func (sv *services) acceptLoop(ln net.Listener, name string, h func(net.Conn)) {
	for {
		c, err := ln.Accept()
		if err != nil {
			sv.mu.Lock()
			closed := sv.closed
			sv.mu.Unlock()
			if !closed {
				sv.log.Warn("accept failed; service stopped", "service", name, "addr", ln.Addr(), "err", err)
			}
			return
		}
		if !sv.add(c) {
			c.Close()
			return
		}
		sv.log.Debug("connection", "service", name, "remote", c.RemoteAddr())
		go func() {
			defer sv.done(c)
			defer c.Close()
			h(c)
		}()
	}
}

// echo sends back what it reads until the client half-closes (RFC 862).
func (sv *services) echo(c net.Conn) {
	buf := make([]byte, ioBufSize)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if tc, ok := c.(*gonet.TCPConn); ok && errors.Is(err, io.EOF) {
				tc.CloseWrite()
			}
			return
		}
	}
}

// discard reads and drops everything (RFC 863).
func (sv *services) discard(c net.Conn) {
	buf := make([]byte, ioBufSize)
	for {
		n, err := c.Read(buf)
		sv.stats.discarded.Add(uint64(n))
		if err != nil {
			return
		}
	}
}

// chargen sends the RFC 864 pattern until the client goes away; what the
// client sends is ignored (and read, so that its window stays open).
func (sv *services) chargen(c net.Conn) {
	stop := make(chan struct{})
	go func() {
		defer close(stop)
		io.Copy(io.Discard, c)
	}()
	defer func() { c.Close(); <-stop }()
	for {
		if _, err := c.Write(chargenCycle); err != nil {
			return
		}
	}
}

// chargenCycle is one full period of the RFC 864 stream: 95 lines of 72
// printable characters (' '..'~'), each line starting one character later
// than the one before, each ended by CR LF.
var chargenCycle = func() []byte {
	const first, n, width = ' ', 95, 72
	b := make([]byte, 0, n*(width+2))
	for line := range n {
		for i := range width {
			b = append(b, byte(first+(line+i)%n))
		}
		b = append(b, '\r', '\n')
	}
	return b
}()

func (sv *services) udpLoop(c *gonet.UDPConn, echo bool) {
	buf := make([]byte, 65536)
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			return
		}
		if echo {
			c.WriteTo(buf[:n], from)
		} else {
			sv.stats.discardedDatagrams.Add(1)
			sv.stats.discarded.Add(uint64(n))
		}
	}
}

// track wraps an HTTP handler so that wait also waits for handlers
// http.Server.Close does not wait for.
func (sv *services) track(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !sv.add(nil) {
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
			return
		}
		defer sv.done(nil)
		h.ServeHTTP(w, r)
	})
}

// httpPattern is the body of GET /bytes/N: byte i is i mod 251, and the
// chunk is a whole number of periods so consecutive chunks continue it.
var httpPattern = func() []byte {
	b := make([]byte, 251*256)
	for i := range b {
		b[i] = byte(i % 251)
	}
	return b
}()

const httpHelp = "vnic peer: GET /bytes/N sends N bytes (N <= 1073741824, byte i = i mod 251); POST / swallows the body and answers its length\n"

func httpHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, httpHelp)
	})
	mux.HandleFunc("GET /bytes/{n}", func(w http.ResponseWriter, r *http.Request) {
		s := r.PathValue("n")
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 || n > MaxHTTPBytes {
			http.Error(w, fmt.Sprintf("bad byte count %q: want an integer 0..%d", s, MaxHTTPBytes), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		if r.Method == http.MethodHead {
			return
		}
		for n > 0 {
			chunk := httpPattern[:min(n, int64(len(httpPattern)))]
			if _, err := w.Write(chunk); err != nil {
				return
			}
			n -= int64(len(chunk))
		}
	})
	mux.HandleFunc("POST /{$}", func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, ioBufSize)
		var n int64
		for {
			m, err := r.Body.Read(buf)
			n += int64(m)
			if err == io.EOF {
				break
			}
			if err != nil {
				http.Error(w, fmt.Sprintf("reading the upload after %d bytes: %v", n, err), http.StatusBadRequest)
				return
			}
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "%d\n", n)
	})
	return mux
}
