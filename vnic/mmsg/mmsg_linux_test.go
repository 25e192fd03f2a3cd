package mmsg_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"vnic/vnic/mmsg"
)

// pair returns two connected datagram sockets (AF_UNIX, no root needed).
func pair(t *testing.T) (*mmsg.Conn, *mmsg.Conn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	a, err := mmsg.New(fds[0], "a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := mmsg.New(fds[1], "b")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// batch is n messages, each with one buffer of size bytes.
type batch struct {
	hdrs []mmsg.Hdr
	iovs []unix.Iovec
	bufs [][]byte
}

func newBatch(n, size int) *batch {
	b := &batch{hdrs: make([]mmsg.Hdr, n), iovs: make([]unix.Iovec, n), bufs: make([][]byte, n)}
	for i := range n {
		b.bufs[i] = make([]byte, size)
		b.iovs[i] = mmsg.Iov(b.bufs[i])
		b.hdrs[i].SetIov(b.iovs[i : i+1])
	}
	return b
}

func TestSendRecvBatchesInOrder(t *testing.T) {
	a, b := pair(t)
	const n = 40
	out := newBatch(n, 0)
	for i := range n {
		out.bufs[i] = []byte(fmt.Sprintf("datagram %03d", i))
		out.iovs[i] = mmsg.Iov(out.bufs[i])
	}
	sent, err := a.Send(out.hdrs)
	if err != nil || sent != n {
		t.Fatalf("Send: %d, %v", sent, err)
	}
	in := newBatch(16, 100)
	got := 0
	for got < n {
		k, err := b.Recv(in.hdrs)
		if err != nil {
			t.Fatal(err)
		}
		for i := range k {
			if d := in.bufs[i][:in.hdrs[i].Len]; !bytes.Equal(d, out.bufs[got]) {
				t.Fatalf("datagram %d: %q, want %q", got, d, out.bufs[got])
			}
			got++
		}
	}
}

// TestTwoBuffersMakeOneDatagram: the iovecs of one message are gathered
// into one datagram (how the far ends prepend a header without a copy).
func TestTwoBuffersMakeOneDatagram(t *testing.T) {
	a, b := pair(t)
	hdr, body := []byte("HDR:"), []byte("body")
	iov := []unix.Iovec{mmsg.Iov(hdr), mmsg.Iov(body)}
	hs := make([]mmsg.Hdr, 1)
	hs[0].SetIov(iov)
	if n, err := a.Send(hs); n != 1 || err != nil {
		t.Fatalf("Send: %d, %v", n, err)
	}
	in := newBatch(1, 64)
	if _, err := b.Recv(in.hdrs); err != nil {
		t.Fatal(err)
	}
	if got := string(in.bufs[0][:in.hdrs[0].Len]); got != "HDR:body" {
		t.Errorf("got %q", got)
	}
}

func TestCloseWakesRecv(t *testing.T) {
	_, b := pair(t)
	in := newBatch(4, 64)
	errc := make(chan error, 1)
	go func() {
		_, err := b.Recv(in.hdrs)
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond)
	b.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, os.ErrClosed) {
			t.Errorf("Recv after Close: %v, want os.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Recv still waiting 5 s after Close")
	}
}

func TestSendRecvAllocateNothing(t *testing.T) {
	a, b := pair(t)
	out := newBatch(8, 200)
	in := newBatch(8, 200)
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := a.Send(out.hdrs); err != nil {
			t.Fatal(err)
		}
		for got := 0; got < 8; {
			k, err := b.Recv(in.hdrs)
			if err != nil {
				t.Fatal(err)
			}
			got += k
		}
	})
	if allocs != 0 {
		t.Errorf("%.1f allocations per batch, want 0", allocs)
	}
}
