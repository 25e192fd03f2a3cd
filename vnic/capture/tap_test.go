package capture

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"vnic/vnic/virtio"
)

// TestTap: a tap lists its NIC's three points; a client asking for the
// wire gets a live pcapng stream of the wire only, recorded while it
// reads; when it hangs up the NIC records nothing again.
func TestTap(t *testing.T) {
	dir := t.TempDir()
	c := NewNIC("vnic0")
	tap, err := ListenTap(filepath.Join(dir, "test.vnic0.tap"), "test daemon", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer tap.Close()
	tap.Add(c, "vnic0")
	all, err := ListTaps(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 3 || all[1].Name != "vnic0@wire" || all[1].Full != "test.vnic0/vnic0@wire" {
		t.Fatalf("ListTaps = %+v", all)
	}
	ti, err := FindTap(dir, "vnic0@wire")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := FindTap(dir, "vnic9@wire"); err == nil {
		t.Error("FindTap found a NIC that is not there")
	}
	rc, err := ti.Dial(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !c.Active() {
		if time.Now().After(deadline) {
			t.Fatal("the tap never attached to the NIC")
		}
		time.Sleep(time.Millisecond)
	}
	pkt := make([]byte, 60)
	pkt[0] = 0x45
	go func() {
		for i := range 5 {
			c.HostTX(time.Now(), virtio.Hdr{}, pkt)
			c.Wire(time.Now(), Out, pkt, Origin{Note: "n"})
			time.Sleep(time.Duration(i) * time.Millisecond)
		}
	}()
	var buf bytes.Buffer
	n, err := CopyBlocks(&buf, rc, 5)
	if err != nil || n != 5 {
		t.Fatalf("CopyBlocks = %d, %v", n, err)
	}
	rc.Close()
	recs, err := Read(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 5 {
		t.Fatalf("%d records, want 5", len(recs))
	}
	for _, r := range recs {
		if r.Point != Wire || r.Ifname != "vnic0" {
			t.Errorf("a %s@%s packet in a stream of vnic0@wire", r.Ifname, r.Point)
		}
	}
	for c.Active() {
		if time.Now().After(deadline) {
			t.Fatal("the NIC is still recorded after the client hung up")
		}
		time.Sleep(time.Millisecond)
	}
	if err := tap.Close(); err != nil {
		t.Fatal(err)
	}
	if all, _ := ListTaps(dir); len(all) != 0 {
		t.Errorf("a closed tap still answers: %+v", all)
	}
}
