package daemon_test

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"vnic/vnic/kerneltest"
)

// TestE2EWithoutRootTheAdviceWorks: `vnic up` (and `vnic lab run`) run
// by an ordinary user (nobody) must say what works: run it as root. Not
// `setcap cap_net_admin+ep`, with which it fails all the same (bind on
// /run/vnic: permission denied; --netns needs CAP_SYS_ADMIN). Each run is
// inside a throwaway namespace, so nothing it might create touches the
// host's network.
func TestE2EWithoutRootTheAdviceWorks(t *testing.T) {
	kerneltest.RequireRoot(t)
	setpriv := needTool(t, "setpriv")
	setcap := needTool(t, "setcap")
	ns := kerneltest.NewNetns(t)

	// A copy of the binary that nobody can run.
	dir, err := os.MkdirTemp("", "vnic-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "vnic")
	src, err := os.Open(vnicBinary(t))
	if err != nil {
		t.Fatal(err)
	}
	dst, err := os.OpenFile(bin, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err == nil {
		_, err = io.Copy(dst, src)
		dst.Close()
	}
	src.Close()
	if err != nil {
		t.Fatal(err)
	}

	asNobody := func(args ...string) string {
		t.Helper()
		out, err := run(t, 30*time.Second, "ip", append([]string{"netns", "exec", ns.Name, setpriv,
			"--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", bin, "up"}, args...)...)
		if err == nil {
			t.Fatalf("vnic up as nobody %v succeeded:\n%s", args, out)
		}
		return out
	}
	check := func(what, out string) {
		t.Helper()
		t.Logf("%s:\n%s", what, out)
		if !strings.Contains(out, "run it as root") || !strings.Contains(out, "sudo") {
			t.Errorf("%s: the error does not say to run it as root (sudo)", what)
		}
		if strings.Contains(out, "setcap cap_net_admin+ep") {
			t.Errorf("%s: the error still recommends setcap cap_net_admin+ep, which does not work", what)
		}
	}
	check("as nobody", asNobody())
	out, err := run(t, 30*time.Second, "ip", "netns", "exec", ns.Name, setpriv,
		"--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", bin, "lab", "run", "tso-capture", "--out", dir)
	if err == nil {
		t.Fatalf("vnic lab run as nobody succeeded:\n%s", out)
	}
	check("vnic lab run as nobody", out)

	if out, err := run(t, 10*time.Second, setcap, "cap_net_admin+ep", bin); err != nil {
		t.Fatalf("setcap: %v\n%s", err, out)
	}
	out = asNobody()
	check("as nobody, cap_net_admin+ep", out)
	if strings.Contains(out, "permission denied") {
		t.Error("with cap_net_admin+ep it got as far as a permission error (the control socket): the preflight let it through")
	}
	check("as nobody, cap_net_admin+ep, --netns", asNobody("--netns", "vnic-nobody-never"))
}
