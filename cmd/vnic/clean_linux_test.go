package main

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"vnic/vnic/daemon"
	"vnic/vnic/kerneltest"
	"vnic/vnic/nsutil"
)

// startUp starts `vnic up --netns ns` and waits until its control socket
// answers. It returns the process and the socket's path; the caller
// stops it.
func startUp(t *testing.T, bin, ns string) (*exec.Cmd, string) {
	t.Helper()
	sock := filepath.Join(daemon.RunDir, ns+".vnic0.sock")
	cmd := exec.Command(bin, "up", "--netns", ns, "--log-level", "warn")
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		// Stopped as a user stops it, so it removes what it made; killed
		// if it does not exit.
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			t.Errorf("vnic up --netns %s still running 15 s after SIGTERM; killing it", ns)
			_ = cmd.Process.Kill()
			<-exited
		}
		for _, p := range []string{sock, strings.TrimSuffix(sock, ".sock") + ".tap"} {
			if _, err := os.Lstat(p); err == nil && !t.Failed() && cmd.ProcessState != nil && cmd.ProcessState.Success() {
				t.Errorf("%s left by a daemon that exited on SIGTERM", p)
			}
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if c, err := net.DialTimeout("unix", sock, time.Second); err == nil {
			c.Close()
			return cmd, sock
		}
		select {
		case <-exited:
			t.Fatalf("vnic up --netns %s exited before its control socket answered:\n%s", ns, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("vnic up --netns %s: no control socket %s after 30 s:\n%s", ns, sock, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestCleanAfterKill9: `vnic up --netns NAME` killed with SIGKILL leaves
// its namespace and its sockets; `vnic clean` removes exactly those and
// prints them. It leaves alone a namespace vnic did not create, a
// namespace and the sockets of a daemon that is running, and a file at a
// socket-like path that is not a socket.
func TestCleanAfterKill9(t *testing.T) {
	kerneltest.RequireRoot(t)
	bin := buildVnic(t)
	sfx := randomSuffix(t)
	killed, live, foreign := "clean-killed-"+sfx, "clean-live-"+sfx, "clean-foreign-"+sfx
	t.Cleanup(func() {
		for _, ns := range []string{killed, live, foreign} {
			if nsutil.Exists(ns) {
				_ = nsutil.Delete(ns)
			}
			_ = os.Remove(nsutil.RecordPath(ns))
		}
	})

	k, ksock := startUp(t, bin, killed)
	if err := k.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Wait for it to be gone: its socket stops answering.
	for deadline := time.Now().Add(10 * time.Second); ; {
		c, err := net.DialTimeout("unix", ksock, time.Second)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatalf("vnic up (pid %d) still answers 10 s after SIGKILL", k.Process.Pid)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !nsutil.Exists(killed) {
		t.Fatalf("%s gone right after kill -9: nothing for vnic clean to do", killed)
	}
	_, lsock := startUp(t, bin, live)
	if out, err := exec.Command("ip", "netns", "add", foreign).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v\n%s", foreign, err, out)
	}
	notSock := filepath.Join(daemon.RunDir, "clean-file-"+sfx+".sock")
	if err := os.WriteFile(notSock, []byte("not a socket"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Remove(notSock) })

	// vnic clean leaves sockets younger than a second alone (a daemon
	// starting up may not listen yet).
	if st, err := os.Lstat(ksock); err == nil {
		time.Sleep(time.Until(st.ModTime().Add(1100 * time.Millisecond)))
	}
	out, err := exec.Command(bin, "clean").CombinedOutput()
	t.Logf("vnic clean:\n%s", out)
	if err != nil {
		t.Fatalf("vnic clean: %v", err)
	}
	if nsutil.Exists(killed) {
		t.Errorf("%s, left by a killed vnic up, still there after vnic clean", killed)
	}
	if _, err := os.Lstat(nsutil.RecordPath(killed)); err == nil {
		t.Errorf("the record of %s still there after vnic clean", killed)
	}
	if _, err := os.Lstat(ksock); err == nil {
		t.Errorf("the killed daemon's stale control socket %s still there", ksock)
	}
	for _, want := range []string{"removed " + killed + " ", "removed stale socket " + ksock} {
		if !strings.Contains(string(out), want) {
			t.Errorf("vnic clean did not print %q", want)
		}
	}
	for _, ns := range []string{live, foreign} {
		if !nsutil.Exists(ns) {
			t.Errorf("vnic clean removed %s", ns)
		}
		if strings.Contains(string(out), ns) {
			t.Errorf("vnic clean printed %s, which it must leave alone", ns)
		}
	}
	if c, err := net.DialTimeout("unix", lsock, time.Second); err != nil {
		t.Errorf("the running daemon's control socket: %v", err)
	} else {
		c.Close()
	}
	if b, err := os.ReadFile(notSock); err != nil || string(b) != "not a socket" {
		t.Errorf("vnic clean touched %s, a plain file: %q, %v", notSock, b, err)
	}
}
