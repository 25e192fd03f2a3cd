package lab

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"vnic/vnic/kerneltest"
)

// TestOutDoesNotFollowAPlantedReportSymlink: --out is a directory where
// another user planted report.html as a link to a file only root may
// write. The run must not write through it; what it writes is 0600.
func TestOutDoesNotFollowAPlantedReportSymlink(t *testing.T) {
	if testing.Short() {
		t.Skip("root lab run")
	}
	kerneltest.RequireRoot(t)
	const nobody = 65534
	secret := filepath.Join(t.TempDir(), "shadow")
	if err := os.WriteFile(secret, []byte("root:secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "lab-out")
	if err := os.Mkdir(out, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(out, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	planted := filepath.Join(out, "report.html")
	if err := os.Symlink(secret, planted); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(planted, nobody, nobody); err != nil {
		t.Fatal(err)
	}

	s, _ := Lookup("tso-capture")
	s.Name = "tso-capture-outfiles"
	res, err := Run(t.Context(), s, Options{Out: out, Stdout: &bytes.Buffer{}})
	if err == nil {
		t.Error("the run wrote report.html through another user's symlink")
	} else {
		t.Log(err)
	}
	if b, _ := os.ReadFile(secret); string(b) != "root:secret\n" {
		t.Errorf("the file behind the link now holds %d bytes: %.60q", len(b), b)
	}
	pcap := filepath.Join(out, s.Name+".pcapng")
	if st, err := os.Stat(pcap); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("%s: %v, %v; want mode 0600", pcap, st.Mode(), err)
	}
	if got := leftovers(res); len(got) != 0 || len(res.Namespaces) == 0 {
		t.Errorf("namespaces left: %v (of %v)", got, res.Namespaces)
	}
}
