package capture

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"vnic/vnic/safefile"
)

// TapDir is where live taps listen, beside the daemons' control sockets.
const TapDir = "/run/vnic"

// TapPath returns the socket of the tap called id: /run/vnic/ID.tap. A
// daemon's id is its control socket's ("[NETNS.]NAME"), a lab run's
// "lab-NAME-SUFFIX".
func TapPath(id string) string { return filepath.Join(TapDir, id+".tap") }

// Tap serves live captures of NICs on a unix socket (root only, 0600): a
// client asks for one capture point of one NIC and gets a pcapng stream
// of it, from a Writer attached to the NIC for as long as the client
// reads. Nothing is recorded while nobody asks. `vnic capture` and the
// Wireshark extcap (`vnic extcap`) are its clients.
//
// The protocol is one request line per connection:
//
//	list                      → one line of JSON: {"desc": ..., "nics": [{"name": ..., "desc": ...}]}
//	capture IFNAME@POINT SNAP → "ok\n" and the pcapng stream, or "error: what\n"
type Tap struct {
	ln   net.Listener
	path string
	desc string
	log  *slog.Logger

	mu     sync.Mutex
	nics   []tapNIC
	conns  map[net.Conn]bool
	closed bool
	wg     sync.WaitGroup
}

type tapNIC struct {
	nic  *NIC
	desc string
}

// ListenTap listens on path (TapPath), taking over a socket left by a
// process that died and refusing one that answers. desc says what the
// tap belongs to ("vnic up vnic0 (netns vnic)").
func ListenTap(path, desc string, log *slog.Logger) (*Tap, error) {
	if log == nil {
		log = slog.Default()
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("capture: live tap: %w", err)
	}
	// A socket a killed process of ours left is replaced, one that answers
	// refused, nothing else at the path touched; closing removes it.
	ln, err := safefile.ListenUnix(path)
	if errors.Is(err, safefile.ErrSocketInUse) {
		return nil, fmt.Errorf("capture: live tap %s: another process serves it", path)
	}
	if err != nil {
		return nil, fmt.Errorf("capture: live tap: %w", err)
	}
	t := &Tap{ln: ln, path: path, desc: desc, log: log, conns: map[net.Conn]bool{}}
	t.wg.Add(1)
	go t.serve()
	return t, nil
}

// Add offers c live under its name and returns it; desc says what it is
// ("ginger's eth0"). Safe on a nil Tap (a tap that could not be made), which
// returns c.
func (t *Tap) Add(c *NIC, desc string) *NIC {
	if t == nil || c == nil {
		return c
	}
	t.mu.Lock()
	t.nics = append(t.nics, tapNIC{c, desc})
	t.mu.Unlock()
	return c
}

// Close stops serving: the clients' streams end, the socket is removed.
// Safe on a nil Tap.
func (t *Tap) Close() error {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	for c := range t.conns {
		c.Close()
	}
	t.mu.Unlock()
	err := t.ln.Close() // removes the socket, if still ours
	t.wg.Wait()
	return err
}

func (t *Tap) serve() {
	defer t.wg.Done()
	for {
		c, err := t.ln.Accept()
		if err != nil {
			return
		}
		t.mu.Lock()
		if t.closed {
			t.mu.Unlock()
			c.Close()
			return
		}
		t.conns[c] = true
		t.wg.Add(1)
		t.mu.Unlock()
		go func() {
			defer t.wg.Done()
			t.handle(c)
			t.mu.Lock()
			delete(t.conns, c)
			t.mu.Unlock()
			c.Close()
		}()
	}
}

// tapList is the answer to "list".
type tapList struct {
	Desc string       `json:"desc"`
	NICs []tapListNIC `json:"nics"`
}

type tapListNIC struct {
	Name string `json:"name"`
	Desc string `json:"desc"`
}

func (t *Tap) handle(c net.Conn) {
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	if err != nil {
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	f := strings.Fields(line)
	if len(f) == 0 {
		fmt.Fprintln(c, "error: empty request")
		return
	}
	switch f[0] {
	case "list":
		l := tapList{Desc: t.desc}
		t.mu.Lock()
		for _, n := range t.nics {
			l.NICs = append(l.NICs, tapListNIC{n.nic.Name(), n.desc})
		}
		t.mu.Unlock()
		_ = json.NewEncoder(c).Encode(l)
	case "capture":
		if len(f) < 2 {
			fmt.Fprintln(c, "error: capture IFNAME@POINT [SNAPLEN]")
			return
		}
		ifname, p, ok := ParseInterfaceName(f[1])
		if !ok {
			fmt.Fprintf(c, "error: %q: want IFNAME@host-tx, IFNAME@wire or IFNAME@host-rx\n", f[1])
			return
		}
		snap := 0
		if len(f) > 2 {
			snap, _ = strconv.Atoi(f[2])
		}
		var nic *NIC
		t.mu.Lock()
		for _, n := range t.nics {
			if n.nic.Name() == ifname {
				nic = n.nic
			}
		}
		t.mu.Unlock()
		if nic == nil {
			fmt.Fprintf(c, "error: no NIC %q here\n", ifname)
			return
		}
		if _, err := io.WriteString(c, "ok\n"); err != nil {
			return
		}
		t.stream(c, br, nic, p, snap)
	default:
		fmt.Fprintf(c, "error: unknown request %q\n", f[0])
	}
}

// stream records nic's point p into c until the client hangs up (its
// read side sees EOF) or the tap closes.
func (t *Tap) stream(c net.Conn, br *bufio.Reader, nic *NIC, p Point, snap int) {
	w, err := New(c, Options{
		Sources:       []Source{{NIC: nic, Points: []Point{p}}},
		Snaplen:       snap,
		FlushInterval: 50 * time.Millisecond,
		Reorder:       5 * time.Millisecond,
		QueueBytes:    8 << 20,
		Comment:       "vnic live capture of " + nic.Name() + "@" + p.String() + " (" + t.desc + ")",
		Logger:        slog.New(slog.DiscardHandler), // a client hanging up is not an error
	})
	if err != nil {
		return
	}
	t.log.Info("live capture started", "point", nic.Name()+"@"+p.String())
	_, _ = io.Copy(io.Discard, br) // until the client closes, or Close closes c
	_ = w.Close()
	st := w.Stats()
	t.log.Info("live capture ended", "point", nic.Name()+"@"+p.String(), "packets", st.Written, "dropped", st.Dropped)
}

// TapInterface is a capture point a running vnic offers live.
type TapInterface struct {
	// Name is IFNAME@POINT ("vnic0@wire") when no other tap has a NIC of
	// that name, else Full.
	Name string
	// Full is TAPID/IFNAME@POINT ("vnic.vnic0/vnic0@wire"), always unique.
	Full   string
	Ifname string
	Point  Point
	// Desc says whose NIC it is and what the point shows.
	Desc   string
	Socket string
}

// ListTaps asks every tap in dir (TapDir) what it offers. Sockets nobody
// answers on (a process that died) are skipped.
func ListTaps(dir string) ([]TapInterface, error) {
	socks, err := filepath.Glob(filepath.Join(dir, "*.tap"))
	if err != nil {
		return nil, err
	}
	slices.Sort(socks)
	var out []TapInterface
	count := map[string]int{}
	for _, sock := range socks {
		l, err := listTap(sock)
		if err != nil {
			continue
		}
		id := strings.TrimSuffix(filepath.Base(sock), ".tap")
		for _, n := range l.NICs {
			count[n.Name]++
			for p := HostTX; p < numPoints; p++ {
				out = append(out, TapInterface{Full: id + "/" + n.Name + "@" + p.String(), Ifname: n.Name, Point: p,
					Desc: n.Desc + " " + p.String() + " — " + pointDesc(p) + " (" + l.Desc + ")", Socket: sock})
			}
		}
	}
	for i := range out {
		out[i].Name = out[i].Full
		if count[out[i].Ifname] == 1 {
			out[i].Name = out[i].Ifname + "@" + out[i].Point.String()
		}
	}
	return out, nil
}

func pointDesc(p Point) string {
	switch p {
	case HostTX:
		return "what the kernel handed the NIC"
	case Wire:
		return "what crossed the wire"
	case HostRX:
		return "what the NIC handed the kernel"
	}
	return ""
}

func listTap(sock string) (tapList, error) {
	var l tapList
	c, err := net.DialTimeout("unix", sock, time.Second)
	if err != nil {
		return l, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.WriteString(c, "list\n"); err != nil {
		return l, err
	}
	err = json.NewDecoder(c).Decode(&l)
	return l, err
}

// FindTap returns the interface called name (a TapInterface's Name or
// Full) among those ListTaps finds in dir.
func FindTap(dir, name string) (TapInterface, error) {
	all, err := ListTaps(dir)
	if err != nil {
		return TapInterface{}, err
	}
	var names []string
	for _, ti := range all {
		if ti.Name == name || ti.Full == name {
			return ti, nil
		}
		names = append(names, ti.Name)
	}
	if len(all) == 0 {
		if os.Geteuid() != 0 {
			return TapInterface{}, fmt.Errorf("no vnic capture point %q: no running vnic answered in %s (its sockets are root's: run as root)", name, dir)
		}
		return TapInterface{}, fmt.Errorf("no vnic capture point %q: no vnic is running (start one with vnic up or vnic lab run)", name)
	}
	return TapInterface{}, fmt.Errorf("no vnic capture point %q; running: %s", name, strings.Join(names, ", "))
}

// Dial asks the tap for a live pcapng stream of the interface; read it
// until EOF (the NIC went away) and close it to stop.
func (ti TapInterface) Dial(ctx context.Context, snaplen int) (io.ReadCloser, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", ti.Socket)
	if err != nil {
		if errors.Is(err, syscall.EACCES) || errors.Is(err, os.ErrPermission) {
			return nil, fmt.Errorf("%s: the live tap is root's: run as root", ti.Socket)
		}
		return nil, err
	}
	if _, err := fmt.Fprintf(c, "capture %s@%s %d\n", ti.Ifname, ti.Point, snaplen); err != nil {
		c.Close()
		return nil, err
	}
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("%s: %w", ti.Socket, err)
	}
	if line != "ok\n" {
		c.Close()
		return nil, fmt.Errorf("%s: %s", ti.Name, strings.TrimSpace(strings.TrimPrefix(line, "error: ")))
	}
	return struct {
		io.Reader
		io.Closer
	}{br, c}, nil
}

// CopyBlocks copies a pcapng stream this package writes from r to w
// block by block, flushing after each packet (so a pipe reader sees it at
// once), until r ends or, if count > 0, count packets have gone. It
// returns the number of packets copied.
func CopyBlocks(w io.Writer, r io.Reader, count int) (int, error) {
	br := bufio.NewReaderSize(r, 1<<16)
	bw := bufio.NewWriterSize(w, 1<<16)
	var hdr [8]byte
	var buf []byte
	n := 0
	for count <= 0 || n < count {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
				return n, bw.Flush()
			}
			_ = bw.Flush()
			return n, err
		}
		size := int(binary.LittleEndian.Uint32(hdr[4:]))
		if size < 12 || size%4 != 0 || size > 1<<26 {
			return n, fmt.Errorf("capture: not a pcapng stream (block of %d bytes)", size)
		}
		if cap(buf) < size {
			buf = make([]byte, size)
		}
		buf = buf[:size]
		copy(buf, hdr[:])
		if _, err := io.ReadFull(br, buf[8:]); err != nil {
			_ = bw.Flush()
			return n, err
		}
		if _, err := bw.Write(buf); err != nil {
			return n, err
		}
		typ := binary.LittleEndian.Uint32(hdr[:])
		if typ == blockEPB {
			n++
		}
		if typ == blockEPB || br.Buffered() == 0 {
			if err := bw.Flush(); err != nil {
				return n, err
			}
		}
	}
	return n, bw.Flush()
}

// ServeNIC is the daemon's one-line wiring: the recorder for ifname — w's
// (which records it to the file) or, with no file, one nothing records yet
// — offered live on a tap at TapPath(id). Close the returned closer at
// teardown. Without a tap (no /run/vnic), the NIC is still returned and
// the reason logged.
func ServeNIC(id, ifname, desc string, w *Writer, log *slog.Logger) (*NIC, io.Closer) {
	c := w.NIC(ifname)
	if c == nil {
		c = NewNIC(ifname)
	}
	t, err := ListenTap(TapPath(id), desc, log)
	if err != nil {
		if log == nil {
			log = slog.Default()
		}
		log.Warn("no live capture (vnic capture, the Wireshark extcap)", "err", err)
		return c, (*Tap)(nil)
	}
	t.Add(c, ifname)
	return c, t
}
