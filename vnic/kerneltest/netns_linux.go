package kerneltest

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"testing"

	"vnic/vnic/ethtool"
	"vnic/vnic/nsutil"
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

// RequireFeature skips the test because the running kernel lacks what
// it needs (what names it, with the version that brought it) — or fails
// it with CI=true, where CI's kernel is expected to have it.
func RequireFeature(t testing.TB, what string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("kerneltest: the kernel lacks %s (CI=true, refusing to skip)", what)
	}
	t.Skipf("kerneltest: the kernel lacks %s", what)
}

// Netns is a fresh named network namespace created for one test. Its name
// is "vnic-t-<random>"; it is bind-mounted under /run/netns like
// `ip netns add` (nsutil.Create), so `ip netns exec` and `ip -n` reach it
// while the test runs. It holds only lo (down) and whatever the test
// creates in it.
type Netns struct {
	// Name is the namespace's name under /run/netns.
	Name string
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
	created, err := nsutil.Create(name)
	if err != nil {
		t.Fatalf("kerneltest: %v", err)
	}
	if !created {
		t.Fatalf("kerneltest: netns %s already exists", name)
	}
	t.Cleanup(func() {
		if err := nsutil.Delete(name); err != nil {
			t.Errorf("kerneltest: %v", err)
		}
	})
	return &Netns{Name: name}
}

// Do runs f on a locked OS thread inside the namespace and returns its
// error. Everything f opens there (sockets, TUN devices, /proc/sys/net
// files) belongs to the namespace; file descriptors stay valid after Do
// returns. The thread is moved back to its own namespace afterwards; if
// that fails it is never returned to the scheduler (it dies). See
// nsutil.Do.
func (n *Netns) Do(f func() error) error { return nsutil.Do(n.Name, f) }

// Sysctl writes value to the sysctl key (dotted, "net.ipv4.ip_forward")
// inside the namespace.
//
// Equivalent to: ip netns exec NS sysctl -w key=value
func (n *Netns) Sysctl(key, value string) error { return nsutil.Sysctl(n.Name, key, value) }

// WriteSysfs writes value to the sysfs file rel (relative to /sys, e.g.
// "class/net/in/gro_flush_timeout") as the namespace sees it (see
// nsutil.WriteSysfs).
//
// Equivalent to: ip netns exec NS sh -c 'echo value > /sys/rel'
func (n *Netns) WriteSysfs(rel, value string) error { return nsutil.WriteSysfs(n.Name, rel, value) }

// SetFeature turns the ethtool feature name (as `ethtool -k` lists it:
// "rx-udp-gro-forwarding", "rx-gro", or a short name such as "gro") on or
// off for device dev in the namespace, and checks that it took effect.
//
// Equivalent to: ip netns exec NS ethtool -K dev name on|off
func (n *Netns) SetFeature(dev, name string, on bool) error {
	if err := ethtool.SetFeatures(n.Name, dev, map[string]bool{name: on}); err != nil {
		return fmt.Errorf("kerneltest: %w", err)
	}
	return nil
}
