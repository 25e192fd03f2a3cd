package daemon_test

import (
	"errors"
	"strings"
	"testing"

	"vnic/vnic/daemon"
)

// TestConfigSnaplen: 0 and positive snap lengths pass, a negative one is a
// configuration error that says what to give instead.
func TestConfigSnaplen(t *testing.T) {
	for _, n := range []int{0, 1, 128, 65535} {
		c := daemon.Config{Pcap: "x.pcapng", Snaplen: n}
		if err := c.Normalize(); err != nil || c.Snaplen != n {
			t.Errorf("Snaplen %d: %v (Snaplen now %d)", n, err, c.Snaplen)
		}
	}
	c := daemon.Config{Pcap: "x.pcapng", Snaplen: -1}
	err := c.Normalize()
	if !errors.Is(err, daemon.ErrConfig) || !strings.Contains(err.Error(), "snaplen -1") || !strings.Contains(err.Error(), "0 for whole packets") {
		t.Fatalf("Snaplen -1: %v, want ErrConfig naming it and saying what to give", err)
	}
}
