package main

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"vnic/vnic/lab"
)

// errLabFailed is a lab whose expectations did not all hold: exit 1 with
// the run's own output as the explanation.
var errLabFailed = errors.New("lab expectations failed")

func newLab() *cobra.Command {
	c := &cobra.Command{
		Use:   "lab",
		Short: "Offload labs: namespaces joined by vnic NICs, showing what tcpdump captured vs what crossed the wire",
	}
	c.AddCommand(newLabList(), newLabRun())
	return c
}

func newLabList() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the built-in lab scenarios",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, s := range lab.Builtin() {
				fmt.Fprintf(cmd.OutOrStdout(), "%-16s %s (%d hosts, %d steps)\n", s.Name, s.Title, len(s.Hosts), len(s.Steps))
			}
			return nil
		},
	}
}

func newLabRun() *cobra.Command {
	var out string
	var color bool
	c := &cobra.Command{
		Use:   "run NAME",
		Short: "Run a lab scenario: print each step's side-by-side view, write the pcapng and report.html into --out",
		Long: "Run a built-in lab scenario (see `vnic lab list`) in fresh network namespaces, which are removed\n" +
			"at the end (also on Ctrl-C). The exit status is 1 when an expectation does not hold.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, ok := lab.Lookup(args[0])
			if !ok {
				var names []string
				for _, s := range lab.Builtin() {
					names = append(names, s.Name)
				}
				return usageError{fmt.Errorf("no lab scenario %q (have: %v)", args[0], names)}
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			res, err := lab.Run(ctx, s, lab.Options{Out: out, Stdout: cmd.OutOrStdout(), Color: color})
			if err != nil {
				return err
			}
			if !res.Passed {
				return fmt.Errorf("%w: %d of %d", errLabFailed, res.Failed, res.Expectations)
			}
			return nil
		},
	}
	c.Flags().StringVar(&out, "out", "lab-out", "directory for <scenario>.pcapng and report.html")
	c.Flags().BoolVar(&color, "color", false, "ANSI colours in the views")
	return c
}
