// Package labs_test runs the offload lab scripts (scripts/labs/NN-*.sh) the
// way a class would, so CI notices when a lab stops showing what it teaches.
// Each script checks its own story and exits non-zero on a failed check;
// the test adds a time limit and checks that the script left nothing
// behind: no namespace named like the lab's, no vnic daemon running in it.
package labs_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"vnic/vnic/kerneltest"
)

// labTimeout bounds one lab; they take 3–15 s on an idle machine.
const labTimeout = 90 * time.Second

// scripts returns the lab scripts in this directory, in order.
func scripts(t *testing.T) []string {
	t.Helper()
	s, err := filepath.Glob("[0-9][0-9]-*.sh")
	if err != nil || len(s) == 0 {
		t.Fatalf("no lab scripts found (%v)", err)
	}
	return s
}

// TestLabScriptsParse needs no root: every script (and the library and
// the runner) must at least be valid bash, and shellcheck-clean where
// shellcheck is installed.
func TestLabScriptsParse(t *testing.T) {
	files := append(scripts(t), "lib.sh", "run-all.sh")
	for _, f := range files {
		if out, err := exec.Command("bash", "-n", f).CombinedOutput(); err != nil {
			t.Errorf("bash -n %s: %v\n%s", f, err, out)
		}
	}
	if sc, err := exec.LookPath("shellcheck"); err == nil {
		args := append([]string{"-x"}, files...)
		if out, err := exec.Command(sc, args...).CombinedOutput(); err != nil {
			t.Errorf("shellcheck: %v\n%s", err, out)
		}
	}
}

// TestLabs runs every lab as root, one subtest per script.
func TestLabs(t *testing.T) {
	kerneltest.RequireRoot(t)
	if testing.Short() {
		t.Skip("the labs take about half a minute; skipped with -short")
	}
	for _, tool := range []string{"ip", "ethtool", "tcpdump", "tshark", "nc", "curl", "ping"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("labs need %s (make deps)", tool)
			}
			t.Skipf("labs need %s (make deps)", tool)
		}
	}
	vnic := os.Getenv("VNIC")
	if vnic == "" {
		vnic = buildVnic(t)
	}
	for _, script := range scripts(t) {
		t.Run(strings.TrimSuffix(script, ".sh"), func(t *testing.T) {
			runLab(t, script, vnic)
		})
	}
}

// buildVnic builds cmd/vnic into a temporary directory, so the labs test
// the code in this tree rather than whatever bin/vnic happens to be.
func buildVnic(t *testing.T) string {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		gobin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(t.TempDir(), "vnic")
	cmd := exec.Command(gobin, "build", "-o", bin, "./cmd/vnic")
	cmd.Dir = filepath.Join("..", "..")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/vnic: %v\n%s", err, out)
	}
	return bin
}

func runLab(t *testing.T, script, vnic string) {
	n, err := strconv.Atoi(script[:2])
	if err != nil {
		t.Fatalf("lab script %s: no number", script)
	}
	ctx, cancel := context.WithTimeout(context.Background(), labTimeout)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, "./"+script)
	cmd.Env = append(os.Environ(), "VNIC="+vnic, "LAB_KEEP=0")
	cmd.Stdout, cmd.Stderr = &out, &out
	// On timeout, SIGTERM lets the script's trap stop vnic and tcpdump and
	// remove the namespace; SIGKILL follows if it does not exit.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 15 * time.Second
	start := time.Now()
	runErr := cmd.Run()
	// The script runs as its own bash process, so $$ in it is this PID.
	ns := fmt.Sprintf("lab%d-%d", n, cmd.Process.Pid)
	t.Logf("%s (namespace %s) took %v:\n%s", script, ns, time.Since(start).Round(time.Millisecond), checks(out.String()))
	if ctx.Err() != nil {
		t.Errorf("%s did not finish within %v", script, labTimeout)
	}
	if runErr != nil {
		t.Errorf("%s: %v; output:\n%s", script, runErr, out.String())
	} else if !strings.Contains(out.String(), "RESULT: PASS") {
		t.Errorf("%s exited 0 without RESULT: PASS; output:\n%s", script, out.String())
	}
	if left := leftoverNetns(ns); len(left) > 0 {
		t.Errorf("%s left network namespaces behind: %v", script, left)
	}
	if left := leftoverProcs(ns); len(left) > 0 {
		t.Errorf("%s left processes behind: %v", script, left)
	}
}

// checks returns the PASS/FAIL/RESULT lines of a lab's output.
func checks(out string) string {
	var b strings.Builder
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "PASS:") || strings.HasPrefix(l, "FAIL:") || strings.HasPrefix(l, "RESULT:") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// leftoverNetns lists the named namespaces that are ns or start with ns-.
func leftoverNetns(ns string) []string {
	ents, err := os.ReadDir("/run/netns")
	if err != nil {
		return nil
	}
	var left []string
	for _, e := range ents {
		if e.Name() == ns || strings.HasPrefix(e.Name(), ns+"-") {
			left = append(left, e.Name())
		}
	}
	return left
}

// leftoverProcs lists processes whose command line names the namespace
// (vnic up --netns NS, ip netns exec NS ...).
func leftoverProcs(ns string) []string {
	dirs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	var left []string
	for _, d := range dirs {
		b, err := os.ReadFile(d)
		if err != nil {
			continue
		}
		for _, arg := range bytes.Split(b, []byte{0}) {
			if string(arg) == ns {
				left = append(left, filepath.Base(filepath.Dir(d))+": "+strings.ReplaceAll(string(bytes.TrimRight(b, "\x00")), "\x00", " "))
				break
			}
		}
	}
	return left
}
