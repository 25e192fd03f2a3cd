package capture

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/gopacket/gopacket/pcapgo"
)

// Record is one packet read back from a capture.
type Record struct {
	Point     Point     // capture point, PointUnknown for an interface not named <ifname>@<point>
	Ifname    string    // NIC name; the whole interface name when Point is PointUnknown
	Interface int       // pcapng interface index
	TS        time.Time // timestamp (UTC)
	Len       int       // original packet length
	Dir       Dir       // from the EPB flags; DirUnknown if absent
	Comment   string    // packet comments, joined by "\n"
	Data      []byte    // captured bytes (Len bytes unless cut by the snaplen)
}

// ParseInterfaceName splits a pcapng interface name "<ifname>@<point>" as
// Writer names them. ok is false for any other name.
func ParseInterfaceName(name string) (ifname string, p Point, ok bool) {
	i := strings.LastIndexByte(name, '@')
	if i <= 0 {
		return name, PointUnknown, false
	}
	switch name[i+1:] {
	case "host-tx":
		p = HostTX
	case "wire":
		p = Wire
	case "host-rx":
		p = HostRX
	default:
		return name, PointUnknown, false
	}
	return name[:i], p, true
}

// ReadFile reads a pcapng file (as written by Writer, or any pcapng file)
// into records, in file order.
func ReadFile(path string) ([]Record, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("capture: %w", err)
	}
	defer f.Close()
	recs, err := Read(f)
	if err != nil {
		return recs, fmt.Errorf("capture: read %s: %w", path, err)
	}
	return recs, nil
}

// Read reads a pcapng stream into records, in file order. On a truncated
// or damaged stream (a capture still being written, a killed daemon) it
// returns the records read so far with the error.
func Read(r io.Reader) ([]Record, error) {
	ng, err := pcapgo.NewNgReader(bufio.NewReaderSize(r, 1<<16), pcapgo.NgReaderOptions{WantMixedLinkType: true})
	if err != nil {
		return nil, err
	}
	type iface struct {
		name  string
		point Point
	}
	var ifaces []iface
	var recs []Record
	for {
		data, ci, opts, err := ng.ReadPacketDataWithOptions()
		if errors.Is(err, io.EOF) {
			return recs, nil
		}
		if err != nil {
			return recs, err
		}
		for len(ifaces) < ng.NInterfaces() {
			intf, err := ng.Interface(len(ifaces))
			if err != nil {
				return recs, err
			}
			name, p, _ := ParseInterfaceName(intf.Name)
			ifaces = append(ifaces, iface{name, p})
		}
		rec := Record{
			Interface: ci.InterfaceIndex,
			TS:        ci.Timestamp,
			Len:       ci.Length,
			Comment:   strings.Join(opts.Comments, "\n"),
			Data:      data,
		}
		if ci.InterfaceIndex < len(ifaces) {
			rec.Ifname, rec.Point = ifaces[ci.InterfaceIndex].name, ifaces[ci.InterfaceIndex].point
		}
		if opts.Flags != nil {
			switch opts.Flags.Direction {
			case pcapgo.NgEpbFlagDirectionOutbound:
				rec.Dir = Out
			case pcapgo.NgEpbFlagDirectionInbound:
				rec.Dir = In
			}
		}
		recs = append(recs, rec)
	}
}
