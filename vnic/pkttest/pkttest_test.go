package pkttest

import (
	"errors"
	"testing"
)

func TestBuildVerifies(t *testing.T) {
	for _, p := range []Packet{
		{Payload: Payload(100, 1)},
		{V6: true, Payload: Payload(1000, 2), TCPOptions: []byte{1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2}},
		{Proto: ProtoUDP, Payload: Payload(33, 3)},
		{V6: true, Proto: ProtoUDP, Payload: Payload(7, 4), ExtHdrs: []ExtHdr{{Type: ExtHopByHop, Data: make([]byte, 6)}, {Type: ExtDestOpts, Data: make([]byte, 14)}}},
		{IPOptions: []byte{1, 1, 1, 0}, Payload: Payload(10, 5)},
	} {
		b := p.Build()
		if err := Verify(b); err != nil {
			t.Errorf("%+v: %v", p, err)
		}
		p.BadL4Checksum = true
		if err := Verify(p.Build()); !errors.Is(err, ErrChecksum) {
			t.Errorf("bad checksum not detected: %v", err)
		}
	}
}
