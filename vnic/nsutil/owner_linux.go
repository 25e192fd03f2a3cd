package nsutil

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Ownership of named namespaces.
//
// vnic removes a named namespace only if vnic created it, and only when no
// vnic process uses it any more. When it creates one, it writes a Record
// (OwnerDir/NAME.netns.json) with the namespace's ID. Every process that uses a
// namespace vnic created holds a shared flock(2) on that record for as
// long as it runs; the kernel drops the lock when the process exits, also
// on kill -9, so "nobody holds the lock" means "no vnic process uses the
// namespace" — a reused PID cannot keep a leftover alive. The last user
// out (the one that can take the lock exclusively) removes the namespace,
// if the name still holds the namespace of the record, and the record.
// Every change happens under a lock on OwnerDir, so two processes never
// decide at once.
//
// A namespace vnic did not create (made by `ip netns add`, or by someone
// else after vnic's was deleted) has no record, or a record whose ID does
// not match: it is used and never removed.

// Lease is one process's use of a named namespace, from Use until Release.
type Lease struct {
	name    string
	f       *os.File // the record, flock(LOCK_SH) held; nil when not vnic's or released
	rec     Record
	owned   bool
	created bool
	adopted bool
}

// Name is the namespace's name.
func (l *Lease) Name() string { return l.name }

// Owned reports whether vnic created the namespace: then the last vnic
// process to release it removes it.
func (l *Lease) Owned() bool { return l.owned }

// Created reports whether Use created the namespace.
func (l *Lease) Created() bool { return l.created }

// Adopted reports whether the namespace is one vnic created whose users
// are all gone (killed): a leftover this lease now uses, and removes on
// Release unless another vnic process uses it by then. Record names the
// process that created it.
func (l *Lease) Adopted() bool { return l.adopted }

// Record is the namespace's ownership record; the zero Record unless
// Owned.
func (l *Lease) Record() Record { return l.rec }

// Use makes sure the named namespace exists and registers the calling
// process as one of its users, until Release:
//
//   - If there is no namespace of that name, Use creates it (ip netns add
//     NAME) and records it as vnic's: Created and Owned.
//   - If there is one that vnic created (the record's ID matches), the
//     caller joins its users: Owned, and Adopted if no process used it
//     (its creator was killed).
//   - Any other namespace of that name is someone else's: used, never
//     removed (not Owned).
//
// by says who uses it, for the record: "vnic up --name vnic0".
//
// Only names have owners: a namespace given by path (/proc/PID/ns/net)
// is never created or removed, so it needs no Use.
func Use(name, by string) (*Lease, error) {
	if err := validName(name); err != nil {
		return nil, err
	}
	lk, err := lockOwners()
	if err != nil {
		return nil, err
	}
	defer lk.Close()

	cur, exists, err := identify(name)
	if err != nil {
		return nil, err
	}
	f, rec, err := openRecord(name)
	if err != nil {
		return nil, err
	}
	if f != nil {
		free, err := tryLockExclusive(f, name)
		if err != nil {
			f.Close()
			return nil, err
		}
		if exists && rec.ID == cur {
			if err := unix.Flock(int(f.Fd()), unix.LOCK_SH); err != nil {
				f.Close()
				return nil, fmt.Errorf("nsutil: lock %s: %w", RecordPath(name), err)
			}
			return &Lease{name: name, f: f, rec: rec, owned: true, adopted: free}, nil
		}
		// The record is about a namespace that is no longer at this
		// name (deleted, perhaps created anew by someone else). Its
		// users, if any, find out when they release it.
		if free {
			_ = os.Remove(RecordPath(name))
		}
		f.Close()
	}
	if exists {
		return &Lease{name: name}, nil
	}
	created, err := Create(name)
	if err != nil {
		return nil, err
	}
	if !created { // someone else's, created just now
		return &Lease{name: name}, nil
	}
	id, _, err := identify(name)
	if err == nil {
		rec = Record{Name: name, ID: id, By: by, PID: os.Getpid(), Created: time.Now()}
		rec.Start, _ = procStart(os.Getpid())
		f, err = writeRecord(rec)
	}
	if err != nil {
		_ = Delete(name)
		return nil, err
	}
	return &Lease{name: name, f: f, rec: rec, owned: true, created: true}, nil
}

// Release ends the calling process's use of the namespace. If vnic
// created it and no other vnic process uses it, Release removes it (ip
// netns del NAME) — only if the name still holds the namespace vnic
// created — and reports removed. Release may be called more than once.
func (l *Lease) Release() (removed bool, err error) {
	if l == nil || l.f == nil {
		return false, nil
	}
	f := l.f
	l.f = nil
	defer f.Close()
	lk, err := lockOwners()
	if err != nil {
		return false, err
	}
	defer lk.Close()

	// Is the record still this one? A later Use replaces it when the name
	// was deleted and vnic created a new namespace there.
	var mine, now unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &mine); err != nil {
		return false, fmt.Errorf("nsutil: stat the record of %s: %w", l.name, err)
	}
	if err := unix.Lstat(RecordPath(l.name), &now); err != nil || mine.Dev != now.Dev || mine.Ino != now.Ino {
		return false, nil
	}
	last, err := tryLockExclusive(f, l.name)
	if err != nil || !last {
		return false, err
	}
	cur, exists, err := identify(l.name)
	if err == nil && exists && cur == l.rec.ID {
		if err := Delete(l.name); err != nil {
			return false, err // the record stays: the next Use or Sweep tries again
		}
		removed = true
	}
	_ = os.Remove(RecordPath(l.name))
	return removed, nil
}

// Sweep removes the namespaces vnic created that no process uses any
// more (their users were killed), among the records match accepts, and
// returns their records. A record whose namespace is gone, or was
// replaced by someone else's, is dropped without touching the namespace.
// Namespaces in use and namespaces vnic did not create are left alone.
func Sweep(match func(Record) bool) ([]Record, error) {
	lk, err := lockOwners()
	if err != nil {
		return nil, err
	}
	defer lk.Close()
	ents, err := os.ReadDir(OwnerDir)
	if err != nil {
		return nil, fmt.Errorf("nsutil: %w", err)
	}
	var removed []Record
	var errs []error
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), recordSuffix)
		if !ok || strings.HasPrefix(name, ".") || validName(name) != nil {
			continue
		}
		f, rec, err := openRecord(name)
		if err != nil || f == nil {
			continue
		}
		if rec.Name != name || !match(rec) {
			f.Close()
			continue
		}
		if free, err := tryLockExclusive(f, name); err != nil || !free {
			f.Close()
			continue
		}
		cur, exists, err := identify(name)
		if err == nil && exists && cur == rec.ID {
			if err := Delete(name); err != nil {
				errs = append(errs, err)
				f.Close()
				continue
			}
			removed = append(removed, rec)
		}
		_ = os.Remove(RecordPath(name))
		f.Close()
	}
	return removed, errors.Join(errs...)
}

// Identify returns the ID of the named namespace.
func Identify(name string) (ID, error) {
	if err := validName(name); err != nil {
		return ID{}, err
	}
	id, exists, err := identify(name)
	if err == nil && !exists {
		err = fmt.Errorf("nsutil: network namespace %q does not exist: %w", name, os.ErrNotExist)
	}
	return id, err
}

// identify returns the ID of the namespace mounted at Path(name), and
// exists=false if there is nothing there.
func identify(name string) (id ID, exists bool, err error) {
	p := Path(name)
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err == unix.ENOENT {
		return ID{}, false, nil
	}
	if err != nil {
		return ID{}, true, fmt.Errorf("nsutil: open %s: %w", p, err)
	}
	defer unix.Close(fd)
	var sfs unix.Statfs_t
	var st unix.Stat_t
	if unix.Fstatfs(fd, &sfs) != nil || sfs.Type != unix.NSFS_MAGIC || unix.Fstat(fd, &st) != nil {
		return ID{}, true, fmt.Errorf("nsutil: %s exists but is not a network namespace: remove it with `ip netns del %s`", p, name)
	}
	id = ID{Dev: st.Dev, Ino: st.Ino}
	// The cookie is read from a socket made inside the namespace.
	err = onFreshThread(func() (bool, error) {
		orig, err := netns.Get()
		if err != nil {
			return true, fmt.Errorf("nsutil: get current netns: %w", err)
		}
		defer orig.Close()
		if err := netns.Set(netns.NsHandle(fd)); err != nil {
			return true, fmt.Errorf("nsutil: enter netns %s: %w", name, err)
		}
		s, serr := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if serr == nil {
			id.Cookie, serr = unix.GetsockoptUint64(s, unix.SOL_SOCKET, unix.SO_NETNS_COOKIE)
			unix.Close(s)
		}
		if err := netns.Set(orig); err != nil {
			return false, fmt.Errorf("nsutil: leave netns %s: %w", name, err)
		}
		if serr != nil {
			return true, fmt.Errorf("nsutil: netns cookie of %s (SO_NETNS_COOKIE needs Linux 5.14): %w", name, serr)
		}
		return true, nil
	})
	return id, true, err
}

// lockOwners makes OwnerDir and locks it, waiting up to 30 s for another
// vnic process to finish its change. Close the directory to unlock. (The
// lock is on the directory, not a lock file, so nothing is left in it.)
func lockOwners() (*os.File, error) {
	if err := os.MkdirAll(OwnerDir, 0o700); err != nil {
		return nil, fmt.Errorf("nsutil: %w (vnic keeps its namespace records there; run as root)", err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(OwnerDir, &st); err != nil {
		return nil, fmt.Errorf("nsutil: %w", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR || (st.Uid != 0 && int(st.Uid) != os.Geteuid()) || st.Mode&0o022 != 0 {
		return nil, fmt.Errorf("nsutil: %s must be a directory only root can write (it is owned by uid %d, mode %o): remove it, vnic makes it anew",
			OwnerDir, st.Uid, st.Mode&0o7777)
	}
	p := OwnerDir
	f, err := os.OpenFile(p, os.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, fmt.Errorf("nsutil: %w", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if err != unix.EWOULDBLOCK || time.Now().After(deadline) {
			f.Close()
			if err == unix.EWOULDBLOCK {
				return nil, fmt.Errorf("nsutil: %s: another vnic process has held its lock for 30 s (stopped?): let it finish, or stop it", p)
			}
			return nil, fmt.Errorf("nsutil: lock %s: %w", p, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// tryLockExclusive takes f's lock exclusively if no one else holds it
// (free); when someone does, whatever lock f held is dropped.
func tryLockExclusive(f *os.File, name string) (free bool, err error) {
	switch err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err {
	case nil:
		return true, nil
	case unix.EWOULDBLOCK:
		return false, nil
	default:
		return false, fmt.Errorf("nsutil: lock %s: %w", RecordPath(name), err)
	}
}

// openRecord opens and reads name's record; f is nil if there is none.
// A record that does not parse comes back as the zero Record, which
// matches no namespace.
func openRecord(name string) (f *os.File, rec Record, err error) {
	f, err = os.OpenFile(RecordPath(name), os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil, rec, nil
	}
	if err != nil {
		return nil, rec, fmt.Errorf("nsutil: %w", err)
	}
	if json.NewDecoder(f).Decode(&rec) != nil {
		rec = Record{}
	}
	return f, rec, nil
}

// writeRecord writes rec to its file, replacing any there, and returns
// the file with the shared lock held.
func writeRecord(rec Record) (*os.File, error) {
	f, err := os.CreateTemp(OwnerDir, ".netns-record-*")
	if err != nil {
		return nil, fmt.Errorf("nsutil: %w", err)
	}
	b, _ := json.Marshal(rec)
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = unix.Flock(int(f.Fd()), unix.LOCK_SH)
	}
	if err == nil {
		err = os.Rename(f.Name(), RecordPath(rec.Name))
	}
	if err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, fmt.Errorf("nsutil: writing the record of %s: %w", rec.Name, err)
	}
	return f, nil
}

// procStart returns the start time of process pid, in clock ticks after
// boot: field 22 of /proc/PID/stat.
func procStart(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces and parentheses: count
	// from the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("nsutil: /proc/%d/stat: no ')'", pid)
	}
	f := strings.Fields(string(b[i+1:])) // from field 3 on
	if len(f) < 20 {
		return 0, fmt.Errorf("nsutil: /proc/%d/stat: %d fields", pid, len(f)+2)
	}
	return strconv.ParseUint(f[19], 10, 64)
}
