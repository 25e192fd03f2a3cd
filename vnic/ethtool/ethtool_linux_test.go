package ethtool_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os/exec"
	"strings"
	"testing"
	"time"

	"vnic/vnic/ethtool"
	"vnic/vnic/kerneltest"
	"vnic/vnic/nsutil"
	"vnic/vnic/tundev"
)

// newTUNs returns a fresh namespace holding TUN devices with the daemon's
// offloads (tundev.All), one per name; everything goes in t.Cleanup.
func newTUNs(t testing.TB, names ...string) (string, []*tundev.Device) {
	t.Helper()
	ns := kerneltest.NewNetns(t).Name
	var devs []*tundev.Device
	for _, name := range names {
		if err := nsutil.Do(ns, func() error {
			d, err := tundev.Open(tundev.Config{Name: name, Offloads: tundev.All, Logger: slog.New(slog.DiscardHandler)})
			if err == nil {
				devs = append(devs, d)
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, d := range devs {
			d.Close()
		}
	})
	return ns, devs
}

// ethtoolBin runs the ethtool program in ns.
func ethtoolBin(t testing.TB, ns string, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns, "ethtool"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("ethtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// line is one "name: on|off [suffix]" line of `ethtool -k`.
type line struct {
	on     bool
	suffix string // "", "[fixed]", "[requested on]", "[requested off]"
}

func parseK(t testing.TB, out string) map[string]line {
	m := map[string]line{}
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "Features for ") {
			continue
		}
		name, rest, ok := strings.Cut(l, ": ")
		if !ok {
			t.Fatalf("ethtool -k line %q", l)
		}
		v, suffix, _ := strings.Cut(rest, " ")
		m[name] = line{on: v == "on", suffix: suffix}
	}
	return m
}

// compare checks Features and States against `ethtool -k`: every line's
// name is in Features with the same value, and a kernel-named line's
// [fixed]/[requested] matches States.
//
// A mismatch is read again (up to three times, 100 ms apart) before it
// fails the test: once, under CI's load with -race, Features read every tx
// feature off right after `ethtool -k` read them on, and the next run
// agreed; a real disagreement persists.
func compare(t *testing.T, ns, dev, step string) map[string]bool {
	t.Helper()
	var errs []string
	var feats map[string]bool
	for try := range 3 {
		if try > 0 {
			t.Logf("%s: mismatch, reading again: %s", step, strings.Join(errs, "; "))
			time.Sleep(100 * time.Millisecond)
		}
		feats, errs = compareOnce(t, ns, dev, step)
		if len(errs) == 0 {
			return feats
		}
	}
	for _, e := range errs {
		t.Error(e)
	}
	return feats
}

func compareOnce(t *testing.T, ns, dev, step string) (map[string]bool, []string) {
	t.Helper()
	var errs []string
	lines := parseK(t, ethtoolBin(t, ns, "-k", dev))
	h, err := ethtool.Open(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	feats, err := h.Features(dev)
	if err != nil {
		t.Fatal(err)
	}
	states, err := h.States(dev)
	if err != nil {
		t.Fatal(err)
	}
	for name, l := range lines {
		got, ok := feats[name]
		if !ok {
			errs = append(errs, fmt.Sprintf("%s: ethtool -k shows %q, Features has no such name", step, name))
			continue
		}
		if got != l.on {
			errs = append(errs, fmt.Sprintf("%s: %s: ethtool -k says %v, Features %v", step, name, l.on, got))
		}
		if s, ok := states[name]; ok {
			want := ""
			switch {
			case s.Fixed:
				want = "[fixed]"
			case s.Requested != s.Active && s.Requested:
				want = "[requested on]"
			case s.Requested != s.Active:
				want = "[requested off]"
			}
			if l.suffix != want {
				errs = append(errs, fmt.Sprintf("%s: %s: ethtool -k suffix %q, States %+v", step, name, l.suffix, s))
			}
		}
	}
	return feats, errs
}

// TestFeatureNamesMatchEthtool runs the ethtool program's -K commands a
// user would type on a vnic TUN and checks after each that Features says
// what `ethtool -k` says, and which features the command turned off.
func TestFeatureNamesMatchEthtool(t *testing.T) {
	ns, _ := newTUNs(t, "vnic0")
	f := compare(t, ns, "vnic0", "initial")
	for _, name := range []string{"rx-gro", "gro", "generic-receive-offload", "tx-tcp-segmentation", "tx-tcp6-segmentation",
		"tx-tcp-ecn-segmentation", "tso", "tx-udp-segmentation", "tx-generic-segmentation", "tx-checksum-ip-generic", "tx", "tx-checksumming"} {
		if !f[name] {
			t.Errorf("initial: %s off on a TUN with offloads %v", name, tundev.All)
		}
	}
	for _, step := range []struct {
		args []string
		off  []string // kernel features the command turns off
	}{
		{[]string{"gro", "off"}, []string{"rx-gro", "gro", "generic-receive-offload"}},
		{[]string{"tso", "off"}, []string{"tx-tcp-segmentation", "tx-tcp6-segmentation", "tx-tcp-ecn-segmentation", "tso", "tcp-segmentation-offload"}},
		{[]string{"gso", "off"}, []string{"tx-generic-segmentation", "gso", "generic-segmentation-offload"}},
		{[]string{"tx", "off"}, []string{"tx-checksum-ip-generic", "tx", "tx-checksumming", "tx-udp-segmentation"}},
	} {
		name := strings.Join(step.args, " ")
		ethtoolBin(t, ns, append([]string{"-K", "vnic0"}, step.args...)...)
		f := compare(t, ns, "vnic0", name)
		for _, k := range step.off {
			if f[k] {
				t.Errorf("after ethtool -K vnic0 %s: %s still on", name, k)
			}
		}
	}
	// tx off took USO down with it: it stays requested.
	states, err := func() (map[string]ethtool.State, error) {
		h, err := ethtool.Open(ns)
		if err != nil {
			return nil, err
		}
		defer h.Close()
		return h.States("vnic0")
	}()
	if err != nil {
		t.Fatal(err)
	}
	if s := states["tx-udp-segmentation"]; s.Active || !s.Requested {
		t.Errorf("tx-udp-segmentation after tx off: %+v, want requested but not active", s)
	}
	for _, step := range []string{"tx on", "gso on", "tso on", "gro on"} {
		ethtoolBin(t, ns, append([]string{"-K", "vnic0"}, strings.Fields(step)...)...)
		compare(t, ns, "vnic0", step)
	}
}

// TestSetFeaturesDoesWhatEthtoolKDoes: the ethtool program on one device
// and SetFeatures on its twin leave both in the same state.
func TestSetFeaturesDoesWhatEthtoolKDoes(t *testing.T) {
	ns, _ := newTUNs(t, "a", "b")
	h, err := ethtool.Open(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	for _, step := range []struct {
		name string
		on   bool
	}{
		{"gro", false}, {"tso", false}, {"gso", false}, {"tx", false}, {"sg", false},
		{"sg", true}, {"tx", true}, {"gso", true}, {"tso", true}, {"gro", true},
		{"rx-udp-gro-forwarding", true}, {"rx-gro-list", true},
	} {
		onoff := map[bool]string{true: "on", false: "off"}[step.on]
		ethtoolBin(t, ns, "-K", "a", step.name, onoff)
		if err := h.SetFeatures("b", map[string]bool{step.name: step.on}); err != nil {
			// ethtool -K succeeds even when a dependency keeps a feature
			// off; SetFeatures says so.
			var na *ethtool.NotAppliedError
			if !errors.As(err, &na) {
				t.Fatalf("%s %s: %v", step.name, onoff, err)
			}
			t.Logf("%s %s: %v", step.name, onoff, err)
		}
		sa, err := h.States("a")
		if err != nil {
			t.Fatal(err)
		}
		sb, err := h.States("b")
		if err != nil {
			t.Fatal(err)
		}
		if !maps.Equal(sa, sb) {
			for k := range sa {
				if sa[k] != sb[k] {
					t.Errorf("after %s %s: %s: ethtool -K gives %+v, SetFeatures %+v", step.name, onoff, k, sa[k], sb[k])
				}
			}
		}
	}
	if g, err := ethtool.GRO(ns, "b"); !g || err != nil {
		t.Errorf("GRO: %v, %v", g, err)
	}
}

func TestSetFeaturesErrors(t *testing.T) {
	ns, _ := newTUNs(t, "vnic0")
	var na *ethtool.NotAppliedError
	if err := ethtool.SetFeatures(ns, "vnic0", map[string]bool{"no-such-feature": true}); err == nil || errors.As(err, &na) {
		t.Errorf("unknown feature: %v", err)
	}
	if err := ethtool.SetFeatures(ns, "vnic0", map[string]bool{"rx-lro": true}); !errors.As(err, &na) {
		t.Errorf("fixed rx-lro on: %v, want NotAppliedError", err)
	}
	if err := ethtool.SetFeatures(ns, "vnic0", map[string]bool{"lro": true}); !errors.As(err, &na) {
		t.Errorf("fixed lro on: %v, want NotAppliedError", err)
	}
	// Without checksum offload, TSO cannot be on.
	if err := ethtool.SetFeatures(ns, "vnic0", map[string]bool{"tx": false, "tso": true}); !errors.As(err, &na) || !na.Features["tx-tcp-segmentation"] {
		t.Errorf("tso on with tx off: %v, want NotAppliedError naming tx-tcp-segmentation", err)
	}
	if _, err := ethtool.Features(ns, "nope0"); err == nil || !strings.Contains(err.Error(), "no such device") {
		t.Errorf("missing device: %v", err)
	}
}

// TestHandleWorksFromAnyThread: a Handle opened for a namespace reads a
// device that exists only there, from the test's own (host) thread.
func TestHandleWorksFromAnyThread(t *testing.T) {
	ns, _ := newTUNs(t, "only-in-ns")
	h, err := ethtool.Open(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	for range 10 {
		if _, err := h.GRO("only-in-ns"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ethtool.GRO("", "only-in-ns"); err == nil {
		t.Error("the device is visible from the host namespace")
	}
}

func TestWatchSeesGROOff(t *testing.T) {
	for _, mode := range []string{"notify", "poll"} {
		t.Run(mode, func(t *testing.T) {
			ethtool.SetForcePoll(mode == "poll")
			defer ethtool.SetForcePoll(false)
			ns, _ := newTUNs(t, "vnic0")
			ctx, cancel := context.WithCancel(context.Background())
			updates := make(chan map[string]bool, 16)
			done := make(chan error, 1)
			go func() { done <- ethtool.Watch(ctx, ns, "vnic0", func(m map[string]bool) { updates <- m }) }()
			select {
			case m := <-updates:
				if !m["gro"] {
					t.Fatal("first update: gro off")
				}
			case err := <-done:
				t.Fatal(err)
			case <-time.After(2 * time.Second):
				t.Fatal("no first update")
			}
			start := time.Now()
			ethtoolBin(t, ns, "-K", "vnic0", "gro", "off")
			select {
			case m := <-updates:
				if m["gro"] || m["rx-gro"] {
					t.Errorf("update after gro off still has gro on")
				}
				t.Logf("%s: update %v after starting ethtool -K vnic0 gro off", mode, time.Since(start))
			case <-time.After(time.Second):
				t.Fatal("no update within a second of ethtool -K vnic0 gro off")
			}
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Watch after cancel: %v", err)
				}
			case <-time.After(time.Second):
				t.Error("Watch did not return after cancel")
			}
		})
	}
}

func TestWatchEndsWhenDeviceGoes(t *testing.T) {
	old := ethtool.SafetyInterval
	ethtool.SafetyInterval = 50 * time.Millisecond
	defer func() { ethtool.SafetyInterval = old }()
	ns, devs := newTUNs(t, "vnic0")
	done := make(chan error, 1)
	first := make(chan bool, 1)
	go func() {
		done <- ethtool.Watch(context.Background(), ns, "vnic0", func(map[string]bool) {
			select {
			case first <- true:
			default:
			}
		})
	}()
	<-first
	devs[0].Close()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "no such device") {
			t.Errorf("Watch: %v, want no such device", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Watch still running after its device went away")
	}
}

// BenchmarkFeatures measures one read of a device's features: through an
// open Handle (what Watch and a polling daemon do), and a one-shot
// Features call that opens a socket inside the namespace first.
func BenchmarkFeatures(b *testing.B) {
	ns, _ := newTUNs(b, "vnic0")
	h, err := ethtool.Open(ns)
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	b.Run("Handle.Features", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := h.Features("vnic0"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Handle.GRO", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := h.GRO("vnic0"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Features-oneshot", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := ethtool.Features(ns, "vnic0"); err != nil {
				b.Fatal(err)
			}
		}
	})
}
