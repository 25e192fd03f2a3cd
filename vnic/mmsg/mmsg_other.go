//go:build !linux

package mmsg

import (
	"errors"
	"fmt"
)

var errUnsupported = fmt.Errorf("mmsg: recvmmsg/sendmmsg need Linux: %w", errors.ErrUnsupported)

// Hdr is one message of a batch (Linux only).
type Hdr struct{ Len uint32 }

// Conn is a batched datagram socket (Linux only).
type Conn struct{}

// New is not supported here.
func New(fd int, name string) (*Conn, error) { return nil, errUnsupported }

// Recv is not supported here.
func (c *Conn) Recv(hdrs []Hdr) (int, error) { return 0, errUnsupported }

// Send is not supported here.
func (c *Conn) Send(hdrs []Hdr) (int, error) { return 0, errUnsupported }

// Close does nothing.
func (c *Conn) Close() error { return nil }
