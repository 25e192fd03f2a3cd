package l2test

import (
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"vnic/vnic/kerneltest"
	"vnic/vnic/nsutil"
)

// Underlay is two namespaces ("machines") joined by a veth pair:
// A's end DevA has 198.19.0.1/24, B's end DevB 198.19.0.2/24.
type Underlay struct {
	A, B         *kerneltest.Netns
	DevA, DevB   string
	AddrA, AddrB netip.Addr
}

// Underlay addresses.
var (
	UnderlayA = netip.MustParseAddr("198.19.0.1")
	UnderlayB = netip.MustParseAddr("198.19.0.2")
)

// NewUnderlay creates two namespaces joined by a veth pair of MTU mtu (0:
// 1500) with the underlay addresses, up.
//
// Equivalent to: ip netns add A; ip netns add B; ip -n A link add ua type
// veth peer name ub netns B; ip -n A addr add 198.19.0.1/24 dev ua; ...
func NewUnderlay(t testing.TB, mtu int) *Underlay {
	t.Helper()
	u := &Underlay{A: kerneltest.NewNetns(t), B: kerneltest.NewNetns(t), DevA: "ua", DevB: "ub", AddrA: UnderlayA, AddrB: UnderlayB}
	Veth(t, u.A, u.DevA, u.B, u.DevB, mtu)
	Configure(t, u.A, u.DevA, netip.PrefixFrom(u.AddrA, 24))
	Configure(t, u.B, u.DevB, netip.PrefixFrom(u.AddrB, 24))
	return u
}

// Handle returns a netlink handle in ns, closed at the end of the test.
func Handle(t testing.TB, ns *kerneltest.Netns) *netlink.Handle {
	t.Helper()
	h, err := nsutil.Handle(ns.Name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

// Veth creates a veth pair: nameA in nsA, nameB in nsB (the same
// namespace is fine), MTU mtu (0: 1500), both up without addresses, IPv6
// link-local addresses off (so the kernel sends nothing unprompted).
//
// Equivalent to: ip -n A link add nameA mtu M type veth peer name nameB
// mtu M netns B; ip -n A link set nameA up; ip -n B link set nameB up
func Veth(t testing.TB, nsA *kerneltest.Netns, nameA string, nsB *kerneltest.Netns, nameB string, mtu int) {
	t.Helper()
	if mtu == 0 {
		mtu = 1500
	}
	for _, ns := range []*kerneltest.Netns{nsA, nsB} {
		if err := ns.Sysctl("net.ipv6.conf.default.addr_gen_mode", "1"); err != nil {
			t.Fatal(err)
		}
	}
	var peerNS netns.NsHandle
	if err := nsB.Do(func() error {
		var err error
		peerNS, err = netns.Get()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer peerNS.Close()
	ha := Handle(t, nsA)
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: nameA, MTU: mtu}, PeerName: nameB, PeerMTU: uint32(mtu),
		PeerNamespace: netlink.NsFd(peerNS)}
	if err := ha.LinkAdd(v); err != nil {
		t.Fatalf("l2test: ip -n %s link add %s type veth peer name %s netns %s: %v", nsA.Name, nameA, nameB, nsB.Name, err)
	}
	Up(t, nsA, nameA)
	Up(t, nsB, nameB)
}

// Up sets dev in ns up.
//
// Equivalent to: ip -n NS link set DEV up
func Up(t testing.TB, ns *kerneltest.Netns, dev string) {
	t.Helper()
	h := Handle(t, ns)
	l, err := h.LinkByName(dev)
	if err == nil {
		err = h.LinkSetUp(l)
	}
	if err != nil {
		t.Fatalf("l2test: ip -n %s link set %s up: %v", ns.Name, dev, err)
	}
}

// Configure adds addresses to dev in ns and sets it up (IPv6 addresses
// without duplicate address detection).
//
// Equivalent to: ip -n NS addr add A dev DEV [nodad]; ip -n NS link set DEV up
func Configure(t testing.TB, ns *kerneltest.Netns, dev string, addrs ...netip.Prefix) {
	t.Helper()
	h := Handle(t, ns)
	l, err := h.LinkByName(dev)
	if err != nil {
		t.Fatalf("l2test: %s in %s: %v", dev, ns.Name, err)
	}
	for _, a := range addrs {
		na := &netlink.Addr{IPNet: &net.IPNet{IP: a.Addr().AsSlice(), Mask: net.CIDRMask(a.Bits(), a.Addr().BitLen())}}
		if a.Addr().Is6() {
			na.Flags = unix.IFA_F_NODAD
		}
		if err := h.AddrAdd(l, na); err != nil {
			t.Fatalf("l2test: ip -n %s addr add %v dev %s: %v", ns.Name, a, dev, err)
		}
	}
	Up(t, ns, dev)
}

// Bridge creates a Linux bridge in ns, up, STP off (frames flow at once),
// its ports' IPv6 link-local addresses off.
//
// Equivalent to: ip -n NS link add NAME type bridge stp_state 0; ip -n NS link set NAME up
func Bridge(t testing.TB, ns *kerneltest.Netns, name string) {
	t.Helper()
	if err := ns.Sysctl("net.ipv6.conf.default.addr_gen_mode", "1"); err != nil {
		t.Fatal(err)
	}
	if err := Handle(t, ns).LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}}); err != nil {
		t.Fatalf("l2test: ip -n %s link add %s type bridge: %v", ns.Name, name, err)
	}
	Up(t, ns, name)
}

// Enslave puts dev into bridge br (both in ns).
//
// Equivalent to: ip -n NS link set DEV master BR
func Enslave(t testing.TB, ns *kerneltest.Netns, dev, br string) {
	t.Helper()
	h := Handle(t, ns)
	l, err := h.LinkByName(dev)
	if err != nil {
		t.Fatal(err)
	}
	b, err := h.LinkByName(br)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetMaster(l, b); err != nil {
		t.Fatalf("l2test: ip -n %s link set %s master %s: %v", ns.Name, dev, br, err)
	}
}

// VXLAN is a plain Linux vxlan device, as `ip link add NAME type vxlan id
// VNI remote REMOTE local LOCAL dstport PORT` makes it.
type VXLAN struct {
	Name          string
	VNI           int
	Remote, Local netip.Addr
	Port          int // default 4789
	MTU           int // default: what the kernel chooses (the underlay's MTU less 50)
	// Addrs are added to the device, which is set up.
	Addrs []netip.Prefix
	// MAC, if set, is the device's address.
	MAC net.HardwareAddr
}

// AddVXLAN creates v in ns (its underlay socket lives there too).
//
// Equivalent to: ip -n NS link add NAME type vxlan id VNI remote REMOTE
// [local LOCAL] dstport PORT; ip -n NS addr add ...; ip -n NS link set NAME up
func AddVXLAN(t testing.TB, ns *kerneltest.Netns, v VXLAN) {
	t.Helper()
	if v.Port == 0 {
		v.Port = 4789
	}
	l := &netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: v.Name, MTU: v.MTU, HardwareAddr: v.MAC},
		VxlanId: v.VNI, Group: v.Remote.AsSlice(), Port: v.Port, Learning: true}
	if v.Local.IsValid() {
		l.SrcAddr = v.Local.AsSlice()
	}
	if err := Handle(t, ns).LinkAdd(l); err != nil {
		t.Fatalf("l2test: ip -n %s link add %s type vxlan id %d remote %v dstport %d: %v", ns.Name, v.Name, v.VNI, v.Remote, v.Port, err)
	}
	Configure(t, ns, v.Name, v.Addrs...)
}

// Run runs `NAME ARGS...` inside ns (ip netns exec) and fails the test
// with its output if it fails.
func Run(t testing.TB, ns *kerneltest.Netns, name string, args ...string) string {
	t.Helper()
	out, err := Output(ns, name, args...)
	if err != nil {
		t.Fatalf("ip netns exec %s %s %s: %v\n%s", ns.Name, name, strings.Join(args, " "), err, out)
	}
	return out
}

// Output runs `NAME ARGS...` inside ns and returns its combined output.
func Output(ns *kerneltest.Netns, name string, args ...string) (string, error) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns.Name, name}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// MAC returns dev's hardware address in ns.
func MAC(t testing.TB, ns *kerneltest.Netns, dev string) net.HardwareAddr {
	t.Helper()
	l, err := Handle(t, ns).LinkByName(dev)
	if err != nil {
		t.Fatal(err)
	}
	return l.Attrs().HardwareAddr
}
