package nic

import (
	"errors"
	"os"
	"sync"
	"sync/atomic"

	"vnic/vnic/glink"
)

// Device is the host side of a NIC, the shape of wireguard-go's
// tun.Device: batched reads and writes into caller-owned buffers after a
// headroom offset. For vnic's engine it is a TUN device with
// IFF_VNET_HDR (every frame a virtio_net_hdr followed by an IP packet:
// *tundev.Device); for the wireguard engine it is wireguard-go's
// tun.Device, which splits and coalesces itself and moves plain IP
// packets.
type Device interface {
	// Read blocks until at least one frame is there, then reads up to
	// len(bufs) frames into bufs[i][offset:], lengths into sizes.
	Read(bufs [][]byte, sizes []int, offset int) (int, error)
	// Write writes each bufs[i][offset:] as one frame and returns how
	// many the kernel took.
	Write(bufs [][]byte, offset int) (int, error)
	// Close removes the device; a Read waiting in another goroutine
	// returns an error.
	Close() error
}

// WireEnd is the far end of a NIC's wire: whatever takes the wire-size
// packets its transmit side puts on the cable — the gVisor peer
// (*peer.Peer), another NIC (*NIC: a direct wire), a router interface, a
// wire.Wire with impairments (InjectFunc(w.Send)), and for a TAP NIC's
// Ethernet frames an interface (*afpacket.Wire) or a VXLAN tunnel
// (*vxlan.Wire). Inject is called from
// one goroutine at a time (the NIC's transmit loop) and must not keep
// pkts nor their buffers after it returns.
type WireEnd interface {
	Inject(pkts [][]byte)
}

// InjectFunc makes a function a WireEnd.
type InjectFunc func(pkts [][]byte)

// Inject calls f.
func (f InjectFunc) Inject(pkts [][]byte) { f(pkts) }

// discard is the far end of a NIC nobody connected.
var discard = InjectFunc(func([][]byte) {})

// NIC is one vnic NIC: a host-side Device, an engine doing the NIC's
// work, and a far end. See the package documentation for the path of a
// frame.
//
// Life cycle: Open (or New over any Device), Connect, Start, then Close.
// The receive side — Inject for wire packets, Output for a gVisor stack's
// packets — must be called from one goroutine at a time (a wire's, a
// peer's output goroutine, the other NIC's transmit loop).
type NIC struct {
	opt Options
	dev Device
	eng engine
	st  stats
	far WireEnd

	started   atomic.Bool
	done      chan error
	closeOnce sync.Once
	closeErr  error

	mu      sync.Mutex // guards opt.Model, closers
	closers []func()
	// kernel reads the interface's own counters (set by Open).
	kernel func() (*Kernel, error)
}

// engine is who does the NIC's work between the Device and the wire:
// vnic's (vnicEngine) or wireguard-go's (wgEngine).
type engine interface {
	// txLoop moves frames from the host to the wire until the device
	// fails (closed on shutdown).
	txLoop() error
	// receive takes wire packets into the host; checked says a vnic
	// segmenter computed their checksums with nothing in between.
	receive(pkts [][]byte, checked bool)
	// output takes a gVisor stack's packets (virtio header + IP packet:
	// the far end's TSO is done here) into the host.
	output(pkts []glink.Packet, checked bool)
	setGRO(on bool)
	setModel(m Model)
	setRxCsum(on bool)
	fill(s *Stats)
}

// New makes a NIC over dev with the engine opt.Engine names (dev must
// fit it: a TUN with IFF_VNET_HDR for EngineVNIC, a wireguard-go device
// for EngineWireGuard). It does no system call: Open creates the device
// in a namespace, tests give a fake one.
func New(dev Device, opt Options) (*NIC, error) {
	if err := opt.Normalize(); err != nil {
		return nil, err
	}
	n := &NIC{opt: opt, dev: dev, far: discard, done: make(chan error, 1)}
	switch opt.Engine {
	case EngineWireGuard:
		n.eng = newWGEngine(n)
	default:
		n.eng = newVNICEngine(n)
	}
	n.eng.setModel(opt.Model)
	return n, nil
}

// Name returns the interface name.
func (n *NIC) Name() string { return n.opt.Name }

// Options returns the normalized options (with the current model).
func (n *NIC) Options() Options {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.opt
}

// Connect sets the far end of the wire; call it before Start. Without
// Connect, what the host sends is dropped.
func (n *NIC) Connect(far WireEnd) {
	if far == nil {
		far = discard
	}
	n.far = far
}

// Start starts the transmit loop (host → wire) on a goroutine of its own.
// Done receives its error when it stops.
func (n *NIC) Start() {
	if n.started.Swap(true) {
		return
	}
	go func() { n.done <- n.eng.txLoop() }()
}

// Done receives the transmit loop's error when it stops (after Close
// too: an error matching os.ErrClosed).
func (n *NIC) Done() <-chan error { return n.done }

// Inject is the NIC's receive side for wire packets (at most the wire
// MTU, checksums as the wire carries them, verified by GRO as a NIC's
// rx-checksumming would): GRO, then into the host. It makes the NIC a
// WireEnd for another NIC, a router or a wire.Wire.
func (n *NIC) Inject(pkts [][]byte) { n.eng.receive(pkts, false) }

// injectChecked is Inject for wire packets another vnic NIC segmented
// and checksummed itself, handed over directly: GRO need not verify them
// again.
func (n *NIC) injectChecked(pkts [][]byte) { n.eng.receive(pkts, true) }

// Output is the receive side for a gVisor stack at the far end of the
// wire (peer.Options.Output, a router interface's Output): the far end's
// NIC segments its super-packets (its TSO), the wire carries them, this
// NIC coalesces. GRO verifies every checksum: what arrives here may have
// crossed other NICs' wires (a router forwards what it receives).
func (n *NIC) Output(pkts []glink.Packet) { n.eng.output(pkts, false) }

// OutputChecked is Output for a gVisor stack whose packets nothing
// touched since gVisor (or segment) checksummed them — the daemon's own
// peer host: GRO trusts their checksums.
func (n *NIC) OutputChecked(pkts []glink.Packet) { n.eng.output(pkts, true) }

// SetGRO switches the NIC's receive coalescing, as `ethtool -K NAME gro
// on|off` does (Open follows that by itself).
func (n *NIC) SetGRO(on bool) { n.eng.setGRO(on) }

// SetRxCsum switches the NIC's receive checksum offload (Options.
// NoRxCsum) at run time; it takes effect with the next receive batch.
func (n *NIC) SetRxCsum(on bool) { n.eng.setRxCsum(on) }

// SetModel switches the NIC's model at run time (the daemon's own knob,
// where the real NIC had no ethtool switch). It takes effect with the
// next frame the host sends.
func (n *NIC) SetModel(m Model) error {
	if err := m.check(); err != nil {
		return err
	}
	if m == "" {
		m = ModelStandard
	}
	if n.opt.Engine == EngineWireGuard && m != ModelStandard {
		return ConfigError("engine %q has no NIC models", n.opt.Engine)
	}
	n.mu.Lock()
	n.opt.Model = m
	n.mu.Unlock()
	n.eng.setModel(m)
	return nil
}

// Stats returns a snapshot of the NIC's counters.
func (n *NIC) Stats() Stats {
	s := n.st.snapshot()
	o := n.Options()
	s.Name, s.Netns, s.Engine, s.Model, s.Mode = o.Name, o.Netns, o.Engine, o.Model, o.Mode
	if o.MAC != nil {
		s.MAC = o.MAC.String()
	}
	n.eng.fill(&s)
	if n.kernel != nil {
		if k, err := n.kernel(); err == nil {
			s.Kernel = k
		}
	}
	return s
}

// onClose adds f to what Close runs before closing the device.
func (n *NIC) onClose(f func()) {
	n.mu.Lock()
	n.closers = append(n.closers, f)
	n.mu.Unlock()
}

// Close stops the NIC and removes its device. What reaches Inject or
// Output afterwards is counted as refused by the host (host_rx
// tun_down). Closing twice is not an error.
func (n *NIC) Close() error {
	n.closeOnce.Do(func() {
		n.mu.Lock()
		cs := n.closers
		n.closers = nil
		n.mu.Unlock()
		for i := len(cs) - 1; i >= 0; i-- {
			cs[i]()
		}
		n.closeErr = n.dev.Close()
		if !n.started.Load() {
			n.done <- os.ErrClosed
		}
	})
	return n.closeErr
}

// isClosed reports whether err says the device is gone.
func isClosed(err error) bool { return errors.Is(err, os.ErrClosed) }
