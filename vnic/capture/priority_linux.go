package capture

import (
	"log/slog"
	"runtime"
	"syscall"
)

// lowNice is the nice value of a writer that fell behind: the lowest CPU
// priority, about 1/70 of a nice-0 thread's share of a busy core.
const lowNice = 19

// priority lowers and restores the CPU priority of the writer goroutine's
// thread. newPriority locks the goroutine to its thread, so that the nice
// value stays with the writer and with nothing else; the thread ends with
// the goroutine (it is not unlocked), so no other goroutine inherits it.
type priority struct {
	tid    int
	normal int // the nice value the thread started with
	low    bool
	log    *slog.Logger
}

func newPriority(log *slog.Logger) *priority {
	runtime.LockOSThread()
	p := &priority{tid: syscall.Gettid(), log: log}
	// getpriority(2) returns 20-nice from the raw system call.
	if prio, err := syscall.Getpriority(syscall.PRIO_PROCESS, p.tid); err == nil {
		p.normal = 20 - prio
	}
	return p
}

// set lowers the priority when behind, and restores it otherwise.
func (p *priority) set(behind bool) {
	if behind == p.low || p.normal >= lowNice {
		return
	}
	nice := p.normal
	if behind {
		nice = lowNice
	}
	if err := syscall.Setpriority(syscall.PRIO_PROCESS, p.tid, nice); err != nil {
		// Raising it back needs CAP_SYS_NICE: stay low.
		p.log.Debug("capture writer: setpriority", "nice", nice, "err", err)
		return
	}
	p.low = behind
}
