//go:build !linux

package nsutil

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"
)

var errUnsupported = fmt.Errorf("nsutil: network namespaces need Linux: %w", errors.ErrUnsupported)

// Path returns where the named namespace would be mounted.
func Path(name string) string { return RunDir + "/" + name }

// Exists reports false: there are no network namespaces off Linux.
func Exists(name string) bool { return false }

// Create returns an error wrapping errors.ErrUnsupported.
func Create(name string) (bool, error) { return false, errUnsupported }

// Delete returns an error wrapping errors.ErrUnsupported.
func Delete(name string) error { return errUnsupported }

// Do returns an error wrapping errors.ErrUnsupported.
func Do(name string, f func() error) error { return errUnsupported }

// Handle returns an error wrapping errors.ErrUnsupported.
func Handle(name string) (*netlink.Handle, error) { return nil, errUnsupported }

// ConfigureLink returns an error wrapping errors.ErrUnsupported.
func ConfigureLink(h *netlink.Handle, dev string, c LinkConfig) error { return errUnsupported }

// WaitLocal returns an error wrapping errors.ErrUnsupported.
func WaitLocal(h *netlink.Handle, addrs []netip.Prefix, timeout time.Duration) error {
	return errUnsupported
}

// Sysctl returns an error wrapping errors.ErrUnsupported.
func Sysctl(name, key, value string) error { return errUnsupported }

// SysctlValue returns an error wrapping errors.ErrUnsupported.
func SysctlValue(name, key string) (string, error) { return "", errUnsupported }

// WriteSysfs returns an error wrapping errors.ErrUnsupported.
func WriteSysfs(name, rel, value string) error { return errUnsupported }
