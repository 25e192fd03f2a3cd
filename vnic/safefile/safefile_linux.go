package safefile

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Perm is the mode of the files vnic writes: its owner's only, since
// captures and reports hold packet payloads.
const Perm os.FileMode = 0o600

// maxLinks bounds the symbolic links followed while resolving one path,
// as the kernel's MAXSYMLINKS does.
const maxLinks = 40

// Create opens the file at path for writing, empty, with mode perm (Perm
// unless the caller has a reason): a new file, or one the caller created
// earlier, truncated. It refuses a symbolic link at path, a file another
// user owns, a file with more than one link and anything not a regular
// file, and reaches the directory through no symbolic link another user
// owns (see the package doc). Errors say what is wrong and what to do.
func Create(path string, perm os.FileMode) (*os.File, error) {
	dir, base := filepath.Split(filepath.Clean(path))
	if base == "" || base == "." || base == ".." || base == "/" || strings.HasSuffix(path, "/") {
		return nil, fmt.Errorf("%s: not a file name", path)
	}
	if dir == "" {
		dir = "."
	}
	dfd, err := openDir(dir, false, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(dfd)
	return createAt(dfd, path, base, perm)
}

// MkdirAll makes the directory path and any missing parents with mode
// perm, like os.MkdirAll, but reaches it through no symbolic link another
// user owns.
func MkdirAll(path string, perm os.FileMode) error {
	fd, err := openDir(path, true, perm)
	if err == nil {
		unix.Close(fd)
	}
	return err
}

func createAt(dfd int, path, base string, perm os.FileMode) (*os.File, error) {
	const flags = unix.O_WRONLY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	fd, err := unix.Openat(dfd, base, flags|unix.O_CREAT|unix.O_EXCL, uint32(perm.Perm()))
	if err == unix.EEXIST {
		// Something is there. Look before opening (a FIFO would block,
		// a device would be opened), then check again what was opened.
		var st unix.Stat_t
		if err := unix.Fstatat(dfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if err := reusable(path, &st); err != nil {
			return nil, err
		}
		fd, err = unix.Openat(dfd, base, flags|unix.O_NONBLOCK, 0)
		if err == nil {
			var now unix.Stat_t
			err = unix.Fstat(fd, &now)
			if err == nil && (now.Dev != st.Dev || now.Ino != st.Ino) {
				err = fmt.Errorf("%s was replaced while vnic opened it: choose a directory only you can write", path)
			} else if err == nil {
				err = reusable(path, &now)
			}
			if err == nil {
				err = unix.Ftruncate(fd, 0)
			}
			if err == nil {
				err = setBlocking(fd)
			}
			if err != nil {
				unix.Close(fd)
			}
		}
	}
	if err == unix.ELOOP {
		return nil, fmt.Errorf("%s is a symbolic link: vnic does not write through one (someone may have planted it); remove it or choose another path", path)
	}
	if err != nil {
		return nil, fmt.Errorf("creating %s: %w", path, pathErr(err))
	}
	// The mode is perm whatever the umask and whatever an earlier run
	// left.
	if err := unix.Fchmod(fd, uint32(perm.Perm())); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("chmod %s: %w", path, err)
	}
	return os.NewFile(uintptr(fd), path), nil
}

// reusable says why an existing file must not be written, if it must not.
func reusable(path string, st *unix.Stat_t) error {
	switch {
	case st.Mode&unix.S_IFMT == unix.S_IFLNK:
		return fmt.Errorf("%s is a symbolic link: vnic does not write through one (someone may have planted it); remove it or choose another path", path)
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		return fmt.Errorf("%s exists and is not a regular file: remove it or choose another path", path)
	case int(st.Uid) != os.Geteuid():
		return fmt.Errorf("%s exists and belongs to uid %d: vnic does not write into another user's file; remove it or choose another path", path, st.Uid)
	case st.Nlink != 1:
		return fmt.Errorf("%s has %d hard links: vnic does not write into a file linked elsewhere; remove it or choose another path", path, st.Nlink)
	}
	return nil
}

// openDir opens the directory path (O_PATH), walking it one component at
// a time from / (or the working directory): each step opens the next
// component relative to the previous one with O_NOFOLLOW, follows a
// symbolic link only if root or the caller owns it, and, with mkdir,
// makes a missing directory with mode perm.
func openDir(path string, mkdir bool, perm os.FileMode) (int, error) {
	const dirFlags = unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC
	start := "."
	if filepath.IsAbs(path) {
		start = "/"
	}
	fd, err := unix.Open(start, dirFlags, 0)
	if err != nil {
		return -1, fmt.Errorf("open %s: %w", start, err)
	}
	todo := strings.Split(path, "/")
	walked := start // for messages: the path as far as it went
	links := 0
	for len(todo) > 0 {
		c := todo[0]
		todo = todo[1:]
		if c == "" || c == "." {
			continue
		}
		next, err := unix.Openat(fd, c, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err == unix.ENOENT && mkdir {
			if err = unix.Mkdirat(fd, c, uint32(perm.Perm())); err == nil || err == unix.EEXIST {
				next, err = unix.Openat(fd, c, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			}
		}
		here := filepath.Join(walked, c)
		if err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("%s: %w", here, pathErr(err))
		}
		var st unix.Stat_t
		if err := unix.Fstat(next, &st); err != nil {
			unix.Close(fd)
			unix.Close(next)
			return -1, fmt.Errorf("%s: %w", here, err)
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			unix.Close(fd)
			fd, walked = next, here
		case unix.S_IFLNK:
			target, err := readLink(next)
			unix.Close(next)
			if err == nil && st.Uid != 0 && int(st.Uid) != os.Geteuid() {
				err = fmt.Errorf("%s is a symbolic link owned by uid %d: vnic does not follow another user's links (someone may have planted it); give the directory it points to (%s) if you trust it",
					here, st.Uid, target)
			}
			if links++; err == nil && links > maxLinks {
				err = fmt.Errorf("%s: %w", here, unix.ELOOP)
			}
			if err != nil {
				unix.Close(fd)
				return -1, err
			}
			if filepath.IsAbs(target) {
				unix.Close(fd)
				if fd, err = unix.Open("/", dirFlags, 0); err != nil {
					return -1, fmt.Errorf("open /: %w", err)
				}
				walked = "/"
			}
			todo = append(strings.Split(target, "/"), todo...)
		default:
			unix.Close(fd)
			unix.Close(next)
			return -1, fmt.Errorf("%s is not a directory", here)
		}
	}
	return fd, nil
}

// readLink reads the target of the symbolic link open (O_PATH) as fd.
func readLink(fd int) (string, error) {
	buf := make([]byte, unix.PathMax)
	n, err := unix.Readlinkat(fd, "", buf)
	if err != nil {
		return "", fmt.Errorf("readlink: %w", err)
	}
	return string(buf[:n]), nil
}

func setBlocking(fd int) error {
	fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err == nil {
		_, err = unix.FcntlInt(uintptr(fd), unix.F_SETFL, fl&^unix.O_NONBLOCK)
	}
	return err
}

// pathErr adds what to do to an errno (which errors.Is still matches
// against os.ErrNotExist and os.ErrPermission).
func pathErr(err error) error {
	switch err {
	case unix.ENOENT:
		return fmt.Errorf("%w (create the directory first)", err)
	case unix.EACCES, unix.EPERM:
		return fmt.Errorf("%w (run as root, or choose a directory you can write)", err)
	}
	return err
}
