package capture

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// CombinedNote is the section comment's last line in a file merged from
// per-point files (Options.PointFile).
const CombinedNote = "every capture point in one file, in time order: for the comments and the picture; " +
	"the same packet shows at two or three points, so use the per-point files for TCP analysis"

// ref is one interface of the merged file: a point of a sink.
type ref struct {
	s *sink
	p Point
}

// merge writes w.combined from the per-point files, every packet in time
// order (what mergecap does): the files are read back block by block and
// each packet block is copied as it is, its interface index rewritten;
// then every interface's statistics. Writer goroutine, after the per-point
// files are closed.
func (w *Writer) merge(end time.Time) error {
	var refs []ref
	for _, s := range w.order {
		for p := HostTX; p < numPoints; p++ {
			if s.has(p) && (s.upfront || s.outs[p] != nil) {
				refs = append(refs, ref{s, p})
			}
		}
	}
	f, c, err := w.createOut(w.combined)
	if err != nil {
		return err
	}
	defer func() {
		if c != nil {
			c.Close()
		}
	}()
	o := &output{name: w.combined, bw: bufio.NewWriterSize(f, bufSize)}
	comment := CombinedNote
	if w.comment != "" {
		comment = w.comment + "\n" + comment
	}
	save := w.comment
	w.comment = comment
	defer func() { w.comment = save }()
	if len(refs) == 0 {
		if err := w.placeholder(o); err != nil {
			return fmt.Errorf("capture: write %s: %w", w.combined, err)
		}
	}
	var ins []*blockReader
	for i, rf := range refs {
		if _, err := w.addIntf(o, w.intf(rf.s.nic, rf.p)); err != nil {
			return fmt.Errorf("capture: write %s: %w", w.combined, err)
		}
		if po := rf.s.outs[rf.p]; po != nil {
			br, err := openBlocks(po.path, uint32(i))
			if err != nil {
				return err
			}
			defer br.close()
			ins = append(ins, br)
		}
	}
	if err := o.ng.Flush(); err != nil {
		return fmt.Errorf("capture: write %s: %w", w.combined, err)
	}
	for _, in := range ins {
		if err := in.next(); err != nil {
			return err
		}
	}
	for {
		var min *blockReader
		for _, in := range ins {
			if in.ok && (min == nil || in.ts < min.ts) {
				min = in
			}
		}
		if min == nil {
			break
		}
		binary.LittleEndian.PutUint32(min.block[8:], min.id)
		if _, err := o.bw.Write(min.block); err != nil {
			return fmt.Errorf("capture: write %s: %w", w.combined, err)
		}
		if err := min.next(); err != nil {
			return err
		}
	}
	for i, rf := range refs {
		if err := o.ng.WriteInterfaceStats(i, rf.s.isb(rf.p, w.start, end)); err != nil {
			return fmt.Errorf("capture: write %s: %w", w.combined, err)
		}
	}
	if err := o.ng.Flush(); err != nil {
		return fmt.Errorf("capture: write %s: %w", w.combined, err)
	}
	if err := o.bw.Flush(); err != nil {
		return fmt.Errorf("capture: write %s: %w", w.combined, err)
	}
	err = c.Close()
	c = nil
	if err != nil {
		return fmt.Errorf("capture: close %s: %w", w.combined, err)
	}
	return nil
}

// blockReader reads the packet blocks of a pcapng file this package
// wrote (little-endian, one section, timestamps in nanoseconds).
type blockReader struct {
	f     *os.File
	br    *bufio.Reader
	path  string
	id    uint32 // the interface index in the merged file
	block []byte // the current Enhanced Packet Block, whole
	ts    int64
	ok    bool
}

func openBlocks(path string, id uint32) (*blockReader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("capture: merging: %w", err)
	}
	return &blockReader{f: f, br: bufio.NewReaderSize(f, 1<<16), path: path, id: id}, nil
}

func (b *blockReader) close() { b.f.Close() }

// next reads up to the next packet block; ok is false at the end.
func (b *blockReader) next() error {
	b.ok = false
	var hdr [8]byte
	for {
		if _, err := io.ReadFull(b.br, hdr[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("capture: merging %s: %w", b.path, err)
		}
		typ := binary.LittleEndian.Uint32(hdr[0:])
		n := int(binary.LittleEndian.Uint32(hdr[4:]))
		if n < 12 || n%4 != 0 || n > 1<<26 {
			return fmt.Errorf("capture: merging %s: block of %d bytes", b.path, n)
		}
		if cap(b.block) < n {
			b.block = make([]byte, n)
		}
		b.block = b.block[:n]
		copy(b.block, hdr[:])
		if _, err := io.ReadFull(b.br, b.block[8:]); err != nil {
			return fmt.Errorf("capture: merging %s: %w", b.path, err)
		}
		if typ == blockEPB && n >= epbHeaderSize+4 {
			b.ts = int64(uint64(binary.LittleEndian.Uint32(b.block[12:]))<<32 | uint64(binary.LittleEndian.Uint32(b.block[16:])))
			b.ok = true
			return nil
		}
	}
}
