//go:build !linux

package nsutil

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
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

// Lease is a process's use of a named namespace; off Linux there is none.
type Lease struct{}

// Use returns an error wrapping errors.ErrUnsupported.
func Use(name, by string) (*Lease, error) { return nil, errUnsupported }

// Name returns "".
func (l *Lease) Name() string { return "" }

// Owned reports false.
func (l *Lease) Owned() bool { return false }

// Created reports false.
func (l *Lease) Created() bool { return false }

// Adopted reports false.
func (l *Lease) Adopted() bool { return false }

// Record returns the zero Record.
func (l *Lease) Record() Record { return Record{} }

// Release does nothing.
func (l *Lease) Release() (bool, error) { return false, nil }

// Sweep returns an error wrapping errors.ErrUnsupported.
func Sweep(match func(Record) bool) ([]Record, error) { return nil, errUnsupported }

// Identify returns an error wrapping errors.ErrUnsupported.
func Identify(name string) (ID, error) { return ID{}, errUnsupported }

// IsPath reports whether ns names a namespace by path (it has a slash).
func IsPath(ns string) bool { return strings.Contains(ns, "/") }

// Identity needs Linux.
func Identity(name string) (dev, ino uint64, err error) { return 0, 0, errUnsupported }
