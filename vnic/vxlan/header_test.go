package vxlan_test

import (
	"bytes"
	"testing"

	"vnic/vnic/drop"
	"vnic/vnic/vxlan"
)

// hdr builds a VXLAN header by hand from RFC 7348's layout, independently
// of Encode.
func hdr(flags byte, vni uint32, reserved [4]byte) []byte {
	return []byte{flags, reserved[0], reserved[1], reserved[2], byte(vni >> 16), byte(vni >> 8), byte(vni), reserved[3]}
}

var frame = bytes.Repeat([]byte{0xab}, 60) // an inner frame: 14 bytes of Ethernet header and more

func TestEncodeIsRFC7348(t *testing.T) {
	for _, vni := range []uint32{1, 42, 0x123456, vxlan.MaxVNI} {
		b := make([]byte, vxlan.HeaderLen)
		vxlan.Encode(b, vni)
		if want := hdr(0x08, vni, [4]byte{}); !bytes.Equal(b, want) {
			t.Errorf("vni %#x: % x, want % x", vni, b, want)
		}
		if got := vxlan.VNI(b); got != vni {
			t.Errorf("VNI(Encode(%#x)) = %#x", vni, got)
		}
	}
}

// TestDecodeRulesOfVxlanRcv: each check vxlan_rcv makes, and its reason.
func TestDecodeRulesOfVxlanRcv(t *testing.T) {
	const vni = 42
	for _, tc := range []struct {
		name string
		d    []byte
		want drop.Reason
	}{
		{"valid", append(hdr(0x08, vni, [4]byte{}), frame...), drop.None},
		{"empty", nil, drop.VXLANShort},
		{"header cut", hdr(0x08, vni, [4]byte{})[:7], drop.VXLANShort},
		{"no I flag", append(hdr(0x00, vni, [4]byte{}), frame...), drop.VXLANFlags},
		{"another VNI", append(hdr(0x08, vni+1, [4]byte{}), frame...), drop.VXLANVNI},
		{"GBP flag (reserved without the extension)", append(hdr(0x88, vni, [4]byte{}), frame...), drop.VXLANReserved},
		{"reserved byte 1", append(hdr(0x08, vni, [4]byte{1, 0, 0, 0}), frame...), drop.VXLANReserved},
		{"GPE next protocol (byte 3)", append(hdr(0x08, vni, [4]byte{0, 0, 3, 0}), frame...), drop.VXLANReserved},
		{"reserved last byte", append(hdr(0x08, vni, [4]byte{0, 0, 0, 1}), frame...), drop.VXLANReserved},
		{"no inner frame", hdr(0x08, vni, [4]byte{}), drop.EtherShort},
		{"inner frame of 13 bytes", append(hdr(0x08, vni, [4]byte{}), frame[:13]...), drop.EtherShort},
		{"inner frame of 14 bytes", append(hdr(0x08, vni, [4]byte{}), frame[:14]...), drop.None},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, r := vxlan.Decode(tc.d, vni)
			if r != tc.want {
				t.Fatalf("reason %v, want %v", r, tc.want)
			}
			if r == drop.None && !bytes.Equal(f, tc.d[vxlan.HeaderLen:]) {
				t.Errorf("frame % x, want the datagram after the header", f)
			}
		})
	}
}

func TestOverheadIs50Or70(t *testing.T) {
	if o := vxlan.Overhead(false); o != 50 {
		t.Errorf("IPv4 overhead %d, want 50", o)
	}
	if o := vxlan.Overhead(true); o != 70 {
		t.Errorf("IPv6 overhead %d, want 70", o)
	}
}

func TestConfigErrorsSayWhatToDo(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  vxlan.Config
		want string
	}{
		{"no remote", vxlan.Config{}, "give the far end's unicast underlay address"},
		{"vni too big", vxlan.Config{Remote: mustAddr("198.19.0.2"), VNI: 1 << 24}, "between 1 and 16777215"},
		{"mtu too big", vxlan.Config{Remote: mustAddr("198.19.0.2"), MTU: 65500}, "use --mtu 65485 or less"},
		{"families", vxlan.Config{Remote: mustAddr("198.19.0.2"), Local: mustAddr("fd00::1")}, "different families"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Normalize()
			if err == nil || !bytes.Contains([]byte(err.Error()), []byte(tc.want)) {
				t.Errorf("error %v, want one saying %q", err, tc.want)
			}
		})
	}
}

// FuzzDecode: whatever the underlay delivers, Decode returns a frame
// inside the datagram or a reason, never both, never a panic; and a frame
// Encode wrapped comes back out.
func FuzzDecode(f *testing.F) {
	f.Add(append(hdr(0x08, 7, [4]byte{}), frame...), uint32(7))
	f.Add(hdr(0x08, 7, [4]byte{}), uint32(7))
	f.Add([]byte{0x08}, uint32(0))
	f.Add(append(hdr(0x0c, 7, [4]byte{0, 0, 3, 0}), frame...), uint32(7))
	f.Fuzz(func(t *testing.T, d []byte, vni uint32) {
		vni &= vxlan.MaxVNI
		fr, r := vxlan.Decode(d, vni)
		if r == drop.None {
			if len(fr) < vxlan.EthHeaderLen || len(d) < vxlan.HeaderLen || &fr[0] != &d[vxlan.HeaderLen] {
				t.Fatalf("accepted a frame of %d bytes from a %d-byte datagram", len(fr), len(d))
			}
		} else if fr != nil {
			t.Fatalf("reason %v with a frame", r)
		}
		if len(d) >= vxlan.EthHeaderLen {
			b := make([]byte, vxlan.HeaderLen+len(d))
			vxlan.Encode(b, vni)
			copy(b[vxlan.HeaderLen:], d)
			if got, r := vxlan.Decode(b, vni); r != drop.None || !bytes.Equal(got, d) {
				t.Fatalf("Encode then Decode: %v, % x", r, got)
			}
		}
	})
}
