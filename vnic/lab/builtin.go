package lab

import "slices"

// Builtin returns the built-in scenarios, sorted by name.
func Builtin() []Scenario {
	s := []Scenario{tsoCapture(), forcedeth()}
	slices.SortFunc(s, func(a, b Scenario) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	return s
}

// Lookup returns the built-in scenario called name.
func Lookup(name string) (Scenario, bool) {
	for _, s := range Builtin() {
		if s.Name == name {
			return s, true
		}
	}
	return Scenario{}, false
}

// tsoCapture is SCENARIOS.md story 1: "Len is far bigger than the MSS".
func tsoCapture() Scenario {
	return Scenario{
		Name:  "tso-capture",
		Title: "Len is far bigger than the MSS (TSO/GSO capture discrepancy)",
		Story: "A teaching lab: host ginger sends 10,000 bytes with netcat to host basil " +
			"(MTU 1500, TCP timestamps on, so MSS 1448). With GSO on, the sender's capture " +
			"shows data segments larger than the MSS (2896, 1448, 2896, 1448, 1312); after " +
			"`ethtool -K eth0 gso off` it shows 1448 × 6 + 1312. The capture point sits " +
			"between the kernel and the NIC; segmentation happens after it; the wire never " +
			"carried the big packets.",
		Hosts: []Host{
			{Name: "ginger", NIC: NIC{Name: "eth0", Addrs: []string{"198.18.0.1/15", "fd00::1/64"}, MTU: 1500}},
			{Name: "basil", NIC: NIC{Name: "eth0", Addrs: []string{"198.18.0.2/15", "fd00::2/64"}, MTU: 1500}, Services: []string{"discard"}},
		},
		Links: []Link{{Kind: LinkWire, A: "ginger", B: "basil"}},
		Steps: []Step{
			{
				Name:        "GSO on",
				Description: "ginger sends 10,000 bytes over TCP to basil:9 (nc basil 9 < 10000 bytes), offloads as the NIC offers them (TSO/GSO on).",
				Traffic:     Traffic{Kind: TrafficSend, From: "ginger", To: "basil", Bytes: 10000},
				Expect: []Expectation{
					{Kind: ExpectHostTXAboveMSS},
					{Kind: ExpectWireMax, Size: 1500},
					{Kind: ExpectBytesArrive},
				},
				Explanation: "ginger's host-tx column is what `tcpdump -i eth0` shows on ginger: the kernel " +
					"hands the NIC super-packets with a gso_size of 1448, so the capture shows TCP " +
					"lengths above the MSS. The NIC (TSO) cuts them into 1448-byte segments after " +
					"the capture point: the wire column never has a packet above 1500 bytes. basil's " +
					"host-rx column is what tcpdump shows on basil: GRO merged the segments again.",
			},
			{
				Name:        "GSO and TSO off",
				Description: "`ethtool -K eth0 gso off tso off` on ginger, then the same 10,000 bytes.",
				Setup:       []Cmd{{Host: "ginger", Run: "ethtool -K eth0 gso off tso off"}},
				Traffic:     Traffic{Kind: TrafficSend, From: "ginger", To: "basil", Bytes: 10000},
				Expect: []Expectation{
					{Kind: ExpectHostTXWithinMSS},
					{Kind: ExpectHostTXPayloads, Sizes: []int{1448, 1448, 1448, 1448, 1448, 1448, 1312}},
					{Kind: ExpectHostTXEqualsWire},
					{Kind: ExpectBytesArrive},
				},
				Explanation: "With segmentation off, the kernel segments in software before the capture " +
					"point: ginger's capture shows 1448 × 6 + 1312, exactly what crossed the wire. " +
					"Nothing changed on the wire between the two steps; only where the capture sits " +
					"relative to the segmentation did.",
			},
			{
				Name:        "IPv6, GSO on",
				Description: "`ethtool -K eth0 gso on tso on` on ginger, then 10,000 bytes to basil over IPv6 (fd00::2).",
				Setup:       []Cmd{{Host: "ginger", Run: "ethtool -K eth0 gso on tso on"}},
				Traffic:     Traffic{Kind: TrafficSend, From: "ginger", To: "basil", IPv6: true, Bytes: 10000},
				Expect: []Expectation{
					{Kind: ExpectHostTXAboveMSS},
					{Kind: ExpectWireMax, Size: 1500},
					{Kind: ExpectBytesArrive},
				},
				Explanation: "The same with IPv6: the MSS is 1428 (1500 − 40 IPv6 − 20 TCP − 12 options), " +
					"ginger's capture shows super-packets above it, the wire only packets of at most 1500 bytes.",
			},
		},
	}
}

// forcedeth is SCENARIOS.md story 2: a NIC whose hardware MTU (1500) is
// below the MTU it accepts (9000), that cuts TCP behind the kernel's back
// and drops everything else that is too big.
func forcedeth() Scenario {
	nic := func(addr string) NIC {
		return NIC{Name: "eth0", Addrs: []string{addr}, MTU: 9000, HWMTU: 1500}
	}
	return Scenario{
		Name:  "forcedeth",
		Title: "The forcedeth NIC that segments behind your back (hardware MTU < MTU)",
		Story: "An nForce MCP55 NIC (forcedeth 0.61, kernel 2.6.26): MTU set to 9000 on server1 and " +
			"server2, but the hardware only does 1500. The driver accepts MTU 9000 and silently uses " +
			"TSO to cut TCP into 1448-byte segments: server1's capture shows segments far above 1448 " +
			"(5792, 2896), server2's the same byte ranges as 1448-byte segments. Non-TCP traffic is " +
			"not rescued: `ping -s 10000` leaves server1 as two IP fragments and only the small last " +
			"one arrives; the echo never completes. Fix: MTU 1500, matching the hardware.",
		Hosts: []Host{
			{Name: "server1", NIC: nic("198.18.101.254/15")},
			{Name: "server2", NIC: nic("198.18.101.1/15"), Services: []string{"discard"}},
		},
		Links: []Link{{Kind: LinkWire, A: "server1", B: "server2"}},
		Steps: []Step{
			{
				Name:        "TCP at MTU 9000",
				Description: "server1 sends 100,000 bytes over TCP to server2 (the HTTP download of the story); both NICs have MTU 9000 and a hardware MTU of 1500.",
				Traffic:     Traffic{Kind: TrafficSend, From: "server1", To: "server2", Bytes: 100000},
				Expect: []Expectation{
					{Kind: ExpectHostTXAboveMSS, Size: 1448},
					{Kind: ExpectWireMax, Size: 1500},
					{Kind: ExpectBytesArrive},
				},
				Explanation: "The kernel believes the MTU (MSS 8948) and hands the NIC packets and super-packets " +
					"far above 1448 bytes of payload: that is server1's capture. The NIC cuts every TCP " +
					"packet into 1448-byte segments that fit its 1500-byte hardware, each with its own " +
					"TCP header, no IP fragmentation: the wire never carries more than 1500 bytes. The " +
					"transfer works, so nobody notices.",
			},
			{
				Name:        "ping -s 10000 at MTU 9000",
				Description: "`ping -c1 -s 10000` from server1 to server2.",
				Traffic:     Traffic{Kind: TrafficPing, From: "server1", To: "server2", Size: 10000, Count: 1},
				Expect: []Expectation{
					{Kind: ExpectNoReply},
					{Kind: ExpectDrop},
					{Kind: ExpectWireMax, Size: 1500},
				},
				Explanation: "ICMP is not TCP: there is nothing to segment. The kernel fragments the 10,008-byte " +
					"datagram for MTU 9000 into a 8996-byte and a 1052-byte fragment; the NIC cannot send " +
					"the first (above its hardware MTU) and drops it (see the drop counters), so only the " +
					"last fragment crosses the wire, server2 can never reassemble it, and no reply comes back.",
			},
			{
				Name:        "MTU 1500 (the fix)",
				Description: "`ip link set eth0 mtu 1500` on both servers, then `ping -c1 -s 10000` again.",
				Setup: []Cmd{
					{Host: "server1", Run: "ip link set eth0 mtu 1500"},
					{Host: "server2", Run: "ip link set eth0 mtu 1500"},
				},
				Traffic: Traffic{Kind: TrafficPing, From: "server1", To: "server2", Size: 10000, Count: 1},
				Expect: []Expectation{
					{Kind: ExpectBytesArrive},
					{Kind: ExpectWireMax, Size: 1500},
				},
				Explanation: "With the MTU matching the hardware, the kernel fragments into pieces of at most " +
					"1500 bytes, every one fits the NIC, server2 reassembles the datagram and replies " +
					"(also in fragments).",
			},
		},
	}
}
