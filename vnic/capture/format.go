package capture

import (
	"encoding/binary"
	"strconv"

	"vnic/vnic/virtio"
)

// maxHdrCache bounds the cache of formatted virtio headers. A flow repeats
// the same few headers, so the cache saves a fmt call per packet.
const maxHdrCache = 1024

// hdrString returns hdr.String(), cached; writer goroutine only.
func (w *Writer) hdrString(h virtio.Hdr) string {
	if s, ok := w.hdrs[h]; ok {
		return s
	}
	if len(w.hdrs) >= maxHdrCache {
		clear(w.hdrs)
	}
	s := h.String()
	w.hdrs[h] = s
	return s
}

// appendComment appends r's packet comment to b; writer goroutine only.
//
//	host-tx #17: gso=tcpv4 gso_size=1448 hdr_len=66 csum_start=20 csum_offset=16 needs_csum
//	out: segment 2/7 of host-tx #17
//	in: merged into host-rx #9 (3/45)
//	host-rx #9: merged 45 wire packets; gso=tcpv4 ...
func (w *Writer) appendComment(b []byte, r *rec) []byte {
	switch r.point {
	case HostTX:
		b = append(b, "host-tx #"...)
		b = strconv.AppendUint(b, r.super, 10)
		b = append(b, ": "...)
		b = append(b, w.hdrString(r.hdr)...)
	case HostRX:
		b = append(b, "host-rx #"...)
		b = strconv.AppendUint(b, r.super, 10)
		b = append(b, ": "...)
		if r.merged > 0 {
			b = append(b, "merged "...)
			b = strconv.AppendInt(b, int64(r.merged), 10)
			if r.merged == 1 {
				b = append(b, " wire packet; "...)
			} else {
				b = append(b, " wire packets; "...)
			}
		}
		b = append(b, w.hdrString(r.hdr)...)
	case Wire:
		b = append(b, r.dir.String()...)
		o := &r.origin
		sep := ": "
		switch o.Kind {
		case FromHostTX:
			b = append(b, ": segment "...)
			b = appendFrac(b, o.Index, o.Count)
			b = append(b, " of host-tx #"...)
			b = strconv.AppendUint(b, o.Super, 10)
			sep = "; "
		case IntoHostRX:
			b = append(b, ": merged into host-rx #"...)
			b = strconv.AppendUint(b, o.Super, 10)
			b = append(b, " ("...)
			b = appendFrac(b, o.Index, o.Count)
			b = append(b, ')')
			sep = "; "
		}
		if o.Note != "" {
			b = append(b, sep...)
			b = append(b, o.Note...)
		}
	}
	return b
}

// appendFrac appends "i+1/n".
func appendFrac(b []byte, i, n int) []byte {
	b = strconv.AppendInt(b, int64(i)+1, 10)
	b = append(b, '/')
	return strconv.AppendInt(b, int64(n), 10)
}

// pcapng block and option codes (draft-ietf-opsawg-pcapng).
const (
	blockEPB      = 6 // Enhanced Packet Block
	optEndOfOpt   = 0
	optComment    = 1
	optEPBFlags   = 2
	maxOptionLen  = 1<<16 - 1
	epbHeaderSize = 28 // type, length, interface, timestamp (2), captured and original length
)

// pad4 returns how many bytes pad n to a multiple of 4.
func pad4(n int) int { return -n & 3 }

// writeEPB writes r as an Enhanced Packet Block into o, stamped tsn, with comment
// and r's direction in the flags option; writer goroutine only.
//
// It does what pcapgo.NgWriter.WritePacketWithOptions does (timestamps
// in nanoseconds, the if_tsresol NgWriter gives every interface) without
// its per-packet cost: NgPacketOptions.toNgOptions builds a slice of
// options boxed in interfaces (2 allocations), the comment is a string
// converted back to []byte on the way out (2 more), and each block is 6 to
// 9 small writes. Here it is three writes into the 1 MiB buffer (the one
// NgWriter writes its other blocks into): header, data, then padding,
// options and trailer.
func (w *Writer) writeEPB(o *output, intf int, r *rec, tsn int64, comment []byte) error {
	if len(comment) > maxOptionLen {
		comment = comment[:maxOptionLen]
	}
	capLen := len(r.data)
	optLen := 8 + 4 // flags, end of options
	if len(comment) > 0 {
		optLen += 4 + len(comment) + pad4(len(comment))
	}
	total := epbHeaderSize + capLen + pad4(capLen) + optLen + 4
	ts := uint64(tsn)

	b := w.epb[:0]
	b = binary.LittleEndian.AppendUint32(b, blockEPB)
	b = binary.LittleEndian.AppendUint32(b, uint32(total))
	b = binary.LittleEndian.AppendUint32(b, uint32(intf))
	b = binary.LittleEndian.AppendUint32(b, uint32(ts>>32))
	b = binary.LittleEndian.AppendUint32(b, uint32(ts))
	b = binary.LittleEndian.AppendUint32(b, uint32(capLen))
	b = binary.LittleEndian.AppendUint32(b, uint32(r.origLen))
	head := len(b)
	b = append(b, make([]byte, pad4(capLen))...)
	if len(comment) > 0 {
		b = binary.LittleEndian.AppendUint16(b, optComment)
		b = binary.LittleEndian.AppendUint16(b, uint16(len(comment)))
		b = append(b, comment...)
		b = append(b, make([]byte, pad4(len(comment)))...)
	}
	var flags uint32 // EPB flags bits 0-1: 0 unknown, 1 inbound, 2 outbound
	switch r.dir {
	case In:
		flags = 1
	case Out:
		flags = 2
	}
	b = binary.LittleEndian.AppendUint16(b, optEPBFlags)
	b = binary.LittleEndian.AppendUint16(b, 4)
	b = binary.LittleEndian.AppendUint32(b, flags)
	b = binary.LittleEndian.AppendUint32(b, optEndOfOpt)
	b = binary.LittleEndian.AppendUint32(b, uint32(total))
	w.epb = b

	if _, err := o.bw.Write(b[:head]); err != nil {
		return err
	}
	if _, err := o.bw.Write(r.data); err != nil {
		return err
	}
	_, err := o.bw.Write(b[head:])
	return err
}
