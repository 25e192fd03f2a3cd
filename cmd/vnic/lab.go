package main

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
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
	c.AddCommand(newLabList(), newLabRun(), newLabShow(), newLabCheck())
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
	var color, full bool
	var width int
	c := &cobra.Command{
		Use:   "run NAME|FILE.yaml",
		Short: "Run a lab scenario: print each step's side-by-side view, write the pcapng and report.html into --out",
		Long: "Run a built-in lab scenario (see `vnic lab list`) or a scenario file (see `vnic lab show` and\n" +
			"docs/scenarios.md) in fresh network namespaces, which are removed\n" +
			"at the end (also on Ctrl-C). The exit status is 1 when an expectation does not hold.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := loadScenario(args[0])
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			res, err := lab.Run(ctx, *s, lab.Options{Out: out, Stdout: cmd.OutOrStdout(), Color: color, Full: full, Width: width})
			if err != nil {
				return err
			}
			if !res.Passed {
				return fmt.Errorf("%w: %d of %d", errLabFailed, res.Failed, res.Expectations)
			}
			return nil
		},
	}
	c.Flags().StringVar(&out, "out", "lab-out", "directory for the pcapng files (<scenario>.pcapng, and one per capture point) and report.html")
	c.Flags().BoolVar(&color, "color", false, "ANSI colours in the views")
	c.Flags().BoolVar(&full, "full", false, "print every side-by-side row of every step (by default a summary and the rows around the first interesting event; the report has all)")
	c.Flags().IntVar(&width, "width", 100, "fit the output in this many columns")
	return c
}

// isScenarioFile: arg names a scenario file rather than a built-in.
func isScenarioFile(arg string) bool {
	if strings.HasSuffix(arg, ".yaml") || strings.HasSuffix(arg, ".yml") {
		return true
	}
	st, err := os.Stat(arg)
	return err == nil && st.Mode().IsRegular()
}

// loadScenario loads the scenario file arg or looks up the built-in
// scenario arg.
func loadScenario(arg string) (*lab.Scenario, error) {
	if isScenarioFile(arg) {
		return lab.LoadFile(arg)
	}
	s, ok := lab.Lookup(arg)
	if !ok {
		return nil, usageError{fmt.Errorf("no lab scenario %q: not a file, and the built-ins are %s "+
			"(a scenario file ends in .yaml)", arg, strings.Join(builtinNames(), ", "))}
	}
	return &s, nil
}

func builtinNames() []string {
	var names []string
	for _, s := range lab.Builtin() {
		names = append(names, s.Name)
	}
	return names
}

func newLabShow() *cobra.Command {
	return &cobra.Command{
		Use:   "show NAME|FILE.yaml",
		Short: "Print a lab scenario as YAML: the starting point for a scenario file of your own",
		Long: "Print a built-in lab scenario (or a scenario file, normalised) in the YAML format that\n" +
			"`vnic lab run FILE.yaml` and `vnic lab check FILE.yaml` read, e.g.\n" +
			"  vnic lab show tso-capture > my-lab.yaml\n" +
			"The format is documented in docs/scenarios.md.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := loadScenario(args[0])
			if err != nil {
				return err
			}
			b, err := lab.Marshal(s)
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(b)
			return err
		},
	}
}

func newLabCheck() *cobra.Command {
	return &cobra.Command{
		Use:   "check FILE.yaml...",
		Short: "Check lab scenario files without running them: OK, or every problem with its line",
		Long: "Load and validate lab scenario files as `vnic lab run` would, without creating anything\n" +
			"(no root needed). Prints \"FILE: OK\" or the problems as FILE:LINE:COLUMN: PATH: what to do;\n" +
			"the exit status is 1 when a file has a problem.",
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			bad := 0
			for _, f := range args {
				s, err := lab.LoadFile(f)
				if err != nil {
					bad++
					fmt.Fprintln(cmd.ErrOrStderr(), err)
					continue
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: OK (%s: %d hosts, %d steps)\n", f, s.Name, len(s.Hosts), len(s.Steps))
			}
			if bad > 0 {
				return fmt.Errorf("%w: %d of %d files", errLabInvalid, bad, len(args))
			}
			return nil
		},
	}
}

// errLabInvalid is a scenario file with problems, already printed.
var errLabInvalid = errors.New("lab scenario files with problems")
