//go:build !linux

package safefile

import (
	"errors"
	"fmt"
	"os"
)

// Perm is the mode of the files vnic writes: its owner's only, since
// captures and reports hold packet payloads.
const Perm os.FileMode = 0o600

var errUnsupported = fmt.Errorf("safefile: creating files safely is implemented for Linux only: %w", errors.ErrUnsupported)

// Create returns an error wrapping errors.ErrUnsupported.
func Create(path string, perm os.FileMode) (*os.File, error) { return nil, errUnsupported }

// MkdirAll returns an error wrapping errors.ErrUnsupported.
func MkdirAll(path string, perm os.FileMode) error { return errUnsupported }
