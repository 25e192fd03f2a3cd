package view

import (
	"strconv"
	"strings"

	"vnic/vnic/capture"
	"vnic/vnic/virtio"
)

// parseComment reads the comment formats of capture.Writer (capture's
// package doc):
//
//	host-tx #17: gso=tcpv4 gso_size=1448 hdr_len=66 csum_start=20 csum_offset=16 needs_csum
//	host-rx #9: merged 45 wire packets; gso=tcpv4 gso_size=1448 ...
//	out: segment 2/7 of host-tx #17
//	in: merged into host-rx #9 (3/45)
//	out: segment 1/1 of host-tx #3; dropped: ttl exceeded
//
// Anything it does not understand ends up in p.Note; a "dropped: REASON"
// part also sets p.Dropped.
func parseComment(p *Packet, c string) {
	var notes []string
	for _, line := range strings.Split(c, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if rest, ok := parseCommentLine(p, line); rest != "" || !ok {
			if !ok {
				rest = line
			}
			for _, part := range strings.Split(rest, "; ") {
				part = strings.TrimSpace(part)
				if part == "" {
					continue
				}
				if r, ok := strings.CutPrefix(part, "dropped: "); ok && p.Dropped == "" {
					p.Dropped = r
				} else if r, ok := strings.CutPrefix(part, "dropped "); ok && p.Dropped == "" {
					p.Dropped = r
				}
				notes = append(notes, part)
			}
		}
	}
	p.Note = strings.Join(notes, "; ")
}

// parseCommentLine parses one line; it returns what is left over (notes)
// and whether the line had a known form.
func parseCommentLine(p *Packet, line string) (string, bool) {
	switch {
	case strings.HasPrefix(line, "host-tx #"), strings.HasPrefix(line, "host-rx #"):
		rest := line[len("host-tx #"):]
		num, rest, ok := cutUint(rest)
		if !ok {
			return "", false
		}
		rest, ok = strings.CutPrefix(rest, ": ")
		if !ok {
			return "", false
		}
		p.Num = num
		if r, ok := strings.CutPrefix(rest, "merged "); ok {
			n, r2, ok := cutUint(r)
			if ok {
				if r3, ok := strings.CutPrefix(r2, " wire packets; "); ok {
					p.Merged, rest = int(n), r3
				} else if r3, ok := strings.CutPrefix(r2, " wire packet; "); ok {
					p.Merged, rest = int(n), r3
				}
			}
		}
		hdr, left, ok := parseHdr(rest)
		if ok {
			p.VNet = &hdr
		}
		return left, true
	case line == "out" || line == "in" || strings.HasPrefix(line, "out: ") || strings.HasPrefix(line, "in: "):
		_, rest, _ := strings.Cut(line, ": ")
		first, more, _ := strings.Cut(rest, "; ")
		if r, ok := strings.CutPrefix(first, "segment "); ok {
			if i, n, r, ok := cutFrac(r); ok {
				if r, ok := strings.CutPrefix(r, " of host-tx #"); ok {
					if k, r, ok := cutUint(r); ok && r == "" {
						p.Origin = Origin{Kind: capture.FromHostTX, Super: k, Index: i, Count: n}
						return more, true
					}
				}
			}
		}
		if r, ok := strings.CutPrefix(first, "merged into host-rx #"); ok {
			if k, r, ok := cutUint(r); ok {
				if r, ok := strings.CutPrefix(r, " ("); ok {
					if i, n, r, ok := cutFrac(r); ok && r == ")" {
						p.Origin = Origin{Kind: capture.IntoHostRX, Super: k, Index: i, Count: n}
						return more, true
					}
				}
			}
		}
		return rest, true
	}
	return "", false
}

// cutUint cuts a decimal number off the front of s.
func cutUint(s string) (uint64, string, bool) {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, s, false
	}
	n, err := strconv.ParseUint(s[:i], 10, 64)
	if err != nil {
		return 0, s, false
	}
	return n, s[i:], true
}

// cutFrac cuts "i/n" (1-based i) off the front of s; the index returned
// is 0-based, as in capture.Origin.
func cutFrac(s string) (int, int, string, bool) {
	i, r, ok := cutUint(s)
	if !ok || i == 0 || i > 1<<30 {
		return 0, 0, s, false
	}
	r, ok = strings.CutPrefix(r, "/")
	if !ok {
		return 0, 0, s, false
	}
	n, r, ok := cutUint(r)
	if !ok || n > 1<<30 {
		return 0, 0, s, false
	}
	return int(i) - 1, int(n), r, true
}

// parseHdr parses virtio.Hdr.String's output; it returns what follows it
// (after "; ") as notes.
func parseHdr(s string) (virtio.Hdr, string, bool) {
	var h virtio.Hdr
	fields, left, _ := strings.Cut(s, "; ")
	seen := false
	for _, f := range strings.Fields(fields) {
		k, v, _ := strings.Cut(f, "=")
		num := func() uint16 {
			n, _ := strconv.ParseUint(v, 10, 16)
			return uint16(n)
		}
		switch k {
		case "gso":
			seen = true
			base, ecn := strings.CutSuffix(v, "|ecn")
			switch base {
			case "none":
				h.GSOType = virtio.GSONone
			case "tcpv4":
				h.GSOType = virtio.GSOTCPv4
			case "tcpv6":
				h.GSOType = virtio.GSOTCPv6
			case "udp":
				h.GSOType = virtio.GSOUDP
			case "udp_l4":
				h.GSOType = virtio.GSOUDPL4
			default:
				n, _ := strconv.ParseUint(strings.TrimPrefix(base, "0x"), 16, 8)
				h.GSOType = uint8(n)
			}
			if ecn {
				h.GSOType |= virtio.GSOECN
			}
		case "gso_size":
			h.GSOSize = num()
		case "hdr_len":
			h.HdrLen = num()
		case "csum_start":
			h.CsumStart = num()
		case "csum_offset":
			h.CsumOffset = num()
		case "needs_csum":
			h.Flags |= virtio.FlagNeedsCsum
		case "data_valid":
			h.Flags |= virtio.FlagDataValid
		case "rsc_info":
			h.Flags |= virtio.FlagRSCInfo
		default:
			left = strings.TrimPrefix(left+"; "+f, "; ")
		}
	}
	return h, left, seen
}
