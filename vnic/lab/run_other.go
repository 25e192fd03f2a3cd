//go:build !linux

package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
)

// Options configure Run.
type Options struct {
	Out    string
	Stdout io.Writer
	Logger *slog.Logger
	Color  bool
}

// Result is a run's outcome.
type Result struct {
	Passed               bool
	Expectations, Failed int
	Pcap, Report         string
	Namespaces           []string
}

// Run needs Linux (network namespaces, TUN).
func Run(ctx context.Context, s Scenario, opt Options) (Result, error) {
	return Result{}, fmt.Errorf("lab: %w: needs Linux", errors.ErrUnsupported)
}
