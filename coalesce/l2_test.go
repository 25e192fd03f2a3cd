package coalesce

import (
	"bytes"
	"testing"

	"vnic/vnic/pkttest"
	"vnic/vnic/virtio"
)

var (
	macHost = []byte{2, 0, 0, 0, 0, 1}
	macPeer = []byte{2, 0, 0, 0, 0, 2}
	macOdd  = []byte{2, 0, 0, 0, 0, 3}
)

// eth puts pkt behind an Ethernet header from src to macHost.
func eth(src []byte, typ uint16, pkt []byte) []byte {
	b := append(append(append([]byte{}, macHost...), src...), byte(typ>>8), byte(typ))
	return append(b, pkt...)
}

func tcpRun(n, mss int) [][]byte {
	var out [][]byte
	for i := range n {
		p := pkttest.Packet{ID: uint16(i), Seq: uint32(i * mss), Flags: pkttest.ACK, Payload: pkttest.Payload(mss, byte(i))}
		out = append(out, p.Build())
	}
	return out
}

// TestL2MergeKeepsTheMACHeaderAndCountsFromIt: a run of Ethernet frames
// merges as the same run of IP packets does, behind the first frame's MAC
// header, with csum_start and hdr_len 14 bytes further.
func TestL2MergeKeepsTheMACHeaderAndCountsFromIt(t *testing.T) {
	ip := tcpRun(5, 1000)
	plain := run(t, New(Options{}), ip...)
	var frames [][]byte
	for _, p := range ip {
		frames = append(frames, eth(macPeer, 0x0800, p))
	}
	got := run(t, New(Options{L2Len: 14}), frames...)
	if len(plain) != 1 || len(got) != 1 {
		t.Fatalf("%d and %d frames, want 1 and 1", len(plain), len(got))
	}
	want := plain[0].hdr
	want.CsumStart += 14
	want.HdrLen += 14
	if got[0].hdr != want {
		t.Errorf("header %v, want %v", got[0].hdr, want)
	}
	if !bytes.Equal(got[0].pkt[:14], frames[0][:14]) || !bytes.Equal(got[0].pkt[14:], plain[0].pkt) {
		t.Error("the merged frame is not the first MAC header and the merged IP packet")
	}
}

// TestL2DifferentMACHeadersDoNotMerge is compare_ether_header: the same
// TCP flow from two source addresses makes two packets.
func TestL2DifferentMACHeadersDoNotMerge(t *testing.T) {
	ip := tcpRun(6, 1000)
	var frames [][]byte
	for i, p := range ip {
		src := macPeer
		if i >= 3 {
			src = macOdd
		}
		frames = append(frames, eth(src, 0x0800, p))
	}
	e := New(Options{L2Len: 14})
	got := run(t, e, frames...)
	if len(got) != 2 || got[0].hdr.GSOSize != 1000 || got[1].hdr.GSOSize != 1000 {
		t.Fatalf("%d frames, want two super-packets of 3", len(got))
	}
	if !bytes.Equal(got[1].pkt[6:12], macOdd) {
		t.Errorf("the second packet's source is % x", got[1].pkt[6:12])
	}
}

// TestL2OtherEtherTypesPass: ARP, a VLAN tag, a short frame and an IP
// version that is not the EtherType's pass unchanged, counted.
func TestL2OtherEtherTypesPass(t *testing.T) {
	ip := tcpRun(1, 1000)[0]
	e := New(Options{L2Len: 14})
	got := run(t, e,
		eth(macPeer, 0x0806, make([]byte, 28)),
		eth(macPeer, 0x8100, append([]byte{0, 100, 8, 0}, ip...)),
		make([]byte, 10),
		eth(macPeer, 0x86dd, ip),
	)
	if len(got) != 4 {
		t.Fatalf("%d frames out", len(got))
	}
	for _, o := range got {
		if o.hdr != (virtio.Hdr{}) {
			t.Errorf("header %v on a frame GRO did not look into", o.hdr)
		}
	}
	st := e.Stats()
	if st.Passed[PassNotIPEtherType] != 2 || st.Passed[PassTruncated] != 1 || st.Passed[PassNotIP] != 1 {
		t.Errorf("passed %v", st.Passed)
	}
}

func TestL2NoAllocation(t *testing.T) {
	var frames [][]byte
	for _, p := range tcpRun(12, 1448) {
		frames = append(frames, eth(macPeer, 0x0800, p))
	}
	bufs := batch(frames...)
	e := New(Options{L2Len: 14, MarkValid: true})
	toWrite := make([]int, 0, len(bufs))
	allocs := testing.AllocsPerRun(100, func() {
		for i, f := range frames {
			bufs[i] = bufs[i][:testOffset+len(f)]
			copy(bufs[i][testOffset:], f)
		}
		var err error
		if toWrite, err = e.Coalesce(bufs, testOffset, toWrite[:0]); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 || len(toWrite) != 1 {
		t.Errorf("%v allocations, %d frames out", allocs, len(toWrite))
	}
}
