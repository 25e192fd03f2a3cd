//go:build !linux

package ethtool

import (
	"context"
	"errors"
	"fmt"
	"time"
)

var errUnsupported = fmt.Errorf("ethtool: device features need Linux: %w", errors.ErrUnsupported)

// Handle reads and sets device features (Linux only).
type Handle struct{}

// Open returns an error wrapping errors.ErrUnsupported.
func Open(netns string) (*Handle, error) { return nil, errUnsupported }

// Close does nothing.
func (h *Handle) Close() error { return nil }

// States returns an error wrapping errors.ErrUnsupported.
func (h *Handle) States(dev string) (map[string]State, error) { return nil, errUnsupported }

// Features returns an error wrapping errors.ErrUnsupported.
func (h *Handle) Features(dev string) (map[string]bool, error) { return nil, errUnsupported }

// GRO returns an error wrapping errors.ErrUnsupported.
func (h *Handle) GRO(dev string) (bool, error) { return false, errUnsupported }

// SetFeatures returns an error wrapping errors.ErrUnsupported.
func (h *Handle) SetFeatures(dev string, want map[string]bool) error { return errUnsupported }

// Features returns an error wrapping errors.ErrUnsupported.
func Features(netns, dev string) (map[string]bool, error) { return nil, errUnsupported }

// SetFeatures returns an error wrapping errors.ErrUnsupported.
func SetFeatures(netns, dev string, want map[string]bool) error { return errUnsupported }

// GRO returns an error wrapping errors.ErrUnsupported.
func GRO(netns, dev string) (bool, error) { return false, errUnsupported }

// Intervals of Watch's reads (unused off Linux).
var (
	SafetyInterval = 5 * time.Second
	PollInterval   = 250 * time.Millisecond
)

// Watch returns an error wrapping errors.ErrUnsupported.
func Watch(ctx context.Context, netns, dev string, f func(map[string]bool)) error {
	return errUnsupported
}
