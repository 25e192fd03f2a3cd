package daemon_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"

	"vnic/vnic/daemon"
	"vnic/vnic/nsutil"
	"vnic/vnic/pkttest"
	"vnic/vnic/virtio"
)

// htons for AF_PACKET protocol numbers.
func htons(v uint16) uint16 { return v<<8 | v>>8 }

// packetSocket opens an AF_PACKET socket bound to nothing on dev inside ns
// and returns a function that sends one frame with the given ethertype.
// With vnet, the socket has PACKET_VNET_HDR and each frame starts with a
// virtio_net_hdr the kernel checks (__virtio_net_hdr_to_skb).
func packetSocket(t *testing.T, ns, dev string, vnet bool) func(proto uint16, b []byte) error {
	t.Helper()
	var fd, ifindex int
	err := nsutil.Do(ns, func() error {
		ifi, err := net.InterfaceByName(dev)
		if err != nil {
			return err
		}
		ifindex = ifi.Index
		// PACKET_VNET_HDR needs SOCK_RAW; on a TUN (no link-layer
		// header) both kinds send the IP packet as it is.
		typ := unix.SOCK_DGRAM
		if vnet {
			typ = unix.SOCK_RAW
		}
		fd, err = unix.Socket(unix.AF_PACKET, typ|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		if vnet {
			if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VNET_HDR, 1); err != nil {
				unix.Close(fd)
				return fmt.Errorf("PACKET_VNET_HDR: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("AF_PACKET socket on %s in %s: %v", dev, ns, err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return func(proto uint16, b []byte) error {
		return unix.Sendto(fd, b, 0, &unix.SockaddrLinklayer{Ifindex: ifindex, Protocol: htons(proto)})
	}
}

// rawIPSocket opens a raw IPv4 socket with IP_HDRINCL inside ns and
// returns a function that sends one packet to 198.18.0.2.
func rawIPSocket(t *testing.T, ns string) func(b []byte) error {
	t.Helper()
	var fd int
	err := nsutil.Do(ns, func() error {
		var err error
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW) // IPPROTO_RAW implies IP_HDRINCL
		return err
	})
	if err != nil {
		t.Fatalf("raw IP socket in %s: %v", ns, err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return func(b []byte) error {
		return unix.Sendto(fd, b, 0, &unix.SockaddrInet4{Addr: [4]byte{198, 18, 0, 2}})
	}
}

// TestE2EBadInputCountedNotCrashed injects malformed frames from inside the
// namespace and checks that each one is counted where it dies and that the
// daemon keeps working.
//
// What reaches the TUN reader (seen on kernel 6.18):
//   - An AF_PACKET socket on vnic0 (no link-layer header) hands any bytes
//     to the TUN unchecked: a bad IP version, a bad IPv4 header length or
//     an IP length that disagrees with the frame reach the daemon, whose
//     segment step drops them by reason (ip_version, ip_header,
//     ip_length).
//   - A raw IP socket with IP_HDRINCL refuses an IPv4 header with ihl < 5
//     (EINVAL) and rewrites the total length and header checksum of any
//     other, so it cannot make a malformed header.
//   - The NIC takes in frames as the kernel's TUN receive path does
//     (ip_rcv_core): a bad IPv4 header checksum is dropped (ip_header), an
//     IP length past the frame too (ip_length), a frame longer than its IP
//     length is trimmed to it and sent. A bad UDP checksum is not the NIC's
//     business (it only completes partial ones): it crosses the wire and
//     the peer's receive side counts it.
//   - With PACKET_VNET_HDR the kernel checks the virtio header itself
//     (__virtio_net_hdr_to_skb): a TCP gso type on the wrong IP version, a
//     wrong csum_offset or an unknown gso type are refused (EINVAL), and
//     UDP_L4 on a TCP packet is dropped before the TUN. A GSO frame whose
//     IPv4 total length is shorter gets through, trimmed, and is then too
//     short to segment (gso_short); gso_size 1 is valid: 4000 one-byte
//     segments.
//   - short_frame cannot happen with a kernel TUN (it always writes the
//     virtio header); segment's own tests cover the other reasons.
func TestE2EBadInputCountedNotCrashed(t *testing.T) {
	d := startDaemon(t, daemon.Config{Pcap: "-"})
	send := packetSocket(t, d.ns, "vnic0", false)
	sendV := packetSocket(t, d.ns, "vnic0", true)
	sendRaw := rawIPSocket(t, d.ns)

	good := (&pkttest.Packet{Proto: pkttest.ProtoUDP, SrcPort: 40001, DstPort: 9, Payload: []byte("hello")}).Build()
	mod := func(b []byte, f func([]byte)) []byte {
		b = append([]byte{}, b...)
		f(b)
		return b
	}
	// modIP is mod with the IPv4 header checksum recomputed after f.
	modIP := func(b []byte, f func([]byte)) []byte {
		return mod(b, func(b []byte) {
			f(b)
			b[10], b[11] = 0, 0
			binary.BigEndian.PutUint16(b[10:], ^checksum.Checksum(b[:20], 0))
		})
	}
	peerIn := func(s daemon.Stats) uint64 { return s.Peer.In.Packets }
	good6 := (&pkttest.Packet{V6: true, Proto: pkttest.ProtoUDP, SrcPort: 40003, DstPort: 9, Payload: []byte("hello")}).Build()
	// The peer's NIC runs GRO, so like a NIC with rx-checksumming it
	// verifies checksums itself and drops what fails (Drops.BadChecksum)
	// before gVisor's stack would count it.
	peerUDPChecksum := func(s daemon.Stats) uint64 { return s.Peer.Stack.UDPChecksumErrors + s.Peer.Drops.BadChecksum }
	peerDiscarded := func(s daemon.Stats) uint64 { return s.Peer.Discarded }

	cases := []struct {
		name string
		send func() error
		// refused: the kernel may refuse to send it (EINVAL).
		refused bool
		// drop is the daemon's drop reason the frame must add 1 to; or
		// else peer is the peer's counter it must add want to.
		drop string
		peer func(daemon.Stats) uint64
		want uint64
	}{
		{"garbage, IP version 0", func() error { return send(unix.ETH_P_IP, []byte(strings.Repeat("\x00garbage!", 8))) }, false, "host_tx/ip_version", nil, 0},
		{"IP version 7", func() error { return send(unix.ETH_P_IP, mod(good, func(b []byte) { b[0] = 0x75 })) }, false, "host_tx/ip_version", nil, 0},
		{"IPv4 ihl 3", func() error { return send(unix.ETH_P_IP, mod(good, func(b []byte) { b[0] = 0x43 })) }, false, "host_tx/ip_header", nil, 0},
		{"IPv4 ihl 15 > packet", func() error { return send(unix.ETH_P_IP, mod(good, func(b []byte) { b[0] = 0x4f })) }, false, "host_tx/ip_header", nil, 0},
		{"3 bytes", func() error { return send(unix.ETH_P_IP, good[:3]) }, false, "host_tx/ip_header", nil, 0},
		{"raw socket IP_HDRINCL ihl 3", func() error { return sendRaw(mod(good, func(b []byte) { b[0] = 0x43 })) }, true, "host_tx/ip_header", nil, 0},
		{"IPv4 total length 1000 > frame", func() error {
			return send(unix.ETH_P_IP, modIP(good, func(b []byte) { binary.BigEndian.PutUint16(b[2:], 1000) }))
		}, false, "host_tx/ip_length", nil, 0},
		{"IPv4 total length 22 < frame (trimmed and sent, as ip_rcv does)", func() error {
			return send(unix.ETH_P_IP, modIP(good, func(b []byte) { binary.BigEndian.PutUint16(b[2:], 22) }))
		}, false, "", peerIn, 1},
		{"IPv6 payload length 500 > frame", func() error {
			return send(unix.ETH_P_IPV6, mod(good6, func(b []byte) { binary.BigEndian.PutUint16(b[4:], 500) }))
		}, false, "host_tx/ip_length", nil, 0},
		{"bad IPv4 header checksum", func() error { return send(unix.ETH_P_IP, mod(good, func(b []byte) { b[10] ^= 0xff })) }, false, "host_tx/ip_header", nil, 0},
		{"bad UDP checksum", func() error {
			return send(unix.ETH_P_IP, (&pkttest.Packet{Proto: pkttest.ProtoUDP, SrcPort: 40002, DstPort: 9, Payload: []byte("hello"), BadL4Checksum: true}).Build())
		}, false, "", peerUDPChecksum, 1},
		{"IPv4 sent as ETH_P_IPV6 (fine: the NIC reads the version)", func() error { return send(unix.ETH_P_IPV6, good) }, false, "", peerDiscarded, 5},
	}
	for _, c := range cases {
		before := d.Stats()
		if err := c.send(); err != nil {
			if c.refused && errors.Is(err, unix.EINVAL) {
				t.Logf("%s: the kernel refuses it: %v", c.name, err)
			} else {
				t.Errorf("%s: send: %v", c.name, err)
			}
			continue
		}
		var ok bool
		if c.drop != "" {
			ok = waitFor(30*time.Second, func() bool { return d.Stats().DropMap()[c.drop] > before.DropMap()[c.drop] })
		} else {
			ok = waitFor(30*time.Second, func() bool { return c.peer(d.Stats()) >= c.peer(before)+c.want })
		}
		after := d.Stats()
		for r, n := range after.DropMap() {
			want := before.DropMap()[r]
			if r == c.drop {
				want++
			}
			if n != want {
				t.Errorf("%s: drop reason %s went from %d to %d", c.name, r, before.DropMap()[r], n)
			}
		}
		if !ok || c.peer != nil && c.peer(after) != c.peer(before)+c.want {
			t.Errorf("%s: want drop reason %q +1 (or peer counter +%d); drops %v → %v, peer %+v → %+v",
				c.name, c.drop, c.want, before.Drops, after.Drops, before.Peer, after.Peer)
		}
		if after.Peer.Drops.Total() != after.Peer.Drops.BadChecksum {
			t.Errorf("%s: the peer's link dropped: %+v", c.name, after.Peer.Drops)
		}
	}

	// Malformed virtio headers through PACKET_VNET_HDR. The kernel
	// checks them first (__virtio_net_hdr_to_skb): most never reach the
	// TUN. Those that do must be counted (or, if valid, segmented).
	big := &pkttest.Packet{SrcPort: 40004, DstPort: 9, Flags: pkttest.ACK, Payload: pkttest.Payload(4000, 1)}
	tun, err := nsutil.Handle(d.ns)
	if err != nil {
		t.Fatal(err)
	}
	defer tun.Close()
	for _, v := range []struct {
		name string
		f    func(h *virtio.Hdr, b []byte)
		drop string // the reason it is counted by if it gets through; "" if valid
		wire uint64 // wire packets it makes if valid
	}{
		{"gso_size 1 (valid: 4000 one-byte segments)", func(h *virtio.Hdr, b []byte) { h.GSOSize = 1 }, "", 4000},
		{"gso tcpv6 on IPv4", func(h *virtio.Hdr, b []byte) { h.GSOType = virtio.GSOTCPv6 }, "host_tx/ip_version", 0},
		{"gso udp_l4 on TCP", func(h *virtio.Hdr, b []byte) { h.GSOType = virtio.GSOUDPL4; h.CsumOffset = 6 }, "host_tx/l4_proto", 0},
		{"csum_offset 6 for TCP", func(h *virtio.Hdr, b []byte) { h.CsumOffset = 6 }, "host_tx/csum_offsets", 0},
		{"gso type 0x20", func(h *virtio.Hdr, b []byte) { h.GSOType = 0x20 }, "host_tx/gso_type", 0},
		// ip_rcv trims the 4040-byte frame to 1000 bytes, and then 960
		// bytes of payload at gso_size 1448 are no GSO frame:
		// tcp_gso_segment refuses it.
		{"IPv4 total length 1000", func(h *virtio.Hdr, b []byte) {
			binary.BigEndian.PutUint16(b[2:], 1000)
			b[10], b[11] = 0, 0
			binary.BigEndian.PutUint16(b[10:], ^checksum.Checksum(b[:20], 0))
		}, "host_tx/gso_short", 0},
	} {
		b, h := big.BuildGSO(1448, false)
		v.f(&h, b)
		frame := make([]byte, virtio.Size, virtio.Size+len(b))
		_ = h.Encode(frame)
		// Start from a NIC that has read everything the kernel queued, so
		// that what follows is this frame's doing.
		k0 := kernelTUN(t, tun)
		if !waitFor(30*time.Second, func() bool { return d.Stats().HostTX.Packets >= k0.packets }) {
			t.Fatalf("the kernel queued %d frames on the TUN, the NIC read %d", k0.packets, d.Stats().HostTX.Packets)
		}
		before := d.Stats()
		err := sendV(unix.ETH_P_IP, append(frame, b...))
		if err != nil {
			if !errors.Is(err, unix.EINVAL) {
				t.Errorf("PACKET_VNET_HDR %s: send: %v", v.name, err)
			}
			t.Logf("PACKET_VNET_HDR %s: the kernel refuses it: %v", v.name, err)
			continue
		}
		// The kernel either queued the frame on the TUN (TX packets) or
		// dropped it before (TX dropped, e.g. validate_xmit_skb), within
		// the send; the NIC then reads every frame the kernel queued.
		var k tunTX
		waitFor(5*time.Second, func() bool {
			k = kernelTUN(t, tun)
			return k.packets+k.dropped > k0.packets+k0.dropped
		})
		if k.packets == k0.packets {
			t.Logf("PACKET_VNET_HDR %s: accepted by send, dropped by the kernel before the TUN (TX dropped +%d)", v.name, k.dropped-k0.dropped)
			continue
		}
		if !waitFor(30*time.Second, func() bool { return d.Stats().HostTX.Packets >= k.packets }) {
			t.Errorf("PACKET_VNET_HDR %s: the kernel queued %d frames on the TUN, the NIC read %d", v.name, k.packets, d.Stats().HostTX.Packets)
			continue
		}
		var ok bool
		if v.drop != "" {
			ok = waitFor(30*time.Second, func() bool { return d.Stats().DropMap()[v.drop] > before.DropMap()[v.drop] })
		} else {
			ok = waitFor(30*time.Second, func() bool { return d.Stats().WireOut.Packets >= before.WireOut.Packets+v.wire })
		}
		after := d.Stats()
		if !ok {
			t.Errorf("PACKET_VNET_HDR %s: reached the NIC; want drop reason %q or %d wire packets; drops %v → %v, wire-out +%d",
				v.name, v.drop, v.wire, before.Drops, after.Drops, after.WireOut.Packets-before.WireOut.Packets)
		} else {
			t.Logf("PACKET_VNET_HDR %s: reached the NIC; drops %v, wire-out +%d", v.name, after.Drops, after.WireOut.Packets-before.WireOut.Packets)
		}
	}

	// A burst: every frame counted, none lost on the way in.
	before := d.Stats()
	const burst = 500
	for i := range burst {
		if err := send(unix.ETH_P_IP, []byte{0x00, byte(i), 1, 2, 3, 4, 5, 6}); err != nil {
			t.Fatalf("burst frame %d: %v", i, err)
		}
	}
	if !waitFor(30*time.Second, func() bool {
		return d.Stats().DropMap()["host_tx/ip_version"] >= before.DropMap()["host_tx/ip_version"]+burst
	}) {
		t.Errorf("burst of %d bad frames: ip_version went from %d to %d", burst, before.DropMap()["host_tx/ip_version"], d.Stats().DropMap()["host_tx/ip_version"])
	}

	// Still working, and the reasons are there for `vnic stat`.
	download(t, d.ns, "198.18.0.2", 1000000)
	echoCheck(t, dial(t, d.ns, "tcp", "198.18.0.2:7"), randomBytes(100000))
	out := nsExec(t, d.ns, "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{size_download}", "http://198.18.0.2/bytes/100000")
	if out != "200 100000" {
		t.Errorf("curl after the bad input: %q", out)
	}
	s, err := daemon.ReadStats(d.Config().Control)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{"host_tx/ip_version", "host_tx/ip_header", "host_tx/ip_length"} {
		if s.DropMap()[r] == 0 {
			t.Errorf("control socket: drop reason %s not counted: %v", r, s.Drops)
		}
	}
	t.Logf("drops %v; peer drops %+v; peer stack %+v", s.Drops, s.Peer.Drops, s.Peer.Stack)
}

// tunTX is what the kernel counts on a namespace's vnic0 (ip -s link):
// frames queued on the TUN for the NIC to read, and frames dropped before.
type tunTX struct{ packets, dropped uint64 }

func kernelTUN(t *testing.T, h *netlink.Handle) tunTX {
	t.Helper()
	l, err := h.LinkByName("vnic0")
	if err != nil {
		t.Fatalf("vnic0: %v", err)
	}
	st := l.Attrs().Statistics
	return tunTX{st.TxPackets, st.TxDropped}
}
