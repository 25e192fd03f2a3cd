//go:build !linux

package traffic

import (
	"errors"
	"fmt"
	"net"
)

func setUDPSegment(c *net.UDPConn, size int) error {
	return fmt.Errorf("traffic: UDP_SEGMENT needs Linux: %w", errors.ErrUnsupported)
}

func transientUDP(err error) bool { return false }

func refusedUDP(err error) bool { return false }
