package safefile_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"vnic/vnic/safefile"
)

// nobody is the other user of these tests: files "planted" by someone
// else are chowned to it.
const nobody = 65534

// requireRoot skips a test that needs root (to give files to another
// user), failing instead with CI=true.
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

// stickyDir is a world-writable directory with the sticky bit, like /tmp.
func stickyDir(t *testing.T) string {
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

// precious is a file only its owner may write, with content that must
// survive.
func precious(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "shadow")
	if err := os.WriteFile(p, []byte("root:secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func unchanged(t *testing.T, p string) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil || string(b) != "root:secret\n" {
		t.Errorf("%s changed: %q, %v", p, b, err)
	}
}

func mustCreate(t *testing.T, p string) {
	t.Helper()
	f, err := safefile.Create(p, safefile.Perm)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("capture"); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode() != 0o600 {
		t.Errorf("%s has mode %v, want -rw-------", p, st.Mode())
	}
	if b, _ := os.ReadFile(p); string(b) != "capture" {
		t.Errorf("%s holds %q", p, b)
	}
}

func refused(t *testing.T, p, why string) {
	t.Helper()
	f, err := safefile.Create(p, safefile.Perm)
	if err == nil {
		f.Close()
		t.Fatalf("Create(%s) succeeded", p)
	}
	if !strings.Contains(err.Error(), why) {
		t.Errorf("Create(%s): %v; want it to say %q", p, err, why)
	}
	t.Log(err)
}

func TestCreateNewFileIs0600(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	mustCreate(t, filepath.Join(t.TempDir(), "x.pcapng"))
}

func TestCreateReplacesOwnFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "report.html")
	if err := os.WriteFile(p, []byte("an earlier run's report, longer than the new one"), 0o644); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, p)
}

func TestCreateRefusesSymlink(t *testing.T) {
	target := precious(t)
	p := filepath.Join(t.TempDir(), "vnic.pcapng")
	if err := os.Symlink(target, p); err != nil {
		t.Fatal(err)
	}
	refused(t, p, "is a symbolic link")
	unchanged(t, target)

	dangling := filepath.Join(t.TempDir(), "d.pcapng")
	nothing := filepath.Join(t.TempDir(), "created-through-the-link")
	if err := os.Symlink(nothing, dangling); err != nil {
		t.Fatal(err)
	}
	refused(t, dangling, "is a symbolic link")
	if _, err := os.Lstat(nothing); err == nil {
		t.Errorf("%s created through a dangling link", nothing)
	}
}

// TestCreateRefusesPlantedSymlinkInSticky: another user's link in /tmp
// pointing at root's file.
func TestCreateRefusesPlantedSymlinkInSticky(t *testing.T) {
	requireRoot(t)
	target := precious(t)
	p := filepath.Join(stickyDir(t), "vnic.pcapng")
	if err := os.Symlink(target, p); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(p, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	refused(t, p, "is a symbolic link")
	unchanged(t, target)
}

// TestCreateRefusesOtherUsersFile: a file another user made 0666 in
// advance, to receive the capture.
func TestCreateRefusesOtherUsersFile(t *testing.T) {
	requireRoot(t)
	p := filepath.Join(stickyDir(t), "vnic.pcapng")
	if err := os.WriteFile(p, []byte("root:secret\n"), 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(p, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	refused(t, p, "belongs to uid 65534")
	unchanged(t, p)
}

func TestCreateRefusesHardLink(t *testing.T) {
	target := precious(t)
	p := filepath.Join(filepath.Dir(target), "vnic.pcapng")
	if err := os.Link(target, p); err != nil {
		t.Fatal(err)
	}
	refused(t, p, "2 hard links")
	unchanged(t, target)
}

func TestCreateRefusesFIFOAndDirectory(t *testing.T) {
	d := t.TempDir()
	fifo := filepath.Join(d, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	refused(t, fifo, "not a regular file")
	refused(t, d, "not a regular file")
	refused(t, d+"/", "not a file name")
}

// TestCreateRefusesOtherUsersDirectoryLink: /tmp/lab planted as another
// user's link to a directory of root's.
func TestCreateRefusesOtherUsersDirectoryLink(t *testing.T) {
	requireRoot(t)
	rootDir := t.TempDir()
	link := filepath.Join(stickyDir(t), "lab")
	if err := os.Symlink(rootDir, link); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(link, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	refused(t, filepath.Join(link, "report.html"), "owned by uid 65534")
	if err := safefile.MkdirAll(filepath.Join(link, "sub"), 0o755); err == nil || !strings.Contains(err.Error(), "owned by uid 65534") {
		t.Errorf("MkdirAll through another user's link: %v", err)
	}
	if ents, _ := os.ReadDir(rootDir); len(ents) != 0 {
		t.Errorf("files created through the link: %v", ents)
	}
}

// TestCreateFollowsOwnLinks: links root made itself (/var/run → /run)
// are followed, relative and absolute.
func TestCreateFollowsOwnLinks(t *testing.T) {
	d := t.TempDir()
	if err := os.Mkdir(filepath.Join(d, "real"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("real", filepath.Join(d, "rel")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(d, "rel"), filepath.Join(d, "abs")); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, filepath.Join(d, "abs", "x.pcapng"))
	if _, err := os.Stat(filepath.Join(d, "real", "x.pcapng")); err != nil {
		t.Error(err)
	}
	loop := filepath.Join(d, "loop")
	if err := os.Symlink("loop", loop); err != nil {
		t.Fatal(err)
	}
	if _, err := safefile.Create(filepath.Join(loop, "x"), safefile.Perm); err == nil {
		t.Error("Create through a link loop succeeded")
	}
}

// TestCreateInOtherUsersDirectory: a directory another user owns (a
// home) is fine; what is in it is checked as anywhere.
func TestCreateInOtherUsersDirectory(t *testing.T) {
	requireRoot(t)
	d := filepath.Join(t.TempDir(), "home")
	if err := os.Mkdir(d, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(d, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, filepath.Join(d, "x.pcapng"))
}

func TestMkdirAll(t *testing.T) {
	d := filepath.Join(t.TempDir(), "a", "b", "c")
	if err := safefile.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := safefile.MkdirAll(d, 0o755); err != nil {
		t.Fatalf("again: %v", err)
	}
	if st, err := os.Stat(d); err != nil || !st.IsDir() {
		t.Fatalf("%s: %v", d, err)
	}
	f := filepath.Join(d, "file")
	mustCreate(t, f)
	if err := safefile.MkdirAll(f, 0o755); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("MkdirAll over a file: %v", err)
	}
	if _, err := safefile.Create(filepath.Join(t.TempDir(), "missing", "x"), safefile.Perm); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Create in a missing directory: %v", err)
	}
}

// TestCreateRelativePath: relative to the working directory.
func TestCreateRelativePath(t *testing.T) {
	t.Chdir(t.TempDir())
	if err := safefile.MkdirAll("lab-out", 0o755); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, "lab-out/report.html")
	mustCreate(t, "x.pcapng")
}
