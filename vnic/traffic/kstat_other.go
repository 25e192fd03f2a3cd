//go:build !linux

package traffic

import (
	"errors"
	"fmt"
)

// KernelCounters reads a namespace's kernel network counters (Linux only).
func KernelCounters(netns string) (map[string]uint64, error) {
	return nil, fmt.Errorf("traffic: kernel counters: %w", errors.ErrUnsupported)
}
