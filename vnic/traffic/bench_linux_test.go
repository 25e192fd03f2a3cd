package traffic_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"vnic/vnic/daemon"
	"vnic/vnic/kerneltest"
	"vnic/vnic/traffic"
)

// BenchmarkBidirRetransmissions: an upload (to discard) and a download
// (from chargen) at once through the NIC and the gVisor peer, each
// iteration for BIDIR_SECONDS (default 10), and how many of the peer's
// TCP retransmissions were needless: a segment the host already had
// comes back in a DSACK (TcpExt TCPDSACKOldSent + TCPDSACKOfoSent in the
// host's namespace), so on a clean wire every DSACK is one spurious
// retransmission. Reported per packet the peer put on the wire (after its
// TSO), in percent; the target is at most 0.01.
//
//	go test -run '^$' -bench BidirRetransmissions -benchtime 1x ./vnic/traffic/
func BenchmarkBidirRetransmissions(b *testing.B) {
	kerneltest.RequireRoot(b)
	dur := 10 * time.Second
	if s := os.Getenv("BIDIR_SECONDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			b.Fatalf("BIDIR_SECONDS=%q: want a number of seconds", s)
		}
		dur = time.Duration(n) * time.Second
	}
	ns := "vnic-bench-" + strconv.Itoa(os.Getpid())
	d, err := daemon.Start(context.Background(), daemon.Config{Netns: ns, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()

	var up, down, wirePkts, peerRetrans, dsacks, timeouts uint64
	var secs float64
	b.ResetTimer()
	for range b.N {
		k0, err := traffic.KernelCounters(ns)
		if err != nil {
			b.Fatal(err)
		}
		s0 := d.Stats()
		ctx, cancel := context.WithTimeout(context.Background(), dur+time.Minute)
		var wg sync.WaitGroup
		var sres, rres traffic.Result
		var serr, rerr error
		wg.Go(func() {
			sres, serr = traffic.Send(ctx, traffic.Options{Netns: ns, Addr: "198.18.0.2:9", Duration: dur})
		})
		wg.Go(func() {
			rres, rerr = traffic.Receive(ctx, traffic.Options{Netns: ns, Addr: "198.18.0.2:19", Duration: dur})
		})
		wg.Wait()
		cancel()
		if serr != nil || rerr != nil {
			b.Fatalf("upload: %v; download: %v", serr, rerr)
		}
		k1, err := traffic.KernelCounters(ns)
		if err != nil {
			b.Fatal(err)
		}
		s1 := d.Stats()
		up += uint64(sres.Bytes)
		down += uint64(rres.Bytes)
		secs += dur.Seconds()
		wirePkts += s1.WireIn.Packets - s0.WireIn.Packets
		peerRetrans += s1.Peer.Stack.TCPRetransmits - s0.Peer.Stack.TCPRetransmits
		timeouts += s1.Peer.Stack.TCPTimeouts - s0.Peer.Stack.TCPTimeouts
		dsacks += k1["TcpExt.TCPDSACKOldSent"] - k0["TcpExt.TCPDSACKOldSent"] + k1["TcpExt.TCPDSACKOfoSent"] - k0["TcpExt.TCPDSACKOfoSent"]
	}
	b.StopTimer()
	spurious := min(dsacks, peerRetrans)
	b.ReportMetric(float64(up)*8/secs/1e9, "up-Gbit/s")
	b.ReportMetric(float64(down)*8/secs/1e9, "down-Gbit/s")
	b.ReportMetric(float64(peerRetrans), "peer-retrans")
	b.ReportMetric(float64(timeouts), "peer-RTOs")
	b.ReportMetric(float64(dsacks), "host-DSACKs")
	if wirePkts > 0 {
		b.ReportMetric(100*float64(spurious)/float64(wirePkts), "spurious-%")
	}
}
