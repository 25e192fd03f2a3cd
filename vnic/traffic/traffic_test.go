package traffic

import (
	"context"
	"strings"
	"testing"
)

func TestOptionsChecked(t *testing.T) {
	ctx := context.Background()
	if _, err := Send(ctx, Options{}); err == nil || !strings.Contains(err.Error(), "Addr") {
		t.Errorf("Send without Addr: %v", err)
	}
	if _, err := Receive(ctx, Options{Addr: "198.18.0.2:19", Streams: -1}); err == nil {
		t.Errorf("negative Streams accepted")
	}
	if err := Echo(ctx, Options{Addr: "198.18.0.2", Netns: "x"}, nil); err == nil || !strings.Contains(err.Error(), "IP:port") {
		t.Errorf("Echo with no port: %v", err)
	}
	if _, err := UDPSend(ctx, Options{Addr: "198.18.0.2:9"}, -1); err == nil {
		t.Errorf("negative gsoSize accepted")
	}
	o := Options{Addr: "198.18.0.2:9"}
	if err := o.normalize(true); err != nil || o.Write != DefaultWrite || o.Streams != 1 || o.Timeout != DefaultTimeout || o.Duration != DefaultDuration {
		t.Errorf("defaults: %+v, %v", o, err)
	}
}

func TestBudgetIsExact(t *testing.T) {
	r := newRun(context.Background(), Options{Bytes: 1000}, nil)
	got := 0
	for {
		n := r.take(300)
		if n == 0 {
			break
		}
		got += n
	}
	if got != 1000 {
		t.Errorf("took %d of a 1000-byte budget", got)
	}
	r.giveBack(50)
	if n := r.take(300); n != 50 {
		t.Errorf("after giving back 50, took %d", n)
	}
}

func TestICMPChecksum(t *testing.T) {
	// An echo request, id 1 seq 1, payload "abcd": verifying the message
	// with its checksum in place sums to 0.
	msg := []byte{8, 0, 0, 0, 0, 1, 0, 1, 'a', 'b', 'c', 'd', 'e'}
	c := icmpChecksum(msg)
	msg[2], msg[3] = byte(c>>8), byte(c)
	if v := icmpChecksum(msg); v != 0 {
		t.Errorf("checksum does not verify: %#04x", v)
	}
}
