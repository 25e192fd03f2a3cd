package capture

import (
	"os"
	"path/filepath"
	"testing"
)

// The capture is written by a root daemon at a path a user chose, often
// in /tmp (README: --pcap /tmp/vnic.pcapng). Another user must not be
// able to aim it at a file of root's, or to receive it.

const nobody = 65534 // the other user

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("needs root to create another user's files (CI=true, refusing to skip)")
	}
	t.Skip("needs root to create another user's files: run the tests as root")
}

// sticky returns a directory like /tmp: world-writable, sticky.
func sticky(t *testing.T) string {
	t.Helper()
	d := filepath.Join(t.TempDir(), "tmp")
	if err := os.Mkdir(d, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(d, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	return d
}

// TestCreateDoesNotFollowAPlantedSymlink: another user links
// /tmp/vnic.pcapng to a file only root may write.
func TestCreateDoesNotFollowAPlantedSymlink(t *testing.T) {
	requireRoot(t)
	secret := filepath.Join(t.TempDir(), "shadow")
	if err := os.WriteFile(secret, []byte("root:secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(sticky(t), "vnic.pcapng")
	if err := os.Symlink(secret, p); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(p, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	w, err := Create(p, Options{})
	if err == nil {
		w.Close()
		t.Error("Create wrote through another user's symlink")
	} else {
		t.Log(err)
	}
	if b, _ := os.ReadFile(secret); string(b) != "root:secret\n" {
		t.Errorf("the file behind the link now holds %q", b)
	}
}

// TestCreateDoesNotWriteIntoAnotherUsersFile: another user creates
// /tmp/vnic.pcapng 0666 in advance, to read the capture (payloads
// included).
func TestCreateDoesNotWriteIntoAnotherUsersFile(t *testing.T) {
	requireRoot(t)
	p := filepath.Join(sticky(t), "vnic.pcapng")
	if err := os.WriteFile(p, nil, 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(p, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	w, err := Create(p, Options{})
	if err == nil {
		w.Close()
		t.Error("Create wrote the capture into another user's file")
	} else {
		t.Log(err)
	}
	if st, err := os.Stat(p); err != nil || st.Size() != 0 {
		t.Errorf("the other user's file: %v, %v", st.Size(), err)
	}
}

// TestCreateIsOwnerOnly: captures hold payloads: 0600, whatever the umask,
// also when an earlier run's file was 0644.
func TestCreateIsOwnerOnly(t *testing.T) {
	p := filepath.Join(t.TempDir(), "vnic.pcapng")
	for _, existing := range []bool{false, true} {
		if existing {
			if err := os.Chmod(p, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		w, err := Create(p, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if st, err := os.Stat(p); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("existing %v: mode %v, %v; want 0600", existing, st.Mode(), err)
		}
	}
}
