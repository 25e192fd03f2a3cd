package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A scenario file is a script run as root: `vnic lab check` shows every
// command it would run, with its host and step, before anyone runs it.
func TestLabCheckPrintsEveryCommand(t *testing.T) {
	const yaml = `name: commands
hosts:
  - name: ginger
    nic: {addrs: [198.18.0.1/15]}
  - name: basil
    nic: {addrs: [198.18.0.2/15]}
links:
  - {kind: wire, a: ginger, b: basil}
steps:
  - name: offloads off
    setup:
      - {host: ginger, run: ethtool -K eth0 gso off tso off}
      - {host: basil, run: "ip link set eth0 mtu 1400"}
      - {host: basil, run: "true\n\e[1A\e[2Krm -rf /tmp/x"}
    traffic: {kind: ping, from: ginger, to: basil}
  - name: by hand
    traffic: {kind: command, from: basil, command: "curl -s http://198.18.0.1/ > /etc/passwd"}
`
	f := filepath.Join(t.TempDir(), "commands.yaml")
	if err := os.WriteFile(f, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs([]string{"lab", "check", f})
	if err := root.Execute(); err != nil {
		t.Fatalf("vnic lab check: %v\n%s", err, out.String())
	}
	t.Log("\n" + out.String())
	lines := strings.Split(out.String(), "\n")
	for _, want := range [][]string{
		{"step 1", "offloads off", "ginger", "ethtool -K eth0 gso off tso off"},
		{"step 1", "offloads off", "basil", "ip link set eth0 mtu 1400"},
		{"step 1", "basil", `"true\n\x1b[1A\x1b[2Krm -rf /tmp/x"`}, // quoted: nothing hidden by the terminal
		{"step 2", "by hand", "basil", "curl -s http://198.18.0.1/ > /etc/passwd"},
	} {
		found := false
		for _, l := range lines {
			all := true
			for _, w := range want {
				all = all && strings.Contains(l, w)
			}
			found = found || all
		}
		if !found {
			t.Errorf("no line with %q", want)
		}
	}
	if !strings.Contains(out.String(), "root") {
		t.Error("the output does not say the commands run as root")
	}
}
