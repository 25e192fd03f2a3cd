//go:build !linux

package safefile

import (
	"errors"
	"fmt"
	"net"
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

// ErrSocketInUse is wrapped when a process answers on a socket.
var ErrSocketInUse = errors.New("a process answers on the socket")

// ListenUnix returns an error wrapping errors.ErrUnsupported.
func ListenUnix(path string) (net.Listener, error) { return nil, errUnsupported }

// RemoveStaleSocket returns an error wrapping errors.ErrUnsupported.
func RemoveStaleSocket(path string) error { return errUnsupported }
