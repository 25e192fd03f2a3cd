package kerneltest

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"vnic/vnic/pkttest"
	"vnic/vnic/virtio"
)

// tsOption is a TCP timestamp option with two NOPs: 12 bytes, what Linux
// puts on every segment of an established connection.
var tsOption = []byte{1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2}

// wireRun returns the wire packets a sender with MSS mss puts out for n
// payload bytes of p: IPv4 IDs and sequence numbers incrementing, PSH on
// the last, the payload continuing pkttest.Payload(n, 1).
func wireRun(p pkttest.Packet, n, mss int) [][]byte {
	all := pkttest.Payload(n, 1)
	var out [][]byte
	for i, off := 0, 0; off < n; i++ {
		m := min(mss, n-off)
		q := p
		q.ID = p.ID + uint16(i)
		q.Seq = p.Seq + uint32(off)
		q.Payload = all[off : off+m]
		if off+m < n {
			q.Flags &^= pkttest.PSH | pkttest.FIN
		}
		out = append(out, q.Build())
		off += m
	}
	return out
}

func ipv4ID(pkt []byte) uint16 { return binary.BigEndian.Uint16(pkt[4:]) }

func tcpFlags(pkt []byte) uint8 {
	l, _ := parse(pkt)
	return pkt[l.l4+13]
}

func TestNetnsIsRemovedAndThreadRestored(t *testing.T) {
	RequireRoot(t)
	before, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer before.Close()
	var name string
	t.Run("inner", func(t *testing.T) {
		n := NewNetns(t)
		name = n.Name
		if _, err := os.Stat(filepath.Join("/run/netns", name)); err != nil {
			t.Fatalf("namespace not mounted: %v", err)
		}
		var inside netns.NsHandle
		if err := n.Do(func() error {
			var err error
			inside, err = netns.Get()
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer inside.Close()
		if inside.Equal(before) {
			t.Error("Do ran in the test's own namespace")
		}
		if err := n.Sysctl("net.ipv4.ip_forward", "1"); err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile("/proc/sys/net/ipv4/ip_forward"); string(b) == "1\n" {
			t.Log("note: the host has ip_forward=1 too; the check below proves nothing")
		}
	})
	if _, err := os.Stat(filepath.Join("/run/netns", name)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("namespace %s still there after its test: %v", name, err)
	}
	now, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer now.Close()
	if !now.Equal(before) {
		t.Error("the test's thread was left in another namespace")
	}
}

// TestKernelTSODesignExample is the package doc's recipe: 10,000 bytes at
// gso_size 1448 come out as 6 × 1448 + 1312, IDs incrementing, PSH only on
// the last segment, checksums complete, TTL one lower.
func TestKernelTSODesignExample(t *testing.T) {
	o := NewGSO(t)
	p := pkttest.Packet{ID: 0x1234, Seq: 1000, Flags: pkttest.ACK | pkttest.PSH, Payload: pkttest.Payload(10000, 1)}
	b, h := p.BuildGSO(1448, false)
	fr, err := o.SegmentFrames(h, b)
	if err != nil {
		t.Fatal(err)
	}
	want := wireRun(pkttest.Packet{ID: 0x1234, Seq: 1000, TTL: 63, Flags: pkttest.ACK | pkttest.PSH}, 10000, 1448)
	if len(fr) != 7 {
		t.Fatalf("%d segments, want 7", len(fr))
	}
	for i, f := range fr {
		if f.Hdr != (virtio.Hdr{}) {
			t.Errorf("segment %d: header %v, want all zero", i, f.Hdr)
		}
		if err := pkttest.Verify(f.Pkt); err != nil {
			t.Errorf("segment %d: %v", i, err)
		}
		if d := DiffPackets(f.Pkt, want[i]); d != "" {
			t.Errorf("segment %d: %s", i, d)
		}
	}
	if n := PayloadLen(fr[6].Pkt); n != 1312 {
		t.Errorf("last segment carries %d bytes, want 1312", n)
	}
}

func TestKernelTSOIPv4IDWraps(t *testing.T) {
	o := NewGSO(t)
	p := pkttest.Packet{ID: 0xfffe, Flags: pkttest.ACK, Payload: pkttest.Payload(4000, 1)}
	b, h := p.BuildGSO(1000, false)
	got, err := o.Segment(h, b)
	if err != nil {
		t.Fatal(err)
	}
	wantIDs := []uint16{0xfffe, 0xffff, 0, 1}
	if len(got) != len(wantIDs) {
		t.Fatalf("%d segments, want %d", len(got), len(wantIDs))
	}
	for i, s := range got {
		if id := ipv4ID(s); id != wantIDs[i] {
			t.Errorf("segment %d: ID %#04x, want %#04x", i, id, wantIDs[i])
		}
	}
}

func TestKernelTSOCWROnFirstSegmentOnly(t *testing.T) {
	o := NewGSO(t)
	for _, ecn := range []bool{true, false} {
		p := pkttest.Packet{Flags: pkttest.ACK | pkttest.CWR | pkttest.ECE | pkttest.PSH | pkttest.FIN, Payload: pkttest.Payload(3000, 1)}
		b, h := p.BuildGSO(1000, ecn)
		got, err := o.Segment(h, b)
		if err != nil || len(got) != 3 {
			t.Fatalf("ecn=%v: %d segments, %v", ecn, len(got), err)
		}
		want := []uint8{
			pkttest.ACK | pkttest.CWR | pkttest.ECE,
			pkttest.ACK | pkttest.ECE,
			pkttest.ACK | pkttest.ECE | pkttest.PSH | pkttest.FIN,
		}
		for i, s := range got {
			if f := tcpFlags(s); f != want[i] {
				t.Errorf("ecn=%v segment %d: flags %#02x, want %#02x", ecn, i, f, want[i])
			}
		}
	}
}

func TestKernelUSOMaxSegments(t *testing.T) {
	o := NewGSO(t)
	p := pkttest.Packet{Proto: pkttest.ProtoUDP, ID: 0xfff0, Payload: pkttest.Payload(128, 1)}
	b, h := p.BuildGSO(1, false)
	got, err := o.Segment(h, b)
	if err != nil || len(got) != 128 {
		t.Fatalf("128 datagrams: got %d, %v", len(got), err)
	}
	if id := ipv4ID(got[127]); id != 0xfff0+127-0x10000 {
		t.Errorf("last datagram ID %#04x, want one per datagram", id)
	}
	p.Payload = pkttest.Payload(129, 1)
	b, h = p.BuildGSO(1, false)
	if got, err := o.Segment(h, b); !errors.Is(err, unix.EINVAL) {
		t.Errorf("129 datagrams: got %d, err %v; want EINVAL (UDP_MAX_SEGMENTS)", len(got), err)
	}
}

func TestKernelTSOTooSmallIsNotGSO(t *testing.T) {
	o := NewGSO(t)
	p := pkttest.Packet{Flags: pkttest.ACK | pkttest.PSH, Payload: pkttest.Payload(1448, 1)}
	b, h := p.BuildGSO(1448, false)
	got, err := o.Segment(h, b)
	if err != nil || len(got) != 1 {
		t.Fatalf("got %d packets, %v; want 1", len(got), err)
	}
	want := p
	want.TTL = 63
	if d := DiffPackets(got[0], want.Build()); d != "" {
		t.Error(d)
	}
}

func TestKernelTSOWrongFamilyDropped(t *testing.T) {
	o := NewGSO(t)
	p := pkttest.Packet{V6: true, Flags: pkttest.ACK, Payload: pkttest.Payload(3000, 1)}
	b, h := p.BuildGSO(1000, false)
	h.GSOType = virtio.GSOTCPv4
	got, err := o.Segment(h, b)
	if err != nil || len(got) != 0 {
		t.Errorf("IPv6 packet as TCPV4: got %d packets, err %v; want a silent drop", len(got), err)
	}
}

// TestKernelGRODesignExample is the package doc's recipe: the 7 segments of
// the TSO example merge into one 10,052-byte packet whose header says
// NEEDS_CSUM, TCPV4, gso_size 1448, csum_start 20, csum_offset 16, and
// hdr_len 1500 (the whole first packet).
func TestKernelGRODesignExample(t *testing.T) {
	o := NewGRO(t, GROOptions{})
	in := wireRun(pkttest.Packet{Flags: pkttest.ACK | pkttest.PSH, TCPOptions: tsOption, ID: 7, Seq: 1000}, 10000, 1448)
	fr, err := o.Coalesce(in)
	if err != nil {
		t.Fatal(err)
	}
	if len(fr) != 1 {
		t.Fatalf("%d frames, want 1", len(fr))
	}
	f := fr[0]
	wantHdr := virtio.Hdr{Flags: virtio.FlagNeedsCsum, GSOType: virtio.GSOTCPv4, HdrLen: 1500, GSOSize: 1448, CsumStart: 20, CsumOffset: 16}
	if f.Hdr != wantHdr {
		t.Errorf("header %v, want %v", f.Hdr, wantHdr)
	}
	want := pkttest.Packet{Flags: pkttest.ACK | pkttest.PSH, TCPOptions: tsOption, ID: 7, Seq: 1000, TTL: 63, Payload: pkttest.Payload(10000, 1)}
	wantPkt, _ := want.BuildPartial()
	if len(f.Pkt) != 10052 {
		t.Errorf("merged packet is %d bytes, want 10052", len(f.Pkt))
	}
	if d := DiffPackets(f.Pkt, wantPkt); d != "" {
		t.Errorf("merged packet: %s", d)
	}
	if err := pkttest.Verify(CompleteChecksum(f.Hdr, f.Pkt)); err != nil {
		t.Error(err)
	}
}

// TestKernelGROHeldFlushMergesWholeBatch checks that the held flush is
// reliable enough for differential tests: every batch merges completely.
func TestKernelGROHeldFlushMergesWholeBatch(t *testing.T) {
	o := NewGRO(t, GROOptions{})
	for _, c := range []struct {
		name    string
		p       pkttest.Packet
		n, mss  int
		batches int
	}{
		{"tcp4-14x1448", pkttest.Packet{Flags: pkttest.ACK}, 20000, 1448, 60},
		{"tcp6-45x1440", pkttest.Packet{V6: true, Flags: pkttest.ACK}, 64800, 1440, 20},
	} {
		in := wireRun(c.p, c.n, c.mss)
		for i := 0; i < c.batches; i++ {
			fr, err := o.Coalesce(in)
			if err != nil {
				t.Fatal(err)
			}
			if len(fr) != 1 {
				t.Errorf("%s batch %d: %d frames, want 1", c.name, i, len(fr))
			}
		}
	}
	t.Logf("batches redone because a tick came during the writes: %d", o.Retries())
}

func TestKernelGROStopsAt64K(t *testing.T) {
	o := NewGRO(t, GROOptions{})
	fr, err := o.Coalesce(wireRun(pkttest.Packet{Flags: pkttest.ACK}, 70000, 1000))
	if err != nil {
		t.Fatal(err)
	}
	if len(fr) != 2 || len(fr[0].Pkt) != 65040 || len(fr[1].Pkt) != 5040 {
		for _, f := range fr {
			t.Logf("%d bytes %v", len(f.Pkt), f.Hdr)
		}
		t.Errorf("want 65040 + 5040 bytes")
	}
}

func TestKernelGROUnmergedIsDataValid(t *testing.T) {
	o := NewGRO(t, GROOptions{})
	run := wireRun(pkttest.Packet{Flags: pkttest.ACK}, 3000, 1000)
	cwr := pkttest.Packet{Flags: pkttest.ACK | pkttest.CWR, ID: 1, Seq: 1000, Payload: pkttest.Payload(2000, 1)[1000:]}
	for _, c := range []struct {
		name string
		in   [][]byte
		want []virtio.Hdr
	}{
		{"single", run[:1], []virtio.Hdr{{Flags: virtio.FlagDataValid}}},
		{"pure-acks", [][]byte{(&pkttest.Packet{Flags: pkttest.ACK}).Build(), (&pkttest.Packet{Flags: pkttest.ACK}).Build()},
			[]virtio.Hdr{{Flags: virtio.FlagDataValid}, {Flags: virtio.FlagDataValid}}},
		{"cwr-alone-then-merge", [][]byte{run[0], cwr.Build(), run[2], wireRun(pkttest.Packet{Flags: pkttest.ACK}, 4000, 1000)[3]},
			[]virtio.Hdr{{Flags: virtio.FlagDataValid}, {Flags: virtio.FlagDataValid},
				{Flags: virtio.FlagNeedsCsum, GSOType: virtio.GSOTCPv4, GSOSize: 1000, CsumStart: 20, CsumOffset: 16, HdrLen: 1040}}},
		{"ipv4-options-never-validated", [][]byte{(&pkttest.Packet{IPOptions: []byte{1, 1, 1, 1}, Flags: pkttest.ACK, Payload: pkttest.Payload(100, 1)}).Build()},
			[]virtio.Hdr{{}}},
		{"bad-checksum", [][]byte{(&pkttest.Packet{Flags: pkttest.ACK, Payload: pkttest.Payload(100, 1), BadL4Checksum: true}).Build()},
			[]virtio.Hdr{{}}},
	} {
		fr, err := o.Coalesce(c.in)
		if err != nil {
			t.Fatal(err)
		}
		if len(fr) != len(c.want) {
			t.Errorf("%s: %d frames, want %d", c.name, len(fr), len(c.want))
			continue
		}
		for i := range fr {
			if fr[i].Hdr != c.want[i] {
				t.Errorf("%s: frame %d header %v, want %v", c.name, i, fr[i].Hdr, c.want[i])
			}
		}
	}
}

func TestKernelGROUDPNeedsForwardingFeature(t *testing.T) {
	in := wireRun(pkttest.Packet{Proto: pkttest.ProtoUDP}, 4500, 1000)
	for _, fwd := range []bool{false, true} {
		o := NewGRO(t, GROOptions{UDPGROForwarding: fwd})
		fr, err := o.Coalesce(in)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case fwd && (len(fr) != 1 || fr[0].Hdr.GSOType != virtio.GSOUDPL4 || len(fr[0].Pkt) != 4528):
			t.Errorf("rx-udp-gro-forwarding on: %d frames, first %v; want one 4528-byte UDP_L4", len(fr), fr[0].Hdr)
		case !fwd && len(fr) != len(in):
			t.Errorf("rx-udp-gro-forwarding off: %d frames, want %d", len(fr), len(in))
		}
	}
}

func TestKernelGROOffDeliversEachUnvalidated(t *testing.T) {
	o := NewGRO(t, GROOptions{DisableGRO: true})
	in := wireRun(pkttest.Packet{Flags: pkttest.ACK}, 3000, 1000)
	fr, err := o.Coalesce(in)
	if err != nil {
		t.Fatal(err)
	}
	if len(fr) != 3 {
		t.Fatalf("%d frames, want 3", len(fr))
	}
	for i, f := range fr {
		if f.Hdr != (virtio.Hdr{}) {
			t.Errorf("frame %d: header %v, want all zero", i, f.Hdr)
		}
		if d := DiffPackets(f.Pkt, AfterForwarding(in[i])); d != "" {
			t.Errorf("frame %d: %s", i, d)
		}
	}
}

func TestKernelGROFixedIDIsResegmented(t *testing.T) {
	o := NewGRO(t, GROOptions{})
	for _, df := range []bool{true, false} {
		in := wireRun(pkttest.Packet{Flags: pkttest.ACK, DF: df}, 3000, 1000)
		for i := range in {
			in[i][4], in[i][5] = 0, 5 // the same ID on every packet
			binary.BigEndian.PutUint16(in[i][10:], 0)
			binary.BigEndian.PutUint16(in[i][10:], ^sum16(in[i][:20]))
		}
		fr, err := o.Coalesce(in)
		if err != nil {
			t.Fatal(err)
		}
		if len(fr) != 3 {
			t.Fatalf("df=%v: %d frames, want 3", df, len(fr))
		}
		for i, f := range fr {
			want := virtio.Hdr{Flags: virtio.FlagNeedsCsum, CsumStart: 20, CsumOffset: 16}
			if f.Hdr != want {
				t.Errorf("df=%v frame %d: header %v, want %v", df, i, f.Hdr, want)
			}
			if d := DiffPackets(CompleteChecksum(f.Hdr, f.Pkt), AfterForwarding(in[i])); d != "" {
				t.Errorf("df=%v frame %d: %s", df, i, d)
			}
		}
	}
}

// TestKernelGROCWRNeverMerges: tcp_gro_receive flushes on CWR, so even a
// run in which every segment carries CWR is delivered segment by segment,
// validated (DATA_VALID) — not merged and re-segmented, which would leave
// the checksums partial (NEEDS_CSUM) as for a fixed-ID run.
func TestKernelGROCWRNeverMerges(t *testing.T) {
	o := NewGRO(t, GROOptions{})
	for _, v6 := range []bool{false, true} {
		in := wireRun(pkttest.Packet{V6: v6, Flags: pkttest.ACK | pkttest.CWR}, 3000, 1000)
		fr, err := o.Coalesce(in)
		if err != nil {
			t.Fatal(err)
		}
		if len(fr) != 3 {
			t.Fatalf("v6=%v: %d frames, want 3", v6, len(fr))
		}
		for i, f := range fr {
			if f.Hdr != (virtio.Hdr{Flags: virtio.FlagDataValid}) {
				t.Errorf("v6=%v frame %d: header %v, want data_valid only", v6, i, f.Hdr)
			}
			if d := DiffPackets(f.Pkt, AfterForwarding(in[i])); d != "" {
				t.Errorf("v6=%v frame %d: %s", v6, i, d)
			}
		}
	}
}
