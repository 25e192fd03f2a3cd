package nsutil_test

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"vnic/vnic/kerneltest"
	"vnic/vnic/nsutil"
	"vnic/vnic/tundev"
)

func randomName(t *testing.T) string {
	var b [4]byte
	rand.Read(b[:])
	return "vnic-t-" + hex.EncodeToString(b[:])
}

// newNS creates a namespace with nsutil.Create and deletes it in
// t.Cleanup.
func newNS(t *testing.T) string {
	t.Helper()
	kerneltest.RequireRoot(t)
	name := randomName(t)
	created, err := nsutil.Create(name)
	if err != nil || !created {
		t.Fatalf("Create(%s): %v, %v", name, created, err)
	}
	t.Cleanup(func() {
		if nsutil.Exists(name) {
			if err := nsutil.Delete(name); err != nil {
				t.Error(err)
			}
		}
	})
	return name
}

func ip(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestCreateIsIPNetns(t *testing.T) {
	name := newNS(t)
	if !nsutil.Exists(name) {
		t.Fatal("Exists false after Create")
	}
	if out := ip(t, "netns", "list"); !strings.Contains(out, name) {
		t.Errorf("ip netns list does not show %s:\n%s", name, out)
	}
	// ip netns exec reaches the same namespace: a sysctl set through
	// nsutil is seen there.
	if err := nsutil.Sysctl(name, "net.ipv4.ip_forward", "1"); err != nil {
		t.Fatal(err)
	}
	if out := ip(t, "netns", "exec", name, "cat", "/proc/sys/net/ipv4/ip_forward"); out != "1\n" {
		t.Errorf("ip netns exec sees ip_forward=%q", out)
	}
	if created, err := nsutil.Create(name); created || err != nil {
		t.Errorf("second Create: %v, %v; want false, nil", created, err)
	}
	if err := nsutil.Delete(name); err != nil {
		t.Fatal(err)
	}
	if nsutil.Exists(name) {
		t.Error("Exists after Delete")
	}
	if _, err := os.Stat(nsutil.Path(name)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s still there: %v", nsutil.Path(name), err)
	}
	if err := nsutil.Delete(name); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("second Delete: %v, want ErrNotExist", err)
	}
}

func TestCreateSeesIPNetnsAdd(t *testing.T) {
	kerneltest.RequireRoot(t)
	name := randomName(t)
	ip(t, "netns", "add", name)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	if !nsutil.Exists(name) {
		t.Error("Exists false for a namespace made by ip netns add")
	}
	if created, err := nsutil.Create(name); created || err != nil {
		t.Errorf("Create: %v, %v; want false, nil", created, err)
	}
}

func TestInvalidNames(t *testing.T) {
	for _, n := range []string{"", ".", "..", "a/b"} {
		if _, err := nsutil.Create(n); err == nil {
			t.Errorf("Create(%q) succeeded", n)
		}
		if nsutil.Exists(n) {
			t.Errorf("Exists(%q)", n)
		}
	}
}

func TestDoRunsInsideAndRestores(t *testing.T) {
	name := newNS(t)
	before, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer before.Close()
	var inside netns.NsHandle
	if err := nsutil.Do(name, func() error {
		var err error
		inside, err = netns.Get()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer inside.Close()
	want, _ := netns.GetFromName(name)
	defer want.Close()
	if !inside.Equal(want) {
		t.Error("f did not run in the namespace")
	}
	if err := nsutil.Do(name, func() error { return errors.New("boom") }); err == nil || err.Error() != "boom" {
		t.Errorf("f's error not returned: %v", err)
	}
	func() {
		defer func() {
			if p := recover(); p != "panic inside" {
				t.Errorf("recovered %v", p)
			}
		}()
		nsutil.Do(name, func() error { panic("panic inside") })
	}()
	now, _ := netns.Get()
	defer now.Close()
	if !now.Equal(before) {
		t.Error("the caller's thread changed namespace")
	}
	if err := nsutil.Do("vnic-t-does-not-exist", func() error { return nil }); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("unknown namespace: %v", err)
	}
}

func TestSysctl(t *testing.T) {
	name := newNS(t)
	host, err := nsutil.SysctlValue("", "net.ipv4.conf.default.rp_filter")
	if err != nil {
		t.Fatal(err)
	}
	v := "2"
	if host == "2" {
		v = "1"
	}
	if err := nsutil.Sysctl(name, "net.ipv4.conf.default.rp_filter", v); err != nil {
		t.Fatal(err)
	}
	if got, err := nsutil.SysctlValue(name, "net/ipv4/conf/default/rp_filter"); got != v || err != nil {
		t.Errorf("inside: %q, %v; want %q", got, err, v)
	}
	if got, _ := nsutil.SysctlValue("", "net.ipv4.conf.default.rp_filter"); got != host {
		t.Errorf("the host's value changed: %q, was %q", got, host)
	}
	for _, k := range []string{"net.ipv4.no_such_key", "net..x", "../etc/passwd"} {
		if err := nsutil.Sysctl(name, k, "1"); err == nil {
			t.Errorf("Sysctl %q succeeded", k)
		}
	}
}

// openTUN opens a TUN in ns for the link tests.
func openTUN(t *testing.T, ns, name string) {
	t.Helper()
	var d *tundev.Device
	if err := nsutil.Do(ns, func() error {
		var err error
		d, err = tundev.Open(tundev.Config{Name: name, Offloads: tundev.All, Logger: slog.New(slog.DiscardHandler)})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
}

func TestConfigureLink(t *testing.T) {
	ns := newNS(t)
	openTUN(t, ns, "vnic0")
	h, err := nsutil.Handle(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	c := nsutil.LinkConfig{
		MTU:        9000,
		TxQueueLen: 2000,
		Addrs:      []netip.Prefix{netip.MustParsePrefix("198.18.0.1/24"), netip.MustParsePrefix("fd00::1/64")},
		Up:         true,
		Routes: []nsutil.Route{
			{Dst: netip.MustParsePrefix("198.19.0.0/16"), Via: netip.MustParseAddr("198.18.0.254"), Metric: 10},
			{Dst: netip.MustParsePrefix("fd00:1::/64")},
			{Dst: netip.MustParsePrefix("198.18.128.0/24"), Src: netip.MustParseAddr("198.18.0.1")},
		},
	}
	for range 2 { // the second time changes nothing and is no error
		if err := nsutil.ConfigureLink(h, "vnic0", c); err != nil {
			t.Fatal(err)
		}
	}
	l, err := h.LinkByName("vnic0")
	if err != nil {
		t.Fatal(err)
	}
	a := l.Attrs()
	if a.MTU != 9000 || a.TxQLen != 2000 || a.Flags&(1<<0) == 0 {
		t.Errorf("link: mtu %d txqlen %d flags %v", a.MTU, a.TxQLen, a.Flags)
	}
	addrs, _ := h.AddrList(l, netlink.FAMILY_ALL)
	got := map[string]int{}
	for _, ad := range addrs {
		got[ad.IPNet.String()] = ad.Flags
	}
	if _, ok := got["198.18.0.1/24"]; !ok {
		t.Errorf("addresses %v", got)
	}
	if f, ok := got["fd00::1/64"]; !ok || f&unix.IFA_F_NODAD == 0 || f&unix.IFA_F_TENTATIVE != 0 {
		t.Errorf("fd00::1/64: present %v, flags %#x; want nodad, not tentative", ok, f)
	}
	out := ip(t, "-n", ns, "route", "show", "dev", "vnic0") + ip(t, "-n", ns, "-6", "route", "show", "dev", "vnic0")
	for _, want := range []string{"198.19.0.0/16 via 198.18.0.254 metric 10", "198.18.128.0/24 scope link src 198.18.0.1", "fd00:1::/64"} {
		if !strings.Contains(out, want) {
			t.Errorf("no route %q in\n%s", want, out)
		}
	}
}

func TestConfigureLinkErrors(t *testing.T) {
	ns := newNS(t)
	openTUN(t, ns, "vnic0")
	h, err := nsutil.Handle(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	p := netip.MustParsePrefix
	for _, tc := range []struct {
		name string
		dev  string
		c    nsutil.LinkConfig
		want string // in the message
	}{
		{"mtu", "vnic0", nsutil.LinkConfig{MTU: 40}, "MTU 40 out of range"},
		{"mtu-v6", "vnic0", nsutil.LinkConfig{MTU: 1000, Addrs: []netip.Prefix{p("fd00::1/64")}}, "MTU 1000 is below IPv6's minimum of 1280"},
		{"zero-addr", "vnic0", nsutil.LinkConfig{Addrs: []netip.Prefix{{}}}, "address #0"},
		{"multicast", "vnic0", nsutil.LinkConfig{Addrs: []netip.Prefix{p("224.0.0.1/4")}}, "224.0.0.1/4 is not a unicast"},
		{"host-bits", "vnic0", nsutil.LinkConfig{Routes: []nsutil.Route{{Dst: p("198.18.0.1/15")}}}, "did you mean 198.18.0.0/15"},
		{"family", "vnic0", nsutil.LinkConfig{Routes: []nsutil.Route{{Dst: p("fd00::/8"), Via: netip.MustParseAddr("198.18.0.1")}}}, "fd00::/8 via 198.18.0.1: gateway and destination"},
		{"no-link", "nope0", nsutil.LinkConfig{Up: true}, `no link "nope0"`},
		{"route-down", "vnic0", nsutil.LinkConfig{Routes: []nsutil.Route{{Dst: p("198.18.0.0/15")}}}, "ip route add 198.18.0.0/15 dev vnic0: network is down (the link is down: set Up)"},
		{"gw-unreachable", "vnic0", nsutil.LinkConfig{Up: true, Routes: []nsutil.Route{{Dst: p("198.19.0.0/16"), Via: netip.MustParseAddr("198.20.0.1")}}}, "ip route add 198.19.0.0/16 via 198.20.0.1 dev vnic0: network is unreachable"},
	} {
		err := nsutil.ConfigureLink(h, tc.dev, tc.c)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v\nwant an error containing %q", tc.name, err, tc.want)
		}
	}
}

func TestWriteSysfs(t *testing.T) {
	ns := newNS(t)
	openTUN(t, ns, "vnic0")
	if err := nsutil.WriteSysfs(ns, "class/net/vnic0/gro_flush_timeout", "123456"); err != nil {
		t.Fatal(err)
	}
	if out := ip(t, "netns", "exec", ns, "cat", "/sys/class/net/vnic0/gro_flush_timeout"); out != "123456\n" {
		t.Errorf("gro_flush_timeout %q", out)
	}
	// The host's /sys has no vnic0 (unless it has one of its own).
	if _, err := os.Stat("/sys/class/net/vnic0"); err == nil {
		t.Log("note: the host has a vnic0 too")
	}
	if err := nsutil.WriteSysfs(ns, "class/net/nope0/mtu", "1"); err == nil {
		t.Error("writing a missing sysfs file succeeded")
	}
}

// TestLeftoverFile: a plain file where a namespace should be mounted (a
// crash between creating and mounting it) is not a namespace; Create says
// how to remove it, and Delete does.
func TestLeftoverFile(t *testing.T) {
	kerneltest.RequireRoot(t)
	name := randomName(t)
	if err := os.MkdirAll(nsutil.RunDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(nsutil.Path(name), nil, 0o444); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(nsutil.Path(name)) })
	if nsutil.Exists(name) {
		t.Error("Exists true for a plain file")
	}
	if _, err := nsutil.Create(name); err == nil || !strings.Contains(err.Error(), "ip netns del "+name) {
		t.Errorf("Create over a leftover file: %v", err)
	}
	if err := nsutil.Do(name, func() error { return nil }); err == nil {
		t.Error("Do entered a plain file")
	}
	if err := nsutil.Delete(name); err != nil {
		t.Errorf("Delete of a leftover file: %v", err)
	}
}
