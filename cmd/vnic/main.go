// Command vnic runs a virtual NIC that offloads like real hardware: `vnic up`
// creates a TUN device with TSO/USO/GRO offloads whose "hardware" is vnic's
// Go engine, with a gVisor peer host behind the wire; `vnic stat` prints the
// counters of a running one.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"vnic/vnic/daemon"
	"vnic/vnic/drop"
	"vnic/vnic/nic"
)

func main() {
	root := newRoot()
	if isExtcapCall(os.Args) {
		// Wireshark calls its extcap with extcap flags only.
		root.SetArgs(append([]string{"extcap"}, os.Args[1:]...))
	}
	cmd, err := root.ExecuteC()
	if err != nil {
		fmt.Fprintln(os.Stderr, "vnic:", err)
		// A mistyped flag or command: say where the right ones are.
		var ue usageError
		if errors.As(err, &ue) || strings.HasPrefix(err.Error(), "unknown command") {
			fmt.Fprintf(os.Stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// usageError is a flag that does not parse.
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "vnic",
		Short:         "A virtual NIC that does TSO/USO and GRO in Go, with a gVisor peer behind the wire",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(newUp(), newStat(), newLab(), newCapture(), newExtcap(), newClean())
	return root
}

type upFlags struct {
	cfg      daemon.Config
	engine   string
	mode     string
	mac      string
	addrs    []string
	peers    []string
	logLevel string
}

func newUp() *cobra.Command {
	var f upFlags
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Create the NIC and run it in the foreground (Ctrl-C tears it down)",
		Long: `Create a TUN device with virtio-net offloads (CSUM, TSO4/6, TSO_ECN, USO4/6),
give it addresses, and run the NIC: the kernel's super-packets are segmented
by vnic (TSO/USO) onto the wire; what comes off the wire is coalesced (GRO)
on its way into the kernel.

The far end of the wire (--wire):
  peer      (default) a gVisor host at the --peer addresses: it answers ping
            and serves TCP echo 7, TCP/UDP discard 9, TCP chargen 19 and
            HTTP 80 (GET /bytes/N, POST /).
  netns:B   a second vnic NIC, same name, in namespace B with the --peer
            addresses: a pair of offloading NICs, like a veth pair whose
            wire is vnic's (run iperf3 -s in B, iperf3 -c in --netns).
  dev:IF    (--mode tap) an existing interface IF in the namespace vnic up
            runs in — one end of a veth pair whose other end is in a bridge,
            a physical NIC: the NIC's wire-size frames go out and come in
            through an AF_PACKET socket on it. GRO/LRO on IF are switched off
            while vnic runs and restored on exit (logged).
  vxlan:REMOTE[,vni=N][,port=P][,local=ADDR]
            (--mode tap) a VXLAN tunnel (UDP 4789 by default, vni 1) from
            vnic up's namespace to REMOTE: interoperates with
            ip link add vx0 type vxlan id N remote ADDR dstport 4789 there.

--mode tap makes the NIC an Ethernet interface (a TAP device) with a MAC
address (--mac, default a stable local address derived from the name): the
kernel does ARP and neighbour discovery itself, tcpdump -e shows Ethernet
headers. Every far end works with it.

Namespaces: --netns and netns:B take a name (as ip netns knows it) or a path
to a namespace file (/proc/PID/ns/net, /run/netns/NAME, a container's netns).
A NAME that does not exist is created, and removed again when the last vnic
daemon using it exits; a namespace vnic did not create, or one given by
path, is used as it is and never removed. A daemon killed with kill -9
cannot remove its namespace: the next vnic up --netns NAME takes it over,
and vnic clean removes what killed vnic processes left. Without --netns
the NIC is created in vnic's own namespace.

It needs root: run it with sudo.`,
		Example: `  vnic up --netns lab                       # vnic0 = 198.18.0.1/15, fd00::1/64; peer .2
  ip netns exec lab curl -s 198.18.0.2/bytes/100000 | wc -c
  vnic up --netns a --wire netns:b          # a vnic pair: a's vnic0 .1, b's vnic0 .2
  ip netns exec b iperf3 -s -D; ip netns exec a iperf3 -c 198.18.0.2
  vnic up --netns /proc/$(pidof myapp)/ns/net --wire netns:far   # into a running container's namespace
  vnic up --netns lab --pcap /tmp/vnic.pcapng   # record host-tx, wire and host-rx
  vnic up --netns lab --pcap /tmp/vnic.pcapng --snaplen 128   # headers only: far cheaper at full speed
  ip link add v1 type veth peer name v2; ip link set v2 master br0 up
  vnic up --netns c1 --mode tap --wire dev:v1 --addr 198.18.1.10/24   # a NIC on bridge br0
  vnic up --netns n1 --mode tap --wire vxlan:192.0.2.7,vni=42 --addr 198.18.2.1/24   # VXLAN to another machine`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := f.parse(); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return daemon.Run(ctx, f.cfg)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.cfg.Name, "name", "vnic0", "interface name")
	fl.StringVar(&f.cfg.Netns, "netns", "", "network namespace for the interface: a name (created if missing; removed on exit only if vnic created it and no other vnic daemon uses it) or a path such as /proc/PID/ns/net (never created or removed)")
	fl.StringVar(&f.cfg.Wire, "wire", "peer", "the far end of the wire: peer (the gVisor host), netns:B (a second vnic NIC in namespace B, a name or a path), dev:IFNAME or vxlan:REMOTE[,vni=N][,port=P][,local=ADDR] (with --mode tap)")
	fl.StringVar(&f.mode, "mode", "tun", "tun (an IP interface) or tap (an Ethernet interface with a MAC address; needed for --wire dev: and vxlan:)")
	fl.StringVar(&f.mac, "mac", "", "with --mode tap: the NIC's MAC address (default: a stable locally administered address derived from --netns and --name)")
	fl.StringSliceVar(&f.addrs, "addr", nil, "interface address with prefix, repeatable (default 198.18.0.1/15 and fd00::1/64)")
	fl.StringSliceVar(&f.peers, "peer", nil, "the far end's address (the gVisor peer's or the far NIC's), repeatable (default: the next address in each subnet)")
	fl.IntVar(&f.cfg.MTU, "mtu", 1500, "interface (and wire) MTU")
	fl.IntVar(&f.cfg.HWMTU, "hw-mtu", 0, "the NIC's hardware MTU, below --mtu: TCP is cut to fit by TSO behind the kernel's back, other larger frames are dropped (the forcedeth NIC)")
	fl.StringVar(&f.cfg.Pcap, "pcap", "", "record host-tx, wire and host-rx into this pcapng file; created 0600, since it holds packet payloads, and never written through a symlink or into another user's file")
	fl.IntVar(&f.cfg.Snaplen, "snaplen", 0, "with --pcap: bytes of each packet to record; 0 = whole packet (default); 128 keeps IP and TCP headers at a fraction of the cost")
	fl.StringVar(&f.engine, "engine", string(daemon.EngineVNIC), "who does the NIC's work: vnic, or wireguard (wireguard-go's GSO split and GRO, the reference)")
	fl.BoolVar(&f.cfg.NoRxCsum, "no-rx-csum", false, "turn the NIC's receive checksum offload off: it marks no packet as checksum-verified (virtio DATA_VALID) and the kernel verifies every checksum itself")
	fl.BoolVar(&f.cfg.NoPeerGSO, "no-peer-gso", false, "the peer's TCP sends MTU-sized packets instead of super-packets")
	fl.StringVar(&f.cfg.Control, "control", "", "control socket path (default /run/vnic/[NETNS.]NAME.sock); a stale socket a killed daemon left there is replaced, anything else refused")
	fl.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	return cmd
}

func (f *upFlags) parse() error {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(f.logLevel)); err != nil {
		return fmt.Errorf("--log-level %q: use debug, info, warn or error", f.logLevel)
	}
	f.cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
	f.cfg.Engine = nic.Engine(f.engine)
	f.cfg.Mode = nic.Mode(f.mode)
	if f.mac != "" {
		mac, err := net.ParseMAC(f.mac)
		if err != nil {
			return fmt.Errorf("--mac %q: want an Ethernet address such as 02:00:00:00:00:01", f.mac)
		}
		f.cfg.MAC = mac
	}
	if f.cfg.Snaplen < 0 {
		return fmt.Errorf("--snaplen %d: give the number of bytes to record of each packet (e.g. 128 for the headers), or 0 for whole packets", f.cfg.Snaplen)
	}
	for _, a := range f.addrs {
		p, err := netip.ParsePrefix(strings.TrimSpace(a))
		if err != nil {
			return fmt.Errorf("--addr %q: want ADDRESS/PREFIX, e.g. 198.18.0.1/15 or fd00::1/64", a)
		}
		f.cfg.Addrs = append(f.cfg.Addrs, p)
	}
	for _, a := range f.peers {
		p, err := netip.ParseAddr(strings.TrimSpace(a))
		if err != nil {
			return fmt.Errorf("--peer %q: want an address, e.g. 198.18.0.2", a)
		}
		f.cfg.Peer = append(f.cfg.Peer, p)
	}
	return nil
}

func newStat() *cobra.Command {
	var name, netns, control string
	var asJSON bool
	var watch time.Duration
	cmd := &cobra.Command{
		Use:   "stat",
		Short: "Print the counters of a running vnic (super-packets, segments, merges, drops by reason)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if control == "" {
				control = daemon.ControlPath(netns, name)
			}
			for {
				s, err := daemon.ReadStats(control)
				if err != nil {
					return err
				}
				if asJSON {
					enc := json.NewEncoder(os.Stdout)
					enc.SetIndent("", "  ")
					if err := enc.Encode(s); err != nil {
						return err
					}
				} else {
					printStats(s)
				}
				if watch <= 0 {
					return nil
				}
				select {
				case <-cmd.Context().Done():
					return nil
				case <-time.After(watch):
				}
			}
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&name, "name", "vnic0", "interface name")
	fl.StringVar(&netns, "netns", "", "the namespace given to vnic up")
	fl.StringVar(&control, "control", "", "control socket path (default /run/vnic/[NETNS.]NAME.sock)")
	fl.BoolVar(&asJSON, "json", false, "print JSON")
	fl.DurationVar(&watch, "watch", 0, "print again every interval (e.g. 1s) until Ctrl-C")
	return cmd
}

func printStats(s daemon.Stats) {
	printNIC(s.Stats)
	if s.Far != nil {
		printNIC(*s.Far)
	}
	if p := s.Peer; p != nil {
		fmt.Printf("peer (gVisor host)\n  in %d pkts, out %d pkts (%d super-packets), %d bytes discarded\n",
			p.In.Packets, p.Out.Packets, p.OutSuper, p.Discarded)
		var drops []string
		for _, d := range p.DropList() {
			drops = append(drops, fmt.Sprintf("%s %d", d.Reason, d.Packets))
		}
		if len(drops) > 0 {
			fmt.Printf("  drops      %s\n", strings.Join(drops, ", "))
		}
		var errs []string
		for _, e := range p.Stack.List() {
			errs = append(errs, fmt.Sprintf("%s %d", e.Name, e.Value))
		}
		if len(errs) > 0 {
			fmt.Printf("  gVisor     %s\n", strings.Join(errs, ", "))
		}
	}
	if w := s.Dev; w != nil {
		fmt.Printf("wire dev:%s (AF_PACKET)\n  out %d frames %d bytes in %d sendmmsg; in %d frames %d bytes in %d recvmmsg (%d super-packets cut, %d checksums completed)\n",
			w.Dev, w.OutPackets, w.OutBytes, w.SendCalls, w.InPackets, w.InBytes, w.RecvCalls, w.InSuper, w.InCsum)
		if len(w.Switched) > 0 {
			fmt.Printf("  switched off while running: %s\n", strings.Join(w.Switched, ", "))
		}
		printWireDrops(w.Drops)
	}
	if w := s.VXLAN; w != nil {
		fmt.Printf("wire vxlan:%s vni %d port %d (underlay %s, MTU %d; needs %d)\n  out %d frames %d bytes in %d sendmmsg (%d UDP GSO sends); in %d frames %d bytes in %d recvmmsg (%d UDP GRO runs)\n",
			w.Remote, w.VNI, w.Port, w.Underlay.Dev, w.Underlay.MTU, w.Underlay.Need, w.OutPackets, w.OutBytes, w.SendCalls, w.GSOSends, w.InPackets, w.InBytes, w.RecvCalls, w.GRORecvs)
		printWireDrops(w.Drops)
	}
	if s.Capture != nil {
		fmt.Printf("pcap\n  %d written, %d dropped (writer behind)\n", s.Capture.Written, s.Capture.Dropped)
	}
}

// printWireDrops prints a far end's drops by place and reason.
func printWireDrops(ds []drop.Entry) {
	if len(ds) == 0 {
		fmt.Println("  drops     none")
		return
	}
	fmt.Println("  drops")
	for _, d := range ds {
		fmt.Printf("    %-11s %-24s %d\n", d.Place, d.Reason, d.Packets)
	}
}

// printNIC prints one NIC's counters: what passed each point, then every
// drop by place and reason, and the kernel's own counters.
func printNIC(s nic.Stats) {
	ns := ""
	if s.Netns != "" {
		ns = " (netns " + s.Netns + ")"
	}
	gro := "on"
	if !s.GRO {
		gro = "off"
	}
	mode := ""
	if s.Mode == nic.ModeTAP {
		mode = "  tap " + s.MAC
	}
	fmt.Printf("%s%s%s  engine %s  model %s  gro %s\n", s.Name, ns, mode, s.Engine, s.Model, gro)
	row := func(name string, c daemon.Counter, extra string) {
		fmt.Printf("  %-9s %10d pkts %14d bytes  %s\n", name, c.Packets, c.Bytes, extra)
	}
	row("host-tx", s.HostTX, fmt.Sprintf("%d super-packets", s.HostTXSuper))
	row("wire-out", s.WireOut, "")
	row("wire-in", s.WireIn, "")
	row("host-rx", s.HostRX, fmt.Sprintf("%d GRO super-packets", s.HostRXMerged))
	if len(s.Uncounted) > 0 {
		fmt.Printf("  not counted by this engine: %s\n", strings.Join(s.Uncounted, ", "))
	}
	if k := s.Kernel; k != nil {
		fmt.Printf("  kernel    tx %d pkts (%d dropped before the NIC read them), rx %d pkts (%d dropped, %d errors)\n",
			k.TXPackets, k.TXDropped, k.RXPackets, k.RXDropped, k.RXErrors)
	}
	if len(s.Drops) == 0 {
		fmt.Println("  drops     none")
		return
	}
	drops := slices.Clone(s.Drops)
	sort.Slice(drops, func(i, j int) bool {
		if drops[i].Place != drops[j].Place {
			return drops[i].Place < drops[j].Place
		}
		return drops[i].Reason < drops[j].Reason
	})
	fmt.Println("  drops")
	for _, d := range drops {
		fmt.Printf("    %-8s %-24s %d\n", d.Place, d.Reason, d.Packets)
	}
}

var _ = context.Background
