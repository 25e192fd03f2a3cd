package tundev

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"vnic/vnic/drop"
)

// Offloads is a set of TUNSETOFFLOAD bits (TUN_F_* in
// include/uapi/linux/if_tun.h): what the kernel may leave to the reader of
// the TUN device (checksums, segmentation) and what it accepts from its
// writer.
type Offloads uint

// Offload bits.
const (
	CSUM   Offloads = 0x01 // TUN_F_CSUM: partial checksums (NEEDS_CSUM)
	TSO4   Offloads = 0x02 // TUN_F_TSO4: TCP over IPv4 super-packets (needs CSUM)
	TSO6   Offloads = 0x04 // TUN_F_TSO6: TCP over IPv6 super-packets (needs CSUM)
	TSOECN Offloads = 0x08 // TUN_F_TSO_ECN: TSO with CWR (VIRTIO_NET_HDR_GSO_ECN)
	UFO    Offloads = 0x10 // TUN_F_UFO: UDP fragmentation; accepted but ignored since Linux 4.14
	USO4   Offloads = 0x20 // TUN_F_USO4: UDP segmentation over IPv4 (Linux 6.2+, needs CSUM and USO6)
	USO6   Offloads = 0x40 // TUN_F_USO6: UDP segmentation over IPv6 (Linux 6.2+, needs CSUM and USO4)
	// UDPTunnel (TUN_F_UDP_TUNNEL_GSO, Linux 6.17+): TSO/USO
	// super-packets inside a UDP tunnel (VXLAN, GENEVE), described by the
	// 24-byte virtio_net_hdr_v1_hash_tunnel (virtio.HdrTunnel); the outer
	// UDP checksum is 0 on every segment.
	UDPTunnel Offloads = 0x80
	// UDPTunnelCsum (TUN_F_UDP_TUNNEL_GSO_CSUM, Linux 6.17+, needs
	// UDPTunnel): the same with an outer UDP checksum on every segment
	// (VIRTIO_NET_HDR_F_UDP_TUNNEL_CSUM).
	UDPTunnelCsum Offloads = 0x100

	// All is every offload vnic uses: the set the daemon asks for.
	All = CSUM | TSO4 | TSO6 | TSOECN | USO4 | USO6
)

var offloadNames = []struct {
	bit  Offloads
	name string
}{
	{CSUM, "csum"}, {TSO4, "tso4"}, {TSO6, "tso6"}, {TSOECN, "tso_ecn"},
	{UFO, "ufo"}, {USO4, "uso4"}, {USO6, "uso6"},
	{UDPTunnel, "udp_tunnel"}, {UDPTunnelCsum, "udp_tunnel_csum"},
}

// String returns the set as "csum|tso4|tso6|tso_ecn|uso4|uso6" ("none"
// for the empty set); bits without a name are shown in hex.
func (o Offloads) String() string {
	if o == 0 {
		return "none"
	}
	var parts []string
	for _, n := range offloadNames {
		if o&n.bit != 0 {
			parts = append(parts, n.name)
			o &^= n.bit
		}
	}
	if o != 0 {
		parts = append(parts, fmt.Sprintf("%#x", uint(o)))
	}
	return strings.Join(parts, "|")
}

// fallback is the order in which Open gives up offloads the kernel
// refuses: unknown bits, then the UDP tunnel offloads (Linux < 6.17), USO
// (Linux < 6.2), TSO_ECN, UFO, TSO, and finally checksum offload.
var fallback = []Offloads{^(CSUM | TSO4 | TSO6 | TSOECN | UFO | USO4 | USO6 | UDPTunnel | UDPTunnelCsum),
	UDPTunnelCsum, UDPTunnel, USO4 | USO6, TSOECN, UFO, TSO4 | TSO6, CSUM}

// Config says what device Open creates.
type Config struct {
	// Name is the interface name, e.g. "vnic0": at most 15 bytes, no '/',
	// ':' or whitespace. It is an error if an interface of that name
	// already exists in the namespace (ErrNameTaken). "" lets the kernel
	// choose ("tun0", "tun1", ...); a "%d" in the name is replaced by the
	// first free number.
	Name string
	// Offloads are the offloads wanted. The kernel may refuse some; Open
	// then drops them in a fixed order (see Open), logs which were
	// refused, and Device.Offloads reports what was granted.
	Offloads Offloads
	// NAPI makes the kernel receive written frames through NAPI
	// (IFF_NAPI), which runs GRO on them.
	NAPI bool
	// TAP creates a TAP device (IFF_TAP) instead of a TUN: the kernel
	// sees an Ethernet interface with a MAC address, does ARP and IPv6
	// neighbour discovery itself, and every frame is the virtio header
	// followed by an Ethernet frame (csum_start and hdr_len then count from
	// the Ethernet header). The offloads are the same.
	TAP bool
	// MultiQueue creates a multi-queue device (IFF_MULTI_QUEUE): Open
	// returns its first queue, Device.OpenQueue attaches more. The kernel
	// spreads what it transmits over the queues by flow hash
	// (tun_select_queue), so each queue can have a reader of its own.
	MultiQueue bool
	// VnetHdrSize is the virtio header length: 10 (struct virtio_net_hdr),
	// 12 (struct virtio_net_hdr_mrg_rxbuf) or 24 (struct
	// virtio_net_hdr_v1_hash_tunnel, virtio.HdrTunnel: what the UDP tunnel
	// offloads describe their super-packets with). 0 means 24 when
	// Offloads asks for UDPTunnel or UDPTunnelCsum and the kernel grants
	// them, 10 otherwise (Device.VnetHdrSize says which).
	VnetHdrSize int
	// Logger receives the negotiation's outcome; nil means slog.Default().
	Logger *slog.Logger
}

// MaxFrame is the largest frame a Read can return with the largest
// header: a 64 KiB IP packet plus the 24-byte tunnel header. A buffer this
// long (after the offset) never truncates a frame.
const MaxFrame = 65535 + tunnelHdrLen

// tunnelHdrLen is sizeof(struct virtio_net_hdr_v1_hash_tunnel).
const tunnelHdrLen = 24

// Errors Open returns, to be tested with errors.Is. Each comes wrapped in
// a message that says what to do.
var (
	// ErrNoTUN: the TUN driver is missing (no /dev/net/tun, or the module
	// is not loaded).
	ErrNoTUN = errors.New("tundev: no TUN driver")
	// ErrPermission: creating a TUN device needs root or CAP_NET_ADMIN.
	// Also matches os.ErrPermission.
	ErrPermission = errors.New("tundev: permission denied")
	// ErrNameTaken: an interface of that name already exists.
	ErrNameTaken = errors.New("tundev: interface name taken")
	// ErrInvalidName: not a valid interface name.
	ErrInvalidName = errors.New("tundev: invalid interface name")
)

// openError is an error with a message that says what to do, matching its
// kind (ErrNoTUN, ...) and the underlying errno.
type openError struct {
	msg  string
	kind error
	err  error
}

func (e *openError) Error() string   { return e.msg }
func (e *openError) Unwrap() []error { return []error{e.kind, e.err} }

// DropReason is why the kernel refused a frame Write gave it: one of
// drop.TUNInvalid, drop.TUNDown, drop.TUNNoMem (the project's one drop
// reason set).
type DropReason = drop.Reason

// Drop reasons.
const (
	// DropInvalid (EINVAL): the kernel refused the frame itself, a bad
	// virtio header or packet (tun_get_user, virtio_net_hdr_to_skb: e.g.
	// csum_start beyond the packet, a GSO type the device did not
	// negotiate, more than 128 UDP segments, a frame shorter than the
	// header).
	DropInvalid = drop.TUNInvalid
	// DropDown (EIO): the interface is down.
	DropDown = drop.TUNDown
	// DropNoMem (ENOMEM, ENOBUFS): the kernel could not allocate the skb.
	DropNoMem = drop.TUNNoMem
)

// ErrDropped matches (errors.Is) every *DropError.
var ErrDropped = errors.New("tundev: frames refused by the kernel")

// DropError reports the frames of one Write that the kernel refused; the
// others were written. It unwraps to ErrDropped and to the first refused
// frame's errno.
type DropError struct {
	// Dropped counts the refused frames by reason.
	Dropped drop.Counts
	// First is the index in bufs of the first refused frame, FirstErr its
	// errno.
	First    int
	FirstErr error
}

// Total is the number of refused frames.
func (e *DropError) Total() int { return int(e.Dropped.Total()) }

func (e *DropError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "tundev: kernel refused %d frame(s) (", e.Total())
	sep := ""
	e.Dropped.Each(func(r drop.Reason, c uint64) {
		fmt.Fprintf(&b, "%s%s %d", sep, r, c)
		sep = ", "
	})
	fmt.Fprintf(&b, "); first: frame %d: %v", e.First, e.FirstErr)
	return b.String()
}

func (e *DropError) Unwrap() []error { return []error{ErrDropped, e.FirstErr} }

// Stats are a device's counters since Open.
type Stats struct {
	ReadFrames    uint64 // frames Read returned
	ReadBytes     uint64 // their bytes, virtio headers included
	WrittenFrames uint64 // frames the kernel took from Write
	WrittenBytes  uint64
	// Dropped counts frames the kernel refused in Write, by reason.
	Dropped drop.Counts
}
