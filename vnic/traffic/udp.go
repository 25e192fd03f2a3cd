package traffic

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"
	"time"
)

// Largest UDP payloads: what fits a 65535-byte IPv4 packet, and an IPv6
// payload length of 65535.
const (
	maxUDPPayload4 = 65535 - 20 - 8
	maxUDPPayload6 = 65535 - 8
	// maxGSOSegments is how many segments UDPSend puts in one send by
	// default (the kernel takes up to UDP_MAX_SEGMENTS, 128 on 6.18).
	maxGSOSegments = 64
)

// UDPSend sends UDP datagrams to o.Addr (a discard service, e.g.
// 198.18.0.2:9) from o.Streams sockets until o.Duration or o.Bytes. With
// gsoSize > 0 each socket has UDP_SEGMENT set to gsoSize, so one send of
// o.Write bytes leaves the socket as a single super-datagram that the NIC
// segments (USO) into datagrams of gsoSize payload bytes; gsoSize must fit
// the path MTU (1472 for IPv4 and 1452 for IPv6 at MTU 1500), or the
// kernel refuses the send. With gsoSize 0 every send is one datagram.
//
// UDP has no flow control: a sender faster than the path loses datagrams
// without knowing it. Result counts what the kernel accepted; o.Rate paces
// each stream.
//
// Equivalent to: ip netns exec NS iperf3 -u -c HOST -l WRITE -b 0 [--gsro]
func UDPSend(ctx context.Context, o Options, gsoSize int) (Result, error) {
	if err := o.normalize(false); err != nil {
		return Result{}, err
	}
	if gsoSize < 0 || gsoSize > maxUDPPayload6 {
		return Result{}, fmt.Errorf("traffic: gsoSize %d out of range", gsoSize)
	}
	conns, err := dial(ctx, o, "udp", o.Streams)
	if err != nil {
		return Result{}, err
	}
	defer closeAll(conns)
	v6 := conns[0].RemoteAddr().(*net.UDPAddr).IP.To4() == nil
	limit := maxUDPPayload4
	if v6 {
		limit = maxUDPPayload6
	}
	if o.Write == 0 {
		switch {
		case gsoSize > 0:
			o.Write = min(maxGSOSegments, limit/gsoSize) * gsoSize
		case v6:
			o.Write = 1500 - 40 - 8
		default:
			o.Write = 1500 - 20 - 8
		}
	}
	if o.Write > limit {
		return Result{}, fmt.Errorf("traffic: UDP send size %d: at most %d", o.Write, limit)
	}
	if gsoSize > 0 {
		for _, c := range conns {
			if err := setUDPSegment(c.(*net.UDPConn), gsoSize); err != nil {
				return Result{}, err
			}
		}
	}
	res := Result{PerStream: make([]int64, len(conns))}
	var calls, grams atomic.Int64
	start := time.Now()
	r := newRun(ctx, o, conns)
	stop := r.abortOnCancel()
	defer stop()
	var perSec float64 // bytes per second per stream
	if o.Rate > 0 {
		perSec = o.Rate * 1e9 / 8
	}
	err = r.parallel(func(i int, c net.Conn) error {
		buf := make([]byte, o.Write)
		for j := range buf {
			buf[j] = byte(j)
		}
		var sent int64
		progress := time.Now()
		for {
			if r.over() {
				return nil
			}
			if perSec > 0 {
				ahead := time.Duration(float64(sent)/perSec*float64(time.Second)) - time.Since(start)
				if ahead > 0 {
					if !r.end.IsZero() && time.Now().Add(ahead).After(r.end) {
						return nil
					}
					t := time.NewTimer(ahead)
					select {
					case <-ctx.Done():
						t.Stop()
						return ctx.Err()
					case <-t.C:
					}
				}
			}
			n := r.take(len(buf))
			if n == 0 {
				return nil
			}
			c.SetWriteDeadline(r.deadline())
			if ctx.Err() != nil {
				return ctx.Err()
			}
			w, err := c.Write(buf[:n])
			if err != nil {
				r.giveBack(n)
				if transientUDP(err) && time.Since(progress) < o.Timeout {
					time.Sleep(20 * time.Microsecond) // let the queue drain
					continue
				}
				if refusedUDP(err) {
					return fmt.Errorf("traffic: udp send to %s stream %d: nobody listens there (ICMP port unreachable): %w", o.Addr, i, err)
				}
				return r.ioErr("udp send to", i, err)
			}
			sent += int64(w)
			progress = time.Now()
			res.PerStream[i] += int64(w)
			calls.Add(1)
			if gsoSize > 0 {
				grams.Add(int64((w + gsoSize - 1) / gsoSize))
			} else {
				grams.Add(1)
			}
		}
	})
	res.Calls, res.Datagrams = calls.Load(), grams.Load()
	res.finish(start, time.Now())
	return res, err
}
