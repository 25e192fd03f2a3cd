package capture

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"vnic/vnic/pkttest"
	"vnic/vnic/virtio"
)

// want is one packet a test recorded, as it must read back.
type want struct {
	intf    string // pcapng interface name
	point   Point
	ifname  string
	ts      time.Time
	dir     Dir
	data    []byte
	comment string
}

var base = time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC)

// tcpSegments cuts a TCP payload into gso-size segments as TSO would:
// sequence numbers advance, IPv4 IDs increment, PSH only on the last.
func tcpSegments(p pkttest.Packet, gso int) [][]byte {
	var out [][]byte
	payload := p.Payload
	for off := 0; off < len(payload); off += gso {
		end := min(off+gso, len(payload))
		s := p
		s.Payload = payload[off:end]
		s.Seq = p.Seq + uint32(off)
		s.ID = p.ID + uint16(len(out))
		s.Flags = p.Flags &^ pkttest.PSH
		if end == len(payload) {
			s.Flags = p.Flags
		}
		out = append(out, s.Build())
	}
	return out
}

// record writes a small lab's worth of traffic into w and returns what
// must read back, in file order:
//   - vnic0 transmit: one IPv4 TSO super-packet of 10,000 bytes and its 7
//     wire segments;
//   - vnic0 receive: 3 IPv6 wire segments merged into one host-rx
//     super-packet;
//   - vnic1 (not named at creation): a UDP packet out, a dropped wire
//     packet with a note, a host-rx packet without a reserved number.
func record(t testing.TB, w *Writer) []want {
	t.Helper()
	var ws []want
	ts := base
	next := func() time.Time { ts = ts.Add(1500 * time.Nanosecond); return ts }

	tx := pkttest.Packet{Seq: 1000, Ack: 1, ID: 0x1234, DF: true, Flags: pkttest.ACK | pkttest.PSH, Payload: pkttest.Payload(10000, 1)}
	super, hdr := tx.BuildGSO(1448, false)
	at := next()
	n := w.HostTX("vnic0", at, hdr, super)
	if n != 1 {
		t.Fatalf("first HostTX number = %d, want 1", n)
	}
	ws = append(ws, want{"vnic0@host-tx", HostTX, "vnic0", at, Out, super,
		"host-tx #1: gso=tcpv4 gso_size=1448 hdr_len=40 csum_start=20 csum_offset=16 needs_csum"})
	segs := tcpSegments(tx, 1448)
	if len(segs) != 7 {
		t.Fatalf("%d segments, want 7", len(segs))
	}
	for i, s := range segs {
		at := next()
		w.Wire("vnic0", at, Out, s, Origin{Kind: FromHostTX, Super: n, Index: i, Count: len(segs)})
		ws = append(ws, want{"vnic0@wire", Wire, "vnic0", at, Out, s, fmt.Sprintf("out: segment %d/7 of host-tx #1", i+1)})
	}

	rx := pkttest.Packet{V6: true, Src: pkttest.DefaultDst6, Dst: pkttest.DefaultSrc6, SrcPort: 9, DstPort: 40000,
		Seq: 5000, Ack: 11000, Flags: pkttest.ACK, Payload: pkttest.Payload(3*1448, 2)}
	in := tcpSegments(rx, 1448)
	c := w.NIC("vnic0")
	r := c.ReserveHostRX()
	for i, s := range in {
		at := next()
		c.Wire(at, In, s, Origin{Kind: IntoHostRX, Super: r, Index: i, Count: len(in)})
		ws = append(ws, want{"vnic0@wire", Wire, "vnic0", at, In, s, fmt.Sprintf("in: merged into host-rx #1 (%d/3)", i+1)})
	}
	merged, mhdr := rx.BuildGSO(1448, false)
	at = next()
	if got := c.HostRX(at, mhdr, merged, r, len(in)); got != r {
		t.Fatalf("HostRX used number %d, want the reserved %d", got, r)
	}
	ws = append(ws, want{"vnic0@host-rx", HostRX, "vnic0", at, In, merged,
		"host-rx #1: merged 3 wire packets; gso=tcpv6 gso_size=1448 hdr_len=60 csum_start=40 csum_offset=16 needs_csum"})

	udp := pkttest.Packet{Proto: pkttest.ProtoUDP, Payload: pkttest.Payload(100, 3)}
	pkt, uhdr := udp.BuildPartial()
	at = next()
	w.HostTX("vnic1", at, uhdr, pkt)
	ws = append(ws, want{"vnic1@host-tx", HostTX, "vnic1", at, Out, pkt,
		"host-tx #1: gso=none gso_size=0 hdr_len=28 csum_start=20 csum_offset=6 needs_csum"})
	full := udp.Build()
	at = next()
	w.Wire("vnic1", at, Out, full, Origin{Note: "dropped: ttl exceeded"})
	ws = append(ws, want{"vnic1@wire", Wire, "vnic1", at, Out, full, "out: dropped: ttl exceeded"})
	at = next()
	w.HostRX("vnic1", at, virtio.Hdr{Flags: virtio.FlagDataValid}, full, 0, 1)
	ws = append(ws, want{"vnic1@host-rx", HostRX, "vnic1", at, In, full,
		"host-rx #1: merged 1 wire packet; gso=none gso_size=0 hdr_len=0 csum_start=0 csum_offset=0 data_valid"})
	return ws
}

// writeFile records the sample traffic into a new file, blocking so that
// nothing is dropped.
func writeFile(t *testing.T) (string, []want) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "vnic.pcapng")
	w, err := Create(path, Options{Ifnames: []string{"vnic0"}, Block: true, Comment: "capture test"})
	if err != nil {
		t.Fatal(err)
	}
	ws := record(t, w)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if s := w.Stats(); s.Written != uint64(len(ws)) || s.Dropped != 0 || s.Failed != 0 {
		t.Fatalf("Stats = %+v, want %d written and nothing lost", s, len(ws))
	}
	return path, ws
}

func TestRoundTripNgReader(t *testing.T) {
	path, ws := writeFile(t)
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewNgReader(f, pcapgo.NgReaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := r.SectionInfo(); got.Application != "vnic" || got.Comment != "capture test" {
		t.Errorf("section info = %+v", got)
	}
	var n int
	for ; ; n++ {
		data, ci, opts, err := r.ReadPacketDataWithOptions()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if n >= len(ws) {
			continue
		}
		w := ws[n]
		// The link type decodes as raw IP, v4 and v6.
		ipLayer := layers.LayerTypeIPv4
		if data[0]>>4 == 6 {
			ipLayer = layers.LayerTypeIPv6
		}
		if p := gopacket.NewPacket(data, LinkTypeDLTRaw, gopacket.Default); p.Layer(ipLayer) == nil {
			t.Errorf("packet %d: gopacket does not decode %v from link type %v: %v", n, ipLayer, LinkTypeDLTRaw, p.ErrorLayer())
		}
		intf, err := r.Interface(ci.InterfaceIndex)
		if err != nil {
			t.Fatal(err)
		}
		if intf.Name != w.intf {
			t.Errorf("packet %d: interface %q, want %q", n, intf.Name, w.intf)
		}
		if !ci.Timestamp.Equal(w.ts) {
			t.Errorf("packet %d: timestamp %v, want %v", n, ci.Timestamp, w.ts)
		}
		if !bytes.Equal(data, w.data) || ci.Length != len(w.data) {
			t.Errorf("packet %d: data differs (len %d/%d, want %d)", n, len(data), ci.Length, len(w.data))
		}
		if len(opts.Comments) != 1 || opts.Comments[0] != w.comment {
			t.Errorf("packet %d: comments %q, want %q", n, opts.Comments, w.comment)
		}
		wantDir := pcapgo.NgEpbFlagDirectionOutbound
		if w.dir == In {
			wantDir = pcapgo.NgEpbFlagDirectionInbound
		}
		if opts.Flags == nil || opts.Flags.Direction != wantDir {
			t.Errorf("packet %d: EPB flags %+v, want direction %v", n, opts.Flags, wantDir)
		}
	}
	if n != len(ws) {
		t.Errorf("read %d packets, want %d", n, len(ws))
	}

	// Interfaces: vnic0's three written at creation, vnic1's added lazily
	// before its first packet, all raw IP with a description, and the
	// statistics written by Close.
	wantIntf := []string{"vnic0@host-tx", "vnic0@wire", "vnic0@host-rx", "vnic1@host-tx", "vnic1@wire", "vnic1@host-rx"}
	if r.NInterfaces() != len(wantIntf) {
		t.Fatalf("%d interfaces, want %d", r.NInterfaces(), len(wantIntf))
	}
	wantRecv := []uint64{1, 10, 1, 1, 1, 1}
	for i, name := range wantIntf {
		intf, _ := r.Interface(i)
		if intf.Name != name || intf.LinkType != LinkTypeDLTRaw || !strings.HasPrefix(intf.Description, name[:5]+" ") {
			t.Errorf("interface %d = %q link type %v description %q; want %q, raw IP, a description", i, intf.Name, intf.LinkType, intf.Description, name)
		}
		if s := intf.Statistics; s.PacketsReceived != wantRecv[i] || s.PacketsDropped != 0 {
			t.Errorf("interface %s statistics: received %d dropped %d, want %d and 0", name, s.PacketsReceived, s.PacketsDropped, wantRecv[i])
		}
	}
}

func TestReadFile(t *testing.T) {
	path, ws := writeFile(t)
	recs, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != len(ws) {
		t.Fatalf("%d records, want %d", len(recs), len(ws))
	}
	for i, r := range recs {
		w := ws[i]
		if r.Point != w.point || r.Ifname != w.ifname || !r.TS.Equal(w.ts) || r.Len != len(w.data) ||
			r.Dir != w.dir || r.Comment != w.comment || !bytes.Equal(r.Data, w.data) {
			t.Errorf("record %d = {%v %s %v len %d %v %q}, want {%v %s %v len %d %v %q}", i,
				r.Point, r.Ifname, r.TS, r.Len, r.Dir, r.Comment, w.point, w.ifname, w.ts, len(w.data), w.dir, w.comment)
		}
	}
}

func TestReadTruncated(t *testing.T) {
	path, ws := writeFile(t)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := Read(bytes.NewReader(b[:len(b)/2]))
	if err == nil {
		t.Fatal("no error for a truncated file")
	}
	if len(recs) == 0 || len(recs) >= len(ws) {
		t.Fatalf("%d records from half a file of %d", len(recs), len(ws))
	}
}

func TestParseInterfaceName(t *testing.T) {
	for _, tc := range []struct {
		name, ifname string
		p            Point
		ok           bool
	}{
		{"vnic0@host-tx", "vnic0", HostTX, true},
		{"vnic0@wire", "vnic0", Wire, true},
		{"r1-eth0@host-rx", "r1-eth0", HostRX, true},
		{"a@b@wire", "a@b", Wire, true},
		{"eth0", "eth0", PointUnknown, false},
		{"eth0@other", "eth0@other", PointUnknown, false},
		{"@wire", "@wire", PointUnknown, false},
	} {
		ifname, p, ok := ParseInterfaceName(tc.name)
		if ifname != tc.ifname || p != tc.p || ok != tc.ok {
			t.Errorf("ParseInterfaceName(%q) = %q, %v, %v; want %q, %v, %v", tc.name, ifname, p, ok, tc.ifname, tc.p, tc.ok)
		}
	}
}

func TestCommentFormat(t *testing.T) {
	w := &Writer{hdrs: map[virtio.Hdr]string{}}
	tso := virtio.Hdr{Flags: virtio.FlagNeedsCsum, GSOType: virtio.GSOTCPv4 | virtio.GSOECN, HdrLen: 66, GSOSize: 1448, CsumStart: 20, CsumOffset: 16}
	for _, tc := range []struct {
		name string
		r    rec
		want string
	}{
		{"host-tx", rec{point: HostTX, super: 17, hdr: tso}, "host-tx #17: gso=tcpv4|ecn gso_size=1448 hdr_len=66 csum_start=20 csum_offset=16 needs_csum"},
		{"host-rx merged", rec{point: HostRX, super: 9, merged: 45, hdr: tso}, "host-rx #9: merged 45 wire packets; " + tso.String()},
		{"host-rx merged unknown", rec{point: HostRX, super: 9, hdr: virtio.Hdr{}}, "host-rx #9: " + virtio.Hdr{}.String()},
		{"wire segment", rec{point: Wire, dir: Out, origin: Origin{Kind: FromHostTX, Super: 17, Index: 1, Count: 4}}, "out: segment 2/4 of host-tx #17"},
		{"wire merged", rec{point: Wire, dir: In, origin: Origin{Kind: IntoHostRX, Super: 9, Index: 2, Count: 45}}, "in: merged into host-rx #9 (3/45)"},
		{"wire merged note", rec{point: Wire, dir: In, origin: Origin{Kind: IntoHostRX, Super: 9, Index: 0, Count: 1, Note: "CWR, flushed alone"}}, "in: merged into host-rx #9 (1/1); CWR, flushed alone"},
		{"wire plain", rec{point: Wire, dir: In}, "in"},
		{"wire note", rec{point: Wire, dir: Out, origin: Origin{Note: "dropped: mtu"}}, "out: dropped: mtu"},
	} {
		if got := string(w.appendComment(nil, &tc.r)); got != tc.want {
			t.Errorf("%s: comment %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestSnaplen(t *testing.T) {
	var buf bytes.Buffer
	w, err := New(&buf, Options{Snaplen: 96, Block: true})
	if err != nil {
		t.Fatal(err)
	}
	super, hdr := (&pkttest.Packet{Payload: pkttest.Payload(5000, 4)}).BuildGSO(1448, false)
	w.HostTX("vnic0", base, hdr, super)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	recs, err := Read(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0].Len != len(super) || !bytes.Equal(recs[0].Data, super[:96]) {
		t.Fatalf("records %+v: want one packet of length %d with its first 96 bytes", recs, len(super))
	}
}

func TestNilWriter(t *testing.T) {
	var w *Writer
	var hdr virtio.Hdr
	pkt := make([]byte, 100)
	if n := w.HostTX("vnic0", base, hdr, pkt); n != 0 {
		t.Errorf("nil HostTX = %d", n)
	}
	w.Wire("vnic0", base, Out, pkt, Origin{})
	if n := w.ReserveHostRX("vnic0"); n != 0 {
		t.Errorf("nil ReserveHostRX = %d", n)
	}
	if n := w.HostRX("vnic0", base, hdr, pkt, 0, 1); n != 0 {
		t.Errorf("nil HostRX = %d", n)
	}
	c := w.NIC("vnic0")
	if c != nil {
		t.Fatalf("nil Writer's NIC = %v", c)
	}
	c.HostTX(base, hdr, pkt)
	c.Wire(base, In, pkt, Origin{})
	c.ReserveHostRX()
	c.HostRX(base, hdr, pkt, 0, 0)
	if c.Name() != "" || w.Stats() != (Stats{}) || w.Close() != nil {
		t.Error("nil Writer not inert")
	}
}

func TestCloseTwice(t *testing.T) {
	w, err := Create(filepath.Join(t.TempDir(), "x.pcapng"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	// Recording after Close is ignored, not a panic.
	w.Wire("vnic0", base, Out, make([]byte, 40), Origin{})
	if s := w.Stats(); s.Written != 0 {
		t.Errorf("Stats after Close = %+v", s)
	}
	// An empty capture still opens.
	recs, err := ReadFile(w.name())
	if err != nil || len(recs) != 0 {
		t.Fatalf("empty capture: %d records, %v", len(recs), err)
	}
}

// TestDropWhenBehind: with the writer goroutine stalled, the data path
// counts drops instead of waiting, numbers stay consumed, and the file's
// interface statistics carry the drops.
func TestDropWhenBehind(t *testing.T) {
	var buf bytes.Buffer
	w, err := newWriter(&buf, "test", Options{QueueLen: 4, QueueBytes: 200 << 10, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	pkt := make([]byte, 1500)
	for i := range 10 {
		if n := w.HostTX("vnic0", base, virtio.Hdr{}, pkt); n != uint64(i+1) {
			t.Fatalf("HostTX number %d, want %d", n, i+1)
		}
	}
	if s := w.Stats(); s.Dropped != 6 {
		t.Fatalf("queue of 4: dropped %d of 10, want 6", s.Dropped)
	}
	w.startWriter()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if s := w.Stats(); s.Written != 4 || s.Dropped != 6 {
		t.Fatalf("Stats = %+v, want 4 written, 6 dropped", s)
	}
	recs, err := Read(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 4 || recs[3].Comment[:11] != "host-tx #4:" {
		t.Fatalf("%d records, last %q", len(recs), recs[len(recs)-1].Comment)
	}
	r, err := pcapgo.NewNgReader(bytes.NewReader(buf.Bytes()), pcapgo.NgReaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, _, err := r.ReadPacketData(); err != nil {
			break
		}
	}
	intf, _ := r.Interface(1) // interface 0 is NgWriter's placeholder
	if intf.Name != "vnic0@host-tx" || intf.Statistics.PacketsDropped != 6 || intf.Statistics.PacketsReceived != 10 {
		t.Errorf("interface %q statistics %+v, want 10 received, 6 dropped", intf.Name, intf.Statistics)
	}
}

// TestDropOverByteBudget: 64 KiB super-packets hit QueueBytes before
// QueueLen.
func TestDropOverByteBudget(t *testing.T) {
	w, err := newWriter(io.Discard, "test", Options{QueueLen: 100, QueueBytes: 150 << 10, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	pkt := make([]byte, 64<<10)
	for range 5 {
		w.HostTX("vnic0", base, virtio.Hdr{}, pkt)
	}
	if s := w.Stats(); s.Dropped != 3 {
		t.Fatalf("budget of 150 KiB: dropped %d of 5 × 64 KiB, want 3", s.Dropped)
	}
	w.startWriter()
	w.Close()
	if s := w.Stats(); s.Written != 2 {
		t.Fatalf("Stats = %+v", s)
	}
	if n := w.inflight.Load(); n != 0 {
		t.Fatalf("%d bytes still counted in flight after Close", n)
	}
}

// TestConcurrentNICs: several data-path goroutines on several NICs, some
// NICs added lazily while others record; run with -race.
func TestConcurrentNICs(t *testing.T) {
	var buf bytes.Buffer
	w, err := New(&buf, Options{Ifnames: []string{"n0"}, Block: true, QueueLen: 16})
	if err != nil {
		t.Fatal(err)
	}
	const nics, per = 4, 200
	var wg sync.WaitGroup
	for i := range nics {
		name := fmt.Sprintf("n%d", i)
		for dir := range 2 {
			wg.Go(func() {
				pkt := make([]byte, 100+i)
				for j := range per {
					if dir == 0 {
						n := w.HostTX(name, base, virtio.Hdr{}, pkt)
						w.Wire(name, base, Out, pkt, Origin{Kind: FromHostTX, Super: n, Index: 0, Count: 1})
					} else {
						c := w.NIC(name)
						n := c.ReserveHostRX()
						c.Wire(base, In, pkt, Origin{Kind: IntoHostRX, Super: n, Index: 0, Count: 1})
						c.HostRX(base.Add(time.Duration(j)), virtio.Hdr{}, pkt, n, 1)
					}
				}
			})
		}
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	recs, err := Read(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != nics*per*4 {
		t.Fatalf("%d records, want %d", len(recs), nics*per*4)
	}
	seen := map[string]bool{}
	for _, r := range recs {
		if r.Point != Wire {
			key := r.Ifname + " " + strings.SplitN(r.Comment, ":", 2)[0]
			if seen[key] {
				t.Fatalf("%s recorded twice", key)
			}
			seen[key] = true
		}
		if len(r.Data) != 100+int(r.Ifname[1]-'0') {
			t.Fatalf("%s packet of %d bytes", r.Ifname, len(r.Data))
		}
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestWriteError(t *testing.T) {
	w, err := New(failWriter{}, Options{Block: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	w.Wire("vnic0", base, Out, make([]byte, 1<<20), Origin{}) // larger than the buffer: fails at once
	w.Wire("vnic0", base, Out, make([]byte, 100), Origin{})
	err = w.Close()
	if err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("Close = %v, want the write error", err)
	}
	if s := w.Stats(); s.Failed == 0 {
		t.Errorf("Stats = %+v, want failed packets", s)
	}
}

func TestCreateError(t *testing.T) {
	_, err := Create(filepath.Join(t.TempDir(), "no", "such", "dir.pcapng"), Options{})
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Create in a missing directory: %v", err)
	}
}

// newDiscardWriter returns a Writer whose goroutine only recycles records,
// so that what is measured is the caller's side alone.
func newDiscardWriter(tb testing.TB, block bool) *Writer {
	w, err := newWriter(io.Discard, "discard", Options{Ifnames: []string{"vnic0"}, Block: block, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		tb.Fatal(err)
	}
	w.discard = true
	w.startWriter()
	tb.Cleanup(func() { w.Close() })
	return w
}

// TestNoAllocsOnCaller: recording does not allocate on the data path, nor
// does the NIC lookup by name, nor a nil writer.
func TestNoAllocsOnCaller(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation test")
	}
	w := newDiscardWriter(t, false)
	super, hdr := (&pkttest.Packet{Payload: pkttest.Payload(65000, 5)}).BuildGSO(1448, false)
	wire := (&pkttest.Packet{Payload: pkttest.Payload(1448, 6)}).Build()
	c := w.NIC("vnic0")
	var nilW *Writer
	for _, tc := range []struct {
		name string
		f    func()
	}{
		{"HostTX 64K", func() { w.HostTX("vnic0", base, hdr, super) }},
		{"Wire 1500", func() { w.Wire("vnic0", base, Out, wire, Origin{Kind: FromHostTX, Super: 1, Index: 2, Count: 45}) }},
		{"NIC.Wire 1500", func() { c.Wire(base, In, wire, Origin{Kind: IntoHostRX, Super: 1, Count: 1, Note: "x"}) }},
		{"HostRX 64K", func() { w.HostRX("vnic0", base, hdr, super, w.ReserveHostRX("vnic0"), 45) }},
		{"nil", func() {
			nilW.HostTX("vnic0", base, hdr, super)
			nilW.Wire("vnic0", base, Out, wire, Origin{})
		}},
	} {
		// AllocsPerRun runs with GOMAXPROCS=1: wake the writer and
		// yield so that it recycles each record, as it does in steady
		// state on a machine with a core to spare.
		f := func() { tc.f(); w.wake(); runtime.Gosched() }
		if n := testing.AllocsPerRun(1000, f); n != 0 {
			t.Errorf("%s: %v allocations per packet, want 0", tc.name, n)
		}
	}
}

// waitDrained waits, off the clock, until the writer goroutine has taken
// every queued record.
func waitDrained(b *testing.B, w *Writer) {
	b.StopTimer()
	for w.q.len() > 0 || w.inflight.Load() > 0 {
		w.wake()
		runtime.Gosched()
	}
	b.StartTimer()
}

// benchCaller runs f b.N times against a recycling-only writer, letting the
// writer catch up off the clock every 128 packets (less than the queue and
// its byte budget hold), so that every packet is copied and queued, none
// dropped: what is measured is what the data path pays per packet.
func benchCaller(b *testing.B, size int, f func(*Writer)) {
	w := newDiscardWriter(b, false)
	b.ReportAllocs()
	b.SetBytes(int64(size))
	b.ResetTimer()
	for i := range b.N {
		if i%128 == 0 {
			waitDrained(b, w)
		}
		f(w)
	}
	b.StopTimer()
	if d := w.Stats().Dropped; d != 0 {
		b.Fatalf("%d packets dropped: the benchmark measured drops, not recording", d)
	}
}

// BenchmarkCaller measures the data path's cost per packet: the copy into
// a pooled buffer and the hand-off over the queue; the cost of a drop when
// the writer is stalled; and a nil Writer (capture off).
func BenchmarkCaller(b *testing.B) {
	super, hdr := (&pkttest.Packet{Payload: pkttest.Payload(65000, 5)}).BuildGSO(1448, false)
	wire := (&pkttest.Packet{Payload: pkttest.Payload(1448, 6)}).Build()
	origin := Origin{Kind: FromHostTX, Super: 1, Index: 2, Count: 45}
	b.Run("nil", func(b *testing.B) {
		var w *Writer
		b.ReportAllocs()
		for b.Loop() {
			w.HostTX("vnic0", base, hdr, super)
			w.Wire("vnic0", base, Out, wire, origin)
		}
	})
	b.Run("HostTX-64K", func(b *testing.B) {
		benchCaller(b, len(super), func(w *Writer) { w.HostTX("vnic0", base, hdr, super) })
	})
	b.Run("Wire-1500", func(b *testing.B) {
		benchCaller(b, len(wire), func(w *Writer) { w.Wire("vnic0", base, Out, wire, origin) })
	})
	b.Run("NIC.Wire-1500", func(b *testing.B) {
		var c *NIC
		benchCaller(b, len(wire), func(w *Writer) {
			if c == nil {
				c = w.NIC("vnic0")
			}
			c.Wire(base, Out, wire, origin)
		})
	})
	b.Run("dropped-64K", func(b *testing.B) {
		w, err := newWriter(io.Discard, "stalled", Options{QueueLen: 1, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			b.Fatal(err)
		}
		w.HostTX("vnic0", base, hdr, super) // fills the queue; no writer runs
		b.ReportAllocs()
		for b.Loop() {
			w.HostTX("vnic0", base, hdr, super)
		}
	})
}

// BenchmarkWriter measures the whole recorder, writer goroutine included
// (pcapng encoding, comments, bufio), in blocking mode into io.Discard:
// the rate at which capture keeps up. The writer goroutine does not
// allocate per packet either (writeEPB encodes the blocks itself).
func BenchmarkWriter(b *testing.B) {
	super, hdr := (&pkttest.Packet{Payload: pkttest.Payload(65000, 5)}).BuildGSO(1448, false)
	wire := (&pkttest.Packet{Payload: pkttest.Payload(1448, 6)}).Build()
	for _, tc := range []struct {
		name string
		pkt  []byte
		f    func(*Writer)
	}{
		{"HostTX-64K", super, func(w *Writer) { w.HostTX("vnic0", base, hdr, super) }},
		{"Wire-1500", wire, func(w *Writer) {
			w.Wire("vnic0", base, Out, wire, Origin{Kind: FromHostTX, Super: 1, Index: 2, Count: 45})
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			w, err := New(io.Discard, Options{Ifnames: []string{"vnic0"}, Block: true})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.SetBytes(int64(len(tc.pkt)))
			for b.Loop() {
				tc.f(w)
			}
			w.Close()
		})
	}
}
