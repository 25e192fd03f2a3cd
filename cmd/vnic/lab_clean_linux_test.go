package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"vnic/vnic/capture"
	"vnic/vnic/kerneltest"
	"vnic/vnic/nsutil"
)

// buildVnic builds this command into a temporary directory.
//
// Equivalent to: go build -o $TMP/vnic ./cmd/vnic
func buildVnic(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(t.TempDir(), "vnic")
	if out, err := exec.Command(goTool, "build", "-o", bin, "vnic/cmd/vnic").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// labNamespaces returns the namespaces of scenario name, sorted.
func labNamespaces(t *testing.T, name string) []string {
	t.Helper()
	ents, err := os.ReadDir(nsutil.RunDir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "lab-"+name+"-") {
			out = append(out, e.Name())
		}
	}
	return out
}

// removeNamespaces removes, at cleanup, whatever the test left of scenario
// name: namespaces and vnic's records of them.
func removeNamespaces(t *testing.T, name string) {
	t.Cleanup(func() {
		for _, ns := range labNamespaces(t, name) {
			t.Errorf("namespace %s left; removing it", ns)
			_ = nsutil.Delete(ns)
		}
		recs, _ := filepath.Glob(filepath.Join(nsutil.OwnerDir, "lab-"+name+"-*.netns.json"))
		for _, r := range recs {
			_ = os.Remove(r)
		}
	})
}

// killedRun starts `vnic lab run FILE` in a process group of its own,
// waits until it runs its step (its namespaces made), and kills the group
// (by the child's PID) with SIGKILL: the run leaves its namespaces
// behind. It returns them (those of scenario name that were not there
// before).
func killedRun(t *testing.T, bin, file, name string, hosts int) []string {
	t.Helper()
	before := labNamespaces(t, name)
	cmd := exec.Command(bin, "lab", "run", file, "--out", t.TempDir())
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // its sh and sleep die with it
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	kill := func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		select {
		case <-waited:
		case <-time.After(10 * time.Second):
			t.Errorf("vnic lab run (pid %d) still running 10 s after SIGKILL", cmd.Process.Pid)
		}
	}
	// Running its step: both namespaces there, and the step's sleep in
	// one of them.
	fresh := func() []string {
		var nss []string
		for _, ns := range labNamespaces(t, name) {
			if !slices.Contains(before, ns) {
				nss = append(nss, ns)
			}
		}
		return nss
	}
	running := func() bool {
		nss := fresh()
		if len(nss) < hosts {
			return false
		}
		for _, ns := range nss {
			if out, err := exec.Command("ip", "netns", "pids", ns).Output(); err == nil && len(strings.TrimSpace(string(out))) > 0 {
				return true
			}
		}
		return false
	}
	deadline := time.Now().Add(60 * time.Second)
	for !running() {
		select {
		case err := <-waited:
			t.Fatalf("vnic lab run exited (%v) before its step ran:\n%s", err, out.String())
		default:
		}
		if time.Now().After(deadline) {
			kill()
			t.Fatalf("vnic lab run did not get to its step in 60 s:\n%s", out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	kill()
	left := fresh()
	if len(left) != hosts {
		t.Fatalf("after kill -9: namespaces %v, want %d", left, hosts)
	}
	return left
}

// scenarioFile writes a two-host scenario whose only step runs `sleep`
// for a long time, so that the run is still going when it is killed.
func scenarioFile(t *testing.T, name string) string {
	t.Helper()
	yaml := fmt.Sprintf(`name: %s
hosts:
  - name: ginger
    nic: {addrs: [198.18.0.1/15]}
  - name: basil
    nic: {addrs: [198.18.0.2/15]}
links:
  - {kind: wire, a: ginger, b: basil}
steps:
  - name: wait to be killed
    traffic: {kind: command, from: ginger, command: sleep 600}
`, name)
	p := filepath.Join(t.TempDir(), name+".yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func randomSuffix(t *testing.T) string {
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b[:])
}

// TestLabKill9LeftoversAreCleaned: kill -9 of `vnic lab run` leaves its
// namespaces; `vnic lab clean` removes exactly them (and prints them),
// never a namespace with a lab-like name that vnic did not create; the
// next `vnic lab run` removes what an earlier killed run left.
func TestLabKill9LeftoversAreCleaned(t *testing.T) {
	kerneltest.RequireRoot(t)
	bin := buildVnic(t)
	name := "clean-" + randomSuffix(t)
	removeNamespaces(t, name)
	file := scenarioFile(t, name)

	left := killedRun(t, bin, file, name, 2)
	taps, _ := filepath.Glob(filepath.Join(capture.TapDir, "lab-"+name+"-*.tap"))
	if len(taps) != 1 {
		t.Errorf("the killed run's live tap: %v, want one stale socket", taps)
	}

	// Someone else's namespace with a name like a lab's.
	foreign := "lab-" + name + "-ginger-000000"
	if out, err := exec.Command("ip", "netns", "add", foreign).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v\n%s", foreign, err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", foreign).Run() })

	out, err := exec.Command(bin, "lab", "clean", name).CombinedOutput()
	t.Logf("vnic lab clean %s:\n%s", name, out)
	if err != nil {
		t.Fatalf("vnic lab clean: %v", err)
	}
	var printed []string
	for _, l := range strings.Split(string(out), "\n") {
		for _, f := range strings.Fields(l) {
			if strings.HasPrefix(f, "lab-"+name+"-") {
				printed = append(printed, f)
			}
		}
	}
	slices.Sort(printed)
	if !slices.Equal(printed, left) {
		t.Errorf("vnic lab clean printed %v, want the killed run's %v", printed, left)
	}
	if got := labNamespaces(t, name); !slices.Equal(got, []string{foreign}) {
		t.Errorf("after vnic lab clean: %v, want only %s (not vnic's)", got, foreign)
	}
	for _, p := range taps {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("vnic lab clean left the killed run's stale tap socket %s", p)
		}
	}
	if out, err := exec.Command(bin, "lab", "clean", name).CombinedOutput(); err != nil || strings.Contains(string(out), "lab-"+name) {
		t.Errorf("vnic lab clean again: %v\n%s", err, out)
	}

	// A second killed run; then a run of another scenario removes it.
	left = killedRun(t, bin, file, name, 2)
	quick := "quick-" + randomSuffix(t)
	removeNamespaces(t, quick)
	qf := filepath.Join(t.TempDir(), quick+".yaml")
	if err := os.WriteFile(qf, []byte(fmt.Sprintf(`name: %s
hosts:
  - name: ginger
    nic: {addrs: [198.18.0.1/15]}
links:
  - {kind: peer, a: ginger, b: basil}
steps:
  - name: ping
    traffic: {kind: ping, from: ginger, to: basil}
`, quick)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = exec.Command(bin, "lab", "run", qf, "--out", t.TempDir()).CombinedOutput()
	if err != nil {
		t.Fatalf("vnic lab run %s: %v\n%s", quick, err, out)
	}
	for _, ns := range left {
		if nsutil.Exists(ns) {
			t.Errorf("%s, left by a killed run, still there after the next run", ns)
		}
		if !strings.Contains(string(out), ns) {
			t.Errorf("the next run did not say it removed %s:\n%s", ns, out)
		}
	}
	if !nsutil.Exists(foreign) {
		t.Errorf("%s (not vnic's) was removed", foreign)
	}
}
