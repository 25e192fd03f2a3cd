package lab

import (
	"io"
	"log/slog"
	"os"
	"time"
)

// Options configure Run.
type Options struct {
	// Out is the directory for <scenario>.pcapng and report.html
	// (default "lab-out"); created if missing. Both are created 0600 and
	// never through a symlink or into another user's file (safefile).
	Out string
	// Stdout receives the printed views (default os.Stdout).
	Stdout io.Writer
	// Logger receives the NICs' logs (default: warnings to stderr).
	Logger *slog.Logger
	// Color uses ANSI colours in the views.
	Color bool
	// Full prints every side-by-side row of every step (as the report
	// has them), not only those around the first interesting event.
	Full bool
	// Width is the terminal width the output fits in (default 100).
	Width int
}

func (o *Options) width() int {
	if o.Width <= 0 {
		return 100
	}
	return max(o.Width, 60)
}

func (o *Options) normalize() {
	if o.Out == "" {
		o.Out = "lab-out"
	}
	if o.Stdout == nil {
		o.Stdout = os.Stdout
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
}

// Result is a run's outcome.
type Result struct {
	// Passed: every expectation held.
	Passed bool
	// Expectations counts the expectations evaluated, Failed those that
	// did not hold.
	Expectations, Failed int
	// Pcap and Report are the files written (Pcap has every capture
	// point; the per-point files are beside it).
	Pcap, Report string
	// Steps are when each step's traffic ran: the records of step i are
	// those of Pcap stamped within Steps[i].
	Steps []StepWindow
	// Namespaces are the network namespaces the run created, one per host
	// (names unique to the run); every one is removed when Run returns.
	Namespaces []string
}

// StepWindow is the time a step's traffic (and its settling) took.
type StepWindow struct {
	Name       string
	Start, End time.Time
}
