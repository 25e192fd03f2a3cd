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
// CAP_NET_RAW). It returns how many replies came back with the same
// identifier, sequence number and payload; a missing reply is not an
// error. addr is an IP address (a host name is resolved in the caller's
// namespace).
//
// Equivalent to: ip netns exec NETNS ping -c COUNT -s SIZE -W 1 ADDR
func Ping(ctx context.Context, netns, addr string, size, count int) (received int, err error) {
	if size < 0 || size > maxUDPPayload4 || count < 0 {
		return 0, fmt.Errorf("traffic: ping size %d / count %d out of range", size, count)
	}
	ip, err := resolve(ctx, net.JoinHostPort(addr, "0"))
	if err != nil {
		return 0, err
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
		return 0, fmt.Errorf("traffic: ping %v: raw socket in netns %q: %w", dst, netns, err)
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
				return received, ctx.Err()
			}
			return received, fmt.Errorf("traffic: ping %v: %w", dst, err)
		}
		c.SetReadDeadline(time.Now().Add(PingTimeout))
		if ctx.Err() != nil {
			return received, ctx.Err()
		}
		for {
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				if ctx.Err() != nil {
					return received, ctx.Err()
				}
				if errors.Is(err, os.ErrDeadlineExceeded) {
					break // lost
				}
				return received, fmt.Errorf("traffic: ping %v: %w", dst, err)
			}
			r := buf[:n]
			fa, ok := from.(*net.IPAddr)
			if !ok || !fa.IP.Equal(to.IP) || n < 8 || r[0] != repType || r[1] != 0 ||
				binary.BigEndian.Uint16(r[4:]) != id || binary.BigEndian.Uint16(r[6:]) != uint16(seq) {
				continue // someone else's ICMP
			}
			if bytes.Equal(r[8:], payload) {
				received++
			}
			break
		}
	}
	return received, nil
}

// icmpChecksum is the Internet checksum of an ICMPv4 message (gVisor's,
// the one checksum routine the project uses).
func icmpChecksum(b []byte) uint16 { return ^checksum.Checksum(b, 0) }
