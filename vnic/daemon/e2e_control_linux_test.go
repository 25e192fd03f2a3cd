package daemon_test

import (
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"

	"vnic/vnic/daemon"
	"vnic/vnic/kerneltest"
)

// deadSocket leaves a unix socket at p that nothing listens on, as a
// killed daemon does, owned by uid.
func deadSocket(t *testing.T, p string, uid int) {
	t.Helper()
	l, err := net.Listen("unix", p)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	if err := os.Lchown(p, uid, uid); err != nil {
		t.Fatal(err)
	}
}

// TestE2EControlPathRemovesOnlyAStaleSocket: --control PATH replaces a
// socket a killed daemon of ours left there, and nothing else: not a
// file, not a symlink, not another user's socket.
func TestE2EControlPathRemovesOnlyAStaleSocket(t *testing.T) {
	kerneltest.RequireRoot(t)
	dir := t.TempDir()
	target := filepath.Join(dir, "precious")
	if err := os.WriteFile(target, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	start := func(ctl string) (*daemon.Daemon, error) {
		logs := &logBuf{}
		d, err := daemon.Start(context.Background(), daemon.Config{Netns: uniqueNetns(t), Control: ctl,
			Logger: slog.New(slog.NewTextHandler(logs, nil))})
		if err == nil {
			t.Cleanup(func() { d.Close() })
		}
		return d, err
	}
	for _, tc := range []struct {
		name  string
		plant func(p string)
	}{
		{"a regular file", func(p string) {
			if err := os.WriteFile(p, []byte("keep me"), 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{"a symlink", func(p string) {
			if err := os.Symlink(target, p); err != nil {
				t.Fatal(err)
			}
		}},
		{"another user's dead socket", func(p string) { deadSocket(t, p, 65534) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, tc.name+".sock")
			tc.plant(p)
			before, _ := os.Lstat(p)
			d, err := start(p)
			if err == nil {
				d.Close()
				t.Errorf("Start with --control on %s succeeded", tc.name)
			} else {
				t.Log(err)
			}
			if after, err := os.Lstat(p); err != nil || !os.SameFile(before, after) {
				t.Errorf("%s at the control path was removed or replaced (%v)", tc.name, err)
			}
		})
	}
	if b, err := os.ReadFile(target); err != nil || string(b) != "keep me" {
		t.Errorf("the symlink's target: %q, %v", b, err)
	}

	t.Run("our own dead socket", func(t *testing.T) {
		p := filepath.Join(dir, "stale.sock")
		deadSocket(t, p, os.Geteuid())
		d, err := start(p)
		if err != nil {
			t.Fatalf("a stale socket of ours was not replaced: %v", err)
		}
		if _, err := daemon.ReadStats(p); err != nil {
			t.Errorf("vnic stat: %v", err)
		}
		d.Close()
		if _, err := os.Lstat(p); err == nil {
			t.Error("control socket left after Close")
		}
	})
}
