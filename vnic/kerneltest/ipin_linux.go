package kerneltest

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

// ipIn reads how many packets a namespace's IPv4 and IPv6 layers have
// received, counting every segment of a GRO-merged packet: the sums of
// IpExt In{NoECT,ECT1,ECT0,CE}Pkts (/proc/net/netstat) and
// Ip6In{NoECT,ECT1,ECT0,CE}Pkts (/proc/net/snmp6), which ip_rcv_core and
// ip6_rcv_core advance by skb_shinfo(skb)->gso_segs. A batch written into
// the GRO oracle's `in` has left GRO when this has grown by the batch's
// packet count: on a loaded machine the NAPI timer poll that flushes the
// held list can come hundreds of milliseconds late, far past any fixed
// wait for the first frame.
type ipIn struct {
	netstat, snmp6 *os.File
	buf            []byte
}

// openIPIn opens the counters of the namespace the calling thread is in
// (call it inside Netns.Do); the files keep reading that namespace.
func openIPIn() (*ipIn, error) {
	n, err := os.Open("/proc/thread-self/net/netstat")
	if err != nil {
		return nil, err
	}
	s, err := os.Open("/proc/thread-self/net/snmp6")
	if err != nil {
		n.Close()
		return nil, err
	}
	return &ipIn{netstat: n, snmp6: s}, nil
}

func (c *ipIn) close() {
	c.netstat.Close()
	c.snmp6.Close()
}

func (c *ipIn) reread(f *os.File) ([]byte, error) {
	c.buf = c.buf[:0]
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	b := bytes.NewBuffer(c.buf)
	if _, err := b.ReadFrom(f); err != nil {
		return nil, err
	}
	c.buf = b.Bytes()
	return c.buf, nil
}

var ecnCounters = []string{"NoECT", "ECT1", "ECT0", "CE"}

// read returns the IPv4 plus IPv6 received-packet count.
func (c *ipIn) read() (uint64, error) {
	var total uint64
	b, err := c.reread(c.netstat)
	if err != nil {
		return 0, err
	}
	var names []string
	found := 0
	for sc := bufio.NewScanner(bytes.NewReader(b)); sc.Scan(); {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || f[0] != "IpExt:" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		for i, v := range f {
			if i < len(names) && strings.HasPrefix(names[i], "In") && strings.HasSuffix(names[i], "Pkts") && isECN(names[i][2:len(names[i])-4]) {
				n, err := strconv.ParseUint(v, 10, 64)
				if err != nil {
					return 0, fmt.Errorf("kerneltest: IpExt %s: %w", names[i], err)
				}
				total += n
				found++
			}
		}
	}
	if b, err = c.reread(c.snmp6); err != nil {
		return 0, err
	}
	for sc := bufio.NewScanner(bytes.NewReader(b)); sc.Scan(); {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && strings.HasPrefix(f[0], "Ip6In") && strings.HasSuffix(f[0], "Pkts") && isECN(f[0][5:len(f[0])-4]) {
			n, err := strconv.ParseUint(f[1], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("kerneltest: %s: %w", f[0], err)
			}
			total += n
			found++
		}
	}
	if found != 2*len(ecnCounters) {
		return 0, fmt.Errorf("kerneltest: %d of the %d IP ECN packet counters in /proc/net/netstat and snmp6", found, 2*len(ecnCounters))
	}
	return total, nil
}

func isECN(s string) bool {
	for _, e := range ecnCounters {
		if s == e {
			return true
		}
	}
	return false
}

// waitIPIn waits until the counter has grown to at least want, or until
// limit; it reports whether it got there.
func (c *ipIn) waitIPIn(want uint64, limit time.Duration) (bool, error) {
	end := time.Now().Add(limit)
	for {
		n, err := c.read()
		if err != nil || n >= want {
			return err == nil, err
		}
		if time.Now().After(end) {
			return false, nil
		}
		time.Sleep(200 * time.Microsecond)
	}
}
