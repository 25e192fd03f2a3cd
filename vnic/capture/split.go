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

// CombinedNote is the last line of the section comment of a file that is
// split into per-point files (Options.PointFile).
const CombinedNote = "every capture point in one file, in time order: for the comments and the picture; " +
	"the same packet shows at two or three points, so use the per-point files (beside this one) for TCP analysis"

// splitFile writes the per-point files from the closed main file: each
// packet block is copied as it is, its interface index rewritten to the
// per-point file's only interface; then each point's statistics. The main
// file is in time order, so they are too. Writer goroutine, in finish.
func (w *Writer) splitFile(end time.Time) error {
	type point struct {
		s *sink
		p Point
		o *output
	}
	byID := map[uint32]*point{}
	var all []*point
	for _, s := range w.order {
		for p := HostTX; p < numPoints; p++ {
			if s.outs[p] == w.main {
				pt := &point{s: s, p: p}
				byID[uint32(s.ids[p])] = pt
				all = append(all, pt)
			}
		}
	}
	open := func(pt *point) error {
		if pt.o != nil {
			return nil
		}
		path := w.split(pt.s.nic.name, pt.p)
		f, c, err := w.createOut(path)
		if err != nil {
			return err
		}
		pt.o = &output{name: path, path: path, bw: bufio.NewWriterSize(f, bufSize), closer: c}
		if _, err := w.addIntf(pt.o, w.intf(pt.s.nic, pt.p)); err != nil {
			return fmt.Errorf("capture: write %s: %w", path, err)
		}
		return pt.o.ng.Flush()
	}
	defer func() {
		for _, pt := range all {
			if pt.o != nil && pt.o.closer != nil {
				pt.o.closer.Close()
			}
		}
	}()
	// The NICs named at creation get a file per point even without
	// packets; the others only for points that have some.
	for _, pt := range all {
		if pt.s.upfront || pt.s.written[pt.p] > 0 || pt.s.dropped[pt.p].Load() > 0 {
			if err := open(pt); err != nil {
				return err
			}
		}
	}
	in, err := openBlocks(w.main.path)
	if err != nil {
		return err
	}
	defer in.close()
	for {
		if err := in.next(); err != nil {
			return err
		}
		if !in.ok {
			break
		}
		pt := byID[binary.LittleEndian.Uint32(in.block[8:])]
		if pt == nil {
			continue
		}
		if err := open(pt); err != nil {
			return err
		}
		binary.LittleEndian.PutUint32(in.block[8:], 0)
		if _, err := pt.o.bw.Write(in.block); err != nil {
			return fmt.Errorf("capture: write %s: %w", pt.o.name, err)
		}
	}
	for _, pt := range all {
		if pt.o == nil {
			continue
		}
		if err := pt.o.ng.WriteInterfaceStats(0, pt.s.isb(pt.p, w.start, end)); err != nil {
			return fmt.Errorf("capture: write %s: %w", pt.o.name, err)
		}
		if err := pt.o.ng.Flush(); err != nil {
			return fmt.Errorf("capture: write %s: %w", pt.o.name, err)
		}
		if err := pt.o.bw.Flush(); err != nil {
			return fmt.Errorf("capture: write %s: %w", pt.o.name, err)
		}
		err := pt.o.closer.Close()
		pt.o.closer = nil
		if err != nil {
			return fmt.Errorf("capture: close %s: %w", pt.o.name, err)
		}
	}
	return nil
}

// blockReader reads the packet blocks of a pcapng file this package
// wrote (little-endian, one section, timestamps in nanoseconds).
type blockReader struct {
	f     *os.File
	br    *bufio.Reader
	path  string
	block []byte // the current Enhanced Packet Block, whole
	ok    bool
}

func openBlocks(path string) (*blockReader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("capture: splitting: %w", err)
	}
	return &blockReader{f: f, br: bufio.NewReaderSize(f, 1<<16), path: path}, nil
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
			return fmt.Errorf("capture: splitting %s: %w", b.path, err)
		}
		typ := binary.LittleEndian.Uint32(hdr[0:])
		n := int(binary.LittleEndian.Uint32(hdr[4:]))
		if n < 12 || n%4 != 0 || n > 1<<26 {
			return fmt.Errorf("capture: splitting %s: block of %d bytes", b.path, n)
		}
		if cap(b.block) < n {
			b.block = make([]byte, n)
		}
		b.block = b.block[:n]
		copy(b.block, hdr[:])
		if _, err := io.ReadFull(b.br, b.block[8:]); err != nil {
			return fmt.Errorf("capture: splitting %s: %w", b.path, err)
		}
		if typ == blockEPB && n >= epbHeaderSize+4 {
			b.ok = true
			return nil
		}
	}
}
