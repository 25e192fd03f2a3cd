package lab

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"vnic/vnic/kerneltest"
)

// TestShellCommandsGetAMinimalEnvironment: a scenario's commands run as
// root with PATH, HOME, TERM and LANG of the caller's environment and
// nothing else (no tokens, proxies, LD_PRELOAD, SSH agent...).
func TestShellCommandsGetAMinimalEnvironment(t *testing.T) {
	ns := kerneltest.NewNetns(t)
	t.Setenv("VNIC_TEST_SECRET", "s3cret")
	t.Setenv("LANG", "C.UTF-8")
	t.Setenv("TERM", "dumb")
	r := &runner{ns: map[string]string{"h": ns.Name}}
	out, err := r.shell(t.Context(), "h", "env")
	if err != nil {
		t.Fatal(err)
	}
	// What sh itself sets is fine.
	allowed := map[string]bool{"PATH": true, "HOME": true, "TERM": true, "LANG": true, "PWD": true, "OLDPWD": true, "SHLVL": true, "_": true}
	got := map[string]string{}
	var extra []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		k, v, _ := strings.Cut(l, "=")
		got[k] = v
		if !allowed[k] {
			extra = append(extra, k)
		}
	}
	sort.Strings(extra)
	if len(extra) > 0 {
		t.Errorf("the command saw the caller's %s", strings.Join(extra, ", "))
	}
	if got["LANG"] != "C.UTF-8" || got["TERM"] != "dumb" || got["PATH"] == "" {
		t.Errorf("LANG=%q TERM=%q PATH=%q: want the caller's", got["LANG"], got["TERM"], got["PATH"])
	}
}

// TestHostRoutesAreNotShellCommands: a host's routes are `ip route add`
// arguments, not a shell command line: a route with a `;` runs nothing
// else (vnic lab check lists shell commands; routes are not among them).
func TestHostRoutesAreNotShellCommands(t *testing.T) {
	ns := kerneltest.NewNetns(t)
	planted := filepath.Join(t.TempDir(), "pwned")
	r := &runner{ns: map[string]string{"h": ns.Name}, s: Scenario{Hosts: []Host{{Name: "h",
		Routes: []string{"198.18.12.0/24 via 198.18.11.1;touch " + planted}}}}}
	err := r.setupRouters(t.Context())
	t.Log(err)
	if _, serr := os.Stat(planted); serr == nil {
		t.Error("a route of the scenario file ran a shell command")
	}
	if err == nil {
		t.Error("a malformed route was added")
	}
}
