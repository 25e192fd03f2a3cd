//go:build !linux

package lab

import (
	"context"
	"errors"
	"fmt"
)

// Run needs Linux (network namespaces, TUN).
func Run(ctx context.Context, s Scenario, opt Options) (Result, error) {
	return Result{}, fmt.Errorf("lab: %w: needs Linux", errors.ErrUnsupported)
}
