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
	"net/netip"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"vnic/vnic/daemon"
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
	root.AddCommand(newUp(), newStat(), newLab(), newCapture(), newExtcap())
	return root
}

type upFlags struct {
	cfg      daemon.Config
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
by vnic (TSO/USO) onto the wire to a gVisor peer host; the peer's packets are
coalesced (GRO) on the way back. The peer answers ping and serves TCP echo 7,
TCP/UDP discard 9, TCP chargen 19 and HTTP 80 (GET /bytes/N, POST /).`,
		Example: `  vnic up --netns lab                       # vnic0 = 198.18.0.1/15, fd00::1/64; peer .2
  ip netns exec lab curl -s 198.18.0.2/bytes/100000 | wc -c
  vnic up --netns lab --pcap /tmp/vnic.pcapng   # record host-tx, wire and host-rx
  vnic up --netns lab --pcap /tmp/vnic.pcapng --snaplen 128   # headers only: far cheaper at full speed`,
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
	fl.StringVar(&f.cfg.Netns, "netns", "", "network namespace to put the interface in (created if missing, removed on exit if created)")
	fl.StringSliceVar(&f.addrs, "addr", nil, "interface address with prefix, repeatable (default 198.18.0.1/15 and fd00::1/64)")
	fl.StringSliceVar(&f.peers, "peer", nil, "gVisor peer address, repeatable (default: the next address in each subnet)")
	fl.IntVar(&f.cfg.MTU, "mtu", 1500, "interface (and wire) MTU")
	fl.IntVar(&f.cfg.HWMTU, "hw-mtu", 0, "the NIC's hardware MTU, below --mtu: TCP is cut to fit by TSO behind the kernel's back, other larger frames are dropped (the forcedeth NIC)")
	fl.StringVar(&f.cfg.Pcap, "pcap", "", "record host-tx, wire and host-rx into this pcapng file")
	fl.IntVar(&f.cfg.Snaplen, "snaplen", 0, "with --pcap: bytes of each packet to record; 0 = whole packet (default); 128 keeps IP and TCP headers at a fraction of the cost")
	fl.StringVar(&f.cfg.Engine, "engine", daemon.EngineVNIC, "who does the NIC's work: vnic, or wireguard (wireguard-go's GSO split and GRO, the reference)")
	fl.BoolVar(&f.cfg.NoPeerGSO, "no-peer-gso", false, "the peer's TCP sends MTU-sized packets instead of super-packets")
	fl.StringVar(&f.cfg.Control, "control", "", "control socket path (default /run/vnic/[NETNS.]NAME.sock)")
	fl.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	return cmd
}

func (f *upFlags) parse() error {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(f.logLevel)); err != nil {
		return fmt.Errorf("--log-level %q: use debug, info, warn or error", f.logLevel)
	}
	f.cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
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
	ns := ""
	if s.Netns != "" {
		ns = " (netns " + s.Netns + ")"
	}
	gro := "on"
	if !s.GRO {
		gro = "off"
	}
	fmt.Printf("%s%s  engine %s  gro %s\n", s.Name, ns, s.Engine, gro)
	row := func(name string, c daemon.Counter, extra string) {
		fmt.Printf("  %-9s %10d pkts %14d bytes  %s\n", name, c.Packets, c.Bytes, extra)
	}
	row("host-tx", s.HostTX, fmt.Sprintf("%d super-packets", s.HostTXSuper))
	row("wire-out", s.WireOut, "")
	row("wire-in", s.WireIn, "")
	row("host-rx", s.HostRX, fmt.Sprintf("%d GRO super-packets", s.HostRXMerged))
	fmt.Printf("  peer      %10d pkts in, %d out (%d super-packets), %d bytes discarded\n",
		s.Peer.In.Packets, s.Peer.Out.Packets, s.Peer.OutSuper, s.Peer.Discarded)
	if s.Capture != nil {
		fmt.Printf("  pcap      %10d written, %d dropped (writer behind)\n", s.Capture.Written, s.Capture.Dropped)
	}
	if len(s.Drops) == 0 {
		fmt.Println("  drops     none")
		return
	}
	keys := make([]string, 0, len(s.Drops))
	for k := range s.Drops {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	fmt.Println("  drops")
	for _, k := range keys {
		fmt.Printf("    %-24s %d\n", k, s.Drops[k])
	}
}

var _ = context.Background
