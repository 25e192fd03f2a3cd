package lab

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"vnic/vnic/capture"
	"vnic/vnic/nsutil"
	"vnic/vnic/safefile"
)

// ownerPrefix starts what the namespace records of a lab run say created
// them: "vnic lab run NAME" (nsutil.Record.By).
const ownerPrefix = "vnic lab run "

// Clean removes the namespaces of lab runs that were killed (kill -9, a
// crash): namespaces `vnic lab run` created that no running process
// uses, of the given scenarios, or of all when none is given. It never
// touches a namespace vnic did not create (even one named like a lab's),
// nor one a running lab uses. It returns what it removed.
func Clean(scenarios ...string) ([]nsutil.Record, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("vnic lab clean needs root: run it as root, e.g. with sudo")
	}
	removed, err := nsutil.Sweep(func(r nsutil.Record) bool {
		name, ok := strings.CutPrefix(r.By, ownerPrefix)
		if !ok || !strings.HasPrefix(r.Name, "lab-") {
			return false
		}
		return len(scenarios) == 0 || slices.Contains(scenarios, name)
	})
	// The live taps killed runs left (lab-SCENARIO-SUFFIX.tap): a stale
	// socket of ours is removed, one that answers (a run going on) and
	// anything else left alone.
	taps, _ := filepath.Glob(filepath.Join(capture.TapDir, "lab-*.tap"))
	for _, p := range taps {
		id := strings.TrimSuffix(filepath.Base(p), ".tap")
		if len(scenarios) > 0 && !slices.ContainsFunc(scenarios, func(s string) bool { return strings.HasPrefix(id, "lab-"+s+"-") }) {
			continue
		}
		_ = safefile.RemoveStaleSocket(p)
	}
	return removed, err
}

// cleanLeftovers is Clean of every scenario, before a run: it says on w
// what it removed, and logs a failure.
func cleanLeftovers(w io.Writer, log *slog.Logger) {
	removed, err := Clean()
	for _, r := range removed {
		fmt.Fprintf(w, "lab: removed %s, left by a run that was killed\n", r)
	}
	if err != nil {
		log.Warn("removing what killed lab runs left", "err", err)
	}
}
