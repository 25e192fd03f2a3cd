package capture

import (
	"bytes"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// TestNICLinkTypeOverridesTheWriters: a TAP NIC's interfaces say Ethernet
// in any stream that records it (a live capture too), whatever the
// Writer's default.
func TestNICLinkTypeOverridesTheWriters(t *testing.T) {
	c := NewNIC("vnic0")
	c.SetLinkType(layers.LinkTypeEthernet)
	var out bytes.Buffer
	w, err := New(&out, Options{Sources: []Source{{NIC: c, Points: []Point{Wire}}}, Block: true})
	if err != nil {
		t.Fatal(err)
	}
	frame := append(make([]byte, 12), 0x08, 0x06)
	c.Wire(time.Now(), Out, append(frame, make([]byte, 28)...), Origin{})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := pcapgo.NewNgReader(&out, pcapgo.NgReaderOptions{WantMixedLinkType: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, ci, err := r.ReadPacketData(); err != nil {
		t.Fatal(err)
	} else if intf, err := r.Interface(ci.InterfaceIndex); err != nil || intf.LinkType != layers.LinkTypeEthernet {
		t.Errorf("interface %+v (%v): want link type Ethernet", intf, err)
	}
}
