package nic

import (
	"bytes"
	"net"
	"testing"
	"time"

	"vnic/vnic/drop"
	"vnic/vnic/glink"
	"vnic/vnic/pkttest"
	"vnic/vnic/virtio"
)

var (
	macA = net.HardwareAddr{2, 0, 0, 0, 0, 0xa}
	macB = net.HardwareAddr{2, 0, 0, 0, 0, 0xb}
)

// ethFrame is a TAP frame: the virtio header (offsets moved past the
// Ethernet header) and pkt behind an Ethernet header from src to dst.
func ethFrame(h virtio.Hdr, dst, src net.HardwareAddr, typ uint16, pkt []byte) []byte {
	if h.Flags&virtio.FlagNeedsCsum != 0 {
		h.CsumStart += ethHeader
	}
	if h.HdrLen != 0 {
		h.HdrLen += ethHeader
	}
	e := append(append(append([]byte{}, dst...), src...), byte(typ>>8), byte(typ))
	return frame(h, append(e, pkt...))
}

// TestTAPPairCarriesEthernet: through two TAP NICs on a direct wire a
// TCP stream's super-packets arrive merged behind the sender's MAC
// header, csum_start counted from it; an ARP frame crosses as it is; a
// frame shorter than its Ethernet header is counted and dropped.
func TestTAPPairCarriesEthernet(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		a, b, da, db := fakePair(t, Options{Mode: ModeTAP})
		typ := uint16(etherIPv4)
		if v6 {
			typ = etherIPv6
		}
		arp := ethFrame(virtio.Hdr{}, net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, macA, 0x0806, make([]byte, 28))
		da.send(arp)
		payload := pkttest.Payload(100_000, 3)
		for _, f := range stream(v6, payload, 1400, 30_000) {
			var h virtio.Hdr
			_ = h.Decode(f)
			da.send(ethFrame(h, macB, macA, typ, f[virtio.Size:]))
		}
		da.send(frame(virtio.Hdr{}, make([]byte, 10)))
		fs := db.waitN(t, 2)
		if !bytes.Equal(fs[0], arp) {
			t.Fatalf("v6=%v: the ARP frame arrived as % x", v6, fs[0][:24])
		}
		var ip [][]byte
		deadline := time.Now().Add(5 * time.Second)
		for got := 0; got < len(payload) && time.Now().Before(deadline); {
			ip, got = ip[:0], 0
			for _, f := range db.frames()[1:] {
				var h virtio.Hdr
				_ = h.Decode(f)
				if !bytes.Equal(f[virtio.Size:virtio.Size+12], append(append([]byte{}, macB...), macA...)) {
					t.Fatalf("v6=%v: MAC header % x", v6, f[virtio.Size:virtio.Size+14])
				}
				if h.GSOType != virtio.GSONone && (h.CsumStart != uint16(ethHeader+ipLen(v6)) || int(h.HdrLen) != ethHeader+ipLen(v6)+20) {
					t.Fatalf("v6=%v: merged frame's header %v: offsets not from the Ethernet header", v6, h)
				}
				if h.Flags&virtio.FlagNeedsCsum != 0 {
					h.CsumStart -= ethHeader
					h.HdrLen -= ethHeader
				}
				ip = append(ip, frame(h, f[virtio.Size+ethHeader:]))
				got += payloadLen(t, f[virtio.Size+ethHeader:])
			}
			time.Sleep(5 * time.Millisecond)
		}
		if got := reassemble(t, ip); !bytes.Equal(got, payload) {
			t.Fatalf("v6=%v: %d bytes of %d arrived", v6, len(got), len(payload))
		}
		sa, sb := waitStats(a, b)
		if sb.HostRXMerged == 0 {
			t.Errorf("v6=%v: nothing merged", v6)
		}
		if sa.Dropped(HostTX, drop.EtherShort) != 1 || sa.DropTotal() != 1 || sb.DropTotal() != 0 {
			t.Errorf("v6=%v: drops %v, %v; want one ether_short at A's host_tx", v6, sa.DropMap(), sb.DropMap())
		}
	}
}

func ipLen(v6 bool) int {
	if v6 {
		return 40
	}
	return 20
}

// TestTAPOutputFromAnEthernetPeer: a gVisor Ethernet peer's super-packet
// (offsets from the Ethernet header) is cut by the far end's TSO and
// merged again, and its ARP frames reach the host as they are.
func TestTAPOutputFromAnEthernetPeer(t *testing.T) {
	n, dev := newTestNIC(t, Options{Mode: ModeTAP})
	p := pkttest.Packet{Flags: pkttest.ACK, Payload: pkttest.Payload(20_000, 4)}
	b, h := p.BuildGSO(1448, false)
	f := ethFrame(h, macA, macB, etherIPv4, b)
	var fh virtio.Hdr
	_ = fh.Decode(f)
	arp := ethFrame(virtio.Hdr{}, macA, macB, 0x0806, make([]byte, 28))
	n.Output([]glink.Packet{{Data: arp[virtio.Size:]}, {Hdr: fh, Data: f[virtio.Size:]}})
	fs := dev.waitN(t, 2)
	if !bytes.Equal(fs[0], arp) {
		t.Errorf("ARP arrived as % x", fs[0])
	}
	var mh virtio.Hdr
	_ = mh.Decode(fs[1])
	if mh.GSOType != virtio.GSOTCPv4 || len(fs[1]) != len(f) {
		t.Errorf("merged frame %d bytes %v, want %d bytes tcpv4", len(fs[1]), mh, len(f))
	}
	if s := n.Stats(); s.WireIn.Packets != 1+14 || s.DropTotal() != 0 {
		t.Errorf("wire-in %d, drops %v", s.WireIn.Packets, s.DropMap())
	}
}

func TestTAPOptions(t *testing.T) {
	o := Options{Mode: ModeTAP, Name: "v0", Netns: "a"}
	if err := o.Normalize(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(o.MAC, DefaultMAC("a", "v0")) || o.MAC[0]&3 != 2 {
		t.Errorf("default MAC %v", o.MAC)
	}
	if bytes.Equal(DefaultMAC("a", "v0"), DefaultMAC("b", "v0")) {
		t.Error("the two ends of a netns: wire get the same MAC")
	}
	for _, bad := range []Options{
		{Mode: "eth"},
		{Mode: ModeTAP, MAC: net.HardwareAddr{1, 0, 0, 0, 0, 1}},
		{MAC: macA},
		{Mode: ModeTAP, Engine: EngineWireGuard},
	} {
		if err := bad.Normalize(); err == nil {
			t.Errorf("%+v: no error", bad)
		}
	}
}

// waitN waits until at least n frames were written and returns them.
func (d *fakeDev) waitN(t *testing.T, n int) [][]byte {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if fs := d.frames(); len(fs) >= n {
			return fs
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d frames written", len(d.frames()), n)
		}
		select {
		case <-d.wrote:
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// TestTAPDataPathNoAllocs: a TAP NIC's paths allocate nothing per batch
// either, ARP included.
func TestTAPDataPathNoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	_, b4, h4 := superPacket(false)
	_, b6, h6 := superPacket(true)
	arp := ethFrame(virtio.Hdr{}, macB, macA, 0x0806, make([]byte, 28))
	frames := [][]byte{ethFrame(h4, macB, macA, etherIPv4, b4), ethFrame(h6, macB, macA, etherIPv6, b6), arp}
	for _, short := range []bool{false, true} {
		noShortcut = !short
		a, _ := newTestNIC(t, Options{Mode: ModeTAP})
		b, db := newTestNIC(t, Options{Mode: ModeTAP})
		a.Connect(b)
		db.discard = true
		inPlace = nil
		transmitInPlace(a, frames)
		if n := testing.AllocsPerRun(100, func() { transmitInPlace(a, frames) }); n != 0 {
			t.Errorf("shortcut %v: %v allocations per batch", short, n)
		}
	}
	noShortcut = false
	n, dev := newTestNIC(t, Options{Mode: ModeTAP})
	dev.discard = true
	wire := [][]byte{frames[0][virtio.Size : virtio.Size+1514], arp[virtio.Size:]}
	n.Inject(wire)
	if allocs := testing.AllocsPerRun(100, func() { n.Inject(wire) }); allocs != 0 {
		t.Errorf("Inject: %v allocations per batch", allocs)
	}
}
