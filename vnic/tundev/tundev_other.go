//go:build !linux

package tundev

import (
	"errors"
	"fmt"
	"time"
)

var errUnsupported = fmt.Errorf("tundev: TUN devices with virtio-net offloads need Linux: %w", errors.ErrUnsupported)

// Device is a TUN device (Linux only).
type Device struct{}

// Open returns an error wrapping errors.ErrUnsupported.
func Open(cfg Config) (*Device, error) { return nil, errUnsupported }

// Name returns "".
func (d *Device) Name() string { return "" }

// Offloads returns 0.
func (d *Device) Offloads() Offloads { return 0 }

// SetOffloads returns an error wrapping errors.ErrUnsupported.
func (d *Device) SetOffloads(o Offloads) error { return errUnsupported }

// VnetHdrSize returns 0.
func (d *Device) VnetHdrSize() int { return 0 }

// Stats returns zero counters.
func (d *Device) Stats() Stats { return Stats{} }

// Read returns an error wrapping errors.ErrUnsupported.
func (d *Device) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	return 0, errUnsupported
}

// TryRead returns an error wrapping errors.ErrUnsupported.
func (d *Device) TryRead(bufs [][]byte, sizes []int, offset int) (int, error) {
	return 0, errUnsupported
}

// SetReadDeadline returns an error wrapping errors.ErrUnsupported.
func (d *Device) SetReadDeadline(t time.Time) error { return errUnsupported }

// Write returns an error wrapping errors.ErrUnsupported.
func (d *Device) Write(bufs [][]byte, offset int) (int, error) { return 0, errUnsupported }

// Close returns an error wrapping errors.ErrUnsupported.
func (d *Device) Close() error { return errUnsupported }
