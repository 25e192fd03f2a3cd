package nsutil

import (
	"fmt"
	"path/filepath"
	"time"
)

// OwnerDir holds vnic's records of the named namespaces it created, one
// NAME.netns.json per namespace; a flock(2) on the directory orders
// changes to them. Only root (the daemon's user) can write it.
const OwnerDir = "/run/vnic"

// recordSuffix ends the name of every record file.
const recordSuffix = ".netns.json"

// RecordPath is the file that records the named namespace as vnic's:
// OwnerDir/NAME.netns.json.
func RecordPath(name string) string { return filepath.Join(OwnerDir, name+recordSuffix) }

// ID identifies one network namespace, not just its name: the device and
// inode of its nsfs file (what `stat -L /run/netns/NAME` shows) and its
// netns cookie (SO_NETNS_COOKIE). The kernel reuses a freed namespace's
// inode number at once (`ip netns del X; ip netns add X` often gives the
// new X the old inode), but never a cookie, so a name deleted and created
// anew by someone else never matches a record of the old one.
type ID struct {
	Dev    uint64 `json:"dev"`
	Ino    uint64 `json:"ino"`
	Cookie uint64 `json:"cookie"`
}

func (id ID) String() string {
	return fmt.Sprintf("dev %d ino %d cookie %d", id.Dev, id.Ino, id.Cookie)
}

// Record is what vnic writes down when it creates a named namespace.
type Record struct {
	// Name is the namespace's name under RunDir.
	Name string `json:"name"`
	// ID is the namespace's identity when it was created.
	ID ID `json:"id"`
	// By says what created it, e.g. "vnic up --name vnic0" or
	// "vnic lab run tso-capture".
	By string `json:"by"`
	// PID and Start name the process that created it: its PID and its
	// start time in clock ticks after boot (field 22 of /proc/PID/stat),
	// which together name one process even after the PID is reused.
	PID   int    `json:"pid"`
	Start uint64 `json:"start"`
	// Created is when.
	Created time.Time `json:"created"`
}

func (r Record) String() string {
	return fmt.Sprintf("%s (created by %s, pid %d, at %s)", r.Name, r.By, r.PID, r.Created.Format(time.DateTime))
}
