package router_test

import (
	"bytes"
	"fmt"
	"io"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"vnic/vnic/glink/glinktest"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"

	"vnic/segment"
	"vnic/vnic/glink"
	"vnic/vnic/peer"
	"vnic/vnic/router"
	"vnic/vnic/virtio"
	"vnic/vnic/wire"
)

// The lab network:
//
//	client 10.1.0.2 ──wire── eth0 10.1.0.1 [router] eth1 10.2.0.1 ──wire── server 10.2.0.2
//	       2001:db8:1::2          2001:db8:1::1        2001:db8:2::1            2001:db8:2::2
var (
	clientAddrs = []netip.Prefix{netip.MustParsePrefix("10.1.0.2/24"), netip.MustParsePrefix("2001:db8:1::2/64")}
	serverAddrs = []netip.Prefix{netip.MustParsePrefix("10.2.0.2/24"), netip.MustParsePrefix("2001:db8:2::2/64")}
	eth0Addrs   = []netip.Prefix{netip.MustParsePrefix("10.1.0.1/24"), netip.MustParsePrefix("2001:db8:1::1/64")}
	eth1Addrs   = []netip.Prefix{netip.MustParsePrefix("10.2.0.1/24"), netip.MustParsePrefix("2001:db8:2::1/64")}

	client4 = netip.MustParseAddr("10.1.0.2")
	client6 = netip.MustParseAddr("2001:db8:1::2")
	server4 = netip.MustParseAddr("10.2.0.2")
	server6 = netip.MustParseAddr("2001:db8:2::2")
	eth0v4  = netip.MustParseAddr("10.1.0.1")
	eth0v6  = netip.MustParseAddr("2001:db8:1::1")
)

// nic is a host's NIC and the wire behind it: what the host's stack hands
// out (Output) is put on the wire by the NIC's TSO (segment.Segment at the
// wire MTU) — or, for a pass-through NIC (story 4's VMXNET3 between VMs),
// only has its checksum completed and crosses the wire as one
// super-packet — and the wire delivers it to the far end.
type nic struct {
	mtu         int
	passThrough bool
	w           *wire.Wire
	// big counts the packets larger than mtu the NIC put on the wire (a
	// pass-through NIC's super-packets).
	big atomic.Uint64

	out   [][]byte
	sizes []int
	batch [][]byte
	arena []byte
}

func newNIC(tb testing.TB, mtu int, passThrough bool, wopt wire.Options, deliver func([][]byte)) *nic {
	n := &nic{mtu: mtu, passThrough: passThrough}
	n.out = make([][]byte, 64)
	for i := range n.out {
		n.out[i] = make([]byte, 65536)
	}
	n.sizes = make([]int, len(n.out))
	wopt.Deliver = deliver
	w, err := wire.New(wopt)
	if err != nil {
		tb.Fatal(err)
	}
	n.w = w
	return n
}

// output is a host's Output; it runs on the host's single output
// goroutine.
func (n *nic) output(pkts []glink.Packet) {
	n.batch = n.batch[:0]
	n.arena = n.arena[:0]
	for _, p := range pkts {
		if p.Hdr == (virtio.Hdr{}) {
			n.batch = append(n.batch, p.Data)
			continue
		}
		h := p.Hdr
		opt := segment.Options{MaxPacket: n.mtu}
		if n.passThrough {
			// No segmentation: only the checksum is completed.
			h.GSOType, h.GSOSize, h.HdrLen = virtio.GSONone, 0, 0
			opt.MaxPacket = 0
		}
		k, err := segment.Segment(h, p.Data, n.out, n.sizes, 0, opt)
		if err != nil {
			continue // counted by nobody: the NIC drops it
		}
		for i := range k {
			if n.sizes[i] > n.mtu {
				n.big.Add(1)
			}
			off := len(n.arena)
			n.arena = append(n.arena, n.out[i][:n.sizes[i]]...)
			n.batch = append(n.batch, n.arena[off:len(n.arena):len(n.arena)])
		}
	}
	if len(n.batch) > 0 {
		n.w.Send(n.batch)
	}
}

// routerOut adapts a router interface's Output to a wire. Super-packets
// (GROFixed forwards merged packets whole) are segmented first, as the
// egress NIC's TSO would.
type routerOut struct {
	w     *wire.Wire
	batch [][]byte
	segs  [][]byte
	sizes []int
	arena []byte
}

func (o *routerOut) output(pkts []glink.Packet) {
	o.batch = o.batch[:0]
	o.arena = o.arena[:0]
	for _, p := range pkts {
		if p.Hdr == (virtio.Hdr{}) {
			o.batch = append(o.batch, p.Data)
			continue
		}
		if o.segs == nil {
			o.segs = make([][]byte, 64)
			for i := range o.segs {
				o.segs[i] = make([]byte, 65536)
			}
			o.sizes = make([]int, len(o.segs))
		}
		k, err := segment.Segment(p.Hdr, p.Data, o.segs, o.sizes, 0, segment.Options{})
		if err != nil {
			continue
		}
		for i := range k {
			off := len(o.arena)
			o.arena = append(o.arena, o.segs[i][:o.sizes[i]]...)
			o.batch = append(o.batch, o.arena[off:len(o.arena):len(o.arena)])
		}
	}
	o.w.Send(o.batch)
}

// capture is a router interface's Output that keeps copies.
type capture struct {
	mu   sync.Mutex
	pkts [][]byte
}

func (c *capture) output(pkts []glink.Packet) {
	c.mu.Lock()
	for _, p := range pkts {
		c.pkts = append(c.pkts, bytes.Clone(p.Data))
	}
	c.mu.Unlock()
}

func (c *capture) all() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([][]byte(nil), c.pkts...)
}

// wait waits until the capture holds at least n packets.
func (c *capture) wait(tb testing.TB, n int) [][]byte {
	tb.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		p := c.all()
		if len(p) >= n {
			return p
		}
		if time.Now().After(deadline) {
			tb.Fatalf("captured %d packets, want %d", len(p), n)
		}
		time.Sleep(time.Millisecond)
	}
}

type topoOpts struct {
	mtu0, mtu1        uint32 // router eth0 (client side) and eth1 (server side) MTUs; 0: 1500
	maxReceive0       uint32
	serverMTU         uint32         // the server's own MTU; 0: mtu1 (the router's eth1 accepts it)
	gro1              router.GROMode // on eth1, the server side: the download's ingress
	serverGSO         uint32
	clientGSO         uint32
	clientPassThrough bool
	firewall          *router.Firewall
	captureEth0       bool // no client: eth0's output is captured
	wire              wire.Options
}

type topo struct {
	r              *router.Router
	client, server *peer.Peer
	clientNIC      *nic // nil with captureEth0
	eth0           *capture
}

// newTopo builds client — router — server.
func newTopo(tb testing.TB, o topoOpts) *topo {
	tb.Helper()
	if o.mtu0 == 0 {
		o.mtu0 = 1500
	}
	if o.mtu1 == 0 {
		o.mtu1 = 1500
	}
	if o.serverMTU == 0 {
		o.serverMTU = o.mtu1
	}
	t := &topo{}
	var client, server atomic.Pointer[peer.Peer]
	var rt atomic.Pointer[router.Router]
	deliverTo := func(p *atomic.Pointer[peer.Peer]) func([][]byte) {
		return func(pkts [][]byte) {
			if x := p.Load(); x != nil {
				x.Inject(pkts)
			}
		}
	}
	toRouter := func(i int) func([][]byte) {
		return func(pkts [][]byte) {
			if x := rt.Load(); x != nil {
				x.Inject(i, pkts)
			}
		}
	}
	var closers []func()
	mkWire := func(d func([][]byte)) *wire.Wire {
		wo := o.wire
		wo.Deliver = d
		w, err := wire.New(wo)
		if err != nil {
			tb.Fatal(err)
		}
		closers = append(closers, w.Close)
		return w
	}
	eth0 := &routerOut{}
	eth1 := &routerOut{w: mkWire(deliverTo(&server))}
	out0 := eth0.output
	if o.captureEth0 {
		t.eth0 = &capture{}
		out0 = t.eth0.output
	} else {
		eth0.w = mkWire(deliverTo(&client))
	}
	r, err := router.New(router.Options{
		Ifaces: []router.Iface{
			{Name: "eth0", Addrs: eth0Addrs, MTU: o.mtu0, MaxReceive: o.maxReceive0, Output: out0},
			{Name: "eth1", Addrs: eth1Addrs, MTU: o.mtu1, MaxReceive: max(o.mtu1, o.serverMTU), GRO: o.gro1, Output: eth1.output},
		},
		Firewall: o.firewall,
	})
	if err != nil {
		tb.Fatal(err)
	}
	t.r = r
	rt.Store(r)

	snic := newNIC(tb, int(o.serverMTU), false, o.wire, toRouter(1))
	closers = append(closers, snic.w.Close)
	t.server, err = peer.New(peer.Options{Addrs: serverAddrs, MTU: o.serverMTU, GSOMaxSize: o.serverGSO, Output: snic.output})
	if err != nil {
		tb.Fatal(err)
	}
	server.Store(t.server)
	if !o.captureEth0 {
		cmtu := o.mtu0
		cnic := newNIC(tb, int(cmtu), o.clientPassThrough, o.wire, toRouter(0))
		closers = append(closers, cnic.w.Close)
		t.clientNIC = cnic
		t.client, err = peer.New(peer.Options{Addrs: clientAddrs, MTU: cmtu, GSOMaxSize: o.clientGSO, Disable: peer.ServiceAll, Output: cnic.output})
		if err != nil {
			tb.Fatal(err)
		}
		client.Store(t.client)
	}
	tb.Cleanup(func() {
		if t.client != nil {
			t.client.Close()
		}
		t.server.Close()
		r.Close()
		for _, c := range closers {
			c()
		}
	})
	return t
}

var fullAddr = glinktest.FullAddr

func (t *topo) dial(tb testing.TB, a netip.Addr, port uint16) *gonet.TCPConn {
	tb.Helper()
	return glinktest.DialTCP(tb, t.client.Stack(), a, port)
}

// download starts GET /bytes/n on the server and counts the body bytes
// read; done is closed when the whole body arrived.
func (t *topo) download(tb testing.TB, a netip.Addr, n int) (got *atomic.Int64, done chan error) {
	c := t.dial(tb, a, 80)
	if _, err := fmt.Fprintf(c, "GET /bytes/%d HTTP/1.0\r\n\r\n", n); err != nil {
		tb.Fatal(err)
	}
	got = &atomic.Int64{}
	done = make(chan error, 1)
	go func() {
		buf := make([]byte, 64<<10)
		var hdr []byte
		body := false
		for {
			k, err := c.Read(buf)
			b := buf[:k]
			if !body {
				hdr = append(hdr, b...)
				if i := bytes.Index(hdr, []byte("\r\n\r\n")); i >= 0 {
					body = true
					got.Add(int64(len(hdr) - i - 4))
				}
			} else {
				got.Add(int64(k))
			}
			if got.Load() >= int64(n) {
				done <- nil
				return
			}
			if err != nil {
				if err == io.EOF {
					err = fmt.Errorf("EOF after %d of %d bytes", got.Load(), n)
				}
				done <- err
				return
			}
		}
	}()
	return got, done
}

var waitFor = glinktest.WaitFor

func tcpipAddr(a netip.Addr) tcpip.Address { return tcpip.AddrFromSlice(a.AsSlice()) }
