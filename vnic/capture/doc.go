// Package capture records what vnic sees at its three capture points into
// pcapng that Wireshark, tshark and tcpdump open — one file with every
// point in time order, written as packets come, and, split from it when
// the capture is closed, one file per capture point (Options.PointFile) —
// and streams a point live to whoever asks (Tap):
//
//   - <ifname>@host-tx: what the kernel handed the NIC. The same packets
//     `tcpdump -i <ifname>` shows outbound: GSO super-packets up to 64 KiB
//     with partial checksums (what dev_queue_xmit passes to a driver with
//     NETIF_F_TSO, before any skb_gso_segment).
//   - <ifname>@wire: what a tap on the cable would see, both directions,
//     wire-size packets after software TSO/USO (segment) and before GRO
//     (coalesce).
//   - <ifname>@host-rx: what the NIC handed the kernel after GRO: what
//     `tcpdump -i <ifname>` shows inbound (napi_gro_receive output).
//
// Each point is a pcapng interface of raw IP (the packet starts with the
// IPv4 or IPv6 header; link type 12, DLT_RAW, by default so that tcpdump
// reads files with several interfaces: see LinkTypeDLTRaw), so a lab with
// several NICs gets 3 interfaces per NIC in the same file. Interfaces for the names in
// Options.Ifnames are written when the file is created; any other ifname
// gets its three interfaces just before its first packet.
//
// Packet comments say what the capture cannot show by itself:
//
//	host-tx #17: gso=tcpv4 gso_size=1448 hdr_len=66 csum_start=20 csum_offset=16 needs_csum
//	out: segment 2/7 of host-tx #17
//	in: merged into host-rx #9 (3/45)
//	host-rx #9: merged 45 wire packets; gso=tcpv4 gso_size=1448 ...
//
// and the EPB flags carry the direction (outbound for host-tx, inbound for
// host-rx, as given for wire packets). In tshark the fields are
// frame.interface_name, frame.comment and frame.packet_flags_direction.
//
// # Cost on the data path
//
// The data path calls HostTX, Wire and HostRX synchronously. Each call
// checks that the queue and its byte budget have room, copies the first
// Options.Snaplen bytes of the packet (all of it by default) into a pooled
// buffer and hands it over a bounded lock-free queue to one writer
// goroutine, which formats the comments and encodes pcapng blocks itself
// (no allocation per packet; pcapgo.NgWriter writes the section header,
// interfaces and statistics) into a 1 MiB buffer, one write(2) per
// buffer. The writer goroutine polls the queue every millisecond while
// packets flow and sleeps when they stop, so the data path does not pay a
// goroutine wake-up per packet; the file is flushed when traffic pauses,
// every Options.FlushInterval under load, and by Close.
//
// When the queue (or its byte budget) is full the packet is counted as
// dropped before anything is copied: capture never stalls the NIC, and a
// drop costs a few atomic loads. A writer that drops runs at the lowest CPU
// priority (nice 19, Linux) until it keeps up again, so that when the
// file cannot take everything the NIC gets the CPU first. Options.Block
// makes callers wait instead, for tests that need every packet. The caller
// side does not allocate in steady state.
//
// Whole packets cost the most: at 5 Gbit/s the three points hand over
// about 1.2 GB/s, and the kernel's copy into the page cache alone takes a
// core. A snap length of 128 bytes (IPv6 40 + TCP 60 with options, or
// IPv4 up to 60 + TCP 60, rounded up) keeps every header at a tenth of the
// bytes and is what to use at full speed; like tcpdump -s, a cut packet
// keeps its original length in the file.
//
// A nil *Writer (and a nil *NIC) is a valid, disabled recorder: every method
// is a no-op that returns 0. A NIC is what the data path holds; writers
// attach to it (Writer.NIC, Options.Sources, Writer.Attach) and detach, so
// a NIC that nothing records — no file, nobody watching live — costs one
// atomic load per packet and numbers nothing.
//
// # Files and time order
//
// Each point's packets appear once in their per-point file, so
// Wireshark's TCP analysis finds there only what happened at that point;
// in the merged file the same bytes show at two or three points, which
// TCP analysis reads as retransmissions and overlaps that never happened:
// it is for the comments and the picture.
//
// The data path stamps each packet with the time its goroutine started the
// batch, and several goroutines record the same point (the transmit loop
// out, the receive side in), so packets reach the writer slightly out of
// timestamp order. The writer holds them for Options.Reorder and writes
// them in timestamp order; a packet later than that keeps the file in
// order with a moved timestamp and a comment saying by how much.
//
// # Numbering
//
// host-tx and host-rx packets are numbered per NIC from 1. Wire packets
// refer to those numbers through an Origin. On transmit the order is
// natural: HostTX returns the number, then each segment is recorded with
// Origin{Kind: FromHostTX, Super: n, Index: i, Count: len(segs)}. On
// receive the wire packets come first, so the daemon reserves the number
// once GRO has decided what it merges:
//
//	n := nic.ReserveHostRX()
//	for i, p := range merged {
//		nic.Wire(p.ts, capture.In, p.pkt, capture.Origin{Kind: capture.IntoHostRX, Super: n, Index: i, Count: len(merged)})
//	}
//	nic.HostRX(now, hdr, super, n, len(merged))
//
// A number is used up even when its packet is dropped, so a gap in the
// numbers in the file is a capture drop, not a lost packet.
//
// ReadFile reads such a file back into Records for tests and for the
// side-by-side view of `vnic lab` and `vnic up --pcap`.
package capture
