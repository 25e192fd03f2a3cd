package traffic

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"vnic/vnic/nsutil"
)

// KernelCounters reads the network counters of a namespace's kernel:
// /proc/net/snmp and /proc/net/netstat ("Tcp.RetransSegs",
// "TcpExt.TCPDSACKOldSent", "Udp.SndbufErrors", ...) and /proc/net/snmp6
// ("Ip6.Ip6InDiscards", "Udp6.Udp6InErrors", ...: the group is the name's
// prefix). netns "" is the caller's.
//
// Equivalent to: ip netns exec NETNS nstat -az
func KernelCounters(netns string) (map[string]uint64, error) {
	m := map[string]uint64{}
	err := nsutil.Do(netns, func() error {
		for _, f := range []string{"snmp", "netstat"} {
			b, err := os.ReadFile("/proc/thread-self/net/" + f)
			if err != nil {
				return err
			}
			if err := parsePairs(string(b), m); err != nil {
				return fmt.Errorf("/proc/net/%s: %w", f, err)
			}
		}
		b, err := os.ReadFile("/proc/thread-self/net/snmp6")
		if err != nil {
			return err
		}
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) != 2 {
				continue
			}
			v, err := strconv.ParseUint(f[1], 10, 64)
			if err != nil {
				continue
			}
			group := "Ip6"
			for _, g := range []string{"Icmp6", "Udp6", "UdpLite6", "Ip6"} {
				if strings.HasPrefix(f[0], g) {
					group = g
					break
				}
			}
			m[group+"."+f[0]] = v
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("traffic: kernel counters of netns %q: %w", netns, err)
	}
	return m, nil
}

// parsePairs reads the "Group: name name ..." / "Group: value value ..."
// line pairs of /proc/net/snmp and /proc/net/netstat into m as
// "Group.name". Negative values (Tcp MaxConn) are left out.
func parsePairs(s string, m map[string]uint64) error {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i := 0; i+1 < len(lines); i += 2 {
		names, vals := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		if len(names) != len(vals) || len(names) == 0 || names[0] != vals[0] {
			return fmt.Errorf("malformed line pair %q / %q", lines[i], lines[i+1])
		}
		group := strings.TrimSuffix(names[0], ":")
		for j := 1; j < len(names); j++ {
			if v, err := strconv.ParseUint(vals[j], 10, 64); err == nil {
				m[group+"."+names[j]] = v
			}
		}
	}
	return nil
}
