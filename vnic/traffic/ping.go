package traffic

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"

	"vnic/vnic/nsutil"
)

// PingTimeout is how long Ping waits for each reply.
const PingTimeout = time.Second

// Ping sends count ICMP (ICMPv6 for an IPv6 addr) echo requests of size
// payload bytes to addr, one after the other, each waiting up to
// PingTimeout for its reply, from a raw socket inside netns (needs root or
// CAP_NET_RAW). It returns how many replies came back in time with the
// same identifier, sequence number and payload; a missing reply is not an
// error. addr is an IP address (a host name is resolved in the caller's
// namespace).
//
// Equivalent to: ip netns exec NETNS ping -c COUNT -s SIZE -W 1 ADDR
func Ping(ctx context.Context, netns, addr string, size, count int) (received int, err error) {
	res, err := PingDetail(ctx, netns, addr, size, count, 0)
	return res.Replies, err
}

// PingResult is what PingDetail saw, reply by reply. Replies + Late + Bad
// is the number of requests answered; Sent minus that were not.
type PingResult struct {
	// Sent is the number of echo requests sent.
	Sent int
	// Replies are replies with the request's identifier, sequence number
	// and payload that came within PingTimeout of their request.
	Replies int
	// Late are such replies that came later: while Ping waited for a
	// later request's reply, or in the final linger.
	Late int
	// Bad are replies with a request's identifier and sequence number but
	// another payload.
	Bad int
}

// Answered is the number of requests that had a reply (in time, late or
// with another payload).
func (r PingResult) Answered() int { return r.Replies + r.Late + r.Bad }

// Missing is the number of requests without a reply.
func (r PingResult) Missing() int { return r.Sent - r.Answered() }

func (r PingResult) String() string {
	return fmt.Sprintf("%d requests: %d replies, %d late, %d with another payload, %d missing", r.Sent, r.Replies, r.Late, r.Bad, r.Missing())
}

// PingDetail is Ping, telling late replies from missing ones: after the
// last request it waits up to linger more for the replies still missing
// (returning as soon as every request is answered), and a reply that
// comes after its request's PingTimeout counts as Late. Tests use it on a
// loaded machine, where a scheduler can delay a reply but a NIC must not
// lose it.
func PingDetail(ctx context.Context, netns, addr string, size, count int, linger time.Duration) (PingResult, error) {
	var res PingResult
	if size < 0 || size > maxUDPPayload4 || count < 0 || count > 1<<16 {
		return res, fmt.Errorf("traffic: ping size %d / count %d out of range", size, count)
	}
	ip, err := resolve(ctx, net.JoinHostPort(addr, "0"))
	if err != nil {
		return res, err
	}
	dst := ip.Addr()
	network, laddr, reqType, repType := "ip4:icmp", "0.0.0.0", byte(8), byte(0)
	if dst.Is6() {
		network, laddr, reqType, repType = "ip6:ipv6-icmp", "::", 128, 129
	}
	var c net.PacketConn
	if err := nsutil.Do(netns, func() error {
		var err error
		c, err = net.ListenPacket(network, laddr)
		return err
	}); err != nil {
		return res, fmt.Errorf("traffic: ping %v: raw socket in netns %q: %w", dst, netns, err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	var idb [2]byte
	rand.Read(idb[:])
	id := binary.BigEndian.Uint16(idb[:])
	payload := make([]byte, size)
	rand.Read(payload)
	to := &net.IPAddr{IP: dst.AsSlice(), Zone: dst.Zone()}
	buf := make([]byte, size+512)
	answered := make([]bool, count)
	// await reads replies until the deadline, or until request want is
	// answered (want < 0: every request sent so far).
	await := func(deadline time.Time, want int) error {
		c.SetReadDeadline(deadline)
		if ctx.Err() != nil { // cancelled before the deadline replaced AfterFunc's
			return ctx.Err()
		}
		for {
			if (want >= 0 && answered[want]) || (want < 0 && res.Missing() == 0) {
				return nil
			}
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if errors.Is(err, os.ErrDeadlineExceeded) {
					return nil
				}
				return fmt.Errorf("traffic: ping %v: %w", dst, err)
			}
			r := buf[:n]
			fa, ok := from.(*net.IPAddr)
			if !ok || !fa.IP.Equal(to.IP) || n < 8 || r[0] != repType || r[1] != 0 || binary.BigEndian.Uint16(r[4:]) != id {
				continue // someone else's ICMP
			}
			seq := int(binary.BigEndian.Uint16(r[6:]))
			if seq >= res.Sent || answered[seq] {
				continue // not a request of ours, or a duplicate
			}
			answered[seq] = true
			switch {
			case !bytes.Equal(r[8:], payload):
				res.Bad++
			case seq == want:
				res.Replies++
			default:
				res.Late++
			}
		}
	}
	for seq := range count {
		msg := make([]byte, 8+size)
		msg[0] = reqType
		binary.BigEndian.PutUint16(msg[4:], id)
		binary.BigEndian.PutUint16(msg[6:], uint16(seq))
		copy(msg[8:], payload)
		if dst.Is4() { // the kernel fills in ICMPv6 checksums itself
			binary.BigEndian.PutUint16(msg[2:], icmpChecksum(msg))
		}
		if _, err := c.WriteTo(msg, to); err != nil {
			if ctx.Err() != nil {
				return res, ctx.Err()
			}
			return res, fmt.Errorf("traffic: ping %v: %w", dst, err)
		}
		res.Sent++
		if err := await(time.Now().Add(PingTimeout), seq); err != nil {
			return res, err
		}
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
	}
	if linger > 0 && res.Missing() > 0 {
		if err := await(time.Now().Add(linger), -1); err != nil {
			return res, err
		}
	}
	return res, nil
}

// icmpChecksum is the Internet checksum of an ICMPv4 message (gVisor's,
// the one checksum routine the project uses).
func icmpChecksum(b []byte) uint16 { return ^checksum.Checksum(b, 0) }
