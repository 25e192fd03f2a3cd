package nsutil

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Path returns where the named namespace is mounted: /run/netns/NAME.
func Path(name string) string { return filepath.Join(RunDir, name) }

// Exists reports whether a network namespace called name is mounted under
// RunDir (a leftover plain file there does not count).
func Exists(name string) bool {
	if validName(name) != nil {
		return false
	}
	var st unix.Statfs_t
	return unix.Statfs(Path(name), &st) == nil && st.Type == unix.NSFS_MAGIC
}

// Create creates the network namespace name and mounts it under RunDir,
// like `ip netns add NAME`, so that `ip netns exec NAME` reaches it. It
// reports created=false, and no error, when the namespace already
// exists. The new namespace holds only lo, down.
//
// The namespace is created by unshare(2) on a locked throwaway thread
// that is moved back afterwards (or dies); the calling thread never
// changes namespace.
//
// Equivalent to: ip netns add NAME
func Create(name string) (created bool, err error) {
	if err := validName(name); err != nil {
		return false, err
	}
	if Exists(name) {
		return false, nil
	}
	err = onFreshThread(func() (bool, error) {
		if err := prepareRunDir(); err != nil {
			return true, err
		}
		orig, err := netns.Get()
		if err != nil {
			return true, fmt.Errorf("nsutil: get current netns: %w", err)
		}
		defer orig.Close()
		// NewNamed unshares this thread into the new namespace, then
		// creates and bind-mounts /run/netns/NAME (O_EXCL).
		h, nerr := netns.NewNamed(name)
		if nerr == nil {
			h.Close()
		}
		if err := netns.Set(orig); err != nil {
			return false, errors.Join(nerr, fmt.Errorf("nsutil: return from new netns %s: %w", name, err))
		}
		return true, nerr
	})
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, os.ErrExist):
		if Exists(name) { // created concurrently by someone else
			return false, nil
		}
		return false, fmt.Errorf("nsutil: %s exists but is not a network namespace: remove it with `ip netns del %s`", Path(name), name)
	case errors.Is(err, os.ErrPermission):
		return false, fmt.Errorf("nsutil: ip netns add %s: %w (creating a network namespace needs root or CAP_SYS_ADMIN)", name, err)
	default:
		// NewNamed may have left an unmounted file behind.
		var st unix.Statfs_t
		if unix.Statfs(Path(name), &st) == nil && st.Type != unix.NSFS_MAGIC {
			os.Remove(Path(name))
		}
		return false, fmt.Errorf("nsutil: ip netns add %s: %w", name, err)
	}
}

// prepareRunDir makes RunDir and, like iproute2, makes it a shared mount
// point so that a namespace unmounted in one mount namespace is unmounted
// in all of them (and freed sooner). Failing to share is not fatal.
func prepareRunDir() error {
	if err := os.MkdirAll(RunDir, 0o755); err != nil {
		return fmt.Errorf("nsutil: mkdir %s: %w", RunDir, err)
	}
	err := unix.Mount("", RunDir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if err == unix.EINVAL { // not a mount point yet: make it one
		if unix.Mount(RunDir, RunDir, "none", unix.MS_BIND|unix.MS_REC, "") == nil {
			unix.Mount("", RunDir, "none", unix.MS_SHARED|unix.MS_REC, "")
		}
	}
	return nil
}

// Delete unmounts and removes the named namespace, like `ip netns del
// NAME`. The namespace itself lives on while anything still holds it (a
// process inside it, an open TUN or socket created in it); its devices go
// with it. It is an error, wrapping os.ErrNotExist, if there is no such
// namespace.
//
// Equivalent to: ip netns del NAME
func Delete(name string) error {
	if err := validName(name); err != nil {
		return err
	}
	p := Path(name)
	// A leftover unmounted file is removed all the same (as ip does).
	if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && err != unix.EINVAL && err != unix.ENOENT {
		return fmt.Errorf("nsutil: ip netns del %s: umount %s: %w", name, p, err)
	}
	if err := os.Remove(p); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("nsutil: ip netns del %s: no such network namespace: %w", name, os.ErrNotExist)
		}
		return fmt.Errorf("nsutil: ip netns del %s: %w", name, err)
	}
	return nil
}

// IsPath reports whether ns names a namespace by the path of its file
// (/proc/PID/ns/net, /run/netns/NAME, a container runtime's netns path)
// rather than by its `ip netns` name: it contains a '/'. A namespace
// given by path is never created or removed by vnic.
func IsPath(ns string) bool { return strings.Contains(ns, "/") }

// open returns a handle on the namespace's file: a name under RunDir, or
// a path (IsPath).
func open(name string) (netns.NsHandle, error) {
	if IsPath(name) {
		h, err := netns.GetFromPath(name)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return netns.None(), fmt.Errorf("nsutil: network namespace file %s does not exist: %w", name, os.ErrNotExist)
			}
			return netns.None(), fmt.Errorf("nsutil: open network namespace %s: %w", name, err)
		}
		var st unix.Statfs_t
		if err := unix.Fstatfs(int(h), &st); err != nil || st.Type != unix.NSFS_MAGIC {
			h.Close()
			return netns.None(), fmt.Errorf("nsutil: %s is not a namespace file (give /proc/PID/ns/net or /run/netns/NAME)", name)
		}
		if !isNetNS(h) {
			h.Close()
			return netns.None(), fmt.Errorf("nsutil: %s is a namespace file but not a network namespace (give /proc/PID/ns/net)", name)
		}
		return h, nil
	}
	if err := validName(name); err != nil {
		return netns.None(), err
	}
	h, err := netns.GetFromName(name)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return netns.None(), fmt.Errorf("nsutil: network namespace %q does not exist (create it with `ip netns add %s`): %w", name, name, os.ErrNotExist)
		}
		return netns.None(), fmt.Errorf("nsutil: open network namespace %q: %w", name, err)
	}
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(h), &st); err != nil || st.Type != unix.NSFS_MAGIC {
		h.Close()
		return netns.None(), fmt.Errorf("nsutil: %s is not a network namespace (a leftover? `ip netns del %s`)", Path(name), name)
	}
	return h, nil
}

// isNetNS reports whether the nsfs file h is a network namespace
// (NS_GET_NSTYPE).
func isNetNS(h netns.NsHandle) bool {
	t, err := unix.IoctlRetInt(int(h), unix.NS_GET_NSTYPE)
	return err == nil && t == unix.CLONE_NEWNET
}

// Identity returns the device and inode of a namespace's file (a name or
// a path): two handles on the same namespace have the same identity.
func Identity(name string) (dev, ino uint64, err error) {
	h, err := open(name)
	if err != nil {
		return 0, 0, err
	}
	defer h.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(h), &st); err != nil {
		return 0, 0, fmt.Errorf("nsutil: stat %s: %w", name, err)
	}
	return st.Dev, st.Ino, nil
}

// onFreshThread runs f on a new goroutine locked to its OS thread and
// waits for it. f reports whether the thread is still clean (in the
// namespaces it started in); when it is not, the goroutine exits still
// locked and the runtime terminates the thread instead of reusing it. A
// panic in f is re-raised in the caller (after the thread has been dealt
// with).
func onFreshThread(f func() (clean bool, err error)) error {
	type result struct {
		err      error
		panicked bool
		p        any
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		var r result
		clean, returned := false, false
		defer func() {
			if !returned {
				if p := recover(); p != nil {
					r.panicked, r.p = true, p
				} else {
					r.err = errors.New("nsutil: function called runtime.Goexit inside a network namespace")
				}
			}
			if clean {
				runtime.UnlockOSThread()
			}
			done <- r
		}()
		clean, r.err = f()
		returned = true
	}()
	r := <-done
	if r.panicked {
		panic(r.p)
	}
	return r.err
}

// Do runs f on a locked OS thread inside the named network namespace and
// returns f's error. Everything f opens there (sockets, TUN devices,
// /proc/sys/net files) belongs to the namespace, and file descriptors stay
// valid after Do returns. f runs on a goroutine of its own, locked to its
// thread; afterwards the thread is moved back to its original namespace,
// and if that fails the thread is never reused (it dies). A panic in f is
// re-raised in Do's caller.
//
// With name "", f runs on the caller's own goroutine, locked to its
// thread, in whatever namespace that thread is in.
//
// Equivalent to: ip netns exec NAME f
func Do(name string, f func() error) error {
	if name == "" {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		return f()
	}
	target, err := open(name)
	if err != nil {
		return err
	}
	defer target.Close()
	return onFreshThread(func() (bool, error) {
		orig, err := netns.Get()
		if err != nil {
			return true, fmt.Errorf("nsutil: get current netns: %w", err)
		}
		defer orig.Close()
		if err := netns.Set(target); err != nil {
			return true, fmt.Errorf("nsutil: enter netns %s: %w", name, err)
		}
		// If f panics, the thread is left to die in the namespace.
		ferr := f()
		if err := netns.Set(orig); err != nil {
			return false, errors.Join(ferr, fmt.Errorf("nsutil: leave netns %s: %w", name, err))
		}
		return true, ferr
	})
}

// Handle returns a netlink handle whose sockets live in the named network
// namespace ("" = the caller's), usable from any goroutine. Close it when
// done.
//
// Equivalent to: ip -n NAME ...
func Handle(name string) (*netlink.Handle, error) {
	var h *netlink.Handle
	err := Do(name, func() error {
		var err error
		h, err = netlink.NewHandle()
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("nsutil: netlink handle in netns %q: %w", name, err)
	}
	return h, nil
}

// ConfigureLink applies c to the link called dev, through h (nil: a
// handle in the caller's namespace), in this order: MTU, txqueuelen,
// addresses, up, routes. Every value is checked first; an error names the
// value and the command that failed. Addresses and routes are replaced if
// already present, so applying the same config twice is not an error.
//
// Equivalent to:
//
//	ip link set $dev mtu M txqueuelen Q
//	ip addr replace A dev $dev [nodad]    # for each A; nodad for IPv6
//	ip link set $dev up
//	ip route replace D [via G] dev $dev [src S] [metric N]
func ConfigureLink(h *netlink.Handle, dev string, c LinkConfig) error {
	if err := c.validate(dev); err != nil {
		return err
	}
	if h == nil {
		var err error
		if h, err = netlink.NewHandle(); err != nil {
			return fmt.Errorf("nsutil: netlink handle: %w", err)
		}
		defer h.Close()
	}
	l, err := h.LinkByName(dev)
	if err != nil {
		return fmt.Errorf("nsutil: no link %q: %w", dev, err)
	}
	if c.MTU != 0 {
		if err := h.LinkSetMTU(l, c.MTU); err != nil {
			return fmt.Errorf("nsutil: ip link set %s mtu %d: %w", dev, c.MTU, err)
		}
	}
	if c.TxQueueLen != 0 {
		if err := h.LinkSetTxQLen(l, c.TxQueueLen); err != nil {
			return fmt.Errorf("nsutil: ip link set %s txqueuelen %d: %w", dev, c.TxQueueLen, err)
		}
	}
	for _, p := range c.Addrs {
		a := &netlink.Addr{IPNet: ipNet(p)}
		nodad := ""
		if p.Addr().Is6() {
			a.Flags = unix.IFA_F_NODAD
			nodad = " nodad"
		}
		if err := h.AddrReplace(l, a); err != nil {
			return fmt.Errorf("nsutil: ip addr add %v dev %s%s: %w", p, dev, nodad, err)
		}
	}
	if c.Up {
		if err := h.LinkSetUp(l); err != nil {
			return fmt.Errorf("nsutil: ip link set %s up: %w", dev, err)
		}
	}
	for _, r := range c.Routes {
		nr := &netlink.Route{LinkIndex: l.Attrs().Index, Dst: ipNet(r.Dst), Priority: r.Metric}
		if r.Via.IsValid() {
			nr.Gw = r.Via.AsSlice()
		} else {
			nr.Scope = netlink.SCOPE_LINK
		}
		if r.Src.IsValid() {
			nr.Src = r.Src.AsSlice()
		}
		if err := h.RouteReplace(nr); err != nil {
			hint := ""
			if errors.Is(err, unix.ENETDOWN) {
				hint = " (the link is down: set Up)"
			} else if errors.Is(err, unix.ENETUNREACH) && r.Via.IsValid() {
				hint = " (gateway not on a connected network)"
			}
			return fmt.Errorf("nsutil: ip route add %v dev %s: %w%s", r, dev, err, hint)
		}
	}
	return nil
}

// WaitLocal waits until the kernel of the handle's namespace delivers
// packets to each of addrs locally, at most timeout. An IPv6 address added
// before its link came up is listed, without the tentative flag, some
// milliseconds before addrconf installs its local route; a packet for it
// in between is dropped as an address error (Ip6InAddrErrors), so
// whoever reports a link as up waits for this first.
//
// Equivalent to: until ip route get ADDR answers "local ADDR dev lo
// table local" for each ADDR
func WaitLocal(h *netlink.Handle, addrs []netip.Prefix, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for _, p := range addrs {
		for {
			rs, err := h.RouteGet(p.Addr().AsSlice())
			if err == nil && len(rs) > 0 && rs[0].Type == unix.RTN_LOCAL {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("nsutil: %v not delivered locally after %v (ip route get: %v, %v)", p.Addr(), timeout, rs, err)
			}
			time.Sleep(time.Millisecond)
		}
	}
	return nil
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// Sysctl writes value to the sysctl key ("net.ipv4.ip_forward", or the
// slash form "net/ipv4/conf/eth0.100/forwarding") inside the named
// namespace ("" = the caller's).
//
// Equivalent to: ip netns exec NAME sysctl -w key=value
func Sysctl(name, key, value string) error {
	p, err := sysctlPath(key)
	if err != nil {
		return err
	}
	return Do(name, func() error {
		if err := os.WriteFile(p, []byte(value), 0); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("nsutil: sysctl %s=%s in netns %q: no such key", key, value, name)
			}
			return fmt.Errorf("nsutil: sysctl %s=%s in netns %q: %w", key, value, name, err)
		}
		return nil
	})
}

// SysctlValue reads the sysctl key inside the named namespace ("" = the
// caller's), without the trailing newline.
//
// Equivalent to: ip netns exec NAME sysctl -n key
func SysctlValue(name, key string) (string, error) {
	p, err := sysctlPath(key)
	if err != nil {
		return "", err
	}
	var v string
	err = Do(name, func() error {
		b, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("nsutil: sysctl %s in netns %q: %w", key, name, err)
		}
		v = strings.TrimSuffix(string(b), "\n")
		return nil
	})
	return v, err
}

func sysctlPath(key string) (string, error) {
	k := key
	if !strings.Contains(k, "/") {
		k = strings.ReplaceAll(k, ".", "/")
	}
	for _, e := range strings.Split(k, "/") {
		if e == "" || e == "." || e == ".." {
			return "", fmt.Errorf("nsutil: invalid sysctl key %q", key)
		}
	}
	return filepath.Join("/proc/sys", k), nil
}

// WriteSysfs writes value to the sysfs file rel (relative to /sys, e.g.
// "class/net/vnic0/gro_flush_timeout") as the named namespace sees it.
// The process's /sys shows the devices of the namespace it was mounted
// in, so this mounts a fresh sysfs inside the namespace, on a throwaway
// thread with a private mount namespace; that thread is never reused (it
// dies when the write is done).
//
// Equivalent to: ip netns exec NAME sh -c 'echo value > /sys/rel'
// (ip netns exec mounts a fresh /sys the same way).
func WriteSysfs(name, rel, value string) error {
	target, err := open(name)
	if err != nil {
		return err
	}
	defer target.Close()
	return onFreshThread(func() (bool, error) {
		// From here on the thread is not clean: a new mount namespace.
		if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
			return false, fmt.Errorf("nsutil: unshare mount namespace: %w", err)
		}
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			return false, fmt.Errorf("nsutil: make mounts private: %w", err)
		}
		if err := netns.Set(target); err != nil {
			return false, fmt.Errorf("nsutil: enter netns %s: %w", name, err)
		}
		// sysfs shows the network namespace of the task that mounts it.
		if err := unix.Mount(name, "/sys", "sysfs", 0, ""); err != nil {
			return false, fmt.Errorf("nsutil: mount sysfs: %w", err)
		}
		p := filepath.Join("/sys", rel)
		if err := os.WriteFile(p, []byte(value), 0); err != nil {
			return false, fmt.Errorf("nsutil: write %s=%s in netns %s: %w", p, value, name, err)
		}
		return false, nil
	})
}
