package daemon_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"vnic/vnic/capture"
	"vnic/vnic/daemon"
	"vnic/vnic/kerneltest"
	"vnic/vnic/nsutil"
)

// cliDaemon is `vnic up` running as a child process.
type cliDaemon struct {
	cmd    *exec.Cmd
	out    *logBuf
	waited chan error
}

// startCLI starts `vnic up args...` and waits until its control socket
// answers. The process is killed (by its PID) at cleanup if still running.
func startCLI(t *testing.T, ns string, args ...string) *cliDaemon {
	t.Helper()
	c := &cliDaemon{out: &logBuf{}, waited: make(chan error, 1)}
	c.cmd = exec.Command(vnicBinary(t), append([]string{"up", "--netns", ns, "--log-level", "debug"}, args...)...)
	c.cmd.Stdout, c.cmd.Stderr = c.out, c.out
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { c.waited <- c.cmd.Wait() }()
	t.Cleanup(func() {
		select {
		case <-c.waited:
		default:
			// By its PID: SIGTERM (it removes its namespace), then
			// SIGKILL if it does not exit.
			_ = c.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-c.waited:
			case <-time.After(5 * time.Second):
				_ = c.cmd.Process.Kill()
				<-c.waited
			}
		}
		if t.Failed() {
			t.Logf("vnic up output:\n%s", c.out.String())
		}
	})
	ctl := daemon.ControlPath(ns, "vnic0")
	ok := waitFor(10*time.Second, func() bool {
		select {
		case err := <-c.waited:
			c.waited <- err
			return true
		default:
		}
		_, err := daemon.ReadStats(ctl)
		return err == nil
	})
	if _, err := daemon.ReadStats(ctl); !ok || err != nil {
		t.Fatalf("vnic up --netns %s did not come up: %v\n%s", ns, err, c.out.String())
	}
	return c
}

// signal sends sig to the process by its PID and waits up to 10 s for
// it to exit, returning its exit status.
func (c *cliDaemon) signal(t *testing.T, sig syscall.Signal) error {
	t.Helper()
	if err := c.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("kill -%d %d: %v", sig, c.cmd.Process.Pid, err)
	}
	select {
	case err := <-c.waited:
		c.waited <- err
		return err
	case <-time.After(10 * time.Second):
		t.Fatalf("vnic up (pid %d) still running 10 s after signal %v\n%s", c.cmd.Process.Pid, sig, c.out.String())
		return nil
	}
}

func TestE2EKill9LeavesNothingToTripOver(t *testing.T) {
	kerneltest.RequireRoot(t)
	ns := uniqueNetns(t)
	ctl := daemon.ControlPath(ns, "vnic0")

	first := startCLI(t, ns)
	ping(t, ns, "198.18.0.2")
	err := first.signal(t, syscall.SIGKILL)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("vnic up after SIGKILL: %v", err)
	}
	// What kill -9 leaves: the namespace and a dead control socket (the
	// TUN went with the process's file descriptor).
	if !nsutil.Exists(ns) {
		t.Fatalf("namespace %s gone after kill -9: the test cannot check adoption", ns)
	}
	if _, err := os.Stat(ctl); err != nil {
		t.Logf("no stale control socket after kill -9 (%v)", err)
	}
	if out, err := run(t, 10*time.Second, "ip", "-n", ns, "link", "show", "vnic0"); err == nil {
		t.Errorf("vnic0 still exists after kill -9:\n%s", out)
	}

	// Again: it must start, adopt the namespace, work, and remove it on
	// SIGTERM.
	second := startCLI(t, ns)
	ping(t, ns, "198.18.0.2")
	out := nsExec(t, ns, "curl", "-sS", "-o", "/dev/null", "-w", "%{size_download}", "http://198.18.0.2/bytes/200000")
	if out != "200000" {
		t.Errorf("curl through the second daemon: %q", out)
	}
	if err := second.signal(t, syscall.SIGTERM); err != nil {
		t.Errorf("vnic up after SIGTERM: %v", err)
	}
	if !strings.Contains(second.out.String(), "adopting a namespace left by a daemon that died") {
		t.Errorf("the second daemon did not say it adopted the namespace:\n%s", second.out.String())
	}
	if nsutil.Exists(ns) {
		t.Errorf("namespace %s still there after the second daemon's SIGTERM", ns)
	}
	for _, p := range []string{ctl, nsutil.RecordPath(ns)} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s left behind", p)
		}
	}
}

func TestE2ESIGTERMTearsDown(t *testing.T) {
	kerneltest.RequireRoot(t)
	ns := uniqueNetns(t)
	pcap := filepath.Join(t.TempDir(), "vnic.pcapng")
	c := startCLI(t, ns, "--pcap", pcap)

	out := nsExec(t, ns, "curl", "-sS", "-o", "/dev/null", "-w", "%{size_download}", "http://198.18.0.2/bytes/500000")
	if out != "500000" {
		t.Fatalf("curl: %q", out)
	}
	// The last thing before SIGTERM: one ping. Its reply must be in the
	// file, and so must everything counted until then.
	ping := nsExec(t, ns, "ping", "-c", "1", "-W", "3", "198.18.0.2")
	if !strings.Contains(ping, "1 received") {
		t.Fatalf("ping:\n%s", ping)
	}
	s, err := daemon.ReadStats(daemon.ControlPath(ns, "vnic0"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.signal(t, syscall.SIGTERM); err != nil {
		t.Fatalf("vnic up exit status after SIGTERM: %v (want 0)", err)
	}
	if nsutil.Exists(ns) {
		t.Errorf("namespace %s still there after SIGTERM", ns)
	}
	if _, err := os.Stat(daemon.ControlPath(ns, "vnic0")); err == nil {
		t.Errorf("control socket left after SIGTERM")
	}

	recs, err := capture.ReadFile(pcap)
	if err != nil {
		t.Fatalf("the pcap after SIGTERM: %v (%d records)", err, len(recs))
	}
	if s.Capture == nil || s.Capture.Dropped != 0 || uint64(len(recs)) < s.Capture.Written {
		t.Errorf("the pcap has %d records; before SIGTERM the daemon had written %+v", len(recs), s.Capture)
	}
	var lastReply, txFIN, rxFIN bool
	for _, r := range recs {
		p, ok := parse(r.Data)
		if !ok {
			continue
		}
		if p.proto == protoICMP && r.Point == capture.HostRX && r.Data[p.l4] == 0 {
			lastReply = true // echo reply
		}
		if p.proto == protoTCP && p.tcpFlags&tcpFIN != 0 {
			txFIN = txFIN || r.Point == capture.HostTX
			rxFIN = rxFIN || r.Point == capture.HostRX
		}
	}
	if !lastReply || !txFIN || !rxFIN {
		t.Errorf("the pcap lacks the last packets: ping reply on host-rx %v, curl's FIN on host-tx %v, the peer's on host-rx %v", lastReply, txFIN, rxFIN)
	}
	if n := uint64(len(recs)); n != s.HostTX.Packets+s.WireOut.Packets+s.WireIn.Packets+s.HostRX.Packets {
		t.Logf("the pcap has %d records; the counters at the last stat add up to %d (traffic after it is fine)",
			n, s.HostTX.Packets+s.WireOut.Packets+s.WireIn.Packets+s.HostRX.Packets)
	}
}
