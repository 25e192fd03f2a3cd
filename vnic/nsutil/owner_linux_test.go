package nsutil_test

import (
	"os"
	"testing"

	"vnic/vnic/kerneltest"
	"vnic/vnic/nsutil"
)

// ownedName returns a fresh namespace name and removes, at cleanup, the
// namespace and its record should a test leave them.
func ownedName(t *testing.T) string {
	t.Helper()
	kerneltest.RequireRoot(t)
	name := randomName(t)
	t.Cleanup(func() {
		if nsutil.Exists(name) {
			_ = nsutil.Delete(name)
		}
		_ = os.Remove(nsutil.RecordPath(name))
	})
	return name
}

func use(t *testing.T, name string) *nsutil.Lease {
	t.Helper()
	l, err := nsutil.Use(name, "nsutil test "+t.Name())
	if err != nil {
		t.Fatalf("Use(%s): %v", name, err)
	}
	t.Cleanup(func() { l.Release() })
	return l
}

func release(t *testing.T, l *nsutil.Lease, wantRemoved bool) {
	t.Helper()
	removed, err := l.Release()
	if err != nil || removed != wantRemoved {
		t.Fatalf("Release(%s): removed %v, %v; want removed %v", l.Name(), removed, err, wantRemoved)
	}
	if got := nsutil.Exists(l.Name()); got == wantRemoved {
		t.Errorf("after Release, Exists(%s) = %v", l.Name(), got)
	}
}

func recordExists(name string) bool {
	_, err := os.Stat(nsutil.RecordPath(name))
	return err == nil
}

// recreate does what someone else may do to the name at any time:
// ip netns del NAME; ip netns add NAME. The kernel usually gives the new
// namespace the old one's inode number.
func recreate(t *testing.T, name string) nsutil.ID {
	t.Helper()
	old, err := nsutil.Identify(name)
	if err != nil {
		t.Fatal(err)
	}
	ip(t, "netns", "del", name)
	ip(t, "netns", "add", name)
	id, err := nsutil.Identify(name)
	if err != nil {
		t.Fatal(err)
	}
	if id == old {
		t.Fatalf("the new namespace has the old one's ID %v", id)
	}
	t.Logf("old %v, new %v", old, id)
	return id
}

func TestUseCreatesAndLastReleaseRemoves(t *testing.T) {
	name := ownedName(t)
	l := use(t, name)
	if !l.Created() || !l.Owned() || l.Adopted() {
		t.Fatalf("created %v owned %v adopted %v; want true true false", l.Created(), l.Owned(), l.Adopted())
	}
	if r := l.Record(); r.Name != name || r.PID != os.Getpid() || r.Start == 0 || r.ID.Cookie == 0 {
		t.Errorf("record %+v", r)
	}
	if !recordExists(name) {
		t.Error("no record")
	}
	release(t, l, true)
	if recordExists(name) {
		t.Error("record left after the namespace was removed")
	}
	if removed, err := l.Release(); removed || err != nil {
		t.Errorf("second Release: %v, %v", removed, err)
	}
}

// TestUseNeverRemovesAForeignNamespace: a namespace made by ip netns add
// is used, not owned, and stays.
func TestUseNeverRemovesAForeignNamespace(t *testing.T) {
	name := ownedName(t)
	ip(t, "netns", "add", name)
	l := use(t, name)
	if l.Owned() || l.Created() {
		t.Fatalf("owned %v created %v for a namespace made by ip netns add", l.Owned(), l.Created())
	}
	release(t, l, false)
}

// TestTwoUsersTheLastRemoves: two daemons in one namespace; the one that
// created it stops first.
func TestTwoUsersTheLastRemoves(t *testing.T) {
	name := ownedName(t)
	a := use(t, name)
	b := use(t, name)
	if !b.Owned() || b.Created() || b.Adopted() {
		t.Fatalf("second user: owned %v created %v adopted %v; want true false false", b.Owned(), b.Created(), b.Adopted())
	}
	release(t, a, false)
	release(t, b, true)
}

// TestReleaseLeavesANamespaceReplacedMeanwhile: ip netns del; ip netns add
// while vnic uses the name.
func TestReleaseLeavesANamespaceReplacedMeanwhile(t *testing.T) {
	name := ownedName(t)
	l := use(t, name)
	id := recreate(t, name)
	release(t, l, false)
	if now, err := nsutil.Identify(name); err != nil || now != id {
		t.Errorf("the namespace at %s is %v (%v), want the new one %v", name, now, err, id)
	}
	if recordExists(name) {
		t.Error("record left")
	}
}

// TestUseAdoptsALeftover: the creator was killed; the next user adopts
// the namespace and removes it.
func TestUseAdoptsALeftover(t *testing.T) {
	name := ownedName(t)
	dead := use(t, name)
	dead.Abandon()
	l := use(t, name)
	if !l.Owned() || !l.Adopted() || l.Created() {
		t.Fatalf("owned %v adopted %v created %v; want true true false", l.Owned(), l.Adopted(), l.Created())
	}
	if l.Record().PID != os.Getpid() {
		t.Errorf("record %+v does not name the creator", l.Record())
	}
	release(t, l, true)
}

// TestUseDoesNotAdoptAReplacedLeftover: the creator was killed, then
// someone deleted the name and created their own namespace there.
func TestUseDoesNotAdoptAReplacedLeftover(t *testing.T) {
	name := ownedName(t)
	dead := use(t, name)
	dead.Abandon()
	recreate(t, name)
	l := use(t, name)
	if l.Owned() || l.Adopted() {
		t.Fatalf("owned %v adopted %v: someone else's namespace taken for vnic's leftover", l.Owned(), l.Adopted())
	}
	if recordExists(name) {
		t.Error("the stale record was kept")
	}
	release(t, l, false)
}

// TestUseAfterDeleteCreatesAnew: the name was deleted while vnic used it;
// the next Use creates a new namespace, and the old user's Release does
// not touch it.
func TestUseAfterDeleteCreatesAnew(t *testing.T) {
	name := ownedName(t)
	old := use(t, name)
	ip(t, "netns", "del", name)
	l := use(t, name)
	if !l.Created() || !l.Owned() {
		t.Fatalf("created %v owned %v; want a new namespace", l.Created(), l.Owned())
	}
	release(t, old, false)
	release(t, l, true)
}

func TestSweepRemovesOnlyAbandoned(t *testing.T) {
	dead, live, foreign, replaced := ownedName(t), ownedName(t), ownedName(t), ownedName(t)
	use(t, dead).Abandon()
	l := use(t, live)
	ip(t, "netns", "add", foreign)
	use(t, foreign)
	use(t, replaced).Abandon()
	recreate(t, replaced)
	mine := map[string]bool{dead: true, live: true, foreign: true, replaced: true}
	removed, err := nsutil.Sweep(func(r nsutil.Record) bool { return mine[r.Name] })
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 1 || removed[0].Name != dead {
		t.Errorf("Sweep removed %v, want only %s", removed, dead)
	}
	for _, n := range []string{live, foreign, replaced} {
		if !nsutil.Exists(n) {
			t.Errorf("Sweep removed %s", n)
		}
	}
	if nsutil.Exists(dead) || recordExists(dead) || recordExists(replaced) {
		t.Errorf("left: namespace %v, records %v %v", nsutil.Exists(dead), recordExists(dead), recordExists(replaced))
	}
	release(t, l, true)
}
