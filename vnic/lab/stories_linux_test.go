package lab

import (
	"bytes"
	"strings"
	"testing"

	"vnic/vnic/kerneltest"
)

// runStory runs a built-in scenario and checks that every expectation
// holds, that the output shows wants, and that no namespace is left.
func runStory(t *testing.T, name string, wants ...string) {
	t.Helper()
	if testing.Short() {
		t.Skip("root lab run")
	}
	kerneltest.RequireRoot(t)
	s, ok := Lookup(name)
	if !ok {
		t.Fatalf("no %s", name)
	}
	var stdout bytes.Buffer
	res, err := Run(t.Context(), s, Options{Out: t.TempDir(), Stdout: &stdout})
	t.Log("\n" + stdout.String())
	if err != nil {
		t.Fatal(err)
	}
	if !res.Passed || res.Expectations == 0 {
		t.Errorf("%s: %d of %d expectations failed", name, res.Failed, res.Expectations)
	}
	for _, want := range append(wants, "PASSED") {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if got := leftovers(res); len(got) != 0 || len(res.Namespaces) == 0 {
		t.Errorf("namespaces left: %v (of %v)", got, res.Namespaces)
	}
}

func TestGRORouter(t *testing.T) {
	runStory(t, "gro-router", "ICMP frag needed, mtu 1500", "ethtool -K eth1 gro off", "gro merged forwarded whole")
}

func TestJumboFirewall(t *testing.T) {
	runStory(t, "jumbo-firewall", "ICMP frag needed, mtu 1500", "--set-mss 1400", "firewall drop-jumbo: dropped", "ethtool -K eth0 tso off")
}

func TestChecksum(t *testing.T) {
	runStory(t, "checksum", "kernel TcpInCsumErrors", "ethtool -K eth0 tx off", "no-csum")
}
