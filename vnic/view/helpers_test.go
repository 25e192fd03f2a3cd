package view

import (
	"bytes"
	"encoding/binary"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"

	"vnic/vnic/capture"
	"vnic/vnic/pkttest"
	"vnic/vnic/virtio"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// t0 is the synthetic captures' start.
var t0 = time.Date(2026, 1, 2, 10, 0, 0, 0, time.UTC)

func at(us int) time.Time { return t0.Add(time.Duration(us) * time.Microsecond) }

// recorder writes through the real capture.Writer and reads the result
// back, so the comments are exactly those capture writes.
type recorder struct {
	t   testing.TB
	buf bytes.Buffer
	w   *capture.Writer
}

func newRecorder(t testing.TB, ifnames ...string) *recorder {
	r := &recorder{t: t}
	w, err := capture.New(&r.buf, capture.Options{Block: true, Ifnames: ifnames})
	if err != nil {
		t.Fatal(err)
	}
	r.w = w
	return r
}

func (r *recorder) records() []capture.Record {
	r.t.Helper()
	if err := r.w.Close(); err != nil {
		r.t.Fatal(err)
	}
	recs, err := capture.Read(&r.buf)
	if err != nil {
		r.t.Fatal(err)
	}
	return recs
}

const isn = 1000000 // the client's initial sequence number

// tsopt is the TCP timestamps option (padded to 12 bytes), which makes
// the MSS 1448 at MTU 1500.
var tsopt = []byte{1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2}

// segmentsOf cuts payload bytes starting at seq into wire segments of
// mss, as TSO does (PSH on the last, IP IDs counting up).
func segmentsOf(p pkttest.Packet, mss int) [][]byte {
	var out [][]byte
	pay := p.Payload
	for off := 0; off < len(pay); off += mss {
		end := min(off+mss, len(pay))
		s := p
		s.Seq = p.Seq + uint32(off)
		s.ID = p.ID + uint16(len(out))
		s.Payload = pay[off:end]
		s.Flags = p.Flags &^ pkttest.PSH
		if end == len(pay) {
			s.Flags = p.Flags
		}
		out = append(out, s.Build())
	}
	return out
}

// story1 records story 1 of docs/stories.md on a two-host lab: a0 sends 10,000
// bytes to b0 with GSO on: host-tx 7240 + 2760, the wire 6 × 1448 + 1312,
// b0's GRO merging them. comments says whether b0's wire packets name
// the host-rx packet they went into (otherwise the view must infer it).
func story1(t testing.TB, comments bool) []capture.Record {
	r := newRecorder(t, "a0", "b0")
	syn := pkttest.Packet{Seq: isn, Flags: pkttest.SYN, DF: true, ID: 1, TCPOptions: tsopt}
	b, _ := syn.BuildPartial()
	n := r.w.HostTX("a0", at(0), virtio.Hdr{Flags: virtio.FlagNeedsCsum, CsumStart: 20, CsumOffset: 16}, b)
	wb := syn.Build()
	r.w.Wire("a0", at(0), capture.Out, wb, capture.Origin{Kind: capture.FromHostTX, Super: n, Count: 1})
	r.w.Wire("b0", at(5), capture.In, wb, capture.Origin{})
	r.w.HostRX("b0", at(5), virtio.Hdr{Flags: virtio.FlagDataValid}, wb, 0, 1)

	data := pkttest.Payload(10000, 1)
	var wire [][]byte
	off := 0
	for i, size := range []int{7240, 2760} {
		p := pkttest.Packet{Seq: isn + 1 + uint32(off), Ack: 5000001, Flags: pkttest.ACK | pkttest.PSH, DF: true, ID: uint16(2 + off/1448), TCPOptions: tsopt, Payload: data[off : off+size]}
		super, h := p.BuildGSO(1448, false)
		ts := at(100 + 10*i)
		k := r.w.HostTX("a0", ts, h, super)
		segs := segmentsOf(p, 1448)
		for j, s := range segs {
			r.w.Wire("a0", ts, capture.Out, s, capture.Origin{Kind: capture.FromHostTX, Super: k, Index: j, Count: len(segs)})
		}
		wire = append(wire, segs...)
		off += size
	}
	// b0: GRO merges all seven into one packet.
	m := r.w.ReserveHostRX("b0")
	for j, s := range wire {
		o := capture.Origin{}
		if comments {
			o = capture.Origin{Kind: capture.IntoHostRX, Super: m, Index: j, Count: len(wire)}
		}
		r.w.Wire("b0", at(150), capture.In, s, o)
	}
	merged := pkttest.Packet{Seq: isn + 1, Ack: 5000001, Flags: pkttest.ACK | pkttest.PSH, DF: true, ID: 2, TCPOptions: tsopt, Payload: data}
	mb, mh := merged.BuildGSO(1448, false)
	r.w.HostRX("b0", at(150), mh, mb, m, len(wire))
	return r.records()
}

// icmpFragNeeded builds the ICMP "fragmentation needed" a router at from
// sends to the source of orig.
func icmpFragNeeded(from [4]byte, orig []byte, mtu int) []byte {
	ihl := int(orig[0]&0xf) * 4
	quote := orig[:min(len(orig), ihl+8)]
	b := make([]byte, 20+8+len(quote))
	b[0] = 0x45
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	b[8] = 64
	b[9] = 1
	copy(b[12:16], from[:])
	copy(b[16:20], orig[12:16])
	binary.BigEndian.PutUint16(b[10:], ^checksum.Checksum(b[:20], 0))
	m := b[20:]
	m[0], m[1] = 3, 4
	binary.BigEndian.PutUint16(m[6:], uint16(mtu))
	copy(m[8:], quote)
	binary.BigEndian.PutUint16(m[2:], ^checksum.Checksum(m, 0))
	return b
}

// story3 records a router's "fragmentation needed" (docs/stories.md, story
// 3) as the sender a0 sees it: a 2-segment super-packet goes out, and the
// router, having merged the segments with GRO, answers with ICMP frag
// needed, mtu 1500 quoting a 2948-byte packet.
func story3(t testing.TB) []capture.Record {
	r := newRecorder(t, "a0")
	p := pkttest.Packet{Seq: isn + 1, Ack: 1, Flags: pkttest.ACK | pkttest.PSH, DF: true, ID: 7, TCPOptions: tsopt, Payload: pkttest.Payload(2896, 3)}
	super, h := p.BuildGSO(1448, false)
	k := r.w.HostTX("a0", at(0), h, super)
	segs := segmentsOf(p, 1448)
	for j, s := range segs {
		r.w.Wire("a0", at(0), capture.Out, s, capture.Origin{Kind: capture.FromHostTX, Super: k, Index: j, Count: len(segs)})
	}
	icmp := icmpFragNeeded([4]byte{198, 18, 0, 254}, p.Build(), 1500)
	r.w.Wire("a0", at(80), capture.In, icmp, capture.Origin{})
	r.w.HostRX("a0", at(80), virtio.Hdr{}, icmp, 0, 1)
	// A wire packet the NIC dropped, with the note the daemon would add.
	d := pkttest.Packet{Seq: isn + 2897, Ack: 1, Flags: pkttest.ACK, DF: true, ID: 9, TCPOptions: tsopt, Payload: pkttest.Payload(100, 4)}
	k = r.w.HostTX("a0", at(200), virtio.Hdr{}, d.Build())
	r.w.Wire("a0", at(200), capture.Out, d.Build(), capture.Origin{Kind: capture.FromHostTX, Super: k, Count: 1, Note: "dropped: ttl exceeded"})
	return r.records()
}

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if string(want) != got {
		t.Errorf("%s differs (go test -update rewrites it); got:\n%s\nwant:\n%s", path, got, want)
	}
}
