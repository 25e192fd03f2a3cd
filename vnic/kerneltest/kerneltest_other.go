//go:build !linux

package kerneltest

import (
	"errors"
	"fmt"
	"testing"

	"vnic/vnic/virtio"
)

// errUnsupported is returned by every oracle off Linux.
var errUnsupported = fmt.Errorf("kerneltest: the kernel oracles need Linux: %w", errors.ErrUnsupported)

// RequireRoot skips the test: the oracles exist only on Linux.
func RequireRoot(t testing.TB) {
	t.Helper()
	t.Skip(errUnsupported)
}

// Frame is one frame read from or written to a TUN device.
type Frame struct {
	Hdr    virtio.Hdr
	Tunnel virtio.HdrTunnel
	Pkt    []byte
}

// GSO is the kernel segmentation oracle (Linux only).
type GSO struct{}

// GSOOptions configures the GSO oracle (Linux only).
type GSOOptions struct {
	VnetHdrSize int
}

// NewGSO skips the test off Linux.
func NewGSO(t testing.TB) *GSO { RequireRoot(t); return nil }

// NewGSOWith skips the test off Linux.
func NewGSOWith(t testing.TB, opt GSOOptions) *GSO { RequireRoot(t); return nil }

// Segment returns an errors.ErrUnsupported-wrapped error.
func (o *GSO) Segment(h virtio.Hdr, pkt []byte) ([][]byte, error) { return nil, errUnsupported }

// SegmentFrames returns an errors.ErrUnsupported-wrapped error.
func (o *GSO) SegmentFrames(h virtio.Hdr, pkt []byte) ([]Frame, error) { return nil, errUnsupported }

// GROOptions configures the GRO oracle (Linux only).
type GROOptions struct {
	UDPGROForwarding bool
	DisableGRO       bool
}

// GRO is the kernel GRO oracle (Linux only).
type GRO struct{}

// NewGRO skips the test off Linux.
func NewGRO(t testing.TB, opt GROOptions) *GRO { RequireRoot(t); return nil }

// Coalesce returns an errors.ErrUnsupported-wrapped error.
func (o *GRO) Coalesce(pkts [][]byte) ([]Frame, error) { return nil, errUnsupported }

// CoalesceFrames returns an errors.ErrUnsupported-wrapped error.
func (o *GRO) CoalesceFrames(in []Frame) ([]Frame, error) { return nil, errUnsupported }

// NewGSOTAP skips the test off Linux.
func NewGSOTAP(t testing.TB) *GSO { RequireRoot(t); return nil }

// NewGROTAP skips the test off Linux.
func NewGROTAP(t testing.TB, opt GROOptions) *GRO { RequireRoot(t); return nil }
