package daemon_test

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"vnic/vnic/daemon"
	"vnic/vnic/traffic"
)

// chargenCycle is one period of the RFC 864 stream, built here from the
// RFC (not from the peer's code): 95 lines of 72 printable characters,
// each line starting one character later, each ended by CR LF.
func chargenCycle() []byte {
	var b []byte
	for line := range 95 {
		for i := range 72 {
			b = append(b, byte(' '+(line+i)%95))
		}
		b = append(b, '\r', '\n')
	}
	return b
}

// TestE2ESoak runs bulk traffic both ways at once for 60 s (VNIC_SOAK
// overrides the duration, e.g. VNIC_SOAK=10s): an upload into the discard
// service, a download from chargen (checked byte by byte against RFC 864)
// and echo round trips (compared). Then:
//
//   - no drop inside the daemon (Stats().Drops empty), none at the
//     peer's link either (Peer.Drops: the output queue never overflowed,
//     nothing was malformed), and every byte sent reached the discard
//     service. What the peer's gVisor stack may count is not the NIC's
//     fault and is only logged: TCP retransmits and RTO expiries are the
//     senders' congestion control at work (the kernel's TUN queue or
//     gVisor's receive buffer is full for a moment), and IPInvalidDst is
//     the kernel's own IPv6 multicast (MLD, router solicitations) sent on
//     vnic0 when it comes up, which the peer does not subscribe to.
//   - flat memory: the daemon runs in this process, so HeapInuse is
//     sampled every 5 s, each time after two runtime.GC() calls (the
//     second one empties sync.Pool victim caches, so pooled buffers do not
//     count), and the last sample must be at most 1.5× the one at 10 s,
//     after warm-up (TCP windows grown, pools filled). HeapInuse after a
//     GC is what is live plus span fragmentation, without garbage, so
//     GC timing does not make it jump; the test's own buffers are
//     allocated once, up front.
func TestE2ESoak(t *testing.T) {
	if testing.Short() {
		t.Skip("a 60 s soak; runs without -short (make test)")
	}
	dur := 60 * time.Second
	if v := os.Getenv("VNIC_SOAK"); v != "" {
		var err error
		if dur, err = time.ParseDuration(v); err != nil || dur < 15*time.Second {
			t.Fatalf("VNIC_SOAK=%q: want a duration of at least 15s", v)
		}
	}
	d := startDaemon(t, daemon.Config{Pcap: "-"})
	up := dial(t, d.ns, "tcp", "198.18.0.2:9")
	down := dial(t, d.ns, "tcp", "198.18.0.2:19")
	echo := dial(t, d.ns, "tcp", "198.18.0.2:7")

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures []string
	stopped := func() bool {
		select {
		case <-stop:
			return true
		default:
			return false
		}
	}
	fail := func(format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		if stopped() && isTimeout(msg) {
			return // the deadline that stops the traffic
		}
		mu.Lock()
		failures = append(failures, msg)
		mu.Unlock()
	}
	var sent, received, echoed atomic.Uint64

	wg.Add(3)
	go func() { // upload
		defer wg.Done()
		buf := make([]byte, 256<<10)
		_, _ = rand.Read(buf)
		for !stopped() {
			_ = up.SetWriteDeadline(time.Now().Add(stallLimit))
			n, err := up.Write(buf)
			sent.Add(uint64(n))
			if err != nil {
				fail("upload after %d bytes: %v", sent.Load(), err)
				return
			}
		}
	}()
	go func() { // download, checked
		defer wg.Done()
		cycle := chargenCycle()
		buf := make([]byte, 256<<10)
		var pos uint64
		for !stopped() {
			_ = down.SetReadDeadline(time.Now().Add(stallLimit))
			n, err := down.Read(buf)
			for i := 0; i < n; i++ {
				if buf[i] != cycle[(pos+uint64(i))%uint64(len(cycle))] {
					fail("chargen byte %d is %q, want %q", pos+uint64(i), buf[i], cycle[(pos+uint64(i))%uint64(len(cycle))])
					return
				}
			}
			pos += uint64(n)
			received.Store(pos)
			if err != nil {
				fail("download after %d bytes: %v", pos, err)
				return
			}
		}
	}()
	go func() { // echo round trips, compared
		defer wg.Done()
		out := make([]byte, 128<<10)
		in := make([]byte, len(out))
		errc := make(chan error, 1)
		for !stopped() {
			_, _ = rand.Read(out)
			_ = echo.SetDeadline(time.Now().Add(stallLimit))
			go func() {
				_, err := echo.Write(out)
				errc <- err
			}()
			_, rerr := io.ReadFull(echo, in)
			werr := <-errc
			if rerr != nil || werr != nil {
				fail("echo after %d bytes: write %v, read %v", echoed.Load(), werr, rerr)
				return
			}
			if !bytes.Equal(in, out) {
				fail("echo: a %d-byte round trip came back different after %d bytes", len(out), echoed.Load())
				return
			}
			echoed.Add(uint64(len(out)))
		}
	}()

	// Memory, every 5 s.
	heap := func() uint64 {
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapInuse
	}
	start := time.Now()
	var samples []uint64
	var at10 uint64
	tick := time.NewTicker(5 * time.Second)
	for time.Since(start) < dur-time.Second {
		<-tick.C
		h := heap()
		samples = append(samples, h)
		el := time.Since(start).Round(time.Second)
		if at10 == 0 && el >= 10*time.Second {
			at10 = h
		}
		s := d.Stats()
		t.Logf("%3v: heap in use %5.1f MiB; up %6.0f MB, down %6.0f MB, echo %5.0f MB; drops %v",
			el, float64(h)/(1<<20), float64(sent.Load())/1e6, float64(received.Load())/1e6, float64(echoed.Load())/1e6, s.Drops)
	}
	tick.Stop()
	close(stop)
	// Unblock the readers and writers, then wait for them.
	_ = up.SetDeadline(time.Now())
	_ = echo.SetDeadline(time.Now())
	_ = down.SetDeadline(time.Now())
	wg.Wait()
	mu.Lock()
	for _, f := range failures {
		t.Error(f)
	}
	mu.Unlock()

	// Every byte the kernel accepted reached the discard service.
	up.Close()
	want := sent.Load()
	if !waitFor(stallLimit, func() bool { return d.Stats().Peer.Discarded >= want }) || d.Stats().Peer.Discarded != want {
		t.Errorf("discard service: %d bytes, sent %d", d.Stats().Peer.Discarded, want)
	}
	s := d.Stats()
	if len(s.Drops) != 0 {
		t.Errorf("drops inside the daemon: %v", s.Drops)
	}
	if s.Peer.Drops.Total() != 0 {
		t.Errorf("drops at the peer's link: %+v", s.Peer.Drops)
	}
	if sent.Load() == 0 || received.Load() == 0 || echoed.Load() == 0 {
		t.Errorf("a direction moved nothing: up %d, down %d, echo %d", sent.Load(), received.Load(), echoed.Load())
	}
	el := time.Since(start).Seconds()
	t.Logf("%.0f s: up %.2f Gbit/s, down %.2f Gbit/s, echo %.2f Gbit/s; host-tx %d (%d super), host-rx %d (%d merged); peer stack %+v",
		el, float64(sent.Load())*8/el/1e9, float64(received.Load())*8/el/1e9, float64(echoed.Load())*8/el/1e9,
		s.HostTX.Packets, s.HostTXSuper, s.HostRX.Packets, s.HostRXMerged, s.Peer.Stack)
	if k, err := traffic.KernelCounters(d.ns); err == nil {
		t.Logf("host kernel: retransmitted %d segments, %d RTOs, %d loss probes; DSACKs sent %d; vnic0 %s",
			k["Tcp.RetransSegs"], k["TcpExt.TCPTimeouts"], k["TcpExt.TCPLossProbes"], k["TcpExt.TCPDSACKOldSent"]+k["TcpExt.TCPDSACKOfoSent"],
			strings.Join(strings.Fields(nsExec(t, d.ns, "ip", "-s", "-o", "link", "show", "vnic0")), " "))
	}

	if at10 == 0 || len(samples) < 3 {
		t.Fatalf("too few memory samples: %v", samples)
	}
	last := samples[len(samples)-1]
	if float64(last) > 1.5*float64(at10) {
		t.Errorf("heap in use grew from %.1f MiB at 10 s to %.1f MiB at the end (more than 1.5×): a leak? samples %v",
			float64(at10)/(1<<20), float64(last)/(1<<20), samples)
	}
}

// stallLimit is how long one read or write of the soak may make no
// progress. TCP's retransmission timeout doubles after each one in a row
// (0.2, 0.4, 0.8 ... 12.8 s): on a loaded machine, where the kernel drops
// at the TUN queue while the NIC is not scheduled (counted: ip -s link TX
// dropped), a round trip can wait out several of them without anything
// being wrong; a connection that moves nothing for this long is stuck.
const stallLimit = 30 * time.Second

// isTimeout reports whether a failure message is the deadline the test
// itself set to stop the traffic.
func isTimeout(msg string) bool { return strings.Contains(msg, "i/o timeout") }
