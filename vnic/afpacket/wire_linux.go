package afpacket

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"vnic/vnic/drop"
	"vnic/vnic/ethtool"
	"vnic/vnic/mmsg"
	"vnic/vnic/packet"
	"vnic/vnic/virtio"
)

const (
	// headroom in front of each receive buffer: room to put back a VLAN
	// tag the kernel took out.
	headroom = vlanTag
	// rxBufSize holds the virtio header and a 64 KiB super-packet (a veth
	// peer hands those over whole).
	rxBufSize = headroom + virtio.Size + 65535 + 2*vlanTag
	ctlSpace  = 64 // PACKET_AUXDATA
	txMsgs    = 1024
	sockBuf   = 4 << 20
)

// Wire is an existing interface as the far end of a NIC's wire: an
// AF_PACKET socket bound to it.
//
// Inject is called from one goroutine at a time (the NIC's transmit
// loop); the receive goroutine Start starts owns the receive side.
type Wire struct {
	cfg      Config
	log      *slog.Logger
	conn     *mmsg.Conn
	ifindex  int
	devMTU   int
	switched []string // features switched off, to restore
	offList  []string // the same, for Stats (never changes after Open)
	setUp    bool     // the interface was down and Open set it up
	// Handles made in the interface's namespace at Open: Close may run on
	// any thread.
	nl *netlink.Handle
	et *ethtool.Handle

	vnetZero [virtio.Size]byte // the header of every frame sent: a complete frame

	// transmit, owned by Inject's caller
	txHdrs  []mmsg.Hdr
	txIov   []unix.Iovec
	txDrops drop.Counts

	// receive, owned by the receive goroutine
	rxHdrs   []mmsg.Hdr
	rxIov    []unix.Iovec
	rxBufs   [][]byte
	rxCtl    []byte
	rxFrames [][]byte
	rxDrops  drop.Counts
	cut      *cutter

	st struct {
		outPkts, outBytes, inPkts, inBytes atomic.Uint64
		inSuper, inCsum                    atomic.Uint64
		sendCalls, recvCalls               atomic.Uint64
		drops                              [2]drop.Counters // tx, rx
	}
	statsMu sync.Mutex // PACKET_STATISTICS resets on read

	startOnce sync.Once
	closeOnce sync.Once
	started   atomic.Bool
	done      chan struct{}
}

// Open binds an AF_PACKET socket to cfg.Dev in the calling thread's
// namespace: it checks the interface (there, Ethernet, not a bridge, an
// MTU that holds the NIC's), switches off the features that merge
// received frames (logging which), sets it up if it is down, and puts it
// in promiscuous mode for the socket's lifetime. Nothing is received until
// Start. On error nothing is left changed.
func Open(cfg Config) (_ *Wire, err error) {
	if err := cfg.Normalize(); err != nil {
		return nil, err
	}
	w := &Wire{cfg: cfg, done: make(chan struct{})}
	w.log = cfg.Logger.With("wire", "dev", "dev", cfg.Dev)
	if w.nl, err = netlink.NewHandle(); err != nil {
		return nil, fmt.Errorf("afpacket: netlink: %w", err)
	}
	if w.et, err = ethtool.Open(""); err != nil {
		w.nl.Close()
		return nil, fmt.Errorf("afpacket: %w", err)
	}
	defer func() {
		if err != nil {
			w.restore()
			w.closeHandles()
		}
	}()
	l, err := w.nl.LinkByName(cfg.Dev)
	if err != nil {
		return nil, fmt.Errorf("afpacket: dev:%s: no such interface in this namespace (where vnic up runs; see `ip link`); create one, e.g. `ip link add %s type veth peer name %s-br`",
			cfg.Dev, cfg.Dev, cfg.Dev)
	}
	a := l.Attrs()
	switch {
	case l.Type() == "bridge":
		return nil, fmt.Errorf("afpacket: dev:%s is a bridge; give the NIC a port of its own: ip link add v1 type veth peer name v2; ip link set v2 master %s; then --wire dev:v1", cfg.Dev, cfg.Dev)
	case a.EncapType != "ether":
		return nil, fmt.Errorf("afpacket: dev:%s is not an Ethernet interface (link/%s): the wire carries Ethernet frames", cfg.Dev, a.EncapType)
	case cfg.MTU > a.MTU:
		return nil, fmt.Errorf("afpacket: --mtu %d is larger than dev:%s's MTU %d, which could not carry the NIC's frames: set --mtu %d, or raise the interface's: ip link set %s mtu %d",
			cfg.MTU, cfg.Dev, a.MTU, a.MTU, cfg.Dev, cfg.MTU)
	}
	w.ifindex, w.devMTU = a.Index, a.MTU
	if cfg.MTU == 0 {
		w.cfg.MTU = a.MTU
	}
	if !cfg.KeepFeatures {
		if err := w.switchOff(); err != nil {
			return nil, err
		}
	}
	if a.Flags&(1<<0) == 0 { // net.FlagUp
		if err := w.nl.LinkSetUp(l); err != nil {
			return nil, fmt.Errorf("afpacket: dev:%s is down and cannot be set up: %w", cfg.Dev, err)
		}
		w.setUp = true
		w.log.Info("the interface was down: set up (and down again on exit)")
	}
	if err := w.socket(); err != nil {
		return nil, err
	}
	w.alloc()
	w.log.Info("AF_PACKET wire open", "ifindex", w.ifindex, "mtu", w.cfg.MTU, "dev_mtu", w.devMTU,
		"qdisc_bypass", true, "promiscuous", "while open")
	return w, nil
}

// switchOff switches off the merging features that are on.
//
// Equivalent to: ethtool -K DEV gro off lro off rx-gro-hw off ...
func (w *Wire) switchOff() error {
	h := w.et
	states, err := h.States(w.cfg.Dev)
	if err != nil {
		return fmt.Errorf("afpacket: %w", err)
	}
	want := map[string]bool{}
	var names []string
	for _, f := range MergingFeatures {
		if s, ok := states[f]; ok && s.Active && !s.Fixed {
			want[f] = false
			names = append(names, f)
		}
	}
	if len(want) == 0 {
		return nil
	}
	sort.Strings(names)
	err = h.SetFeatures(w.cfg.Dev, want)
	// Whatever is off now is ours to restore.
	if after, serr := h.States(w.cfg.Dev); serr == nil {
		for _, f := range names {
			if !after[f].Active {
				w.switched = append(w.switched, f)
			}
		}
	}
	if err != nil {
		return fmt.Errorf("afpacket: switching off %s on %s: %w", strings.Join(names, ", "), w.cfg.Dev, err)
	}
	w.offList = append([]string(nil), w.switched...)
	w.log.Info(fmt.Sprintf("switched off on %s while the wire is open (they merge received frames before the socket sees them); restored on exit, or by hand: ethtool -K %s %s",
		w.cfg.Dev, w.cfg.Dev, onArgs(w.switched)), "features", w.switched)
	return nil
}

func onArgs(fs []string) string {
	var b strings.Builder
	for i, f := range fs {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(f + " on")
	}
	return b.String()
}

// restore puts back what Open changed on the interface.
func (w *Wire) restore() {
	if len(w.switched) > 0 {
		want := map[string]bool{}
		for _, f := range w.switched {
			want[f] = true
		}
		if err := w.et.SetFeatures(w.cfg.Dev, want); err != nil {
			w.log.Warn(fmt.Sprintf("restoring features: run ethtool -K %s %s", w.cfg.Dev, onArgs(w.switched)), "err", err)
		} else {
			w.log.Info("features restored", "features", w.switched)
		}
		w.switched = nil
	}
	if w.setUp {
		if l, err := w.nl.LinkByName(w.cfg.Dev); err == nil {
			if err := w.nl.LinkSetDown(l); err != nil {
				w.log.Warn("setting the interface down again", "err", err)
			}
		}
		w.setUp = false
	}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// socket opens the AF_PACKET socket bound to the interface.
func (w *Wire) socket() error {
	// Protocol 0 until bound: no frame of another interface is queued.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return fmt.Errorf("afpacket: AF_PACKET socket (needs CAP_NET_RAW): %w", err)
	}
	c, err := mmsg.New(fd, "AF_PACKET on "+w.cfg.Dev)
	if err != nil {
		return err
	}
	err = c.Control(func(fd int) error {
		for _, o := range []struct {
			name      string
			level, op int
			v         int
		}{
			{"PACKET_VNET_HDR", unix.SOL_PACKET, unix.PACKET_VNET_HDR, 1},
			{"PACKET_AUXDATA", unix.SOL_PACKET, unix.PACKET_AUXDATA, 1},
			{"PACKET_IGNORE_OUTGOING", unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1},
			{"PACKET_QDISC_BYPASS", unix.SOL_PACKET, unix.PACKET_QDISC_BYPASS, 1},
		} {
			if err := unix.SetsockoptInt(fd, o.level, o.op, o.v); err != nil {
				return fmt.Errorf("%s: %w", o.name, err)
			}
		}
		for _, o := range [][2]int{{unix.SO_RCVBUFFORCE, unix.SO_RCVBUF}, {unix.SO_SNDBUFFORCE, unix.SO_SNDBUF}} {
			if unix.SetsockoptInt(fd, unix.SOL_SOCKET, o[0], sockBuf) != nil {
				_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, o[1], sockBuf)
			}
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: w.ifindex}); err != nil {
			return fmt.Errorf("bind to %s: %w", w.cfg.Dev, err)
		}
		// Promiscuous for as long as the socket is open: the kernel drops
		// the membership (and the promiscuity it holds) when it closes.
		mr := unix.PacketMreq{Ifindex: int32(w.ifindex), Type: unix.PACKET_MR_PROMISC}
		if err := unix.SetsockoptPacketMreq(fd, unix.SOL_PACKET, unix.PACKET_ADD_MEMBERSHIP, &mr); err != nil {
			return fmt.Errorf("PACKET_MR_PROMISC: %w", err)
		}
		return nil
	})
	if err != nil {
		c.Close()
		return fmt.Errorf("afpacket: %s: %w", w.cfg.Dev, err)
	}
	w.conn = c
	return nil
}

func (w *Wire) alloc() {
	w.txHdrs = make([]mmsg.Hdr, txMsgs)
	w.txIov = make([]unix.Iovec, 2*txMsgs)
	for i := range txMsgs {
		w.txIov[2*i] = mmsg.Iov(w.vnetZero[:])
	}
	n := w.cfg.Batch
	slab := make([]byte, n*rxBufSize)
	w.rxHdrs = make([]mmsg.Hdr, n)
	w.rxIov = make([]unix.Iovec, n)
	w.rxBufs = make([][]byte, n)
	w.rxCtl = make([]byte, n*ctlSpace)
	for i := range n {
		w.rxBufs[i] = slab[i*rxBufSize : (i+1)*rxBufSize : (i+1)*rxBufSize]
		w.rxIov[i] = mmsg.Iov(w.rxBufs[i][headroom:])
		w.rxHdrs[i].SetIov(w.rxIov[i : i+1])
	}
	w.rxFrames = make([][]byte, 0, 1024)
	w.cut = newCutter()
}

// Inject sends frames (the NIC's wire-size Ethernet frames) out of the
// interface, in as few sendmmsg calls as fit. What the kernel refuses is
// counted by reason. It makes the Wire a nic.WireEnd. No allocation.
func (w *Wire) Inject(frames [][]byte) {
	var pkts, bytes, calls uint64
	for len(frames) > 0 {
		k := min(len(frames), txMsgs)
		for i, f := range frames[:k] {
			w.txIov[2*i+1] = mmsg.Iov(f)
			w.txHdrs[i].SetIov(w.txIov[2*i : 2*i+2])
		}
		sent := 0
		for sent < k {
			n, err := w.conn.Send(w.txHdrs[sent:k])
			calls++
			for _, f := range frames[sent : sent+n] {
				pkts++
				bytes += uint64(len(f))
			}
			sent += n
			if err == nil {
				break
			}
			if errors.Is(err, os.ErrClosed) {
				for range frames[sent:k] {
					w.txDrops.Add(drop.SendError)
				}
				break
			}
			w.txDrops.Add(mmsg.SendReason(err))
			sent++
		}
		frames = frames[k:]
	}
	w.st.outPkts.Add(pkts)
	w.st.outBytes.Add(bytes)
	w.st.sendCalls.Add(calls)
	w.st.drops[0].Flush(&w.txDrops)
}

// Start starts the receive goroutine: it hands what the interface
// receives to to, batch by batch, until Close.
func (w *Wire) Start(to Receiver) {
	w.startOnce.Do(func() {
		w.started.Store(true)
		go func() {
			defer close(w.done)
			w.run(to)
		}()
	})
}

func (w *Wire) run(to Receiver) {
	w.conn.RecvLoop(w.rxHdrs, func() {
		for i := range w.rxHdrs {
			h := &w.rxHdrs[i]
			h.SetControl(w.rxCtl[i*ctlSpace : (i+1)*ctlSpace])
			h.Msg.Flags = 0
		}
	}, func(n int) { w.receive(n, to) },
		func(err error) { w.log.Warn("receiving from the interface", "err", err) })
}

// receive hands the n frames just received to to: VLAN tags put back,
// super-packets cut, partial checksums completed.
func (w *Wire) receive(n int, to Receiver) {
	frames := w.rxFrames[:0]
	var pkts, bytes, super, csum uint64
	flush := func() {
		if len(frames) > 0 {
			for _, f := range frames {
				pkts++
				bytes += uint64(len(f))
			}
			to.Inject(frames)
			clear(frames)
			frames = frames[:0]
		}
		w.cut.reset()
	}
	for i := range n {
		m := &w.rxHdrs[i]
		if m.Msg.Flags&unix.MSG_TRUNC != 0 {
			w.rxDrops.Add(drop.Truncated)
			continue
		}
		buf := w.rxBufs[i]
		if m.Len < virtio.Size {
			w.rxDrops.Add(drop.EtherShort)
			continue
		}
		var h virtio.Hdr
		_ = h.Decode(buf[headroom:])
		frame := buf[headroom+virtio.Size : headroom+int(m.Len)]
		if tpid, tci, ok := w.vlan(i); ok && len(frame) >= 12 {
			// Put back the tag skb_vlan_untag took out: the MAC addresses
			// move 4 bytes to the front, into the virtio header's place.
			start := headroom + virtio.Size - vlanTag
			copy(buf[start:], frame[:12])
			binary.BigEndian.PutUint16(buf[start+12:], tpid)
			binary.BigEndian.PutUint16(buf[start+14:], tci)
			frame = buf[start : headroom+int(m.Len)]
			if h.Flags&virtio.FlagNeedsCsum != 0 {
				h.CsumStart += vlanTag
			}
		}
		if len(frame) < ethHeader {
			w.rxDrops.Add(drop.EtherShort)
			continue
		}
		if h.GSOType == virtio.GSONone && h.Flags&virtio.FlagNeedsCsum == 0 {
			if len(frames) == cap(frames) {
				flush()
			}
			frames = append(frames, frame)
			continue
		}
		if len(frames)+64 > cap(frames) {
			flush()
		}
		out, full, r := w.cut.cut(h, frame, frames)
		if full {
			flush()
			out, _, r = w.cut.cut(h, frame, frames)
		}
		frames = out
		if r != drop.None {
			w.rxDrops.Add(r)
			continue
		}
		if h.GSOType != virtio.GSONone {
			super++
		} else {
			csum++
		}
	}
	flush()
	w.st.recvCalls.Add(1)
	w.st.inPkts.Add(pkts)
	w.st.inBytes.Add(bytes)
	w.st.inSuper.Add(super)
	w.st.inCsum.Add(csum)
	w.st.drops[1].Flush(&w.rxDrops)
}

// vlan returns the VLAN tag the kernel took out of message i's frame
// (PACKET_AUXDATA), if any.
func (w *Wire) vlan(i int) (tpid, tci uint16, ok bool) {
	h := &w.rxHdrs[i]
	ctl := w.rxCtl[i*ctlSpace : i*ctlSpace+int(h.Msg.Controllen)]
	for len(ctl) >= unix.SizeofCmsghdr {
		c := (*unix.Cmsghdr)(unsafe.Pointer(&ctl[0]))
		l := int(c.Len)
		if l < unix.SizeofCmsghdr || l > len(ctl) {
			break
		}
		data := ctl[unix.CmsgLen(0):l]
		if c.Level == unix.SOL_PACKET && c.Type == unix.PACKET_AUXDATA && len(data) >= int(unsafe.Sizeof(unix.TpacketAuxdata{})) {
			a := (*unix.TpacketAuxdata)(unsafe.Pointer(&data[0]))
			if a.Status&unix.TP_STATUS_VLAN_VALID == 0 {
				return 0, 0, false
			}
			tpid = packet.EtherTypeQ
			if a.Status&unix.TP_STATUS_VLAN_TPID_VALID != 0 {
				tpid = a.Vlan_tpid
			}
			return tpid, a.Vlan_tci, true
		}
		sp := unix.CmsgSpace(l - unix.SizeofCmsghdr)
		if sp > len(ctl) {
			break
		}
		ctl = ctl[sp:]
	}
	return 0, 0, false
}

// kernelDrops adds what the kernel dropped for a full socket queue since
// the last call (PACKET_STATISTICS, which resets on read).
func (w *Wire) kernelDrops() {
	w.statsMu.Lock()
	defer w.statsMu.Unlock()
	_ = w.conn.Control(func(fd int) error {
		s, err := unix.GetsockoptTpacketStats(fd, unix.SOL_PACKET, unix.PACKET_STATISTICS)
		if err == nil && s.Drops > 0 {
			w.st.drops[1][drop.SocketOverflow].Add(uint64(s.Drops))
		}
		return err
	})
}

// Stats returns a snapshot of the wire's counters.
func (w *Wire) Stats() Stats {
	w.kernelDrops()
	s := Stats{
		Dev: w.cfg.Dev, MTU: w.cfg.MTU, Switched: w.offList,
		OutPackets: w.st.outPkts.Load(), OutBytes: w.st.outBytes.Load(),
		InPackets: w.st.inPkts.Load(), InBytes: w.st.inBytes.Load(),
		InSuper: w.st.inSuper.Load(), InCsum: w.st.inCsum.Load(),
		SendCalls: w.st.sendCalls.Load(), RecvCalls: w.st.recvCalls.Load(),
		Drops: []drop.Entry{},
	}
	tx, rx := w.st.drops[0].Load(), w.st.drops[1].Load()
	s.Drops = tx.Entries(PlaceTX, s.Drops)
	s.Drops = rx.Entries(PlaceRX, s.Drops)
	return s
}

// Close closes the socket (which ends promiscuous mode), waits for the
// receive goroutine and restores what Open changed on the interface.
// Closing twice is not an error.
func (w *Wire) Close() error {
	var err error
	w.closeOnce.Do(func() {
		w.kernelDrops()
		err = w.conn.Close()
		if w.started.Load() {
			select {
			case <-w.done:
			case <-time.After(5 * time.Second):
				w.log.Warn("the AF_PACKET receive goroutine did not stop within 5 s")
			}
		}
		w.restore()
		w.closeHandles()
	})
	return err
}

func (w *Wire) closeHandles() {
	if w.et != nil {
		w.et.Close()
		w.et = nil
	}
	if w.nl != nil {
		w.nl.Close()
		w.nl = nil
	}
}
