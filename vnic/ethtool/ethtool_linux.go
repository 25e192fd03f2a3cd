package ethtool

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"

	sethtool "github.com/safchain/ethtool"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"vnic/vnic/nsutil"
)

// Handle reads and sets features of devices in one network namespace. It
// holds a socket created in that namespace; its methods may be called
// from any goroutine and thread, but not concurrently.
type Handle struct {
	netns string
	e     *sethtool.Ethtool
}

// Open returns a Handle for the named network namespace ("" = the
// caller's). Its socket is created inside the namespace on a locked
// thread (nsutil.Do).
func Open(netns string) (*Handle, error) {
	var e *sethtool.Ethtool
	err := nsutil.Do(netns, func() error {
		var err error
		e, err = sethtool.NewEthtool()
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("ethtool: socket in netns %q: %w", netns, err)
	}
	return &Handle{netns: netns, e: e}, nil
}

// Close releases the handle's socket.
func (h *Handle) Close() error {
	if h.e != nil {
		h.e.Close()
		h.e = nil
	}
	return nil
}

func (h *Handle) devError(op, dev string, err error) error {
	hint := ""
	if errors.Is(err, unix.ENODEV) {
		hint = " (no such device in this namespace)"
	}
	return fmt.Errorf("ethtool: %s %s in netns %q: %w%s", op, dev, h.netns, err, hint)
}

// States returns the state of each of dev's kernel features, by kernel
// name ("rx-gro", "tx-tcp-segmentation", ...).
//
// Equivalent to: ethtool -k DEV (the indented, kernel-named lines)
func (h *Handle) States(dev string) (map[string]State, error) {
	fs, err := h.e.FeaturesWithState(dev)
	if err != nil {
		return nil, h.devError("ethtool -k", dev, err)
	}
	m := make(map[string]State, len(fs))
	for name, s := range fs {
		m[name] = State{Active: s.Active, Requested: s.Requested, Fixed: !s.Available || s.NeverChanged}
	}
	return m, nil
}

// Features returns whether each of dev's features is on, by every name
// ethtool has for it: kernel names ("rx-gro"), and the legacy long
// ("generic-receive-offload") and short ("gro") group names, a group
// being on when any of its features is on. Every "name: on|off" line of
// `ethtool -k DEV` has its entry, with the same value.
//
// Equivalent to: ethtool -k DEV
func (h *Handle) Features(dev string) (map[string]bool, error) {
	s, err := h.States(dev)
	if err != nil {
		return nil, err
	}
	return withLegacy(s), nil
}

// GRO reports whether GRO (rx-gro) is on for dev.
//
// Equivalent to: ethtool -k DEV | grep generic-receive-offload
func (h *Handle) GRO(dev string) (bool, error) {
	s, err := h.States(dev)
	if err != nil {
		return false, err
	}
	g, ok := s["rx-gro"]
	if !ok {
		return false, h.devError("ethtool -k", dev, errors.New("no rx-gro feature"))
	}
	return g.Active, nil
}

// NotAppliedError lists features SetFeatures asked for that did not end up
// in the wanted state: fixed ones, or ones that depend on a feature that
// is off (they stay "requested").
type NotAppliedError struct {
	Dev string
	// Features maps each kernel feature name to the state it was asked for.
	Features map[string]bool
}

func (e *NotAppliedError) Error() string {
	var parts []string
	for _, n := range slices.Sorted(maps.Keys(e.Features)) {
		parts = append(parts, fmt.Sprintf("%s %s", n, onOff(e.Features[n])))
	}
	return fmt.Sprintf("ethtool: -K %s: not in effect: %s (fixed, or depends on a feature that is off)", e.Dev, strings.Join(parts, ", "))
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// SetFeatures turns features of dev on or off. Names are kernel names
// ("rx-gro") or legacy names, short ("gro") or long
// ("generic-receive-offload"); a legacy name sets every feature of its
// group that is not fixed, like `ethtool -K`. Afterwards every named
// feature must be in the wanted state, else the error is a
// *NotAppliedError; an unknown name is an error before anything changes.
//
// Equivalent to: ethtool -K DEV name on|off ...
func (h *Handle) SetFeatures(dev string, want map[string]bool) error {
	states, err := h.States(dev)
	if err != nil {
		return err
	}
	change := map[string]bool{}
	for name, on := range want {
		if _, ok := states[name]; ok {
			change[name] = on
			continue
		}
		g := legacyIndex(name)
		if g < 0 {
			return fmt.Errorf("ethtool: -K %s: unknown feature %q", dev, name)
		}
		n := 0
		for f, s := range states {
			if group(f) == g && !s.Fixed {
				change[f] = on
				n++
			}
		}
		if n == 0 {
			return &NotAppliedError{Dev: dev, Features: map[string]bool{legacy[g].pattern: on}}
		}
	}
	if len(change) == 0 {
		return nil
	}
	if err := h.e.Change(dev, change); err != nil {
		return h.devError("ethtool -K", dev, err)
	}
	after, err := h.States(dev)
	if err != nil {
		return err
	}
	bad := map[string]bool{}
	for f, on := range change {
		if after[f].Active != on {
			bad[f] = on
		}
	}
	if len(bad) > 0 {
		return &NotAppliedError{Dev: dev, Features: bad}
	}
	return nil
}

// Features is Handle.Features for one read: it opens a Handle in the
// named namespace ("" = the caller's), reads, and closes it.
func Features(netns, dev string) (map[string]bool, error) {
	h, err := Open(netns)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	return h.Features(dev)
}

// SetFeatures is Handle.SetFeatures in the named namespace.
func SetFeatures(netns, dev string, want map[string]bool) error {
	h, err := Open(netns)
	if err != nil {
		return err
	}
	defer h.Close()
	return h.SetFeatures(dev, want)
}

// GRO is Handle.GRO in the named namespace.
func GRO(netns, dev string) (bool, error) {
	h, err := Open(netns)
	if err != nil {
		return false, err
	}
	defer h.Close()
	return h.GRO(dev)
}

// Intervals of Watch's reads without a notification.
var (
	// SafetyInterval: with notifications, re-read this often anyway.
	SafetyInterval = 5 * time.Second
	// PollInterval: without ethtool netlink, poll this often.
	PollInterval = 250 * time.Millisecond
)

// forcePoll makes Watch poll (tests).
var forcePoll bool

// Watch calls f with dev's features (as Features returns them) once at
// the start, and then each time they change, until ctx is done (Watch
// then returns nil) or reading them fails (the device is gone: the error
// wraps ENODEV). f runs on Watch's goroutine and gets a map of its own.
//
// Watch waits for the kernel's ETHTOOL_MSG_FEATURES_NTF notifications
// (genetlink family "ethtool", group "monitor", subscribed to inside the
// namespace), which the kernel sends for every change however it is
// made, and re-reads the features when one names dev, and every
// SafetyInterval in case one was lost. Without ethtool netlink it polls
// every PollInterval.
//
// Equivalent to: ethtool --monitor -k DEV
func Watch(ctx context.Context, netns, dev string, f func(map[string]bool)) error {
	h, err := Open(netns)
	if err != nil {
		return err
	}
	defer h.Close()
	cur, err := h.Features(dev)
	if err != nil {
		return err
	}
	var mon *monitor
	if !forcePoll {
		// Without ethtool netlink (or its monitor group), poll.
		if mon, _ = openMonitor(netns, dev); mon != nil {
			defer mon.close()
		}
	}
	f(maps.Clone(cur))
	for {
		if mon != nil {
			if err := mon.wait(ctx, SafetyInterval); err != nil {
				return err
			}
		} else {
			t := time.NewTimer(PollInterval)
			select {
			case <-ctx.Done():
				t.Stop()
			case <-t.C:
			}
		}
		if ctx.Err() != nil {
			return nil
		}
		next, err := h.Features(dev)
		if err != nil {
			return err
		}
		if !maps.Equal(next, cur) {
			cur = next
			f(maps.Clone(cur))
		}
	}
}

// monitor is a generic netlink socket subscribed to the ethtool family's
// monitor group, inside one namespace.
type monitor struct {
	file   *os.File
	family uint16
	index  int32
	buf    []byte
}

func openMonitor(netns, dev string) (*monitor, error) {
	nh, err := nsutil.Handle(netns)
	if err != nil {
		return nil, err
	}
	defer nh.Close()
	fam, err := nh.GenlFamilyGet(unix.ETHTOOL_GENL_NAME)
	if err != nil {
		return nil, fmt.Errorf("ethtool: genetlink family %q: %w", unix.ETHTOOL_GENL_NAME, err)
	}
	group := uint32(0)
	for _, g := range fam.Groups {
		if g.Name == unix.ETHTOOL_MCGRP_MONITOR_NAME {
			group = g.ID
		}
	}
	if group == 0 {
		return nil, fmt.Errorf("ethtool: genetlink family %q has no %q group", unix.ETHTOOL_GENL_NAME, unix.ETHTOOL_MCGRP_MONITOR_NAME)
	}
	l, err := nh.LinkByName(dev)
	if err != nil {
		return nil, fmt.Errorf("ethtool: %s: %w", dev, err)
	}
	var fd int
	err = nsutil.Do(netns, func() error {
		var err error
		fd, err = unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_GENERIC)
		if err != nil {
			return err
		}
		if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
			unix.Close(fd)
			return err
		}
		if err := unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_ADD_MEMBERSHIP, int(group)); err != nil {
			unix.Close(fd)
			return err
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("ethtool: subscribe to ethtool monitor in netns %q: %w", netns, err)
	}
	return &monitor{
		file:   os.NewFile(uintptr(fd), "ethtool-monitor"),
		family: fam.ID,
		index:  int32(l.Attrs().Index),
		buf:    make([]byte, 64<<10),
	}, nil
}

func (m *monitor) close() { m.file.Close() }

// wait returns when a features notification for the device arrives, when
// a notification may have been lost, after timeout, or when ctx is done.
func (m *monitor) wait(ctx context.Context, timeout time.Duration) error {
	// The timeout first, then the cancel: a context already done runs
	// the AfterFunc at once, and its past deadline must not be
	// overwritten by the timeout (Watch would then return SafetyInterval
	// late after a cancel; seen under -race in CI).
	m.file.SetReadDeadline(time.Now().Add(timeout))
	stop := context.AfterFunc(ctx, func() { m.file.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	for {
		n, err := m.file.Read(m.buf)
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			return nil
		case errors.Is(err, unix.ENOBUFS): // overrun: messages lost
			return nil
		case err != nil:
			return fmt.Errorf("ethtool: read ethtool monitor: %w", err)
		}
		if m.concerns(m.buf[:n]) {
			return nil
		}
	}
}

// concerns reports whether a datagram holds an ETHTOOL_MSG_FEATURES_NTF
// for the watched device (or one that does not parse: better read once
// too often).
func (m *monitor) concerns(b []byte) bool {
	msgs, err := syscall.ParseNetlinkMessage(b)
	if err != nil {
		return true
	}
	for _, msg := range msgs {
		if msg.Header.Type != m.family || len(msg.Data) < 4 || msg.Data[0] != unix.ETHTOOL_MSG_FEATURES_NTF {
			continue
		}
		idx, ok := headerIndex(msg.Data[4:])
		if !ok || idx == m.index {
			return true
		}
	}
	return false
}

// headerIndex finds ETHTOOL_A_HEADER_DEV_INDEX in the message's
// ETHTOOL_A_FEATURES_HEADER.
func headerIndex(attrs []byte) (int32, bool) {
	as, err := nl.ParseRouteAttr(attrs)
	if err != nil {
		return 0, false
	}
	for _, a := range as {
		if a.Attr.Type&nlaTypeMask != unix.ETHTOOL_A_FEATURES_HEADER {
			continue
		}
		hs, err := nl.ParseRouteAttr(a.Value)
		if err != nil {
			return 0, false
		}
		for _, h := range hs {
			if h.Attr.Type&nlaTypeMask == unix.ETHTOOL_A_HEADER_DEV_INDEX && len(h.Value) >= 4 {
				return int32(nl.NativeEndian().Uint32(h.Value)), true
			}
		}
	}
	return 0, false
}

// nlaTypeMask strips the flag bits from a netlink attribute type
// (NLA_TYPE_MASK).
const nlaTypeMask = ^uint16(unix.NLA_F_NESTED | unix.NLA_F_NET_BYTEORDER)
