package daemon

import (
	"net/netip"
	"strings"
	"testing"
)

func TestWireDevAndVXLANConfig(t *testing.T) {
	c := Config{Mode: ModeTAP, Wire: "vxlan:198.19.0.2,vni=42,port=8472,local=198.19.0.1", MTU: 1450}
	if err := c.Normalize(); err != nil {
		t.Fatal(err)
	}
	v := c.VXLAN()
	if v == nil || v.Remote != netip.MustParseAddr("198.19.0.2") || v.VNI != 42 || v.Port != 8472 || v.Local != netip.MustParseAddr("198.19.0.1") || v.MTU != 1450 {
		t.Errorf("vxlan config %+v", v)
	}
	if len(c.Peer) != 0 || c.MAC == nil {
		t.Errorf("peer %v, MAC %v: want no far end addresses and a derived MAC", c.Peer, c.MAC)
	}
	c = Config{Mode: ModeTAP, Wire: "dev:v1"}
	if err := c.Normalize(); err != nil || c.Dev() != "v1" {
		t.Errorf("dev:v1: %v, %q", err, c.Dev())
	}
	for _, bad := range []struct {
		c    Config
		want string
	}{
		{Config{Wire: "dev:v1"}, "add --mode tap"},
		{Config{Mode: ModeTAP, Wire: "dev:"}, "name an interface"},
		{Config{Mode: ModeTAP, Wire: "vxlan:x"}, "is not an IP address"},
		{Config{Mode: ModeTAP, Wire: "vxlan:198.19.0.2,ttl=3"}, "unknown option \"ttl\""},
		{Config{Mode: ModeTAP, Wire: "vxlan:198.19.0.2,port=0"}, "port=0"},
		{Config{Mode: ModeTAP, Wire: "vxlan:198.19.0.2", Peer: []netip.Addr{netip.MustParseAddr("198.18.0.9")}}, "--peer has no meaning"},
		{Config{Mode: "eth"}, "--mode \"eth\""},
		{Config{MAC: []byte{2, 0, 0, 0, 0, 1}}, "add --mode tap"},
	} {
		if err := bad.c.Normalize(); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%+v: %v, want %q", bad.c, err, bad.want)
		}
	}
}
