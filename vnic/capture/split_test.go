package capture

import (
	"bytes"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"vnic/vnic/virtio"
)

// TestPointFiles: with PointFile, Close splits the file Create named
// (every point, in time order, as without PointFile) into a file per
// capture point of every NIC, holding exactly that point's packets.
func TestPointFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "lab.pcapng")
	w, err := Create(path, Options{Ifnames: []string{"vnic0"}, Block: true, Comment: "split test", PointFile: PointPath(path, true)})
	if err != nil {
		t.Fatal(err)
	}
	ws := record(t, w)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	recs, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != len(ws) {
		t.Fatalf("merged file: %d records, want %d", len(recs), len(ws))
	}
	for i, r := range recs {
		w := ws[i]
		if r.Ifname != w.ifname || r.Point != w.point || !r.TS.Equal(w.ts) || r.Comment != w.comment || !bytes.Equal(r.Data, w.data) || r.Dir != w.dir {
			t.Errorf("merged record %d = %s@%s %v %q, want %s %v %q", i, r.Ifname, r.Point, r.TS, r.Comment, w.intf, w.ts, w.comment)
		}
	}
	for _, tc := range []struct {
		file string
		n    int
	}{
		{"lab.vnic0.host-tx.pcapng", 1}, {"lab.vnic0.wire.pcapng", 10}, {"lab.vnic0.host-rx.pcapng", 1},
		{"lab.vnic1.host-tx.pcapng", 1}, {"lab.vnic1.wire.pcapng", 1}, {"lab.vnic1.host-rx.pcapng", 1},
	} {
		rs, err := ReadFile(filepath.Join(dir, tc.file))
		if err != nil {
			t.Errorf("%s: %v", tc.file, err)
			continue
		}
		if len(rs) != tc.n {
			t.Errorf("%s: %d packets, want %d", tc.file, len(rs), tc.n)
		}
		want := strings.TrimSuffix(strings.TrimPrefix(tc.file, "lab."), ".pcapng")
		for _, r := range rs {
			if got := r.Ifname + "." + r.Point.String(); got != want {
				t.Errorf("%s holds a packet of %s", tc.file, got)
			}
		}
	}
}

// TestReorder: packets handed over out of timestamp order (two goroutines
// each stamping a batch with its start) are written in time order; one
// later than the reorder window keeps the file in order with a moved
// timestamp and a comment that says so.
func TestReorder(t *testing.T) {
	var buf bytes.Buffer
	w, err := New(&buf, Options{Ifnames: []string{"vnic0"}, Block: true, Reorder: time.Hour, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	pkt := make([]byte, 60)
	pkt[0] = 0x45
	now := time.Now()
	for _, us := range []int{30, 10, 20, 50, 40} {
		w.Wire("vnic0", now.Add(time.Duration(us)*time.Microsecond), Out, pkt, Origin{})
		time.Sleep(2 * time.Millisecond) // the writer drains each on its own
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	recs, err := Read(&buf)
	if err != nil {
		t.Fatal(err)
	}
	for i, us := range []int{10, 20, 30, 40, 50} {
		if got := recs[i].TS.Sub(now); got != time.Duration(us)*time.Microsecond {
			t.Errorf("record %d at +%v, want +%dµs", i, got, us)
		}
	}

	// A packet that arrives after its successors were written.
	buf.Reset()
	w, err = New(&buf, Options{Ifnames: []string{"vnic0"}, Block: true, Reorder: time.Nanosecond, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	w.Wire("vnic0", base.Add(50*time.Microsecond), Out, pkt, Origin{})
	for w.Stats().Written == 0 {
		w.wake()
		time.Sleep(time.Millisecond)
	}
	w.Wire("vnic0", base.Add(20*time.Microsecond), Out, pkt, Origin{})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	recs, err = Read(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || !recs[1].TS.Equal(recs[0].TS) || !strings.Contains(recs[1].Comment, "recorded late: stamped +30µs") {
		t.Fatalf("late packet: %+v", recs)
	}
	if s := w.Stats(); s.Late != 1 {
		t.Errorf("Stats.Late = %d, want 1", s.Late)
	}
}

// TestAttach: a NIC nothing records costs nothing and numbers nothing; a
// second writer attached to it (a live tap of one point) gets that point
// only, while the first keeps getting everything; detached, it gets
// nothing more.
func TestAttach(t *testing.T) {
	c := NewNIC("vnic0")
	if c.Active() || c.HostTX(base, virtio.Hdr{}, make([]byte, 40)) != 0 {
		t.Fatal("a NIC nothing records numbers its packets")
	}
	var file, live bytes.Buffer
	fw, err := New(&file, Options{Sources: []Source{{NIC: c}}, Block: true})
	if err != nil {
		t.Fatal(err)
	}
	lw, err := New(&live, Options{Sources: []Source{{NIC: c, Points: []Point{Wire}}}, Block: true})
	if err != nil {
		t.Fatal(err)
	}
	pkt := make([]byte, 60)
	pkt[0] = 0x45
	n := c.HostTX(base, virtio.Hdr{}, pkt)
	c.Wire(base, Out, pkt, Origin{Kind: FromHostTX, Super: n, Count: 1})
	if err := lw.Close(); err != nil {
		t.Fatal(err)
	}
	c.Wire(base.Add(time.Microsecond), In, pkt, Origin{})
	if err := fw.Close(); err != nil {
		t.Fatal(err)
	}
	if c.Active() {
		t.Error("closed writers still attached")
	}
	f, _ := Read(&file)
	l, _ := Read(&live)
	if len(f) != 3 || len(l) != 1 || l[0].Point != Wire || l[0].Comment != "out: segment 1/1 of host-tx #1" {
		t.Fatalf("file %d records, live %d records %+v", len(f), len(l), l)
	}
}
