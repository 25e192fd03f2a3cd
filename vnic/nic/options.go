package nic

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"

	"vnic/vnic/capture"
)

// Engine is who does the NIC's work.
type Engine string

// Engines.
const (
	// EngineVNIC is vnic's own segment (TSO/USO) and coalesce (GRO).
	EngineVNIC Engine = "vnic"
	// EngineWireGuard is wireguard-go's tun package doing its own GSO
	// split on read (gsoSplit) and GRO on write (handleGRO): the
	// reference engine benchmarks compare against. It has no NIC models
	// or hardware MTU, and its host-tx and host-rx happen inside
	// wireguard-go, so they are neither counted nor recorded.
	EngineWireGuard Engine = "wireguard"
)

// Model is how a NIC behaves beyond its MTUs.
type Model string

// NIC models.
const (
	// ModelStandard is an offloading NIC that does TSO/USO and checksum
	// completion correctly (and, with HWMTU below the MTU, the forcedeth
	// NIC's hidden TSO: TCP is cut to fit the hardware MTU, other large
	// packets are dropped).
	ModelStandard Model = "standard"
	// ModelTSOPassthrough puts super-packets on the wire unsegmented, as
	// VMXNET3 does between VMs: a GSO frame leaves as one IP packet of up
	// to 64 KiB, checksum completed, headers (DF, lengths) as the kernel
	// built them. Packets that are not super-packets go out as with
	// ModelStandard.
	ModelTSOPassthrough Model = "tso-passthrough"
	// ModelNoCsum leaves partial checksums incomplete on the wire: TSO
	// segments and packets the kernel left CHECKSUM_PARTIAL (virtio
	// NEEDS_CSUM) go on the wire with only the pseudo-header sum in the
	// TCP/UDP checksum field, so the receiver's kernel drops them
	// (TcpInCsumErrors). With `ethtool -K dev tx off` the kernel
	// checksums (and segments) in software and the packets arrive.
	ModelNoCsum Model = "no-csum"
	// ModelRxCsumTrusting lies on receive: it reports every packet's
	// checksum as good without checking it, as the veth driver did for
	// packets entering containers until 2016, so a packet corrupted on
	// the wire reaches the application. GRO merges without verifying, and
	// a packet it hands on alone reaches the kernel as CHECKSUM_PARTIAL
	// (a TUN ignores DATA_VALID; see vouch). Transmit is as with
	// ModelStandard.
	ModelRxCsumTrusting Model = "rx-csum-trusting"
)

// Models lists every model, for help texts and errors.
var Models = []Model{ModelStandard, ModelTSOPassthrough, ModelNoCsum, ModelRxCsumTrusting}

// Defaults.
const (
	DefaultName       = "vnic0"
	DefaultMTU        = 1500
	DefaultBatch      = 64
	DefaultTxQueueLen = 1000
)

// ErrConfig is wrapped by every configuration error.
var ErrConfig = errors.New("bad configuration")

// ConfigError returns an error wrapping ErrConfig with the message.
func ConfigError(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, args...))
}

// Options describe one NIC. The zero value of every field is a sensible
// default (see Normalize).
type Options struct {
	// Name is the interface name (default "vnic0"): at most 15 bytes, no
	// '/', ':' or whitespace.
	Name string
	// Netns is the network namespace the interface is created in (Open):
	// a name as `ip netns` knows it, or the path of a namespace file
	// (/proc/PID/ns/net, /run/netns/NAME). It must exist; "" is the
	// caller's namespace.
	Netns string
	// Mode is ModeTUN (default: an IP interface) or ModeTAP (an Ethernet
	// interface with a MAC address).
	Mode Mode
	// MAC is a TAP NIC's hardware address (default DefaultMAC(Netns,
	// Name)); a unicast address. Only with ModeTAP.
	MAC net.HardwareAddr
	// Addrs are the interface's addresses with their prefixes.
	Addrs []netip.Prefix
	// MTU is the interface MTU (default 1500), also the wire's.
	MTU int
	// HWMTU is the NIC's hardware MTU: the largest IP packet it puts on
	// or takes off the wire (0: the MTU). Below the MTU it models the
	// forcedeth NIC: TCP is cut to fit by TSO, anything else larger is
	// dropped, and larger wire packets cannot be received.
	HWMTU int
	// Model is the NIC model (default ModelStandard).
	Model Model
	// Engine is EngineVNIC (default) or EngineWireGuard.
	Engine Engine
	// NoRxCsum turns the NIC's receive checksum offload off: it reports no
	// packet as verified, and the kernel verifies every checksum itself.
	// On by default, as on a real NIC with rx-checksumming: every packet
	// whose TCP/UDP checksum the NIC verified reaches the kernel marked
	// so (virtio DATA_VALID: CHECKSUM_UNNECESSARY). (A TUN shows
	// `rx-checksumming: off [fixed]` in ethtool, so this is vnic's own
	// switch, not `ethtool -K rx`.)
	NoRxCsum bool
	// Batch is how many frames one read from the host moves at most
	// (default 64).
	Batch int
	// TxQueueLen is the interface's transmit queue length (default 1000).
	TxQueueLen int
	// Capture records host-tx, wire and host-rx; nil records nothing and
	// costs nothing.
	Capture *capture.NIC
	// Logger receives the NIC's logs (default slog.Default()).
	Logger *slog.Logger
}

// ValidName reports whether name can be a Linux interface name: 1 to 15
// bytes, no '/', ':' or whitespace, not "." or "..".
func ValidName(name string) error {
	if name == "" || len(name) > 15 || strings.ContainsAny(name, "/: \t\n") || name == "." || name == ".." {
		return ConfigError("interface name %q: 1 to 15 characters, no '/', ':' or spaces", name)
	}
	return nil
}

// Normalize fills in the defaults and checks the options, returning an
// error (wrapping ErrConfig) that says what is wrong and what to do.
func (o *Options) Normalize() error {
	if o.Name == "" {
		o.Name = DefaultName
	}
	if err := ValidName(o.Name); err != nil {
		return err
	}
	switch o.Mode {
	case "":
		o.Mode = ModeTUN
	case ModeTUN, ModeTAP:
	default:
		return ConfigError("mode %q: use %q (an IP interface) or %q (an Ethernet interface)", o.Mode, ModeTUN, ModeTAP)
	}
	if o.Mode == ModeTAP {
		if o.MAC == nil {
			o.MAC = DefaultMAC(o.Netns, o.Name)
		}
		if len(o.MAC) != 6 || o.MAC[0]&1 != 0 || string(o.MAC) == "\x00\x00\x00\x00\x00\x00" {
			return ConfigError("MAC %v: give a unicast Ethernet address, e.g. 02:00:00:00:00:01 (the first byte even; 02 marks it locally administered)", o.MAC)
		}
	} else if o.MAC != nil {
		return ConfigError("MAC %v: a TUN NIC has no MAC address; add --mode tap", o.MAC)
	}
	if o.MTU == 0 {
		o.MTU = DefaultMTU
	}
	hasV6 := false
	for _, a := range o.Addrs {
		if !a.IsValid() {
			return ConfigError("address %v is not valid: use ADDR/PREFIX, e.g. 198.18.0.1/15", a)
		}
		if a.Addr().Is6() {
			hasV6 = true
		}
	}
	min := 68
	if hasV6 {
		min = 1280
	}
	if o.MTU < min || o.MTU > 65535 {
		return ConfigError("MTU %d: must be between %d and 65535 (IPv6 needs at least 1280)", o.MTU, min)
	}
	if o.HWMTU == 0 {
		o.HWMTU = o.MTU
	}
	if o.HWMTU < 576 || o.HWMTU > o.MTU {
		return ConfigError("hardware MTU %d: must be between 576 and the MTU %d", o.HWMTU, o.MTU)
	}
	if err := o.Model.check(); err != nil {
		return err
	}
	if o.Model == "" {
		o.Model = ModelStandard
	}
	switch o.Engine {
	case "":
		o.Engine = EngineVNIC
	case EngineVNIC:
	case EngineWireGuard:
		if o.Mode == ModeTAP {
			return ConfigError("engine %q has no TAP mode (wireguard-go's tun package is IP only): use --mode tun or --engine vnic", o.Engine)
		}
		if o.HWMTU != o.MTU || o.Model != ModelStandard {
			return ConfigError("engine %q has no hardware MTU or NIC model: leave the hardware MTU and the model unset", o.Engine)
		}
	default:
		return ConfigError("engine %q: use %q or %q", o.Engine, EngineVNIC, EngineWireGuard)
	}
	if o.Batch == 0 {
		o.Batch = DefaultBatch
	}
	if o.Batch < 1 || o.Batch > 1024 {
		return ConfigError("batch %d: between 1 and 1024", o.Batch)
	}
	if o.TxQueueLen == 0 {
		o.TxQueueLen = DefaultTxQueueLen
	}
	if o.TxQueueLen < 0 {
		return ConfigError("transmit queue length %d: 0 for the default or a positive number", o.TxQueueLen)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return nil
}

func (m Model) check() error {
	if m == "" {
		return nil
	}
	for _, k := range Models {
		if m == k {
			return nil
		}
	}
	return ConfigError("NIC model %q: use %q, %q, %q or %q", m, ModelStandard, ModelTSOPassthrough, ModelNoCsum, ModelRxCsumTrusting)
}
