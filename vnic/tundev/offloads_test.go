package tundev_test

import (
	"errors"
	"testing"

	"vnic/vnic/tundev"
)

func TestOffloadsString(t *testing.T) {
	for _, tc := range []struct {
		o    tundev.Offloads
		want string
	}{
		{0, "none"},
		{tundev.All, "csum|tso4|tso6|tso_ecn|uso4|uso6"},
		{tundev.CSUM | tundev.UFO, "csum|ufo"},
		{tundev.TSO4 | 0x180, "tso4|udp_tunnel|udp_tunnel_csum"},
		{tundev.TSO4 | 0x600, "tso4|0x600"},
	} {
		if got := tc.o.String(); got != tc.want {
			t.Errorf("%#x: %q, want %q", uint(tc.o), got, tc.want)
		}
	}
}

func TestDropErrorMessageAndUnwrap(t *testing.T) {
	e := &tundev.DropError{First: 3, FirstErr: errors.New("invalid argument")}
	e.Dropped[tundev.DropInvalid] = 2
	e.Dropped[tundev.DropDown] = 1
	if e.Total() != 3 {
		t.Errorf("Total %d", e.Total())
	}
	if !errors.Is(e, tundev.ErrDropped) || !errors.Is(e, e.FirstErr) {
		t.Error("DropError does not unwrap to ErrDropped and its errno")
	}
	if got, want := e.Error(), "tundev: kernel refused 3 frame(s) (tun_invalid 2, tun_down 1); first: frame 3: invalid argument"; got != want {
		t.Errorf("got %q\nwant %q", got, want)
	}
}
