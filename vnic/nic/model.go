package nic

import (
	"encoding/binary"

	"vnic/vnic/packet"
	"vnic/vnic/virtio"
)

// leavePartial is ModelNoCsum: a wire packet cut from a frame the kernel
// left to the NIC to checksum (NEEDS_CSUM) goes out with only the
// pseudo-header sum in its TCP/UDP checksum field, as the kernel wrote it
// (uncomplemented), instead of the complete checksum: the receiver drops
// it. Packets the kernel checksummed itself pass unchanged.
func (e *vnicEngine) leavePartial(h virtio.Hdr, wp []byte) {
	if !e.noCsum.Load() || h.Flags&virtio.FlagNeedsCsum == 0 {
		return
	}
	l2, ip, ok := e.l2(wp)
	cs, co := int(h.CsumStart), int(h.CsumOffset)
	if !ok || !ip || cs < l2 || cs+co+2 > len(wp) {
		return
	}
	p, err := packet.Parse(wp[l2:])
	if err != nil {
		return
	}
	binary.BigEndian.PutUint16(wp[cs+co:], packet.PseudoSum(wp[l2:], p.Proto, len(wp)-cs))
}

// cutTCP is the forcedeth NIC's TSO (a hardware MTU below the MTU) for a
// TCP packet the kernel did not mark GSO: a single segment of the MTU's
// MSS, larger than the hardware MTU, is cut to fit like a super-packet.
// It returns h with a TCP gso type and the gso_size that fills hwMTU, or h
// unchanged for anything else (which segment then drops as too big).
func cutTCP(h virtio.Hdr, pkt []byte, hwMTU int) virtio.Hdr {
	p, err := packet.Parse(pkt)
	if err != nil || !p.TCP() || p.Frag {
		return h
	}
	gso := virtio.GSOTCPv4
	if p.Version == 6 {
		if p.L4 != packet.IPv6Header {
			return h // extension headers: not cut
		}
		gso = virtio.GSOTCPv6
	}
	hdrLen := p.Payload()
	if hdrLen >= hwMTU {
		return h
	}
	h.GSOType, h.GSOSize = gso, uint16(hwMTU-hdrLen)
	return h
}
