//go:build !linux

package afpacket

import (
	"errors"
	"fmt"
)

var errUnsupported = fmt.Errorf("afpacket: an interface as the wire needs Linux: %w", errors.ErrUnsupported)

// Wire is an AF_PACKET wire (Linux only).
type Wire struct{}

// Open is not supported here.
func Open(cfg Config) (*Wire, error) { return nil, errUnsupported }

// Start is not supported here.
func (w *Wire) Start(to Receiver) {}

// Inject drops everything.
func (w *Wire) Inject(frames [][]byte) {}

// Stats returns nothing.
func (w *Wire) Stats() Stats { return Stats{} }

// Close does nothing.
func (w *Wire) Close() error { return nil }
