package daemon

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"sync"

	"vnic/vnic/capture"
	"vnic/vnic/ethtool"
	"vnic/vnic/nsutil"
	"vnic/vnic/peer"
	"vnic/vnic/tundev"
)

// NIC models: how a NIC behaves beyond its MTUs.
const (
	// ModelStandard is an offloading NIC that does TSO/USO and checksum
	// completion correctly (and, with HWMTU below the MTU, the forcedeth
	// NIC's hidden TSO).
	ModelStandard = "standard"
	// ModelTSOPassthrough puts super-packets on the wire unsegmented, as
	// VMXNET3 does between VMs (docs/stories.md, story 4): a GSO frame leaves
	// as one IP packet of up to 64 KiB, checksum completed, headers
	// (DF, lengths) as the kernel built them. Packets that are not
	// super-packets go out as with ModelStandard.
	ModelTSOPassthrough = "tso-passthrough"
	// ModelNoCsum leaves partial checksums incomplete on the wire
	// (docs/stories.md, story 5): TSO segments and packets the kernel left
	// CHECKSUM_PARTIAL (virtio NEEDS_CSUM) go on the wire with only the
	// pseudo-header sum in the TCP/UDP checksum field, so the receiver's
	// kernel drops them (TcpInCsumErrors). With `ethtool -K dev tx off`
	// the kernel checksums (and segments) in software and the packets
	// arrive.
	ModelNoCsum = "no-csum"
)

// ErrModel is returned by OpenNIC for a model that is not implemented
// (none at present; kept for callers that test for it).
var ErrModel = errors.New("NIC model not implemented")

// NICConfig is one NIC of a lab: a TUN device in an existing namespace
// with vnic's engine behind it.
type NICConfig struct {
	// Name is the interface name (default "vnic0").
	Name string
	// Netns is the named namespace the interface is created in; it must
	// exist ("" is the caller's).
	Netns string
	// Addrs are the interface's addresses.
	Addrs []netip.Prefix
	// MTU is the interface MTU (default 1500).
	MTU int
	// HWMTU is the hardware MTU (0: the MTU); see Config.HWMTU.
	HWMTU int
	// Model is the NIC model (default ModelStandard).
	Model string
	// Batch is how many frames one read or write moves at most (default 64).
	Batch int
	// Engine is EngineVNIC (default) or EngineWireGuard: wireguard-go's
	// tun package splitting and coalescing instead of segment/coalesce,
	// the reference `make bench-nic` measures the direct wire against.
	// The wireguard engine has no NIC models, hardware MTU or host-tx and
	// host-rx captures.
	Engine string
	// Capture records host-tx, wire and host-rx; nil records nothing.
	Capture *capture.NIC
	// Logger receives the NIC's logs (default slog.Default()).
	Logger *slog.Logger
}

func (c *NICConfig) normalize() error {
	if c.Name == "" {
		c.Name = "vnic0"
	}
	if c.MTU == 0 {
		c.MTU = 1500
	}
	if c.HWMTU == 0 {
		c.HWMTU = c.MTU
	}
	if c.HWMTU < 576 || c.HWMTU > c.MTU {
		return cfgErr("hardware MTU %d: must be between 576 and the MTU %d", c.HWMTU, c.MTU)
	}
	switch c.Model {
	case "":
		c.Model = ModelStandard
	case ModelStandard, ModelTSOPassthrough, ModelNoCsum:
	default:
		return cfgErr("NIC model %q: use %q, %q or %q", c.Model, ModelStandard, ModelTSOPassthrough, ModelNoCsum)
	}
	if c.Batch == 0 {
		c.Batch = 64
	}
	switch c.Engine {
	case "":
		c.Engine = EngineVNIC
	case EngineVNIC:
	case EngineWireGuard:
		if c.HWMTU != c.MTU || c.Model != ModelStandard {
			return cfgErr("engine %q has no hardware MTU or NIC model: leave HWMTU and Model unset", c.Engine)
		}
	default:
		return cfgErr("engine %q: use %q or %q", c.Engine, EngineVNIC, EngineWireGuard)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// NIC is a vnic NIC on its own, for labs: the TUN device in a namespace
// and the engine behind it, its wire connected to any WireEnd. It follows
// `ethtool -K NAME gro on|off` like the daemon's.
//
// Life cycle: OpenNIC, Connect, Start, then Close. Its receive side is
// Inject (wire packets from another NIC or a wire.Wire) or Output (a
// gVisor peer's packets); either must be called from one goroutine at a
// time (a wire's, a peer's output goroutine, the other NIC's transmit
// loop).
type NIC struct {
	cfg    NICConfig
	e      *engine // EngineVNIC
	wg     *wgNIC  // EngineWireGuard
	dev    interface{ Close() error }
	st     *stats
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	mu     sync.Mutex // guards cfg.Model
}

// OpenNIC creates and configures the TUN device (addresses, MTU, up) in
// cfg.Netns. Nothing moves until Start.
func OpenNIC(ctx context.Context, cfg NICConfig) (_ *NIC, err error) {
	if err := cfg.normalize(); err != nil {
		return nil, err
	}
	if err := preflight(); err != nil {
		return nil, err
	}
	n := &NIC{cfg: cfg, st: newStats(), done: make(chan error, 1)}
	log := cfg.Logger.With("dev", cfg.Name, "netns", cfg.Netns)
	var dev *tundev.Device
	if err := nsutil.Do(cfg.Netns, func() error {
		var err error
		if cfg.Engine == EngineWireGuard {
			if n.wg, err = openWireGuard(cfg.Name, cfg.MTU, n.st); err == nil {
				n.wg.cap, n.dev = cfg.Capture, n.wg.dev
			}
			return err
		}
		dev, err = tundev.Open(tundev.Config{Name: cfg.Name, Offloads: tundev.All, Logger: log})
		n.dev = dev
		return err
	}); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = n.dev.Close()
		}
	}()
	h, err := nsutil.Handle(cfg.Netns)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	if err := nsutil.ConfigureLink(h, cfg.Name, nsutil.LinkConfig{MTU: cfg.MTU, Addrs: cfg.Addrs, Up: true, TxQueueLen: 1000}); err != nil {
		return nil, err
	}
	if dev != nil {
		n.e = newEngine(dev, nil, cfg.Capture, n.st, cfg.Batch, cfg.MTU, cfg.HWMTU)
		n.e.setModel(cfg.Model)
	}

	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	n.cancel = cancel
	first := make(chan error, 1)
	var once sync.Once
	go func() {
		err := ethtool.Watch(wctx, cfg.Netns, cfg.Name, func(f map[string]bool) {
			if on, ok := f["rx-gro"]; ok {
				n.setGRO(on)
			}
			once.Do(func() { first <- nil })
		})
		once.Do(func() { first <- err })
	}()
	if err := <-first; err != nil {
		log.Warn("cannot follow ethtool -K gro; GRO stays on", "err", err)
	}
	return n, nil
}

// SetModel switches the NIC's model at run time (the daemon's own knob,
// where the real NIC has no ethtool switch): ModelStandard,
// ModelTSOPassthrough or ModelNoCsum. It takes effect with the next frame
// the host sends.
func (n *NIC) SetModel(model string) error {
	c := NICConfig{Model: model, MTU: n.cfg.MTU, HWMTU: n.cfg.HWMTU, Engine: n.cfg.Engine}
	if err := c.normalize(); err != nil {
		return err
	}
	if n.e != nil {
		n.e.setModel(c.Model)
	}
	n.mu.Lock()
	n.cfg.Model = c.Model
	n.mu.Unlock()
	return nil
}

// Name returns the interface name.
func (n *NIC) Name() string { return n.cfg.Name }

// Config returns the normalized configuration.
func (n *NIC) Config() NICConfig {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cfg
}

func (n *NIC) setGRO(on bool) {
	if n.wg != nil {
		n.wg.setGRO(on)
		return
	}
	n.e.setGRO(on)
}

// Connect sets the far end of the wire; call it before Start.
func (n *NIC) Connect(far WireEnd) {
	if n.wg != nil {
		n.wg.far = far
		return
	}
	n.e.far = far
}

// Start starts the transmit loop (host → wire). Without Connect, what
// the host sends is dropped.
func (n *NIC) Start() {
	if n.wg != nil {
		if n.wg.far == nil {
			n.wg.far = InjectFunc(func([][]byte) {})
		}
		go func() { n.done <- n.wg.txLoop() }()
		return
	}
	if n.e.far == nil {
		n.e.far = InjectFunc(func([][]byte) {})
	}
	go func() { n.done <- n.e.txLoop() }()
}

// Done receives the transmit loop's error when it stops (after Close
// too).
func (n *NIC) Done() <-chan error { return n.done }

// rxEngine makes the NIC a directEnd for a NIC with vnic's engine on the
// other end of a direct wire (nil with the wireguard engine).
func (n *NIC) rxEngine() *engine { return n.e }

// injectChecked is Inject for wire packets another NIC's engine
// segmented and checksummed itself, connected to this one directly: GRO
// skips verifying their checksums (checkedEnd).
func (n *NIC) injectChecked(pkts [][]byte) {
	if n.wg != nil {
		n.wg.receive(pkts)
		return
	}
	n.e.injectChecked(pkts)
}

// Inject is the NIC's receive side for wire packets (complete checksums,
// at most the wire MTU): GRO, then into the host. It makes the NIC a
// WireEnd for another NIC or a wire.Wire's Deliver.
func (n *NIC) Inject(pkts [][]byte) {
	if n.wg != nil {
		n.wg.receive(pkts)
		return
	}
	n.e.receive(pkts)
}

// Output is the receive side for a gVisor peer (peer.Options.Output): the
// peer's NIC segments, the wire carries, this NIC coalesces.
//
// What arrives here may have crossed another NIC's wire (a router
// forwards what it receives, a NIC model may leave checksums partial), so
// GRO verifies every checksum, as the NIC's rx-checksumming would.
func (n *NIC) Output(pkts []peer.Packet) {
	if n.wg != nil {
		n.wg.output(pkts)
		return
	}
	n.e.fill(pkts, false)
}

// Stats returns the NIC's counters (Peer and Capture are left empty).
func (n *NIC) Stats() Stats {
	s := n.st.snapshot()
	s.Name, s.Netns, s.Engine = n.cfg.Name, n.cfg.Netns, n.cfg.Engine
	if n.wg != nil {
		n.wg.stats(&s)
		return s
	}
	s.GRO = n.e.groOn.Load()
	s.Coalesce = n.e.coalesceStats()
	return s
}

// Close stops the NIC and removes the TUN device. What reaches Inject or
// Output afterwards is counted as refused by the TUN.
func (n *NIC) Close() error {
	var err error
	n.once.Do(func() {
		n.cancel()
		err = n.dev.Close()
	})
	return err
}
