package packet

import "testing"

func TestEthernetHeader(t *testing.T) {
	macs := make([]byte, 12)
	for _, c := range []struct {
		name  string
		frame []byte
		n     int
		typ   uint16
		ip    bool
	}{
		{"IPv4", append(append([]byte{}, macs...), 0x08, 0x00, 0x45), 14, EtherTypeIPv4, true},
		{"ARP", append(append([]byte{}, macs...), 0x08, 0x06, 0), 14, EtherTypeARP, false},
		{"802.1Q IPv6", append(append([]byte{}, macs...), 0x81, 0x00, 0, 100, 0x86, 0xdd, 0x60), 18, EtherTypeIPv6, true},
		{"QinQ IPv4", append(append([]byte{}, macs...), 0x88, 0xa8, 0, 1, 0x81, 0x00, 0, 2, 0x08, 0x00), 22, EtherTypeIPv4, true},
		{"three tags: the third is the type", append(append([]byte{}, macs...), 0x81, 0, 0, 1, 0x81, 0, 0, 2, 0x81, 0, 0, 3), 22, EtherTypeQ, false},
		{"short", macs[:10], 0, 0, false},
		{"tag cut", append(append([]byte{}, macs...), 0x81, 0x00, 0), 0, 0, false},
	} {
		n, typ := EthernetHeader(c.frame)
		if n != c.n || typ != c.typ {
			t.Errorf("%s: %d %#04x, want %d %#04x", c.name, n, typ, c.n, c.typ)
		}
		if ip, ok := EthernetIP(c.frame); ok != c.ip || (ok && len(ip) != len(c.frame)-c.n) {
			t.Errorf("%s: EthernetIP %v %d bytes", c.name, ok, len(ip))
		}
	}
}
