package vxlan

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"vnic/vnic/drop"
	"vnic/vnic/mmsg"
)

const (
	// rxBufSize holds one UDP GRO run: the kernel merges datagrams up to
	// 64 KiB (udp_gro_receive_segment).
	rxBufSize = 65536
	// txMsgs is how many messages one sendmmsg carries at most, txFrames
	// how many frames.
	txMsgs   = 256
	txFrames = 1024
	// gsoMaxSegs is how many datagrams one UDP GSO send carries at most:
	// UDP_MAX_SEGMENTS was 64 before Linux 6.9 (128 since).
	gsoMaxSegs = 64
	// gsoMaxBytes is the most payload one UDP GSO send carries: an IPv4
	// packet's 65535 bytes less the IP and UDP headers, with room for
	// IPv4 options.
	gsoMaxBytes = 65535 - 60 - 8
	// sockBuf is the socket buffer size asked for (the kernel doubles it).
	sockBuf = 4 << 20
	// ctlSpace is each received message's room for ancillary data:
	// UDP_GRO (an int) and SO_RXQ_OVFL (a u32).
	ctlSpace = 64
)

// Wire is a VXLAN wire: a UDP socket in the namespace Open ran in (the
// underlay), sending the NIC's frames to Remote and handing what arrives
// from there to a Receiver.
//
// Inject is called from one goroutine at a time (the NIC's transmit
// loop); the receive goroutine Start starts owns the receive side.
type Wire struct {
	cfg      Config
	log      *slog.Logger
	conn     *mmsg.Conn
	v6       bool
	remote   []byte // the raw sockaddr datagrams go to
	hdr      [HeaderLen]byte
	gso      atomic.Bool
	gro      bool
	gsoMax   int // the largest datagram a GSO send may carry (fits the underlay unfragmented)
	underlay Underlay

	// transmit, owned by Inject's caller
	txHdrs  []mmsg.Hdr
	txIov   []unix.Iovec
	txCtl   []byte // txMsgs × CmsgSpace(2): UDP_SEGMENT
	txStart []int  // frame index each message starts at
	txGSO   []bool
	txDrops drop.Counts
	txPkts  uint64
	txBytes uint64
	txCalls uint64
	txGSOs  uint64

	// receive, owned by the receive goroutine
	rxHdrs   []mmsg.Hdr
	rxIov    []unix.Iovec
	rxBufs   [][]byte
	rxCtl    []byte
	rxName   []byte
	rxFrames [][]byte
	rxDrops  drop.Counts
	rxOvfl   uint32 // the last SO_RXQ_OVFL count seen

	st struct {
		outPkts, outBytes, inPkts, inBytes atomic.Uint64
		sendCalls, recvCalls, gsoSends     atomic.Uint64
		groRecvs                           atomic.Uint64
		drops                              [2]drop.Counters // tx, rx
	}

	startOnce sync.Once
	closeOnce sync.Once
	done      chan struct{}
	started   atomic.Bool
}

// Open checks the path to cfg.Remote in the calling thread's namespace
// (the underlay), warns when the underlay cannot carry the NIC's MTU
// without fragmenting, and binds the UDP socket. Nothing is received
// until Start. Errors say what to do: no route to Remote, Remote an
// address of this machine, the port taken.
func Open(cfg Config) (_ *Wire, err error) {
	if err := cfg.Normalize(); err != nil {
		return nil, err
	}
	w := &Wire{cfg: cfg, v6: cfg.Remote.Is6(), done: make(chan struct{})}
	w.log = cfg.Logger.With("wire", "vxlan", "remote", cfg.Remote, "vni", cfg.VNI, "port", cfg.Port)
	Encode(w.hdr[:], cfg.VNI)
	if w.underlay, err = findUnderlay(cfg); err != nil {
		return nil, err
	}
	ipHdr := 20
	if w.v6 {
		ipHdr = 40
	}
	w.gsoMax = w.underlay.MTU - ipHdr - 8
	if !w.underlay.Fits() {
		u := w.underlay
		w.log.Warn(fmt.Sprintf("the underlay cannot carry the NIC's MTU in VXLAN: an inner packet of %d bytes makes an outer one of %d (%d + %d of VXLAN over IPv%d), "+
			"%s's MTU is %d, so the kernel fragments every full-size outer packet (slow; lost wherever fragments are dropped). "+
			"Set --mtu %d, or raise the underlay's MTU: ip link set %s mtu %d",
			cfg.MTU, u.Need, cfg.MTU, Overhead(w.v6), ipVersion(w.v6), u.Dev, u.MTU, u.MTU-Overhead(w.v6), u.Dev, u.Need),
			"mtu", cfg.MTU, "need", u.Need, "underlay_dev", u.Dev, "underlay_mtu", u.MTU)
	}
	if err := w.socket(); err != nil {
		return nil, err
	}
	w.alloc()
	w.log.Info("VXLAN wire open", "local", w.localAddr(), "underlay_dev", w.underlay.Dev, "underlay_mtu", w.underlay.MTU,
		"gso", w.gso.Load(), "gro", w.gro)
	return w, nil
}

// findUnderlay asks the kernel's routing for the path to Remote.
//
// Equivalent to: ip route get REMOTE; ip link show DEV
func findUnderlay(cfg Config) (Underlay, error) {
	u := Underlay{Need: cfg.MTU + Overhead(cfg.Remote.Is6())}
	rs, err := netlink.RouteGet(net.IP(cfg.Remote.AsSlice()))
	if err != nil || len(rs) == 0 {
		if err == nil {
			err = errors.New("no route")
		}
		return u, fmt.Errorf("vxlan: REMOTE %v is unreachable from this namespace (the underlay, where vnic up runs): %w; check the address, or add a route to it (ip route add %v via GATEWAY)",
			cfg.Remote, err, cfg.Remote)
	}
	r := rs[0]
	if r.Type == unix.RTN_LOCAL {
		return u, fmt.Errorf("vxlan: REMOTE %v is an address of this namespace: give the far machine's address", cfg.Remote)
	}
	l, err := netlink.LinkByIndex(r.LinkIndex)
	if err != nil {
		return u, fmt.Errorf("vxlan: the route to %v leaves by interface %d: %w", cfg.Remote, r.LinkIndex, err)
	}
	u.Dev, u.MTU = l.Attrs().Name, l.Attrs().MTU
	if r.MTU > 0 && r.MTU < u.MTU {
		u.MTU = r.MTU
	}
	return u, nil
}

// socket creates, sets up and binds the UDP socket.
func (w *Wire) socket() error {
	cfg := w.cfg
	family := unix.AF_INET
	if w.v6 {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.IPPROTO_UDP)
	if err != nil {
		return fmt.Errorf("vxlan: UDP socket: %w", err)
	}
	c, err := mmsg.New(fd, "vxlan underlay")
	if err != nil {
		return err
	}
	ok := false
	defer func() {
		if !ok {
			c.Close()
		}
	}()
	var local unix.Sockaddr
	if w.v6 {
		sa := &unix.SockaddrInet6{Port: int(cfg.Port)}
		if cfg.Local.IsValid() {
			sa.Addr = cfg.Local.As16()
		}
		local = sa
		r := unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: cfg.Remote.As16()}
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&r.Port))[:], cfg.Port)
		w.remote = unsafe.Slice((*byte)(unsafe.Pointer(&r)), unix.SizeofSockaddrInet6)
		w.remote = append([]byte(nil), w.remote...)
	} else {
		sa := &unix.SockaddrInet4{Port: int(cfg.Port)}
		if cfg.Local.IsValid() {
			sa.Addr = cfg.Local.As4()
		}
		local = sa
		r := unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: cfg.Remote.As4()}
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&r.Port))[:], cfg.Port)
		w.remote = append([]byte(nil), unsafe.Slice((*byte)(unsafe.Pointer(&r)), unix.SizeofSockaddrInet4)...)
	}
	err = c.Control(func(fd int) error {
		if w.v6 {
			if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1); err != nil {
				return fmt.Errorf("IPV6_V6ONLY: %w", err)
			}
			// Fragment an outer packet too big for the path rather than
			// refuse it, as Linux's vxlan does with df unset.
			if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MTU_DISCOVER, unix.IPV6_PMTUDISC_DONT); err != nil {
				return fmt.Errorf("IPV6_MTU_DISCOVER: %w", err)
			}
		} else if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_DONT); err != nil {
			return fmt.Errorf("IP_MTU_DISCOVER: %w", err)
		}
		for _, o := range [][2]int{{unix.SO_RCVBUFFORCE, unix.SO_RCVBUF}, {unix.SO_SNDBUFFORCE, unix.SO_SNDBUF}} {
			if unix.SetsockoptInt(fd, unix.SOL_SOCKET, o[0], sockBuf) != nil {
				_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, o[1], sockBuf)
			}
		}
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RXQ_OVFL, 1); err != nil {
			return fmt.Errorf("SO_RXQ_OVFL: %w", err)
		}
		if !cfg.NoGRO {
			w.gro = unix.SetsockoptInt(fd, unix.IPPROTO_UDP, unix.UDP_GRO, 1) == nil
			if !w.gro {
				w.log.Info("the kernel has no UDP GRO for sockets: receiving datagram by datagram")
			}
		}
		if !cfg.NoGSO {
			// Probe UDP_SEGMENT as wireguard-go does.
			_, err := unix.GetsockoptInt(fd, unix.IPPROTO_UDP, unix.UDP_SEGMENT)
			w.gso.Store(err == nil)
			if err != nil {
				w.log.Info("the kernel has no UDP GSO: sending datagram by datagram")
			}
		}
		if err := unix.Bind(fd, local); err != nil {
			if errors.Is(err, unix.EADDRINUSE) {
				return fmt.Errorf("UDP port %d is taken in this namespace (a vxlan device with dstport %d? see `ss -ulpn sport = :%d`): remove it, or choose another with ,port=P on both ends",
					cfg.Port, cfg.Port, cfg.Port)
			}
			if errors.Is(err, unix.EADDRNOTAVAIL) {
				return fmt.Errorf("local=%v is not an address of this namespace: %w", cfg.Local, err)
			}
			return fmt.Errorf("bind UDP port %d: %w", cfg.Port, err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("vxlan: %w", err)
	}
	ok = true
	w.conn = c
	return nil
}

func (w *Wire) localAddr() string {
	var s string
	_ = w.conn.Control(func(fd int) error {
		sa, err := unix.Getsockname(fd)
		if err != nil {
			return err
		}
		switch a := sa.(type) {
		case *unix.SockaddrInet4:
			s = netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port)).String()
		case *unix.SockaddrInet6:
			s = netip.AddrPortFrom(netip.AddrFrom16(a.Addr), uint16(a.Port)).String()
		}
		return nil
	})
	return s
}

// alloc makes the transmit and receive arrays, once: nothing on the data
// path allocates. The receive buffers' memory is only touched when
// datagrams arrive.
func (w *Wire) alloc() {
	w.txHdrs = make([]mmsg.Hdr, txMsgs)
	w.txIov = make([]unix.Iovec, 2*txFrames)
	cs := unix.CmsgSpace(2)
	w.txCtl = make([]byte, txMsgs*cs)
	w.txStart = make([]int, txMsgs+1)
	w.txGSO = make([]bool, txMsgs)
	for i := range w.txHdrs {
		w.txHdrs[i].SetName(w.remote)
		c := w.txCtl[i*cs : (i+1)*cs]
		h := (*unix.Cmsghdr)(unsafe.Pointer(&c[0]))
		h.Level, h.Type = unix.IPPROTO_UDP, unix.UDP_SEGMENT
		h.SetLen(unix.CmsgLen(2))
	}

	n := w.cfg.Batch
	size := rxBufSize
	if !w.gro {
		size = w.cfg.MTU + EthHeaderLen + HeaderLen + 64 // room for a VLAN tag; a bigger one is truncated
	}
	slab := make([]byte, n*size)
	w.rxHdrs = make([]mmsg.Hdr, n)
	w.rxIov = make([]unix.Iovec, n)
	w.rxBufs = make([][]byte, n)
	w.rxCtl = make([]byte, n*ctlSpace)
	w.rxName = make([]byte, n*unix.SizeofSockaddrInet6)
	for i := range n {
		w.rxBufs[i] = slab[i*size : (i+1)*size : (i+1)*size]
		w.rxIov[i] = mmsg.Iov(w.rxBufs[i])
		w.rxHdrs[i].SetIov(w.rxIov[i : i+1])
	}
	w.rxFrames = make([][]byte, 0, n*64)
}

// Underlay returns the path to Remote Open found.
func (w *Wire) Underlay() Underlay { return w.underlay }

// Inject sends frames (the NIC's wire-size Ethernet frames) to Remote, one
// datagram each: runs of equal-size frames as UDP GSO sends, everything in
// as few sendmmsg calls as fit. What the kernel refuses is counted by
// reason. It makes the Wire a nic.WireEnd. No allocation.
func (w *Wire) Inject(frames [][]byte) {
	gso := w.gso.Load()
	for len(frames) > 0 {
		nmsg, k := w.build(frames, gso)
		done := w.send(frames, nmsg, k)
		if done < k {
			gso = false // the kernel refused a GSO send: the rest goes datagram by datagram
		}
		frames = frames[done:]
	}
	w.st.outPkts.Add(w.txPkts)
	w.st.outBytes.Add(w.txBytes)
	w.st.sendCalls.Add(w.txCalls)
	w.st.gsoSends.Add(w.txGSOs)
	w.txPkts, w.txBytes, w.txCalls, w.txGSOs = 0, 0, 0, 0
	w.st.drops[0].Flush(&w.txDrops)
}

// build makes messages of frames: it returns how many messages and how
// many frames they hold. A GSO message is a run of frames of one size,
// the last of which may be shorter (UDP_SEGMENT cuts the payload every
// segment size bytes), each datagram gathered from the shared header
// and the frame.
func (w *Wire) build(frames [][]byte, gso bool) (nmsg, k int) {
	iov := 0
	cs := unix.CmsgSpace(2)
	for k < len(frames) && nmsg < txMsgs && iov+2 <= len(w.txIov) {
		seg := HeaderLen + len(frames[k])
		start, bytes := k, 0
		w.txIov[iov], w.txIov[iov+1] = mmsg.Iov(w.hdr[:]), mmsg.Iov(frames[k])
		iov += 2
		bytes += seg
		k++
		if gso && seg <= w.gsoMax {
			for k < len(frames) && k-start < gsoMaxSegs && iov+2 <= len(w.txIov) {
				d := HeaderLen + len(frames[k])
				if d > seg || bytes+d > gsoMaxBytes {
					break
				}
				w.txIov[iov], w.txIov[iov+1] = mmsg.Iov(w.hdr[:]), mmsg.Iov(frames[k])
				iov += 2
				bytes += d
				k++
				if d < seg {
					break // a shorter datagram ends the run
				}
			}
		}
		h := &w.txHdrs[nmsg]
		h.SetIov(w.txIov[iov-2*(k-start) : iov])
		w.txStart[nmsg] = start
		w.txGSO[nmsg] = k-start > 1
		if w.txGSO[nmsg] {
			c := w.txCtl[nmsg*cs : (nmsg+1)*cs]
			binary.NativeEndian.PutUint16(c[unix.CmsgLen(0):], uint16(seg))
			h.SetControl(c)
		} else {
			h.SetControl(nil)
		}
		nmsg++
	}
	w.txStart[nmsg] = k
	return nmsg, k
}

// send sends the nmsg messages build made of frames[:k] and returns how
// many frames are done: k, or fewer when UDP GSO turned out not to work
// and the rest must be built again without it.
func (w *Wire) send(frames [][]byte, nmsg, k int) int {
	sent := 0
	for sent < nmsg {
		n, err := w.conn.Send(w.txHdrs[sent:nmsg])
		w.txCalls++
		for i := sent; i < sent+n; i++ {
			w.count(frames, i)
		}
		sent += n
		if err == nil {
			break
		}
		if errors.Is(err, os.ErrClosed) {
			for i := sent; i < nmsg; i++ {
				w.dropMsg(frames, i, drop.SendError)
			}
			return k
		}
		if w.txGSO[sent] && (errors.Is(err, unix.EIO) || errors.Is(err, unix.EINVAL)) {
			// EIO: the egress device cannot checksum UDP (GSO needs it);
			// EINVAL: a segment grew larger than the path MTU. Send this
			// message and what follows datagram by datagram.
			if errors.Is(err, unix.EIO) && w.gso.Swap(false) {
				w.log.Warn("UDP GSO refused by the underlay (no checksum offload on the egress device?): sending datagram by datagram", "err", err)
			}
			return w.txStart[sent]
		}
		w.dropMsg(frames, sent, mmsg.SendReason(err))
		sent++
	}
	return k
}

func (w *Wire) count(frames [][]byte, m int) {
	if w.txGSO[m] {
		w.txGSOs++
	}
	for _, f := range frames[w.txStart[m]:w.txStart[m+1]] {
		w.txPkts++
		w.txBytes += uint64(len(f))
	}
}

func (w *Wire) dropMsg(frames [][]byte, m int, r drop.Reason) {
	for range frames[w.txStart[m]:w.txStart[m+1]] {
		w.txDrops.Add(r)
	}
}

// Start starts the receive goroutine: it hands what arrives from Remote
// to to, batch by batch, until Close.
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
			h.SetName(w.rxName[i*unix.SizeofSockaddrInet6 : (i+1)*unix.SizeofSockaddrInet6])
			h.SetControl(w.rxCtl[i*ctlSpace : (i+1)*ctlSpace])
			h.Msg.Flags = 0
		}
	}, func(n int) { w.receive(n, to) },
		func(err error) { w.log.Warn("receiving from the underlay", "err", err) })
}

// receive decapsulates the n messages just received and hands the frames
// to to.
func (w *Wire) receive(n int, to Receiver) {
	frames := w.rxFrames[:0]
	var pkts, bytes, gro uint64
	for i := range n {
		h := &w.rxHdrs[i]
		data := w.rxBufs[i][:h.Len]
		seg := w.control(i)
		if seg <= 0 || seg > len(data) {
			seg = len(data)
		} else if seg < len(data) {
			gro++
		}
		if h.Msg.Flags&unix.MSG_TRUNC != 0 {
			w.rxDrops.Add(drop.Truncated)
			continue
		}
		if !w.fromRemote(i, h) {
			for range max(1, (len(data)+seg-1)/max(seg, 1)) {
				w.rxDrops.Add(drop.VXLANSource)
			}
			continue
		}
		if len(data) == 0 {
			w.rxDrops.Add(drop.VXLANShort)
			continue
		}
		for off := 0; off < len(data); off += seg {
			f, r := Decode(data[off:min(off+seg, len(data))], w.cfg.VNI)
			if r != drop.None {
				w.rxDrops.Add(r)
				continue
			}
			if len(frames) == cap(frames) {
				to.Inject(frames)
				clear(frames)
				frames = frames[:0]
			}
			frames = append(frames, f)
			pkts++
			bytes += uint64(len(f))
		}
	}
	if len(frames) > 0 {
		to.Inject(frames)
		clear(frames)
	}
	w.st.recvCalls.Add(1)
	w.st.inPkts.Add(pkts)
	w.st.inBytes.Add(bytes)
	w.st.groRecvs.Add(gro)
	w.st.drops[1].Flush(&w.rxDrops)
}

// control reads message i's ancillary data: it returns the UDP GRO
// segment size (0 for a single datagram) and counts the socket's
// overflow drops (SO_RXQ_OVFL, a running count).
func (w *Wire) control(i int) int {
	h := &w.rxHdrs[i]
	ctl := w.rxCtl[i*ctlSpace : i*ctlSpace+int(h.Msg.Controllen)]
	seg := 0
	for len(ctl) >= unix.SizeofCmsghdr {
		c := (*unix.Cmsghdr)(unsafe.Pointer(&ctl[0]))
		l := int(c.Len)
		if l < unix.SizeofCmsghdr || l > len(ctl) {
			break
		}
		data := ctl[unix.CmsgLen(0):l]
		switch {
		case c.Level == unix.IPPROTO_UDP && c.Type == unix.UDP_GRO && len(data) >= 2:
			if len(data) >= 4 {
				seg = int(binary.NativeEndian.Uint32(data))
			} else {
				seg = int(binary.NativeEndian.Uint16(data))
			}
		case c.Level == unix.SOL_SOCKET && c.Type == unix.SO_RXQ_OVFL && len(data) >= 4:
			v := binary.NativeEndian.Uint32(data)
			for d := v - w.rxOvfl; d > 0 && d < 1<<31; d-- {
				w.rxDrops.Add(drop.SocketOverflow)
			}
			w.rxOvfl = v
		}
		sp := unix.CmsgSpace(l - unix.SizeofCmsghdr)
		if sp > len(ctl) {
			break
		}
		ctl = ctl[sp:]
	}
	return seg
}

// fromRemote reports whether message i came from Remote (any port: Linux
// sends from a port hashed from the inner flow).
func (w *Wire) fromRemote(i int, h *mmsg.Hdr) bool {
	name := w.rxName[i*unix.SizeofSockaddrInet6:]
	if w.v6 {
		if h.Msg.Namelen < unix.SizeofSockaddrInet6 {
			return false
		}
		return [16]byte(name[8:24]) == w.cfg.Remote.As16()
	}
	if h.Msg.Namelen < unix.SizeofSockaddrInet4 {
		return false
	}
	return [4]byte(name[4:8]) == w.cfg.Remote.As4()
}

// Stats returns a snapshot of the wire's counters.
func (w *Wire) Stats() Stats {
	s := Stats{
		Remote: w.cfg.Remote.String(), Port: w.cfg.Port, VNI: w.cfg.VNI, Underlay: w.underlay,
		GSO: w.gso.Load(), GRO: w.gro,
		OutPackets: w.st.outPkts.Load(), OutBytes: w.st.outBytes.Load(),
		InPackets: w.st.inPkts.Load(), InBytes: w.st.inBytes.Load(),
		SendCalls: w.st.sendCalls.Load(), RecvCalls: w.st.recvCalls.Load(),
		GSOSends: w.st.gsoSends.Load(), GRORecvs: w.st.groRecvs.Load(),
		Drops: []drop.Entry{},
	}
	tx, rx := w.st.drops[0].Load(), w.st.drops[1].Load()
	s.Drops = tx.Entries(PlaceTX, s.Drops)
	s.Drops = rx.Entries(PlaceRX, s.Drops)
	return s
}

// Close closes the socket and waits for the receive goroutine. Closing
// twice is not an error.
func (w *Wire) Close() error {
	var err error
	w.closeOnce.Do(func() {
		err = w.conn.Close()
		if w.started.Load() {
			select {
			case <-w.done:
			case <-time.After(5 * time.Second):
				w.log.Warn("the VXLAN receive goroutine did not stop within 5 s")
			}
		}
	})
	return err
}
