package daemon_test

import (
	"context"
	"log/slog"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"vnic/vnic/daemon"
	"vnic/vnic/kerneltest"
	"vnic/vnic/nsutil"
)

// Which namespaces a daemon removes on exit: only one vnic created, only
// the very namespace it created, and only when no other vnic daemon uses
// it.

// replaceNetns does what another user may do at any time:
// ip netns del NS; ip netns add NS. The new namespace is theirs. It is
// removed at the end of the test.
func replaceNetns(t *testing.T, ns string) {
	t.Helper()
	if out, err := run(t, 10*time.Second, "ip", "netns", "del", ns); err != nil {
		t.Fatalf("ip netns del %s: %v\n%s", ns, err, out)
	}
	if out, err := run(t, 10*time.Second, "ip", "netns", "add", ns); err != nil {
		t.Fatalf("ip netns add %s: %v\n%s", ns, err, out)
	}
}

// stillThere checks that the namespace made by replaceNetns survived, and
// removes it (uniqueNetns would report it as left behind).
func stillThere(t *testing.T, ns, after string) {
	t.Helper()
	if !nsutil.Exists(ns) {
		t.Errorf("%s removed the namespace %s that someone else created", after, ns)
		return
	}
	if out, err := run(t, 10*time.Second, "ip", "netns", "del", ns); err != nil {
		t.Errorf("ip netns del %s: %v\n%s", ns, err, out)
	}
}

func startIn(t *testing.T, cfg daemon.Config) (*daemon.Daemon, *logBuf) {
	t.Helper()
	logs := &logBuf{}
	cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	d, err := daemon.Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("daemon.Start(%s in %s): %v\n%s", cfg.Name, cfg.Netns, err, logs.String())
	}
	t.Cleanup(func() {
		d.Close()
		if t.Failed() {
			t.Logf("%s log:\n%s", cfg.Name, logs.String())
		}
	})
	return d, logs
}

// TestE2EKill9ThenReplacedNamespaceIsNotAdopted: vnic up --netns X,
// kill -9, ip netns del X; ip netns add X (someone else's X now), vnic up
// --netns X: the second daemon must not take X for its predecessor's
// leftover, and leaves it on exit.
func TestE2EKill9ThenReplacedNamespaceIsNotAdopted(t *testing.T) {
	kerneltest.RequireRoot(t)
	ns := uniqueNetns(t)
	first := startCLI(t, ns)
	if err := first.signal(t, syscall.SIGKILL); err == nil {
		t.Fatal("vnic up exited 0 after SIGKILL")
	}
	replaceNetns(t, ns)

	second := startCLI(t, ns)
	ping(t, ns, "198.18.0.2")
	if err := second.signal(t, syscall.SIGTERM); err != nil {
		t.Errorf("vnic up after SIGTERM: %v", err)
	}
	if strings.Contains(second.out.String(), "adopting") {
		t.Errorf("the second daemon adopted someone else's namespace:\n%s", second.out.String())
	}
	stillThere(t, ns, "vnic up after kill -9 and ip netns del/add")
}

// TestE2ENamespaceReplacedWhileRunningIsNotRemoved: ip netns del X;
// ip netns add X while the daemon that created X runs.
func TestE2ENamespaceReplacedWhileRunningIsNotRemoved(t *testing.T) {
	kerneltest.RequireRoot(t)
	ns := uniqueNetns(t)
	d, _ := startIn(t, daemon.Config{Netns: ns})
	replaceNetns(t, ns)
	d.Close()
	stillThere(t, ns, "the daemon's Close")
}

// TestE2ETwoDaemonsOneNamespace: the daemon that created the namespace
// stops first; the namespace stays for the other, which removes it when
// it stops.
func TestE2ETwoDaemonsOneNamespace(t *testing.T) {
	kerneltest.RequireRoot(t)
	ns := uniqueNetns(t)
	first, _ := startIn(t, daemon.Config{Netns: ns})
	second, _ := startIn(t, daemon.Config{Netns: ns, Name: "vnic1",
		Addrs: []netip.Prefix{netip.MustParsePrefix("198.19.0.1/16"), netip.MustParsePrefix("fd00:1::1/64")}})
	t.Cleanup(func() { second.Close() }) // before uniqueNetns's check
	ping(t, ns, "198.19.0.2")

	first.Close()
	if !nsutil.Exists(ns) {
		t.Fatalf("the first daemon's Close removed %s under the second daemon", ns)
	}
	ping(t, ns, "198.19.0.2")
	second.Close()
	if nsutil.Exists(ns) {
		t.Errorf("%s still there after both daemons stopped", ns)
	}
}
