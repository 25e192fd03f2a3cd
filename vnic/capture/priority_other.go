//go:build !linux

package capture

import "log/slog"

// priority is a no-op where the writer's thread priority is not managed.
type priority struct{}

func newPriority(*slog.Logger) *priority { return &priority{} }

func (*priority) set(bool) {}
