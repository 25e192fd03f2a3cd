package afpacket

import (
	"vnic/segment"
	"vnic/vnic/drop"
	"vnic/vnic/packet"
	"vnic/vnic/virtio"
)

// Ethernet sizes.
const (
	ethHeader = packet.EthHeader
	vlanTag   = packet.VLANTagLen
)

// l2Len returns the length of frame's Ethernet header with up to two VLAN
// tags, or 0 if the frame is shorter than that.
func l2Len(frame []byte) int {
	n, _ := packet.EthernetHeader(frame)
	return n
}

// cutter cuts the super-packets an interface hands over into the
// wire-size frames a cable would carry (and completes partial
// checksums), into an arena reused batch after batch.
type cutter struct {
	arena []byte
	used  int
	bufs  [][]byte
	sizes []int
}

// arenaSize holds the frames of a few 64 KiB super-packets.
const arenaSize = 512 << 10

func newCutter() *cutter {
	return &cutter{bufs: make([][]byte, 0, 1024), sizes: make([]int, 1024)}
}

// reset makes the whole arena free again (after the frames cut into it
// were handed on).
func (c *cutter) reset() { c.used = 0 }

// cut appends to out the frames frame (read with virtio header h, whose
// csum_start counts from the Ethernet header) stands for. full reports
// that the arena has no room: hand out on, reset, and cut again.
func (c *cutter) cut(h virtio.Hdr, frame []byte, out [][]byte) (_ [][]byte, full bool, r drop.Reason) {
	l2 := l2Len(frame)
	if l2 == 0 {
		return out, false, drop.EtherShort
	}
	if h.Flags&virtio.FlagNeedsCsum != 0 && int(h.CsumStart) < l2 {
		return out, false, drop.CsumOffsets
	}
	hh := h
	hh.HdrLen = 0 // the kernel's is skb_headlen: never trusted, recomputed
	plan, err := segment.NewPlan(hh, frame, segment.Options{L2Len: l2})
	if err != nil {
		return out, false, segment.Reason(err)
	}
	k, size := plan.Segments(), plan.MaxSize()
	if c.arena == nil {
		c.arena = make([]byte, arenaSize)
	}
	if k > cap(c.bufs) || k*size > len(c.arena) {
		return out, false, drop.TooManySegments
	}
	if c.used+k*size > len(c.arena) {
		return out, true, drop.None
	}
	bufs := c.bufs[:k]
	for i := range bufs {
		bufs[i] = c.arena[c.used+i*size : c.used+(i+1)*size]
	}
	n, err := plan.Cut(bufs, c.sizes, 0)
	if err != nil {
		return out, false, segment.Reason(err)
	}
	for i := range n {
		out = append(out, bufs[i][:c.sizes[i]])
	}
	c.used += k * size
	clear(bufs)
	return out, false, drop.None
}
