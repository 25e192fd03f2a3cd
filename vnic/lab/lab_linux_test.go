package lab

import (
	"bytes"
	"context"
	"testing"

	"vnic/vnic/kerneltest"
	"vnic/vnic/nsutil"
)

// leftovers returns those of a run's namespaces that are still there
// (namespaces of other runs, parallel or someone else's, do not count).
func leftovers(res Result) []string {
	var out []string
	for _, ns := range res.Namespaces {
		if nsutil.Exists(ns) {
			out = append(out, ns)
		}
	}
	return out
}

// TestCancelledRunCleansUp: a run whose context is cancelled (Ctrl-C)
// fails and leaves no namespace behind.
func TestCancelledRunCleansUp(t *testing.T) {
	if testing.Short() {
		t.Skip("root lab run")
	}
	kerneltest.RequireRoot(t)
	s, _ := Lookup("tso-capture")
	s.Name = "tso-capture-cancel"
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	res, err := Run(ctx, s, Options{Out: t.TempDir(), Stdout: &bytes.Buffer{}})
	if err == nil {
		t.Fatal("a cancelled run succeeded")
	}
	if got := leftovers(res); len(got) != 0 {
		t.Errorf("namespaces left: %v", got)
	}
}

// TestPeerLink: a host against the gVisor peer (its discard service).
func TestPeerLink(t *testing.T) {
	if testing.Short() {
		t.Skip("root lab run")
	}
	kerneltest.RequireRoot(t)
	s := Scenario{
		Name:  "peer-link",
		Title: "ginger against the gVisor peer",
		Hosts: []Host{{Name: "ginger", NIC: NIC{Name: "vnic0", Addrs: []string{"198.18.0.1/15", "fd00::1/64"}}}},
		Links: []Link{{Kind: LinkPeer, A: "ginger", B: "basil"}},
		Steps: []Step{{
			Name:    "GSO on",
			Traffic: Traffic{Kind: TrafficSend, From: "ginger", To: "basil", Bytes: 10000},
			Expect:  []Expectation{{Kind: ExpectHostTXAboveMSS}, {Kind: ExpectWireMax}, {Kind: ExpectBytesArrive}},
		}, {
			Name:    "ping over IPv6",
			Traffic: Traffic{Kind: TrafficPing, From: "ginger", To: "basil", IPv6: true, Size: 100, Count: 2},
			Expect:  []Expectation{{Kind: ExpectBytesArrive}},
		}},
	}
	runPasses(t, s)
}

func runPasses(t *testing.T, s Scenario) {
	t.Helper()
	var stdout bytes.Buffer
	res, err := Run(t.Context(), s, Options{Out: t.TempDir(), Stdout: &stdout})
	t.Log("\n" + stdout.String())
	if err != nil {
		t.Fatal(err)
	}
	if !res.Passed || res.Expectations == 0 {
		t.Errorf("%s: %d of %d expectations failed", s.Name, res.Failed, res.Expectations)
	}
	if got := leftovers(res); len(got) != 0 || len(res.Namespaces) == 0 {
		t.Errorf("namespaces left: %v (of %v)", got, res.Namespaces)
	}
}
