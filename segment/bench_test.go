package segment

import (
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"

	"vnic/vnic/pkttest"
	"vnic/vnic/virtio"
)

// A 65,000-byte super-packet: what Linux TCP hands a TSO NIC with
// timestamps on, cut at gso_size 1448.
const benchPacket = 65000

func benchSegment(b *testing.B, p pkttest.Packet, gso int) {
	benchSegmentOpt(b, p, gso, Options{})
}

func benchSegmentOpt(b *testing.B, p pkttest.Packet, gso int, opt Options) {
	hdrs := len(p.Build()) - len(p.Payload)
	p.Payload = pkttest.Payload(benchPacket-hdrs, 1)
	pkt, h := p.BuildGSO(gso, false)
	out, sizes := newBufs(64, 2048)
	b.SetBytes(int64(len(p.Payload)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := Segment(h, pkt, out, sizes, virtio.Size, opt); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSegmentTCPv4_64K(b *testing.B) {
	benchSegment(b, pkttest.Packet{Flags: pkttest.ACK, TCPOptions: tsTCPOptions}, 1448)
}

// The direct wire's segmentation when nothing captures the wire: checksums
// left partial (Options.PartialChecksum), so only the copy remains.
func BenchmarkSegmentTCPv4_64K_Partial(b *testing.B) {
	benchSegmentOpt(b, pkttest.Packet{Flags: pkttest.ACK, TCPOptions: tsTCPOptions}, 1448, Options{PartialChecksum: true})
}

func BenchmarkSegmentTCPv6_64K(b *testing.B) {
	benchSegment(b, pkttest.Packet{V6: true, Flags: pkttest.ACK, TCPOptions: tsTCPOptions}, 1428)
}

func BenchmarkSegmentUDP_64K(b *testing.B) {
	benchSegment(b, pkttest.Packet{Proto: pkttest.ProtoUDP}, 1472)
}

// The physical floor: one checksum pass and one copy over the same bytes.
func BenchmarkFloor_ChecksumPlusCopy_64K(b *testing.B) {
	src := pkttest.Payload(benchPacket, 1)
	dst := make([]byte, benchPacket)
	b.SetBytes(benchPacket)
	b.ReportAllocs()
	var sink uint16
	for b.Loop() {
		sink += checksum.Checksum(src, 0)
		copy(dst, src)
	}
	_ = sink
}
