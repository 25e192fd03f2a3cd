package safefile

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ErrSocketInUse is wrapped by ListenUnix and RemoveStaleSocket when a
// process answers on the socket at the path.
var ErrSocketInUse = errors.New("a process answers on the socket")

// ListenUnix listens on the unix socket path, mode 0600. A socket a
// killed process of ours left there is replaced; nothing else at path is
// touched (RemoveStaleSocket). Closing the listener removes the socket,
// if the socket at path is still this one.
func ListenUnix(path string) (net.Listener, error) {
	if err := RemoveStaleSocket(path); err != nil {
		return nil, err
	}
	old := syscall.Umask(0o077) // owner only: the socket is created 0600
	l, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("socket %s: %w", path, err)
	}
	ul := l.(*net.UnixListener)
	ul.SetUnlinkOnClose(false) // Close removes it, only if still ours
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		ul.Close()
		return nil, fmt.Errorf("socket %s: %w", path, err)
	}
	return &unixListener{UnixListener: ul, path: path, dev: st.Dev, ino: st.Ino}, nil
}

type unixListener struct {
	*net.UnixListener
	path     string
	dev, ino uint64
}

// Close stops listening and removes the socket file, unless something
// else has taken its place.
func (l *unixListener) Close() error {
	err := l.UnixListener.Close()
	var st unix.Stat_t
	if unix.Lstat(l.path, &st) == nil && st.Dev == l.dev && st.Ino == l.ino {
		_ = os.Remove(l.path)
	}
	return err
}

// RemoveStaleSocket makes room for a socket at path. Only a stale socket
// is removed: a socket (not a link to one), owned by this user, that
// refuses connections (nothing listens: its process was killed). A
// socket that answers is refused with ErrSocketInUse; anything else with
// an error that says what is there. No socket at path is no error.
func RemoveStaleSocket(path string) error {
	var st unix.Stat_t
	switch err := unix.Lstat(path, &st); {
	case err == unix.ENOENT:
		return nil
	case err != nil:
		return fmt.Errorf("socket %s: %w", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return fmt.Errorf("socket %s: the path holds %s, not a socket; vnic replaces only a socket a killed vnic left: remove it yourself, or choose another path",
			path, kind(st.Mode))
	}
	if int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("socket %s: the socket there belongs to uid %d; vnic replaces only its own: remove it yourself, or choose another path",
			path, st.Uid)
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("%w: %s", ErrSocketInUse, path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("socket %s: a socket is there and connecting to it failed (%v), so it may be a live process's: stop it, or remove the socket yourself", path, err)
	}
	var now unix.Stat_t
	if unix.Lstat(path, &now) != nil || now.Dev != st.Dev || now.Ino != st.Ino {
		return fmt.Errorf("socket %s: it changed while vnic checked it; try again", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("socket %s: removing the stale socket: %w", path, err)
	}
	return nil
}

// kind names a file type for messages.
func kind(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFREG:
		return "a regular file"
	case unix.S_IFDIR:
		return "a directory"
	case unix.S_IFLNK:
		return "a symbolic link"
	case unix.S_IFIFO:
		return "a FIFO"
	case unix.S_IFCHR, unix.S_IFBLK:
		return "a device"
	}
	return "something"
}
