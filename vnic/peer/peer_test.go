package peer_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"

	"vnic/vnic/peer"
	"vnic/vnic/pkttest"
	"vnic/vnic/virtio"
)

// capture is an Output that keeps copies of what the peer sends.
type capture struct {
	mu   sync.Mutex
	pkts []peer.Packet
	ch   chan struct{}
}

func newCapture() *capture { return &capture{ch: make(chan struct{}, 1)} }

func (c *capture) output(pkts []peer.Packet) {
	c.mu.Lock()
	for _, p := range pkts {
		c.pkts = append(c.pkts, peer.Packet{Hdr: p.Hdr, Data: bytes.Clone(p.Data)})
	}
	c.mu.Unlock()
	select {
	case c.ch <- struct{}{}:
	default:
	}
}

// next waits for the i-th packet.
func (c *capture) next(tb testing.TB, i int) peer.Packet {
	tb.Helper()
	timeout := time.After(5 * time.Second)
	for {
		c.mu.Lock()
		if len(c.pkts) > i {
			p := c.pkts[i]
			c.mu.Unlock()
			return p
		}
		c.mu.Unlock()
		select {
		case <-c.ch:
		case <-timeout:
			tb.Fatalf("no packet %d from the peer after 5s", i)
		}
	}
}

func (c *capture) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pkts)
}

func newCapturedPeer(tb testing.TB, opt peer.Options) (*peer.Peer, *capture) {
	tb.Helper()
	c := newCapture()
	if opt.Addrs == nil {
		opt.Addrs = peerAddrs
	}
	opt.Output = c.output
	p, err := peer.New(opt)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { p.Close() })
	return p, c
}

// echoRequest builds an ICMP or ICMPv6 echo request by hand from the RFC
// layouts (RFC 791/792, RFC 8200/4443).
func echoRequest(src, dst netip.Addr, id, seq uint16, payload []byte) []byte {
	icmp := make([]byte, 8+len(payload))
	copy(icmp[8:], payload)
	binary.BigEndian.PutUint16(icmp[4:], id)
	binary.BigEndian.PutUint16(icmp[6:], seq)
	if src.Is4() {
		icmp[0] = 8
		binary.BigEndian.PutUint16(icmp[2:], ^checksum.Checksum(icmp, 0))
		ip := make([]byte, 20, 20+len(icmp))
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], uint16(20+len(icmp)))
		binary.BigEndian.PutUint16(ip[4:], 0x1234)
		ip[8], ip[9] = 64, 1
		copy(ip[12:], src.AsSlice())
		copy(ip[16:], dst.AsSlice())
		binary.BigEndian.PutUint16(ip[10:], ^checksum.Checksum(ip, 0))
		return append(ip, icmp...)
	}
	icmp[0] = 128
	ip := make([]byte, 40, 40+len(icmp))
	ip[0] = 0x60
	binary.BigEndian.PutUint16(ip[4:], uint16(len(icmp)))
	ip[6], ip[7] = 58, 64
	copy(ip[8:], src.AsSlice())
	copy(ip[24:], dst.AsSlice())
	binary.BigEndian.PutUint16(icmp[2:], ^checksum.Checksum(icmp, icmp6Pseudo(ip, len(icmp))))
	return append(ip, icmp...)
}

func icmp6Pseudo(ip []byte, l4len int) uint16 {
	ph := append([]byte{}, ip[8:40]...)
	ph = append(ph, byte(l4len>>24), byte(l4len>>16), byte(l4len>>8), byte(l4len), 0, 0, 0, 58)
	return checksum.Checksum(ph, 0)
}

func TestPing(t *testing.T) {
	for _, tc := range []struct {
		name     string
		src, dst netip.Addr
	}{
		{"IPv4", client4, peer4},
		{"IPv6", client6, peer6},
		// Outside the on-link prefix: answered through the default route.
		{"IPv4OffLink", netip.MustParseAddr("203.0.113.9"), peer4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, c := newCapturedPeer(t, peer.Options{})
			payload := pkttest.Payload(56, 3)
			p.Inject([][]byte{echoRequest(tc.src, tc.dst, 0x4242, 7, payload)})
			r := c.next(t, 0)
			if r.Hdr != (virtio.Hdr{}) {
				t.Errorf("echo reply carries virtio header %v, want none", r.Hdr)
			}
			b := r.Data
			var icmp []byte
			if tc.src.Is4() {
				if b[0] != 0x45 || b[9] != 1 || checksum.Checksum(b[:20], 0) != 0xffff {
					t.Fatalf("reply is not a valid IPv4 ICMP packet: % x", b[:20])
				}
				if got, want := netip.AddrFrom4([4]byte(b[12:16])), tc.dst; got != want {
					t.Errorf("reply source %v, want %v", got, want)
				}
				if got, want := netip.AddrFrom4([4]byte(b[16:20])), tc.src; got != want {
					t.Errorf("reply destination %v, want %v", got, want)
				}
				icmp = b[20:]
				if icmp[0] != 0 || checksum.Checksum(icmp, 0) != 0xffff {
					t.Errorf("ICMP type %d (want 0, echo reply), checksum sums to %#x", icmp[0], checksum.Checksum(icmp, 0))
				}
			} else {
				if b[0]>>4 != 6 || b[6] != 58 {
					t.Fatalf("reply is not an IPv6 ICMPv6 packet: % x", b[:40])
				}
				if got, want := netip.AddrFrom16([16]byte(b[8:24])), tc.dst; got != want {
					t.Errorf("reply source %v, want %v", got, want)
				}
				icmp = b[40:]
				if icmp[0] != 129 || checksum.Checksum(icmp, icmp6Pseudo(b, len(icmp))) != 0xffff {
					t.Errorf("ICMPv6 type %d (want 129, echo reply) or bad checksum", icmp[0])
				}
			}
			if id, seq := binary.BigEndian.Uint16(icmp[4:]), binary.BigEndian.Uint16(icmp[6:]); id != 0x4242 || seq != 7 {
				t.Errorf("reply id %#x seq %d, want 0x4242 and 7", id, seq)
			}
			if !bytes.Equal(icmp[8:], payload) {
				t.Errorf("reply payload differs from the request's")
			}
			if st := p.Stats(); st.Stack.ICMPEchoReplies != 1 || st.In.Packets != 1 || st.Out.Packets != 1 {
				t.Errorf("stats: %+v", st)
			}
		})
	}
}

func TestPingOnLinkOnly(t *testing.T) {
	p, c := newCapturedPeer(t, peer.Options{OnLinkOnly: true})
	p.Inject([][]byte{echoRequest(netip.MustParseAddr("203.0.113.9"), peer4, 1, 1, nil)})
	p.Inject([][]byte{echoRequest(client4, peer4, 1, 2, nil)})
	r := c.next(t, 0)
	if seq := binary.BigEndian.Uint16(r.Data[26:]); seq != 2 {
		t.Errorf("first reply is to seq %d, want 2: the off-link source has no route", seq)
	}
	time.Sleep(20 * time.Millisecond)
	if n := c.count(); n != 1 {
		t.Errorf("%d packets out, want 1", n)
	}
}

// TestInjectGarbage: what is not an IP packet that fits is counted and
// dropped at the link, and nothing is sent.
func TestInjectGarbage(t *testing.T) {
	p, c := newCapturedPeer(t, peer.Options{})
	good := echoRequest(client4, peer4, 1, 1, make([]byte, 100))
	good6 := echoRequest(client6, peer6, 1, 1, make([]byte, 100))
	longTotal := bytes.Clone(good)
	binary.BigEndian.PutUint16(longTotal[2:], uint16(len(good)+10))
	longIHL := bytes.Clone(good[:20])
	longIHL[0] = 0x4f // 60-byte header in a 20-byte packet
	longPayload6 := bytes.Clone(good6)
	binary.BigEndian.PutUint16(longPayload6[4:], 2000)
	v5 := bytes.Clone(good)
	v5[0] = 0x55
	cases := []struct {
		name string
		pkt  []byte
		drop func(peer.Drops) uint64
	}{
		{"empty", []byte{}, func(d peer.Drops) uint64 { return d.Empty }},
		{"nil", nil, func(d peer.Drops) uint64 { return d.Empty }},
		{"one byte", []byte{0x45}, func(d peer.Drops) uint64 { return d.Truncated }},
		{"IPv4 header cut", good[:19], func(d peer.Drops) uint64 { return d.Truncated }},
		{"IPv4 total length beyond packet", longTotal, func(d peer.Drops) uint64 { return d.Truncated }},
		{"IPv4 IHL beyond packet", longIHL, func(d peer.Drops) uint64 { return d.Truncated }},
		{"IPv6 header cut", good6[:39], func(d peer.Drops) uint64 { return d.Truncated }},
		{"IPv6 payload length beyond packet", longPayload6, func(d peer.Drops) uint64 { return d.Truncated }},
		{"version 5", v5, func(d peer.Drops) uint64 { return d.BadVersion }},
		{"version 0", make([]byte, 40), func(d peer.Drops) uint64 { return d.BadVersion }},
		{"oversize", append(bytes.Clone(good), make([]byte, testMTU)...), func(d peer.Drops) uint64 { return d.Oversize }},
	}
	for _, tc := range cases {
		before := tc.drop(p.Stats().Drops)
		p.Inject([][]byte{tc.pkt})
		if got := tc.drop(p.Stats().Drops) - before; got != 1 {
			t.Errorf("%s: drop counter moved by %d, want 1", tc.name, got)
		}
	}
	// The same garbage in one batch with a good packet in the middle.
	batch := [][]byte{nil, good[:10], v5, good, longTotal}
	p.Inject(batch)
	c.next(t, 0) // the good packet's echo reply
	time.Sleep(20 * time.Millisecond)
	st := p.Stats()
	if c.count() != 1 || st.In.Packets != 1 {
		t.Errorf("%d packets out, %d in; want 1 and 1", c.count(), st.In.Packets)
	}
	if got, want := st.Drops.Total(), uint64(len(cases)+4); got != want {
		t.Errorf("Drops.Total() = %d, want %d: %+v", got, want, st.Drops)
	}
	// Garbage that passes the link's checks is gVisor's to count.
	badCsum := bytes.Clone(good)
	badCsum[10] ^= 0xff
	ihl4 := bytes.Clone(good)
	ihl4[0] = 0x44
	p.Inject([][]byte{badCsum, ihl4})
	time.Sleep(20 * time.Millisecond)
	if st := p.Stats(); st.Stack.IPMalformed == 0 {
		t.Errorf("gVisor counted no malformed packet: %+v", st.Stack)
	}
	if c.count() != 1 {
		t.Errorf("%d packets out, want 1", c.count())
	}
}

func TestOptionsValidation(t *testing.T) {
	out := func([]peer.Packet) {}
	for _, tc := range []struct {
		name string
		opt  peer.Options
		want string
	}{
		{"no output", peer.Options{Addrs: peerAddrs}, "Output"},
		{"no addresses", peer.Options{Output: out}, "no addresses"},
		{"bad prefix", peer.Options{Output: out, Addrs: []netip.Prefix{{}}}, "not a unicast"},
		{"v6 small MTU", peer.Options{Output: out, Addrs: peerAddrs, MTU: 1000}, "IPv6"},
		{"GSO too big", peer.Options{Output: out, Addrs: peerAddrs, GSOMaxSize: 1 << 17}, "GSOMaxSize"},
		{"GSO below MTU", peer.Options{Output: out, Addrs: peerAddrs, GSOMaxSize: 1000}, "GSOMaxSize"},
	} {
		p, err := peer.New(tc.opt)
		if err == nil {
			p.Close()
			t.Errorf("%s: New succeeded", tc.name)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %q does not mention %q", tc.name, err, tc.want)
		}
	}
}

var gsoModes = []struct {
	name string
	po   pairOpts
}{
	{"GSOOff", pairOpts{}},
	{"GSOOn", pairOpts{peerGSO: 65536, clientGSO: 65536}},
}

var families = []struct {
	name string
	addr netip.Addr
}{{"IPv4", peer4}, {"IPv6", peer6}}

func TestTCPEcho(t *testing.T) {
	for _, m := range gsoModes {
		for _, f := range families {
			t.Run(m.name+"/"+f.name, func(t *testing.T) {
				pr := newPair(t, m.po)
				c := pr.dial(t, f.addr, peer.PortEcho)
				c.SetDeadline(time.Now().Add(10 * time.Second))
				want := pkttest.Payload(300_000, 9)
				errc := make(chan error, 1)
				go func() {
					_, err := c.Write(want)
					if err == nil {
						err = c.CloseWrite()
					}
					errc <- err
				}()
				got, err := io.ReadAll(c)
				if err != nil {
					t.Fatalf("reading the echo: %v", err)
				}
				if err := <-errc; err != nil {
					t.Fatalf("writing: %v", err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("echo returned %d bytes, want the %d sent", len(got), len(want))
				}
			})
		}
	}
}

func TestTCPDiscard10MB(t *testing.T) {
	for _, m := range gsoModes {
		for _, f := range families {
			t.Run(m.name+"/"+f.name, func(t *testing.T) {
				pr := newPair(t, m.po)
				c := pr.dial(t, f.addr, peer.PortDiscard)
				c.SetDeadline(time.Now().Add(20 * time.Second))
				const total = 10_000_000
				buf := pkttest.Payload(100_000, 1)
				for sent := 0; sent < total; sent += len(buf) {
					if _, err := c.Write(buf); err != nil {
						t.Fatalf("after %d bytes: %v", sent, err)
					}
				}
				c.CloseWrite()
				// The peer closes after EOF: our read sees EOF.
				if n, err := io.Copy(io.Discard, c); err != nil || n != 0 {
					t.Errorf("discard sent %d bytes back, err %v", n, err)
				}
				waitFor(t, "10 MB discarded", 5*time.Second, func() bool { return pr.peer.Stats().Discarded >= total })
				if d := pr.peer.Stats().Discarded; d != total {
					t.Errorf("discarded %d bytes, want %d", d, total)
				}
			})
		}
	}
}

// rfc864 is the chargen stream as RFC 864 describes it, written
// independently of the service: line k holds the 72 characters starting
// at printable character k mod 95, then CR LF.
func rfc864(n int) []byte {
	var b []byte
	for line := 0; len(b) < n; line++ {
		for i := range 72 {
			b = append(b, byte(' '+(line+i)%95))
		}
		b = append(b, "\r\n"...)
	}
	return b[:n]
}

func TestChargenRFC864(t *testing.T) {
	for _, m := range gsoModes {
		for _, f := range families {
			t.Run(m.name+"/"+f.name, func(t *testing.T) {
				pr := newPair(t, m.po)
				c := pr.dial(t, f.addr, peer.PortChargen)
				c.SetDeadline(time.Now().Add(10 * time.Second))
				const n = 95*74*3 + 1000 // more than three periods
				got := make([]byte, n)
				if _, err := io.ReadFull(c, got); err != nil {
					t.Fatal(err)
				}
				want := rfc864(n)
				if !bytes.Equal(got, want) {
					i := 0
					for got[i] == want[i] {
						i++
					}
					t.Fatalf("chargen differs from RFC 864 at byte %d: got %q, want %q", i, got[i:min(i+20, n)], want[i:min(i+20, n)])
				}
				if !bytes.HasPrefix(got, []byte(" !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefg\r\n!\"#$")) {
					t.Errorf("chargen does not start with RFC 864's first line: %q", got[:80])
				}
			})
		}
	}
}

func TestUDP(t *testing.T) {
	for _, f := range families {
		t.Run(f.name, func(t *testing.T) {
			pr := newPair(t, pairOpts{})
			fa, proto := fullAddr(f.addr, peer.PortDiscard)
			c, err := gonet.DialUDP(pr.client.Stack(), nil, &fa, proto)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			const n, size = 100, 1000
			for range n {
				if _, err := c.Write(make([]byte, size)); err != nil {
					t.Fatal(err)
				}
			}
			waitFor(t, "UDP discard", 5*time.Second, func() bool { return pr.peer.Stats().Discarded >= n*size })
			if d := pr.peer.Stats().Discarded; d != n*size {
				t.Errorf("discarded %d bytes, want %d", d, n*size)
			}

			fa, proto = fullAddr(f.addr, peer.PortEcho)
			e, err := gonet.DialUDP(pr.client.Stack(), nil, &fa, proto)
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			msg := pkttest.Payload(1200, 5)
			e.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := e.Write(msg); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 2000)
			m, err := e.Read(buf)
			if err != nil || !bytes.Equal(buf[:m], msg) {
				t.Fatalf("UDP echo: %d bytes, err %v", m, err)
			}
		})
	}
}

// httpClient talks HTTP to the peer through the client stack.
func (pr *pair) httpClient() *http.Client {
	return &http.Client{
		Timeout: 20 * time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				ap, err := netip.ParseAddrPort(addr)
				if err != nil {
					return nil, err
				}
				fa, proto := fullAddr(ap.Addr(), ap.Port())
				return gonet.DialContextTCP(ctx, pr.client.Stack(), fa, proto)
			},
		},
	}
}

func httpURL(a netip.Addr, path string) string {
	return "http://" + netip.AddrPortFrom(a, peer.PortHTTP).String() + path
}

func TestHTTP(t *testing.T) {
	for _, m := range gsoModes {
		for _, f := range families {
			t.Run(m.name+"/"+f.name, func(t *testing.T) {
				pr := newPair(t, m.po)
				hc := pr.httpClient()
				defer hc.CloseIdleConnections()

				resp, err := hc.Get(httpURL(f.addr, "/bytes/1000000"))
				if err != nil {
					t.Fatal(err)
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != 200 || len(body) != 1_000_000 {
					t.Fatalf("GET /bytes/1000000: status %d, %d bytes, err %v", resp.StatusCode, len(body), err)
				}
				for i, c := range body {
					if c != byte(i%251) {
						t.Fatalf("body byte %d is %d, want %d", i, c, i%251)
					}
				}

				for _, bad := range []string{"abc", "-1", "1073741825", "1e6", "99999999999999999999"} {
					resp, err := hc.Get(httpURL(f.addr, "/bytes/"+bad))
					if err != nil {
						t.Fatal(err)
					}
					msg, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(msg), "bad byte count") {
						t.Errorf("GET /bytes/%s: status %d %q, want 400", bad, resp.StatusCode, msg)
					}
				}

				const up = 5_000_000
				resp, err = hc.Post(httpURL(f.addr, "/"), "application/octet-stream", bytes.NewReader(pkttest.Payload(up, 2)))
				if err != nil {
					t.Fatal(err)
				}
				msg, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if n, err := strconv.Atoi(strings.TrimSpace(string(msg))); resp.StatusCode != 200 || err != nil || n != up {
					t.Errorf("POST / of %d bytes: status %d, answer %q", up, resp.StatusCode, msg)
				}

				resp, err = hc.Get(httpURL(f.addr, "/"))
				if err != nil {
					t.Fatal(err)
				}
				msg, _ = io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || !strings.Contains(string(msg), "/bytes/N") || strings.Count(string(msg), "\n") != 1 {
					t.Errorf("GET /: status %d %q, want a one-line help", resp.StatusCode, msg)
				}
			})
		}
	}
}

// TestGSOSuperPackets: with GSO on, bulk data from the peer leaves as
// super-packets larger than the MTU whose virtio header is what Linux
// would put on a TUN frame; the wire's checks (checkHdr) verify every
// header, including the pseudo-header sum in the checksum field.
func TestGSOSuperPackets(t *testing.T) {
	for _, f := range families {
		t.Run(f.name, func(t *testing.T) {
			pr := newPair(t, pairOpts{peerGSO: 65536})
			c := pr.dial(t, f.addr, peer.PortChargen)
			c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.ReadFull(c, make([]byte, 4<<20)); err != nil {
				t.Fatal(err)
			}
			c.Close()
			w := pr.toClient
			// The wire records a batch while Output runs: let the last one land.
			waitFor(t, "Stats.OutSuper to match the wire", 5*time.Second, func() bool {
				w.mu.Lock()
				n := len(w.supers)
				w.mu.Unlock()
				return pr.peer.Stats().OutSuper == uint64(n)
			})
			w.mu.Lock()
			supers, partial := w.supers, w.partial
			w.mu.Unlock()
			big, maxLen := 0, 0
			l3 := 20
			if f.addr.Is6() {
				l3 = 40
			}
			for _, s := range supers {
				if s.len > testMTU {
					big++
				}
				maxLen = max(maxLen, s.len)
				if s.v6 != f.addr.Is6() || int(s.hdr.CsumStart) != l3 || s.hdr.CsumOffset != 16 ||
					s.hdr.Flags&virtio.FlagNeedsCsum == 0 || int(s.hdr.GSOSize) > testMTU-40 {
					t.Errorf("bad super-packet header: %v (%d bytes)", s.hdr, s.len)
				}
			}
			if big == 0 {
				t.Fatalf("no super-packet larger than the MTU among %d GSO packets", len(supers))
			}
			st := pr.peer.Stats()
			t.Logf("%d super-packets (%d > MTU, largest %d bytes, first %v, %d bytes), %d partial-checksum packets; stats out %+v super %d batches %d",
				len(supers), big, maxLen, supers[0].hdr, supers[0].len, partial, st.Out, st.OutSuper, st.OutBatches)
		})
	}
}

// TestGSOOffCompletePackets: with GSO off every Output packet is a wire
// packet: no virtio header, at most MTU bytes, checksums complete (the
// wire's checkWire verifies each).
func TestGSOOffCompletePackets(t *testing.T) {
	pr := newPair(t, pairOpts{})
	c := pr.dial(t, peer4, peer.PortChargen)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	w := pr.toClient
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.supers) != 0 || w.partial != 0 {
		t.Errorf("GSO off, yet %d super-packets and %d partial-checksum packets", len(w.supers), w.partial)
	}
	if w.packets < 700 {
		t.Errorf("only %d packets for 1 MiB", w.packets)
	}
}

// TestGRO: with gVisor's GRO on the peer still works, and the link drops
// what a NIC with receive checksum offload would.
func TestGRO(t *testing.T) {
	pr := newPair(t, pairOpts{peerGRO: true, clientGSO: 65536})
	c := pr.dial(t, peer4, peer.PortDiscard)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	const total = 4 << 20
	if _, err := c.Write(make([]byte, total)); err != nil {
		t.Fatal(err)
	}
	c.Close()
	waitFor(t, "4 MiB discarded", 5*time.Second, func() bool { return pr.peer.Stats().Discarded >= total })

	udp := (&pkttest.Packet{Proto: pkttest.ProtoUDP, Src: client4, Dst: peer4, DstPort: peer.PortDiscard, Payload: make([]byte, 10), BadL4Checksum: true}).Build()
	tcp := (&pkttest.Packet{V6: true, Src: client6, Dst: peer6, DstPort: peer.PortDiscard, Flags: pkttest.SYN, BadL4Checksum: true}).Build()
	ping := echoRequest(client4, peer4, 1, 1, nil)
	ping[len(ping)-1] ^= 1
	before := pr.peer.Stats().Drops.BadChecksum
	pr.peer.Inject([][]byte{udp, tcp, ping})
	if got := pr.peer.Stats().Drops.BadChecksum - before; got != 3 {
		t.Errorf("BadChecksum moved by %d, want 3", got)
	}
}

// TestCloseNoLeak: Close with connections still open (a chargen stream in
// full flow, an idle HTTP keep-alive, a half-done upload) leaves no
// goroutine behind, and Output is not called afterwards.
func TestCloseNoLeak(t *testing.T) {
	runtime.GC()
	before := settleGoroutines(0, 0)
	func() {
		pr := &pair{toClient: newWire("peer→client", testMTU), toPeer: newWire("client→peer", testMTU)}
		var err error
		pr.peer, err = peer.New(peer.Options{Addrs: peerAddrs, GSOMaxSize: 65536, Output: pr.toClient.output})
		if err != nil {
			t.Fatal(err)
		}
		pr.client, err = peer.New(peer.Options{Addrs: clientAddrs, Disable: peer.ServiceAll, Output: pr.toPeer.output})
		if err != nil {
			t.Fatal(err)
		}
		pr.toClient.dst.Store(pr.client)
		pr.toPeer.dst.Store(pr.peer)

		for _, a := range []netip.Addr{peer4, peer6} {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			fa, proto := fullAddr(a, peer.PortChargen)
			c, err := gonet.DialContextTCP(ctx, pr.client.Stack(), fa, proto)
			cancel()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(c, make([]byte, 100_000)); err != nil {
				t.Fatal(err)
			}
			fa, proto = fullAddr(a, peer.PortEcho)
			e, err := gonet.DialTCP(pr.client.Stack(), fa, proto)
			if err != nil {
				t.Fatal(err)
			}
			e.Write([]byte("hello"))
		}
		hc := pr.httpClient()
		resp, err := hc.Get(httpURL(peer4, "/bytes/10"))
		if err != nil {
			t.Fatal(err)
		}
		io.ReadAll(resp.Body)
		resp.Body.Close()
		// A large download in flight when the peer goes away.
		go func() {
			resp, err := hc.Get(httpURL(peer6, "/bytes/100000000"))
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
		waitFor(t, "download started", 5*time.Second, func() bool { return pr.peer.Stats().Out.Bytes > 2<<20 })

		pr.peer.Close()
		outAfter := pr.peer.Stats().Out
		pr.client.Close()
		pr.peer.Close() // idempotent
		hc.CloseIdleConnections()
		time.Sleep(50 * time.Millisecond)
		if st := pr.peer.Stats(); st.Out != outAfter {
			t.Errorf("Output called after Close: %+v then %+v", outAfter, st.Out)
		}
		closedBefore := pr.peer.Stats().Drops.Closed
		pr.peer.Inject([][]byte{echoRequest(client4, peer4, 1, 1, nil)})
		if d := pr.peer.Stats().Drops.Closed - closedBefore; d != 1 {
			t.Errorf("Inject after Close: Drops.Closed moved by %d, want 1", d)
		}
		pr.toClient.report(t)
		pr.toPeer.report(t)
	}()
	// The HTTP client's own goroutines need a moment to see the EOFs.
	if after := settleGoroutines(before+2, 10*time.Second); after > before+2 {
		buf := make([]byte, 1<<20)
		n := runtime.Stack(buf, true)
		t.Errorf("%d goroutines before, %d after Close:\n%s", before, after, buf[:n])
	}
}

// TestConcurrentInject: Inject from several goroutines at once, while
// connections run, is safe (run with -race).
func TestConcurrentInject(t *testing.T) {
	pr := newPair(t, pairOpts{peerGSO: 65536})
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			for j := range 200 {
				a, b := client4, peer4
				if j%2 == 1 {
					a, b = client6, peer6
				}
				pr.peer.Inject([][]byte{echoRequest(a, b, uint16(i), uint16(j), nil), {0x99}})
			}
		})
	}
	c := pr.dial(t, peer6, peer.PortEcho)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	msg := []byte("round trip")
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("echo %q, err %v", got, err)
	}
	wg.Wait()
	if d := pr.peer.Stats().Drops.BadVersion; d != 800 {
		t.Errorf("BadVersion %d, want 800", d)
	}
	waitFor(t, "echo replies", 5*time.Second, func() bool { return pr.peer.Stats().Stack.ICMPEchoReplies == 800 })
}

// TestControlSegmentHeaders pins down what gVisor marks for checksum
// offload with GSO on, for segments sent without a connected endpoint: the
// listener answers a SYN itself (the endpoint is created on the final ACK)
// and a closed port answers with an RST; both have complete checksums and
// no virtio header.
func TestControlSegmentHeaders(t *testing.T) {
	for _, f := range []struct {
		name     string
		v6       bool
		src, dst netip.Addr
		l3       uint16
	}{{"IPv4", false, client4, peer4, 20}, {"IPv6", true, client6, peer6, 40}} {
		t.Run(f.name, func(t *testing.T) {
			p, c := newCapturedPeer(t, peer.Options{GSOMaxSize: 65536})
			mss := []byte{2, 4, 0x05, 0xb4}
			syn := (&pkttest.Packet{V6: f.v6, Src: f.src, Dst: f.dst, SrcPort: 40000, DstPort: peer.PortDiscard, Flags: pkttest.SYN, Seq: 1000, TCPOptions: mss}).Build()
			p.Inject([][]byte{syn})
			synack := c.next(t, 0)
			if synack.Hdr != (virtio.Hdr{}) {
				t.Errorf("SYN-ACK header %v, want none", synack.Hdr)
			}
			if err := pkttest.Verify(synack.Data); err != nil {
				t.Errorf("SYN-ACK: %v", err)
			}
			if fl := synack.Data[f.l3+13]; fl != pkttest.SYN|pkttest.ACK {
				t.Errorf("flags %#x, want SYN|ACK", fl)
			}

			closed := (&pkttest.Packet{V6: f.v6, Src: f.src, Dst: f.dst, SrcPort: 40001, DstPort: 4242, Flags: pkttest.SYN, Seq: 1000, TCPOptions: mss}).Build()
			p.Inject([][]byte{closed})
			rst := c.next(t, 1)
			if rst.Hdr != (virtio.Hdr{}) {
				t.Errorf("RST header %v, want none", rst.Hdr)
			}
			if err := pkttest.Verify(rst.Data); err != nil {
				t.Errorf("RST: %v", err)
			}
			if fl := rst.Data[f.l3+13]; fl&pkttest.RST == 0 {
				t.Errorf("flags %#x, want RST", fl)
			}
		})
	}
}

// TestTxQueueFull: when Output falls behind by more than TxQueueBytes, the
// peer drops what the stack sends and counts it; the first packet of a
// batch is always taken, so the queue never wedges.
func TestTxQueueFull(t *testing.T) {
	gate, blocked := make(chan struct{}), make(chan struct{})
	var mu sync.Mutex
	var got []uint16
	first := true
	p, err := peer.New(peer.Options{
		Addrs:        peerAddrs,
		TxQueueBytes: 1,
		Output: func(pkts []peer.Packet) {
			mu.Lock()
			for _, pk := range pkts {
				got = append(got, binary.BigEndian.Uint16(pk.Data[26:]))
			}
			wait := first
			first = false
			mu.Unlock()
			if wait {
				close(blocked)
				<-gate
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	p.Inject([][]byte{echoRequest(client4, peer4, 1, 1, nil)})
	<-blocked
	p.Inject([][]byte{echoRequest(client4, peer4, 1, 2, nil), echoRequest(client4, peer4, 1, 3, nil), echoRequest(client4, peer4, 1, 4, nil)})
	close(gate)
	waitFor(t, "two replies out", 5*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) >= 2
	})
	time.Sleep(10 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 2 || got[0] != 1 || got[1] != 2 {
		t.Errorf("replies to seq %v, want [1 2]", got)
	}
	if d := p.Stats().Drops.TxQueueFull; d != 2 {
		t.Errorf("TxQueueFull %d, want 2", d)
	}
}

// FuzzInject: no input makes Inject panic, and every packet is either
// delivered or counted as a drop.
func FuzzInject(f *testing.F) {
	f.Add(echoRequest(client4, peer4, 1, 1, []byte("ping")))
	f.Add(echoRequest(client6, peer6, 1, 1, []byte("ping")))
	f.Add((&pkttest.Packet{Src: client4, Dst: peer4, DstPort: peer.PortDiscard, Flags: pkttest.SYN}).Build())
	f.Add((&pkttest.Packet{V6: true, Proto: pkttest.ProtoUDP, Src: client6, Dst: peer6, DstPort: peer.PortEcho, Payload: []byte("x")}).Build())
	f.Add([]byte{})
	f.Add([]byte{0x45, 0, 0, 20})
	f.Add([]byte{0x60})
	p, err := peer.New(peer.Options{Addrs: peerAddrs, GSOMaxSize: 65536, Output: func([]peer.Packet) {}})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { p.Close() })
	f.Fuzz(func(t *testing.T, b []byte) {
		before := p.Stats()
		p.Inject([][]byte{b})
		after := p.Stats()
		if in, drops := after.In.Packets-before.In.Packets, after.Drops.Total()-before.Drops.Total(); in+drops != 1 {
			t.Errorf("packet neither delivered nor dropped exactly once: in +%d, drops +%d", in, drops)
		}
	})
}
