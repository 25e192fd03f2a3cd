package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"vnic/vnic/capture"
)

// tapDir is where the live taps are; a test may point it elsewhere.
var tapDir = capture.TapDir

func newCapture() *cobra.Command {
	var file string
	var count, snaplen int
	var list bool
	c := &cobra.Command{
		Use:   "capture [IFNAME@POINT]",
		Short: "Watch a capture point of a running vnic live (host-tx, wire, host-rx) as pcapng",
		Long: `Stream one capture point of a running vnic NIC — vnic up's, or any NIC of a
running vnic lab — as pcapng, live: what crossed the wire (IFNAME@wire), what
the kernel handed the NIC (IFNAME@host-tx) or what the NIC handed the kernel
after GRO (IFNAME@host-rx). The NIC records nothing while nobody watches.
Without an argument (or with --list) it lists the points of every running vnic.
Needs root, like the NIC (its sockets in /run/vnic are root's).`,
		Example: `  vnic capture                                   # what can be watched
  vnic capture vnic0@wire -w - | tcpdump -nr -    # the wire, live, in tcpdump
  vnic capture vnic0@wire -c 100 -w wire.pcapng   # 100 packets into a file
  wireshark -k -i <(vnic capture vnic0@wire -w -)  # or install the extcap: make install-extcap`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if list || len(args) == 0 {
				return listTaps(cmd.OutOrStdout())
			}
			if file == "" {
				return usageError{errors.New("give -w FILE, or -w - for standard output (e.g. vnic capture " + args[0] + " -w - | tcpdump -nr -)")}
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM, syscall.SIGPIPE)
			defer stop()
			var out io.Writer = cmd.OutOrStdout()
			if file != "-" {
				f, err := capture.CreateFile(file)
				if err != nil {
					return err
				}
				defer f.Close()
				out = f
			}
			n, err := streamTap(ctx, args[0], out, count, snaplen)
			if file != "-" {
				fmt.Fprintf(cmd.ErrOrStderr(), "%d packets captured\n", n)
			}
			return err
		},
	}
	fl := c.Flags()
	fl.StringVarP(&file, "write", "w", "", "write pcapng to FILE (- for standard output)")
	fl.IntVarP(&count, "count", "c", 0, "stop after this many packets (0: until Ctrl-C or the NIC goes away)")
	fl.IntVarP(&snaplen, "snaplen", "s", 0, "bytes kept of each packet (0: whole packets)")
	fl.BoolVar(&list, "list", false, "list the capture points of every running vnic")
	return c
}

func listTaps(w io.Writer) error {
	all, err := capture.ListTaps(tapDir)
	if err != nil {
		return err
	}
	if len(all) == 0 {
		fmt.Fprintln(w, "no running vnic offers live capture (start one: vnic up, or vnic lab run NAME)")
		return nil
	}
	for _, ti := range all {
		fmt.Fprintf(w, "%-28s %s\n", ti.Name, ti.Desc)
	}
	return nil
}

// streamTap copies the live stream of the point called name into out.
func streamTap(ctx context.Context, name string, out io.Writer, count, snaplen int) (int, error) {
	ti, err := capture.FindTap(tapDir, name)
	if err != nil {
		return 0, err
	}
	rc, err := ti.Dial(ctx, snaplen)
	if err != nil {
		return 0, err
	}
	go func() {
		<-ctx.Done()
		rc.Close()
	}()
	defer rc.Close()
	n, err := capture.CopyBlocks(out, rc, count)
	if ctx.Err() != nil || errors.Is(err, syscall.EPIPE) || errors.Is(err, os.ErrClosed) {
		return n, nil // Ctrl-C, or the reader (tcpdump, Wireshark) went away
	}
	return n, err
}

// isExtcapCall reports whether the command line is Wireshark calling its
// extcap: the binary installed as vnic-extcap, or extcap flags first.
func isExtcapCall(args []string) bool {
	if filepath.Base(args[0]) == "vnic-extcap" {
		return true
	}
	return len(args) > 1 && (strings.HasPrefix(args[1], "--extcap-") || args[1] == "--capture")
}

// extcapFlags are what Wireshark passes to an extcap (extcap(4)).
type extcapFlags struct {
	interfaces, dlts, config, capture bool
	iface, fifo, version, filter      string
}

func newExtcap() *cobra.Command {
	var f extcapFlags
	c := &cobra.Command{
		Use:   "extcap",
		Short: "The Wireshark extcap: every running vnic's capture points as Wireshark/tshark interfaces",
		Long: `Wireshark's external capture interface (extcap(4)): installed in Wireshark's
extcap directory (make install-extcap, or
  ln -s $(pwd)/bin/vnic "$(tshark -G folders | awk -F'\t+' '/^Extcap path/ {print $2}')/vnic-extcap"),
it makes every capture point of every running vnic an interface of
Wireshark and tshark: tshark -i vnic0@wire. Wireshark calls it with
--extcap-interfaces, --extcap-dlts, --extcap-config and --capture --fifo.`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runExtcap(cmd, f)
		},
	}
	c.FParseErrWhitelist.UnknownFlags = true // newer Wireshark versions pass more
	fl := c.Flags()
	fl.BoolVar(&f.interfaces, "extcap-interfaces", false, "list the interfaces")
	fl.StringVar(&f.version, "extcap-version", "", "the calling Wireshark's version")
	fl.BoolVar(&f.dlts, "extcap-dlts", false, "list the link types of --extcap-interface")
	fl.BoolVar(&f.config, "extcap-config", false, "list the options of --extcap-interface")
	fl.StringVar(&f.iface, "extcap-interface", "", "the interface")
	fl.BoolVar(&f.capture, "capture", false, "capture --extcap-interface into --fifo")
	fl.StringVar(&f.fifo, "fifo", "", "where Wireshark reads the capture")
	fl.StringVar(&f.filter, "extcap-capture-filter", "", "a capture filter (not supported: use a display filter)")
	return c
}

func runExtcap(cmd *cobra.Command, f extcapFlags) error {
	out := cmd.OutOrStdout()
	switch {
	case f.interfaces:
		fmt.Fprintln(out, "extcap {version=1.0}{display=vnic: the capture points of running vnic NICs}")
		all, _ := capture.ListTaps(tapDir)
		for _, ti := range all {
			fmt.Fprintf(out, "interface {value=%s}{display=%s}\n", ti.Name, extcapEscape("vnic "+ti.Desc))
		}
		return nil
	case f.dlts:
		fmt.Fprintf(out, "dlt {number=%d}{name=RAW}{display=Raw IPv4/IPv6 (vnic)}\n", capture.LinkTypeDLTRaw)
		return nil
	case f.config:
		return nil // no options
	case f.capture:
		if f.iface == "" || f.fifo == "" {
			return errors.New("--capture needs --extcap-interface and --fifo")
		}
		if f.filter != "" {
			fmt.Fprintln(cmd.ErrOrStderr(), "vnic extcap: capture filters are not supported; use a display filter")
		}
		ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM, syscall.SIGPIPE)
		defer stop()
		fifo, err := os.OpenFile(f.fifo, os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		defer fifo.Close()
		_, err = streamTap(ctx, f.iface, fifo, 0, 0)
		if errors.Is(err, unix.EPIPE) {
			return nil
		}
		return err
	}
	return usageError{errors.New("an extcap is called by Wireshark with --extcap-interfaces, --extcap-dlts, --extcap-config or --capture")}
}

// extcapEscape keeps a value inside extcap's {key=value} grammar.
func extcapEscape(s string) string {
	return strings.NewReplacer("{", "(", "}", ")", "\n", " ").Replace(s)
}
