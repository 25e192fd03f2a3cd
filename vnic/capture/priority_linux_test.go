package capture

import (
	"log/slog"
	"syscall"
	"testing"
)

// TestPriority: a writer that falls behind drops to nice 19 on its own
// thread, and goes back to where it was once it keeps up.
func TestPriority(t *testing.T) {
	nice := func(tid int) int {
		prio, err := syscall.Getpriority(syscall.PRIO_PROCESS, tid)
		if err != nil {
			t.Fatal(err)
		}
		return 20 - prio // the raw system call's value
	}
	got := make(chan [3]int)
	go func() {
		p := newPriority(slog.New(slog.DiscardHandler))
		var n [3]int
		n[0] = nice(p.tid)
		p.set(true)
		n[1] = nice(p.tid)
		p.set(false)
		n[2] = nice(p.tid)
		got <- n
	}()
	n := <-got
	if n[1] != lowNice {
		t.Errorf("behind: nice %d, want %d", n[1], lowNice)
	}
	if n[2] != n[0] && syscall.Geteuid() == 0 {
		t.Errorf("caught up: nice %d, want %d as before", n[2], n[0])
	}
}
