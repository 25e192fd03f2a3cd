package capture

import (
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

// comment formats r's packet comment; writer goroutine only.
//
//	host-tx #17: gso=tcpv4 gso_size=1448 hdr_len=66 csum_start=20 csum_offset=16 needs_csum
//	out: segment 2/7 of host-tx #17
//	in: merged into host-rx #9 (3/45)
//	host-rx #9: merged 45 wire packets; gso=tcpv4 ...
func (w *Writer) comment(r *rec) string {
	b := w.cbuf[:0]
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
	w.cbuf = b
	return string(b)
}

// appendFrac appends "i+1/n".
func appendFrac(b []byte, i, n int) []byte {
	b = strconv.AppendInt(b, int64(i)+1, 10)
	b = append(b, '/')
	return strconv.AppendInt(b, int64(n), 10)
}
