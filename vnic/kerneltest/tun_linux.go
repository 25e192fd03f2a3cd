package kerneltest

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"vnic/vnic/tundev"
	"vnic/vnic/virtio"
)

// offloadsAll is what the GSO oracle's `in` and the daemon's device
// negotiate: checksum, TSO for both families with ECN, and USO.
const offloadsAll = tundev.All

// tunDev is one TUN device (tundev.Device: IFF_TUN|IFF_NO_PI|IFF_VNET_HDR)
// read one frame at a time with a deadline.
type tunDev struct {
	name   string
	hdrLen int // the virtio header's size on this device
	l2     int // the Ethernet header's size in front of each packet (a TAP)
	dev    *tundev.Device
	bufs   [][]byte // bufs[0] is the read buffer; all of them for drain
	sizes  []int
}

// openTUN creates TUN device name in the calling thread's network
// namespace (call it inside Netns.Do) and sets exactly the offloads
// given: an oracle that silently lost an offload would prove nothing.
//
// Equivalent to: ip tuntap add name NAME mode tun vnet_hdr [napi]; plus
// TUNSETOFFLOAD, which only a process holding the fd can do.
func openTUN(name string, napi bool, offloads tundev.Offloads, hdrLen int, tap bool) (*tunDev, error) {
	if hdrLen == 0 {
		hdrLen = virtio.Size
	}
	d, err := tundev.Open(tundev.Config{
		Name: name, Offloads: offloads, NAPI: napi, VnetHdrSize: hdrLen, TAP: tap,
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		return nil, fmt.Errorf("kerneltest: %w", err)
	}
	if got := d.Offloads(); got != offloads && got != offloads&^(tundev.UDPTunnel|tundev.UDPTunnelCsum) {
		d.Close()
		return nil, fmt.Errorf("kerneltest: TUN %s: kernel granted offloads %v, want %v", name, got, offloads)
	}
	buf := make([]byte, tundev.MaxFrame)
	bufs := make([][]byte, 64)
	for i := range bufs {
		bufs[i] = buf // drain discards: one buffer will do
	}
	l2 := 0
	if tap {
		l2 = ethHeaderLen
	}
	return &tunDev{name: name, hdrLen: hdrLen, l2: l2, dev: d, bufs: bufs, sizes: make([]int, len(bufs))}, nil
}

func (d *tunDev) close() error {
	if d.dev == nil {
		return nil
	}
	err := d.dev.Close()
	d.dev = nil
	return err
}

// write writes one frame: the virtio header (zero-padded to the device's
// header size) then the IP packet, in one write(2) (a TUN write is one
// packet).
func (d *tunDev) write(h virtio.Hdr, pkt []byte) error {
	frame := make([]byte, d.hdrLen+len(pkt))
	h.Encode(frame)
	copy(frame[d.hdrLen:], pkt)
	return d.writeRaw(frame)
}

// writeRaw writes a frame that already starts with its virtio header. The
// kernel's refusal comes back as its errno (errors.Is(err, unix.EINVAL)).
func (d *tunDev) writeRaw(frame []byte) error {
	if _, err := d.dev.Write([][]byte{frame}, 0); err != nil {
		var h virtio.Hdr
		h.Decode(frame)
		return fmt.Errorf("kerneltest: write %d-byte frame (%v) into %s: %w", len(frame), h, d.name, err)
	}
	return nil
}

// errTimeout is returned by read when nothing arrived before the deadline.
var errTimeout = errors.New("kerneltest: read timeout")

// read returns the next frame, waiting until deadline at most (a frame
// already queued is returned even after the deadline). The frame is a
// fresh copy.
func (d *tunDev) read(deadline time.Time) (Frame, error) {
	n, err := d.dev.TryRead(d.bufs[:1], d.sizes[:1], 0)
	if err == nil && n == 0 {
		if time.Until(deadline) <= 0 {
			return Frame{}, errTimeout
		}
		if err := d.dev.SetReadDeadline(deadline); err != nil {
			return Frame{}, fmt.Errorf("kerneltest: %s: %w", d.name, err)
		}
		n, err = d.dev.Read(d.bufs[:1], d.sizes[:1], 0)
		d.dev.SetReadDeadline(time.Time{})
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return Frame{}, errTimeout
	}
	if err != nil {
		return Frame{}, fmt.Errorf("kerneltest: %w", err)
	}
	size := d.sizes[0]
	if size < d.hdrLen {
		return Frame{}, fmt.Errorf("kerneltest: %d-byte frame from %s", size, d.name)
	}
	var f Frame
	f.Hdr.Decode(d.bufs[0])
	if d.hdrLen >= virtio.SizeTunnel {
		f.Tunnel.Decode(d.bufs[0])
	}
	f.Pkt = bytes.Clone(d.bufs[0][d.hdrLen:size])
	return f, nil
}

// drain discards every frame already queued.
func (d *tunDev) drain() {
	for {
		if n, err := d.dev.TryRead(d.bufs, d.sizes, 0); n == 0 || err != nil {
			return
		}
	}
}

// collect reads frames until nothing has arrived for quiet after the last
// one (or for first before the first one), and at most for limit in all.
// When want >= 0 and the kept frames carry want TCP/UDP payload bytes and
// empty frames without payload in all, everything is out: collect then
// waits only grace for stragglers. Frames keep returns false for are
// dropped (and counted).
func (d *tunDev) collect(first, quiet, grace, limit time.Duration, want, empty int, keep func(Frame) bool) ([]Frame, int, error) {
	start := time.Now()
	end := start.Add(limit)
	deadline := start.Add(first)
	var out []Frame
	dropped, got, gotEmpty := 0, 0, 0
	for {
		if deadline.After(end) {
			deadline = end
		}
		f, err := d.read(deadline)
		if errors.Is(err, errTimeout) {
			return out, dropped, nil
		}
		if err != nil {
			return out, dropped, err
		}
		ip := ipPart(f.Pkt, d.l2)
		if !keep(Frame{Hdr: f.Hdr, Pkt: ip}) {
			dropped++
			continue
		}
		out = append(out, f)
		switch n := PayloadLen(ip); {
		case n > 0:
			got += n
		case n == 0:
			gotEmpty++
		}
		if want >= 0 && got >= want && gotEmpty >= empty {
			deadline = time.Now().Add(grace)
		} else {
			deadline = time.Now().Add(quiet)
		}
	}
}
