package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"unicode"

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
	c.AddCommand(newLabList(), newLabRun(), newLabShow(), newLabCheck(), newLabClean())
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
			"docs/scenarios.md) in fresh network namespaces, which are removed at the end (also on\n" +
			"Ctrl-C; after a kill -9, by the next run or `vnic lab clean`). The exit status is 1 when an\n" +
			"expectation does not hold.\n" +
			"A scenario file is a script: its setup and command steps run as root (sh -c in a host's\n" +
			"namespace, on this machine's files, with only PATH, HOME, TERM and LANG of your environment);\n" +
			"run only files you trust, and list their commands first with `vnic lab check FILE`.",
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
	c.Flags().StringVar(&out, "out", "lab-out", "directory for the pcapng files (<scenario>.pcapng, and one per capture point) and report.html; files created 0600, since they hold packet payloads, and never written through a symlink or into another user's file")
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
			"(no root needed). Prints \"FILE: OK\" and every shell command the file would run (step,\n" +
			"host, command: `vnic lab run` runs them as root), or the problems as\n" +
			"FILE:LINE:COLUMN: PATH: what to do; the exit status is 1 when a file has a problem.\n" +
			"A scenario file is a script: run only files you trust.",
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
				printCommands(cmd.OutOrStdout(), f, s.Commands())
			}
			if bad > 0 {
				return fmt.Errorf("%w: %d of %d files", errLabInvalid, bad, len(args))
			}
			return nil
		},
	}
}

func newLabClean() *cobra.Command {
	return &cobra.Command{
		Use:   "clean [SCENARIO...]",
		Short: "Remove the namespaces that killed lab runs left behind (of the given scenarios, or all)",
		Long: "A `vnic lab run` that is killed (kill -9, a crash) cannot remove its network namespaces\n" +
			"(lab-<scenario>-<host>-<suffix>); the next `vnic lab run` removes them, and so does this,\n" +
			"printing each one. It removes only namespaces a lab run created whose run is gone: never\n" +
			"one vnic did not create (even named like a lab's), nor one a running lab uses.",
		RunE: func(cmd *cobra.Command, args []string) error {
			removed, err := lab.Clean(args...)
			for _, r := range removed {
				fmt.Fprintf(cmd.OutOrStdout(), "removed %s\n", r)
			}
			if len(removed) == 0 && err == nil {
				fmt.Fprintln(cmd.OutOrStdout(), "nothing to remove: no namespace of a killed lab run")
			}
			return err
		},
	}
}

// printCommands lists the shell commands a scenario file runs, one a
// line: step, host, setup or traffic, the command (quoted if it holds
// anything a terminal would not show as is).
func printCommands(w io.Writer, file string, cs []lab.Command) {
	if len(cs) == 0 {
		fmt.Fprintf(w, "%s: runs no shell commands\n", file)
		return
	}
	fmt.Fprintf(w, "%s: runs %d shell commands as root (sh -c in the host's network namespace, on this machine's files; a scenario file is a script: run only files you trust):\n", file, len(cs))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, c := range cs {
		fmt.Fprintf(tw, "  step %d (%s)\t[%s]\t%s:\t%s\n", c.Step, shown(c.StepName), shown(c.Host), c.Kind, shown(c.Run))
	}
	tw.Flush()
}

// shown returns s as is when it is plain printable text, else quoted, so
// that a newline or an escape sequence cannot hide part of a command.
func shown(s string) string {
	if s == "" || strings.ContainsFunc(s, func(r rune) bool { return !unicode.IsPrint(r) || r == '\t' }) {
		return strconv.Quote(s)
	}
	return s
}

// errLabInvalid is a scenario file with problems, already printed.
var errLabInvalid = errors.New("lab scenario files with problems")
