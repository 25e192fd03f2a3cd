package kerneltest

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// RequireRoot skips the test unless it runs as root with /dev/net/tun
// present. When the environment has CI=true it fails the test instead: a
// root-only test that silently skips in CI proves nothing.
func RequireRoot(t testing.TB) {
	t.Helper()
	var why string
	if os.Geteuid() != 0 {
		why = "needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN): run the tests as root, e.g. sudo -E go test"
	} else if _, err := os.Stat("/dev/net/tun"); err != nil {
		why = fmt.Sprintf("needs /dev/net/tun (%v): modprobe tun", err)
	}
	if why == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("kerneltest: %s (CI=true, refusing to skip)", why)
	}
	t.Skipf("kerneltest: %s", why)
}

// Netns is a fresh named network namespace created for one test. Its name
// is "vnic-t-<random>"; it is bind-mounted under /run/netns like
// `ip netns add`, so `ip netns exec` and `ip -n` reach it while the test
// runs. It holds only lo (down) and whatever the test creates in it.
type Netns struct {
	// Name is the namespace's name under /run/netns.
	Name string

	h netns.NsHandle
}

// NewNetns creates a fresh named network namespace and registers its
// deletion with t.Cleanup, which runs even when the test fails. Cleanups
// run last-in first-out, so devices the test creates in the namespace
// afterwards (and closes in their own cleanups) go first.
//
// Equivalent to: ip netns add vnic-t-<random>
func NewNetns(t testing.TB) *Netns {
	t.Helper()
	RequireRoot(t)
	var rnd [4]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		t.Fatalf("kerneltest: random name: %v", err)
	}
	name := "vnic-t-" + hex.EncodeToString(rnd[:])
	var h netns.NsHandle
	err := onFreshThread(func() (bool, error) {
		orig, err := netns.Get()
		if err != nil {
			return true, fmt.Errorf("get current netns: %w", err)
		}
		defer orig.Close()
		h, err = netns.NewNamed(name) // unshares this thread into the new namespace
		restoreErr := netns.Set(orig)
		if err != nil {
			return restoreErr == nil, fmt.Errorf("create netns %s: %w", name, err)
		}
		if restoreErr != nil {
			return false, fmt.Errorf("return from netns %s: %w", name, restoreErr)
		}
		return true, nil
	})
	if err != nil {
		// NewNamed may have left the mount point behind.
		_ = netns.DeleteNamed(name)
		t.Fatalf("kerneltest: %v", err)
	}
	n := &Netns{Name: name, h: h}
	t.Cleanup(func() {
		if err := n.h.Close(); err != nil {
			t.Errorf("kerneltest: close netns %s: %v", name, err)
		}
		if err := netns.DeleteNamed(name); err != nil {
			t.Errorf("kerneltest: delete netns %s: %v", name, err)
		}
	})
	return n
}

// onFreshThread runs f in a new goroutine locked to its OS thread and waits
// for it. f reports whether the thread is still clean (in the namespaces
// it started in); when it is not, the goroutine exits still locked, and
// the Go runtime terminates the thread instead of reusing it.
func onFreshThread(f func() (clean bool, err error)) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		clean, err := f()
		if clean {
			runtime.UnlockOSThread()
		}
		done <- err
	}()
	return <-done
}

// Do runs f on a locked OS thread inside the namespace and returns its
// error. Everything f opens there (sockets, TUN devices, /proc/sys/net
// files) belongs to the namespace; file descriptors stay valid after Do
// returns. The thread is moved back to its own namespace afterwards; if
// that fails it is never returned to the scheduler (it dies).
func (n *Netns) Do(f func() error) error {
	return onFreshThread(func() (bool, error) {
		orig, err := netns.Get()
		if err != nil {
			return true, fmt.Errorf("kerneltest: get current netns: %w", err)
		}
		defer orig.Close()
		if err := netns.Set(n.h); err != nil {
			return true, fmt.Errorf("kerneltest: enter netns %s: %w", n.Name, err)
		}
		ferr := f()
		if err := netns.Set(orig); err != nil {
			return false, errors.Join(ferr, fmt.Errorf("kerneltest: leave netns %s: %w", n.Name, err))
		}
		return true, ferr
	})
}

// Sysctl writes value to the sysctl key (dotted, "net.ipv4.ip_forward")
// inside the namespace.
//
// Equivalent to: ip netns exec NS sysctl -w key=value
func (n *Netns) Sysctl(key, value string) error {
	return n.Do(func() error { return writeSysctl(key, value) })
}

func writeSysctl(key, value string) error {
	p := filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/"))
	if err := os.WriteFile(p, []byte(value), 0); err != nil {
		return fmt.Errorf("kerneltest: sysctl %s=%s: %w", key, value, err)
	}
	return nil
}

// WriteSysfs writes value to the sysfs file rel (relative to /sys, e.g.
// "class/net/in/gro_flush_timeout") as the namespace sees it. The host's
// /sys shows the host's devices, so this mounts a fresh sysfs inside the
// namespace on a thread with a private mount namespace; that thread is
// never reused (it dies when the write is done).
//
// Equivalent to: ip netns exec NS sh -c 'echo value > /sys/rel'
func (n *Netns) WriteSysfs(rel, value string) error {
	return onFreshThread(func() (bool, error) {
		// From here on the thread is not clean: a new mount namespace.
		if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
			return false, fmt.Errorf("kerneltest: unshare mount namespace: %w", err)
		}
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			return false, fmt.Errorf("kerneltest: make mounts private: %w", err)
		}
		if err := netns.Set(n.h); err != nil {
			return false, fmt.Errorf("kerneltest: enter netns %s: %w", n.Name, err)
		}
		// sysfs binds to the network namespace of the task that mounts it.
		if err := unix.Mount("sysfs", "/sys", "sysfs", 0, ""); err != nil {
			return false, fmt.Errorf("kerneltest: mount sysfs: %w", err)
		}
		p := filepath.Join("/sys", rel)
		if err := os.WriteFile(p, []byte(value), 0); err != nil {
			return false, fmt.Errorf("kerneltest: write %s=%s in netns %s: %w", p, value, n.Name, err)
		}
		return false, nil
	})
}
