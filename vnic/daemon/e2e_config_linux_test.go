package daemon_test

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"vnic/vnic/daemon"
	"vnic/vnic/kerneltest"
	"vnic/vnic/nsutil"
)

func TestE2EBadConfig(t *testing.T) {
	kerneltest.RequireRoot(t)
	ns := uniqueNetns(t)
	for _, c := range []struct {
		name string
		cfg  daemon.Config
		want string
	}{
		{"MTU too small for IPv6", daemon.Config{MTU: 1000}, "MTU 1000: must be between 1280 and 65535"},
		{"MTU too big", daemon.Config{MTU: 70000}, "MTU 70000"},
		{"hardware MTU above the MTU", daemon.Config{HWMTU: 9000}, "hardware MTU 9000"},
		{"invalid address", daemon.Config{Addrs: []netip.Prefix{{}}}, "use ADDR/PREFIX"},
		{"/32: no room for the peer", daemon.Config{Addrs: []netip.Prefix{netip.MustParsePrefix("198.18.0.1/32")}}, "leaves no room for the far end"},
		{"peer outside the subnet", daemon.Config{Peer: []netip.Addr{netip.MustParseAddr("198.18.0.2"), netip.MustParseAddr("fd00:1::2")}}, "peer fd00:1::2 is not inside"},
		{"netns: a relative path", daemon.Config{Netns: "a/b"}, `namespace "a/b": give a name (as ` + "`ip netns`" + ` knows it) or an absolute path`},
		{"far netns: the same namespace", daemon.Config{Wire: "netns:" + ns}, "the far NIC must be in another namespace"},
		{"unknown wire", daemon.Config{Wire: "tcp:1.2.3.4"}, `--wire "tcp:1.2.3.4": use peer`},
		{"interface name too long", daemon.Config{Name: "vnic0123456789abcdef"}, "1 to 15 characters"},
		{"unknown engine", daemon.Config{Engine: "dpdk"}, `engine "dpdk": use "vnic" or "wireguard"`},
	} {
		if c.cfg.Netns == "" {
			c.cfg.Netns = ns
		}
		d, err := daemon.Start(context.Background(), c.cfg)
		if err == nil {
			d.Close()
			t.Errorf("%s: Start succeeded", c.name)
			continue
		}
		if !errors.Is(err, daemon.ErrConfig) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %q, want ErrConfig saying %q", c.name, err, c.want)
		}
		if nsutil.Exists(ns) {
			t.Fatalf("%s: a bad configuration created the namespace %s", c.name, ns)
		}
	}

	// Name taken: a second daemon for vnic0 in the same namespace.
	d := startDaemon(t, daemon.Config{Pcap: "-"})
	_, err := daemon.Start(context.Background(), daemon.Config{Netns: d.ns})
	if !errors.Is(err, daemon.ErrRunning) || !strings.Contains(err.Error(), d.Config().Control) || !strings.Contains(err.Error(), "--name") {
		t.Errorf("second daemon, same name and namespace: %v; want ErrRunning naming the control socket and what to do", err)
	}
	// ... even with a control socket of its own: the TUN name is taken.
	other := filepath.Join(t.TempDir(), "other.sock")
	_, err = daemon.Start(context.Background(), daemon.Config{Netns: d.ns, Control: other})
	if err == nil || !strings.Contains(err.Error(), "vnic0") {
		t.Errorf("second daemon with its own control socket: %v; want an error naming vnic0", err)
	} else {
		t.Logf("second daemon with its own control socket: %v", err)
	}
	if _, err := os.Stat(other); err == nil {
		t.Errorf("the failed daemon left its control socket %s", other)
	}
	// The first one is untouched.
	if !nsutil.Exists(d.ns) {
		t.Fatal("a failed second daemon removed the first one's namespace")
	}
	ping(t, d.ns, "198.18.0.2")
	if _, err := daemon.ReadStats(d.Config().Control); err != nil {
		t.Errorf("the first daemon's control socket: %v", err)
	}

	// The CLI: usage errors exit 2 and say where help is; configuration
	// errors exit 1 and say what is wrong; neither leaves a namespace.
	bin := vnicBinary(t)
	for _, c := range []struct {
		args []string
		code int
		want []string
	}{
		{[]string{"up", "--netns", ns, "--bogus"}, 2, []string{"unknown flag: --bogus", "Run 'vnic up --help'"}},
		{[]string{"up", "--netns", ns, "--mtu", "abc"}, 2, []string{`invalid argument "abc" for "--mtu"`, "Run 'vnic up --help'"}},
		{[]string{"bogus"}, 2, []string{`unknown command "bogus"`, "Run 'vnic --help'"}},
		{[]string{"up", "--netns", ns, "--mtu", "100"}, 1, []string{"MTU 100: must be between 1280 and 65535"}},
		{[]string{"up", "--netns", ns, "--addr", "198.18.0.1"}, 1, []string{`--addr "198.18.0.1": want ADDRESS/PREFIX`}},
		{[]string{"up", "--netns", "a/b"}, 1, []string{`namespace "a/b": give a name`}},
		{[]string{"up", "--netns", ns, "--wire", "netns:/etc/passwd"}, 1, []string{"/etc/passwd is not a namespace file"}},
		{[]string{"up", "--netns", d.ns}, 1, []string{"already serves", "stop that daemon first"}},
	} {
		out, err := run(t, 10*time.Second, bin, c.args...)
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != c.code {
			t.Errorf("vnic %s: %v, want exit status %d\n%s", strings.Join(c.args, " "), err, c.code, out)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(out, w) {
				t.Errorf("vnic %s: output lacks %q:\n%s", strings.Join(c.args, " "), w, out)
			}
		}
		if nsutil.Exists(ns) {
			t.Fatalf("vnic %s created the namespace %s", strings.Join(c.args, " "), ns)
		}
	}
}
