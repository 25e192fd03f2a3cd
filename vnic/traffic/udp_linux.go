package traffic

import (
	"errors"
	"fmt"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// setUDPSegment sets UDP_SEGMENT (USO): every send is cut into datagrams
// of size payload bytes by the kernel or, with the offload, by the NIC.
func setUDPSegment(c *net.UDPConn, size int) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_UDP, unix.UDP_SEGMENT, size)
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("traffic: setsockopt UDP_SEGMENT %d: %w", size, serr)
	}
	return nil
}

// transientUDP reports a send error worth retrying: a full qdisc or
// device queue.
func transientUDP(err error) bool { return errors.Is(err, syscall.ENOBUFS) }

func refusedUDP(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) }
