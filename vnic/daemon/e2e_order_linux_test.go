package daemon_test

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"vnic/vnic/capture"
	"vnic/vnic/daemon"
	"vnic/vnic/traffic"
)

// span is the payload bytes [start, end) of a TCP flow, by sequence
// number (mod 2³²).
type span struct{ start, end uint32 }

// flowKey is one direction of a TCP connection.
type flowKey struct{ src, dst netip.AddrPort }

// spans returns, for every TCP flow, the payload the records at point (and
// dir) carry, in capture order, with each span that continues the one
// before merged into it: a super-packet and the segments cut from it, or
// segments and the packet GRO merged them into, give the same list; the
// same packets in another order do not.
func spans(t *testing.T, recs []capture.Record, point capture.Point, dir capture.Dir) map[flowKey][]span {
	t.Helper()
	out := map[flowKey][]span{}
	for _, r := range recs {
		if r.Point != point || (dir != capture.DirUnknown && r.Dir != dir) {
			continue
		}
		if len(r.Data) != r.Len {
			t.Fatalf("capture cut a packet: %d of %d bytes", len(r.Data), r.Len)
		}
		p, ok := parse(r.Data)
		if !ok || p.proto != protoTCP || p.frag || p.payload == 0 {
			continue
		}
		k := flowKey{netip.AddrPortFrom(p.src, p.sport), netip.AddrPortFrom(p.dst, p.dport)}
		s := span{p.seq, p.seq + uint32(p.payload)}
		l := out[k]
		if n := len(l); n > 0 && l[n-1].end == s.start {
			l[n-1].end = s.end
		} else {
			l = append(l, s)
		}
		out[k] = l
	}
	return out
}

// sameOrder reports where the payload of a flow at point b is not that
// of point a in the same order ("" if it is).
func sameOrder(a, b map[flowKey][]span, aName, bName string) string {
	for k, as := range a {
		bs := b[k]
		for i := range max(len(as), len(bs)) {
			if i >= len(as) || i >= len(bs) || as[i] != bs[i] {
				lo := max(i-2, 0)
				return fmt.Sprintf("flow %v→%v: %s and %s part at span %d of %d/%d: %s %v…, %s %v…",
					k.src, k.dst, aName, bName, i, len(as), len(bs), aName, as[lo:min(i+3, len(as))], bName, bs[lo:min(i+3, len(bs))])
			}
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			return fmt.Sprintf("flow %v→%v: at %s, not at %s", k.src, k.dst, bName, aName)
		}
	}
	return ""
}

// TestE2ENICKeepsFlowOrder: the NIC never reorders the packets of one
// flow, in either direction. Uploads and downloads run at once (TCP to
// discard and from chargen, two connections of 1 MB each: what the
// capture queue holds without dropping), with every point recorded. For every flow, the payload of the host-tx frames, in the
// order the NIC read them, is the payload of the wire packets it put out
// (TSO cuts, never shuffles), and the payload of the wire packets from the
// peer, in the order they arrived, is that of the host-rx frames (GRO
// merges, never shuffles). A retransmission is a packet like any other:
// it sits at the same place on both sides. The comparison depends on
// nothing the scheduler decides.
func TestE2ENICKeepsFlowOrder(t *testing.T) {
	d := startDaemon(t, daemon.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	var sendErr, recvErr error
	wg.Go(func() {
		_, sendErr = traffic.Send(ctx, traffic.Options{Netns: d.ns, Addr: "198.18.0.2:9", Bytes: 1 << 20, Streams: 2})
	})
	wg.Go(func() {
		_, recvErr = traffic.Receive(ctx, traffic.Options{Netns: d.ns, Addr: "198.18.0.2:19", Bytes: 1 << 20, Streams: 2})
	})
	wg.Wait()
	if sendErr != nil || recvErr != nil {
		t.Fatalf("upload: %v; download: %v", sendErr, recvErr)
	}
	s := d.stats() // fails the test if the capture dropped packets
	if len(s.Drops) != 0 {
		t.Fatalf("the NIC dropped packets %v: the points cannot be compared", s.Drops)
	}
	recs := d.records()

	hostTX, wireOut := spans(t, recs, capture.HostTX, capture.DirUnknown), spans(t, recs, capture.Wire, capture.Out)
	wireIn, hostRX := spans(t, recs, capture.Wire, capture.In), spans(t, recs, capture.HostRX, capture.DirUnknown)
	if len(hostTX) < 2 || len(wireIn) < 2 {
		t.Fatalf("%d flows from the host, %d from the peer: want both connections of each direction", len(hostTX), len(wireIn))
	}
	if d := sameOrder(hostTX, wireOut, "host-tx", "wire out"); d != "" {
		t.Errorf("transmit: %s", d)
	}
	if d := sameOrder(wireIn, hostRX, "wire in", "host-rx"); d != "" {
		t.Errorf("receive: %s", d)
	}
	n := 0
	for _, l := range wireIn {
		n += len(l)
	}
	t.Logf("%d flows out, %d in; %d runs of contiguous payload from the peer (a new run starts only where a retransmission goes back)", len(hostTX), len(wireIn), n)
}

// TestSameOrderCatchesASwap: the comparison TestE2ENICKeepsFlowOrder makes
// fails when two segments of a flow change places, or one goes missing.
func TestSameOrderCatchesASwap(t *testing.T) {
	k := flowKey{netip.MustParseAddrPort("198.18.0.1:40000"), netip.MustParseAddrPort("198.18.0.2:9")}
	super := map[flowKey][]span{k: {{1000, 5344}}}
	inOrder := map[flowKey][]span{k: {{1000, 5344}}} // 1000-2448, 2448-3896, 3896-5344 merged
	swapped := map[flowKey][]span{k: {{1000, 2448}, {3896, 5344}, {2448, 3896}}}
	missing := map[flowKey][]span{k: {{1000, 2448}, {3896, 5344}}}
	if d := sameOrder(super, inOrder, "a", "b"); d != "" {
		t.Errorf("in order: %s", d)
	}
	for name, b := range map[string]map[flowKey][]span{"swapped": swapped, "missing": missing, "absent": {}} {
		if d := sameOrder(super, b, "a", "b"); d == "" {
			t.Errorf("%s: not caught", name)
		} else {
			t.Logf("%s: %s", name, d)
		}
	}
}
