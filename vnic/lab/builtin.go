package lab

import (
	"slices"
	"time"
)

// Builtin returns the built-in scenarios, sorted by name.
func Builtin() []Scenario {
	s := []Scenario{tsoCapture(), forcedeth(), groRouter(), jumboFirewall(), checksumScenario(), csumTrust(), gvisorGRO()}
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

// tsoCapture is story 1 of docs/stories.md: "Len is far bigger than the
// MSS".
func tsoCapture() Scenario {
	// The story's receiver announced a 5792-byte window (4 × 1448) and
	// acked every segment at once; its sender started with 3 segments.
	storyWindow := []Cmd{
		{Host: "basil", Run: "ip route replace 198.18.0.0/15 dev eth0 proto kernel scope link src 198.18.0.2 initrwnd 4 quickack 1 && ethtool -K eth0 gro off"},
		{Host: "ginger", Run: "ethtool -K eth0 tso on && ip route replace 198.18.0.0/15 dev eth0 proto kernel scope link src 198.18.0.1 initcwnd 3 congctl reno"},
	}
	return Scenario{
		Name:  "tso-capture",
		Title: "Len is far bigger than the MSS (TSO/GSO capture discrepancy)",
		Story: "A teaching lab: host ginger sends 10,000 bytes with netcat to host basil (MTU 1500, TCP " +
			"timestamps on, so MSS 1448). In the original, on a 2.6-era kernel with TSO off and GSO on, " +
			"the sender's tcpdump showed data segments of 2896, 1448, 2896, 1448 and 1312 bytes — larger " +
			"than the MSS — and after `ethtool -K eth0 gso off` 1448 × 6 + 1312. The capture point sits " +
			"between the kernel and the NIC; segmentation happens after it; the wire never carried the big " +
			"packets.\n\n" +
			"Today's kernel captures after its own software GSO, so TSO off alone already shows 1448 × 6 + " +
			"1312 (step 2), and only the NIC's TSO makes super-packets visible: vnic's TSO is on by default " +
			"(step 1). With the story's window and start (step 3) ginger's capture shows the story's " +
			"2896-byte packets again: half the receiver's 5792-byte window.",
		Hosts: []Host{
			{Name: "ginger", NIC: NIC{Name: "eth0", Addrs: []string{"198.18.0.1/15", "fd00::1/64"}, MTU: 1500}},
			{Name: "basil", NIC: NIC{Name: "eth0", Addrs: []string{"198.18.0.2/15", "fd00::2/64"}, MTU: 1500}, Services: []string{"discard"}},
		},
		// The story's acks came back about 2 ms after each segment.
		Links: []Link{{Kind: LinkWire, A: "ginger", B: "basil", Impair: Impairments{Delay: time.Millisecond}}},
		Steps: []Step{
			{
				Name:        "TSO on",
				Description: "ginger sends 10,000 bytes over TCP to basil:9 (nc basil 9 < 10000 bytes), offloads as the NIC offers them (TSO and GSO on).",
				Traffic:     Traffic{Kind: TrafficSend, From: "ginger", To: "basil", Bytes: 10000},
				Expect: []Expectation{
					{Kind: ExpectHostTXAboveMSS},
					{Kind: ExpectWireMax, Size: 1500},
					{Kind: ExpectBytesArrive},
				},
				Explanation: "ginger's host-tx column is what `tcpdump -i eth0` shows on ginger: the kernel " +
					"hands the NIC super-packets with a gso_size of 1448, so the capture shows TCP " +
					"lengths far above the MSS. The NIC (TSO) cuts them into 1448-byte segments after " +
					"the capture point: the wire column never has a packet above 1500 bytes. basil's " +
					"host-rx column is what tcpdump shows on basil: GRO merged the segments again.",
			},
			{
				Name:        "the story's setting: TSO off, GSO on",
				Description: "`ethtool -K eth0 tso off` on ginger (GSO stays on, as in the story), then the same 10,000 bytes.",
				Setup:       []Cmd{{Host: "ginger", Run: "ethtool -K eth0 tso off"}},
				Traffic:     Traffic{Kind: TrafficSend, From: "ginger", To: "basil", Bytes: 10000},
				Expect: []Expectation{
					{Kind: ExpectHostTXWithinMSS},
					{Kind: ExpectHostTXPayloads, Sizes: []int{1448, 1448, 1448, 1448, 1448, 1448, 1312}},
					{Kind: ExpectHostTXEqualsWire},
					{Kind: ExpectBytesArrive},
				},
				Explanation: "Without TSO the kernel segments in software (GSO) — and today's capture tap " +
					"sits after that, in the driver's transmit path: ginger's capture shows 1448 × 6 + " +
					"1312, exactly what crossed the wire, with GSO still on. The story's kernel tapped " +
					"before software GSO, which is why its tcpdump saw super-packets until `gso off`. " +
					"(`gso off` alone, TSO on, changes nothing here: TSO is the NIC's.)",
			},
			{
				Name: "the story's window: TSO on, 5792-byte window, 3 segments to start",
				Description: "TSO on again; basil announces a 5792-byte window (`initrwnd 4`), acks every segment " +
					"(`quickack 1`, GRO off) over a wire that takes 1 ms each way; ginger starts with 3 segments " +
					"(`initcwnd 3`, Reno), as the story's hosts did. The same 10,000 bytes.",
				Setup:   storyWindow,
				Traffic: Traffic{Kind: TrafficSend, From: "ginger", To: "basil", Bytes: 10000},
				Expect: []Expectation{
					{Kind: ExpectHostTXAboveMSS},
					{Kind: ExpectHostTXMax, Size: 2896},
					{Kind: ExpectWireMax, Size: 1500},
					{Kind: ExpectBytesArrive},
				},
				Explanation: "ginger's capture shows the story's 2896-byte packets: the kernel never builds a " +
					"super-packet larger than half the largest window the receiver announced " +
					"(tcp_bound_to_half_wnd), and basil announced 5792. The first flight, the story's " +
					"2896 + 1448, leaves today as three packets of 1448: today's kernel also keeps each " +
					"super-packet within half the congestion window (tcp_cwnd_test), and half of 3 " +
					"segments is one. basil's tcpdump, with GRO off, shows every 1448-byte segment as " +
					"it crossed the wire, and acks each.",
			},
			{
				Name:        "IPv6, TSO on",
				Description: "GRO on again on basil; then 10,000 bytes to basil over IPv6 (fd00::2).",
				Setup:       []Cmd{{Host: "basil", Run: "ethtool -K eth0 gro on"}},
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

// forcedeth is story 2 of docs/stories.md: a NIC whose hardware MTU (1500)
// is below the MTU it accepts (9000), that cuts TCP behind the kernel's back
// and drops everything else that is too big.
func forcedeth() Scenario {
	nic := func(addr, addr6 string) NIC {
		return NIC{Name: "eth0", Addrs: []string{addr, addr6}, MTU: 9000, HWMTU: 1500}
	}
	const route2 = "ip route replace 198.18.0.0/15 dev eth0 proto kernel scope link src 198.18.101.1"
	// server1's route with congestion control cubic, which leaves the
	// smallest super-packet to tcp_min_tso_segs (BBR sets its own), and
	// that at 4 segments: on a loaded machine the pacing rate, measured
	// from a slow handshake, would otherwise cut the super-packets
	// smaller than the story's.
	const route1 = "sysctl -qw net.ipv4.tcp_min_tso_segs=4 && ip route replace 198.18.0.0/15 dev eth0 proto kernel scope link src 198.18.101.254 congctl cubic"
	return Scenario{
		Name:  "forcedeth",
		Title: "The forcedeth NIC that segments behind your back (hardware MTU < MTU)",
		Story: "An nForce MCP55 NIC (forcedeth 0.61, kernel 2.6.26): MTU set to 9000 on server1 and " +
			"server2, but the hardware only does 1500. The driver accepts MTU 9000 and silently uses TSO to " +
			"cut TCP into 1448-byte segments. In an HTTP download from server1, whose connection had an MSS " +
			"of 1448, server1's capture showed segments of 5792 and 2896 bytes, server2's the same byte " +
			"ranges as 1448-byte segments (step 1). When both ends announce MTU 9000 the kernel sends " +
			"8948-byte segments and super-packets of them, and the NIC cuts every one into 1448-byte " +
			"pieces (step 2). Non-TCP traffic is not rescued: `ping -s 10000` leaves server1 as two IP " +
			"fragments and only the small last one arrives; the echo never completes. Fix: MTU 1500, " +
			"matching the hardware.",
		Hosts: []Host{
			{Name: "server1", NIC: nic("198.18.101.254/15", "fd00:101::254/64")},
			{Name: "server2", NIC: nic("198.18.101.1/15", "fd00:101::1/64"), Services: []string{"discard"}},
		},
		Links: []Link{{Kind: LinkWire, A: "server1", B: "server2"}},
		Steps: []Step{
			{
				Name: "the story's download: MSS 1448",
				Description: "server2 announces MSS 1460 (`advmss 1460`: the story's connection had MSS 1448) " +
					"and an 11584-byte window (`initrwnd 8`), without GRO (the story's 2.6.26 forcedeth " +
					"had none); server1 sends it 8688 bytes, the story's 26577:35265.",
				Setup: []Cmd{{Host: "server2", Run: route2 + " advmss 1460 initrwnd 8 && ethtool -K eth0 gro off"},
					{Host: "server1", Run: route1}},
				Traffic: Traffic{Kind: TrafficSend, From: "server1", To: "server2", Bytes: 8688},
				Expect: []Expectation{
					{Kind: ExpectHostTXPayloads, Sizes: []int{5792, 2896}},
					{Kind: ExpectHostRXPayloads, Host: "server2", Sizes: []int{1448, 1448, 1448, 1448, 1448, 1448}},
					{Kind: ExpectWireMax, Size: 1500},
					{Kind: ExpectBytesArrive},
				},
				Explanation: "server1's capture shows the story's 5792 and 2896: super-packets of 4 and 2 " +
					"segments of 1448 (the kernel keeps each within half the receiver's 11584-byte window). " +
					"The NIC cuts them into 1448-byte segments, each with its own TCP header, no IP " +
					"fragmentation; server2's capture shows the same byte ranges as six 1448-byte segments. " +
					"With an MSS of 1448 every segment fits the 1500-byte hardware anyway: this is what " +
					"any TSO NIC does.",
			},
			{
				Name:        "TCP at MTU 9000",
				Description: "server2 back to its defaults (MSS 8960 announced, GRO on); server1 sends 100,000 bytes over TCP to server2.",
				Setup: []Cmd{{Host: "server2", Run: route2 + " && ethtool -K eth0 gro on"},
					{Host: "server1", Run: "sysctl -qw net.ipv4.tcp_min_tso_segs=2 && ip route replace 198.18.0.0/15 dev eth0 proto kernel scope link src 198.18.101.254"}},
				Traffic: Traffic{Kind: TrafficSend, From: "server1", To: "server2", Bytes: 100000},
				Expect: []Expectation{
					{Kind: ExpectHostTXAboveMSS, Size: 1448},
					{Kind: ExpectWireMax, Size: 1500},
					{Kind: ExpectBytesArrive},
				},
				Explanation: "The kernel believes the MTU (MSS 8948) and hands the NIC packets and super-packets " +
					"of 8948-byte segments: that is server1's capture. The NIC cuts every TCP packet into " +
					"1448-byte segments that fit its 1500-byte hardware, each with its own TCP header, no " +
					"IP fragmentation: the wire never carries more than 1500 bytes. The transfer works, so " +
					"nobody notices.",
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
				Name:        "IPv6: TCP at MTU 9000",
				Description: "server1 sends 100,000 bytes over TCP to server2 over IPv6 (fd00:101::1); MTU 9000, hardware MTU 1500.",
				Traffic:     Traffic{Kind: TrafficSend, From: "server1", To: "server2", IPv6: true, Bytes: 100000},
				Expect: []Expectation{
					{Kind: ExpectHostTXAboveMSS, Size: 1428},
					{Kind: ExpectWireMax, Size: 1500},
					{Kind: ExpectBytesArrive},
				},
				Explanation: "The same with IPv6: the kernel's MSS is 8928 (9000 − 40 IPv6 − 20 TCP − 12 options) and " +
					"server1's capture shows packets far above 1428 bytes of payload; the NIC cuts them into " +
					"1428-byte segments (1500 − 40 − 20 − 12), each with its own IPv6 and TCP header, no " +
					"fragment header anywhere: the wire never carries more than 1500 bytes, the transfer works.",
			},
			{
				Name:        "IPv6: ping -s 10000 at MTU 9000",
				Description: "`ping -6 -c1 -s 10000` from server1 to server2 (fd00:101::1).",
				Traffic:     Traffic{Kind: TrafficPing, From: "server1", To: "server2", IPv6: true, Size: 10000, Count: 1},
				Expect: []Expectation{
					{Kind: ExpectNoReply},
					{Kind: ExpectDrop},
					{Kind: ExpectWireMax, Size: 1500},
				},
				Explanation: "IPv6 routers never fragment; only the sender does, and it fragments for the MTU it " +
					"believes, 9000: a 9000-byte first fragment (8952 bytes of the datagram) and a 1104-byte last " +
					"one (1056 bytes), both with a fragment header. The NIC drops the first (above its hardware MTU), only the last crosses " +
					"the wire, server2 cannot reassemble, no reply. Nobody sends a packet-too-big either: the " +
					"packet never left server1's NIC.",
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

// stalled is a send that is given up after a few seconds: long enough for
// a healthy run to move every byte many times over.
func stalled(from, to string, v6 bool) Traffic {
	return Traffic{Kind: TrafficSend, From: from, To: to, IPv6: v6, Bytes: 4 << 20, Duration: 3 * time.Second, Timeout: 2 * time.Second}
}

// routed are two hosts on two subnets with a router between them:
// a (198.18.1.2, fd00:1::2) ↔ router eth1 | router eth0 ↔ b (198.18.2.2,
// fd00:2::2).
func routed(a, b string, aNIC, bNIC NIC) []Host {
	aNIC.Name, aNIC.Addrs = "eth0", []string{"198.18.1.2/24", "fd00:1::2/64"}
	bNIC.Name, bNIC.Addrs = "eth0", []string{"198.18.2.2/24", "fd00:2::2/64"}
	return []Host{
		{Name: a, NIC: aNIC, Routes: []string{"198.18.2.0/24", "fd00:2::/64"}},
		{Name: b, NIC: bNIC, Routes: []string{"198.18.1.0/24", "fd00:1::/64"}, Services: []string{"discard"}},
	}
}

// groRouter is story 3 of docs/stories.md: the Debian 3.2.60 router whose GRO
// broke forwarding.
func groRouter() Scenario {
	return Scenario{
		Name:  "gro-router",
		Title: "The router whose GRO broke forwarding (Debian 3.2.60, 2014)",
		Story: "A Linux router (kernel 3.2.60, GRO on) between web servers and clients. Small requests " +
			"pass; large responses do not: GRO merges MTU-sized packets on receive, the forwarding path " +
			"checks the merged length against the client-side MTU, refuses, and sends ICMP \"fragmentation " +
			"needed, mtu 1500\" to the server, which cannot act on it (1500 is the MTU it already uses): " +
			"the transfer stalls. `ethtool -K eth1 gro off` on the router fixes it.",
		Hosts: linuxRouted(routed("web", "client", NIC{MTU: 1500}, NIC{MTU: 1500})),
		// The Linux router's cables; the gVisor router is the other link.
		Links: []Link{
			{Kind: LinkWire, A: "web.eth1", B: "linux.eth0"},
			{Kind: LinkWire, A: "linux.eth1", B: "client.eth1"},
		},
		Routers: []Router{{
			Name: "router",
			Ifaces: []RouterIface{
				{Name: "eth1", Host: "web.eth0", Addrs: []string{"198.18.1.1/24", "fd00:1::1/64"}, MTU: 1500, GRO: GROBuggy2014},
				{Name: "eth0", Host: "client.eth0", Addrs: []string{"198.18.2.1/24", "fd00:2::1/64"}, MTU: 1500},
			},
		}},
		Steps: []Step{
			{
				Name: "GRO on the router (the 3.2.60 bug)",
				Description: "The web server sends a 4 MiB response to the client through the router (GRO on " +
					"eth1, the server side; MTU 1500 everywhere); given up after 3 s.",
				Traffic: stalled("web", "client", false),
				Expect: []Expectation{
					{Kind: ExpectICMPFragNeeded, Host: "web.eth0", Size: 1500},
					{Kind: ExpectStalls},
					{Kind: ExpectEvent, Host: "router", Reason: "eth1: gro merged forwarded whole"},
					{Kind: ExpectDrop, Host: "router", Reason: "forwarding: packet too big"},
				},
				Explanation: "The web server's wire carries nothing above 1500 bytes, all with DF. The router's " +
					"GRO merges them into packets of small multiples of 1448 bytes and forwards the merged " +
					"packet whole: too big for eth0's 1500, so it drops it and answers \"frag needed, mtu " +
					"1500\" (look for it arriving on web's wire). The server's path MTU already is 1500: " +
					"nothing to lower, it retransmits after a timeout, the retransmissions meet the same fate " +
					"whenever several of them reach the router together, and the transfer crawls to a halt " +
					"(drops: the router's counters).",
			},
			{
				Name: "IPv6: GRO on the router",
				Description: "The same 4 MiB response over IPv6 (fd00:1::2 → fd00:2::2), GRO still on; given " +
					"up after 3 s.",
				Traffic: stalled("web", "client", true),
				Expect: []Expectation{
					{Kind: ExpectICMPFragNeeded, Host: "web.eth0", Size: 1500},
					{Kind: ExpectStalls},
					{Kind: ExpectEvent, Host: "router", Reason: "eth1: gro merged forwarded whole"},
					{Kind: ExpectDrop, Host: "router", Reason: "forwarding: packet too big"},
				},
				Explanation: "IPv6 has no DF bit because routers never fragment: a router with a packet too big " +
					"for the next link drops it and answers ICMPv6 \"packet too big, mtu 1500\" (type 2). GRO " +
					"merges the 1500-byte IPv6 packets just the same, the merged packet is refused the same " +
					"way, and the server, already at 1500, cannot act on it: the transfer stalls.",
			},
			{
				Name:        "ethtool -K eth1 gro off on the router",
				Description: "GRO off on the router's eth1 (`ethtool -K eth1 gro off`), then the same response.",
				Router:      []RouterChange{{Router: "router", Iface: "eth1", GRO: GROOff}},
				Traffic:     Traffic{Kind: TrafficSend, From: "web", To: "client", Bytes: 4 << 20, Timeout: 5 * time.Second},
				Expect: []Expectation{
					{Kind: ExpectBytesArrive},
					{Kind: ExpectWireMax, Host: "web.eth0", Size: 1500},
				},
				Explanation: "Without GRO each 1500-byte packet meets the MTU check on its own and passes: the " +
					"response arrives whole. (The web server's TSO/GSO never mattered: its wire always " +
					"carried 1500-byte packets.)",
			},
			{
				Name: "A Linux router with GRO on (today's kernel)",
				Description: "The same 4 MiB response through a real Linux router: the host `linux`, two vnic " +
					"NICs (eth0 towards web, eth1 towards client, GRO on both) and net.ipv4.ip_forward=1; " +
					"web reaches client's 198.18.12.2 through it.",
				Traffic: Traffic{Kind: TrafficSend, From: "web", To: "198.18.12.2", Bytes: 4 << 20, Timeout: 5 * time.Second},
				Expect: []Expectation{
					{Kind: ExpectBytesArrive},
					{Kind: ExpectHostRXAboveMTU, Host: "linux.eth0"},
					{Kind: ExpectWireMax, Host: "linux.eth1", Size: 1500},
					{Kind: ExpectWireMax, Host: "web.eth1", Size: 1500},
				},
				Explanation: "tcpdump on the router's eth0 (its host-rx) shows what story 3's admins saw: TCP " +
					"packets far above the 1500-byte MTU, merged by GRO. Today's kernel forwards them as " +
					"what they are, GSO packets: ip_forward checks each future segment against eth1's MTU " +
					"(skb_gso_validate_network_len), not the merged length, and eth1's NIC cuts them back " +
					"into 1500-byte packets on its wire (its TSO). GRO on, MTU 1500, and the response " +
					"arrives whole: the fix the 2014 kernel lacked, in the kernel running this lab.",
			},
		},
	}
}

// linuxRouted gives the two hosts of routed a second NIC (eth1) each, on
// two more subnets joined by a Linux router host, linux: web.eth1
// 198.18.11.2 ↔ linux.eth0 | linux.eth1 ↔ client.eth1 198.18.12.2.
func linuxRouted(hosts []Host) []Host {
	a, b := &hosts[0], &hosts[1]
	a.NICs = []NIC{a.NIC, {Name: "eth1", MTU: 1500, Addrs: []string{"198.18.11.2/24", "fd00:11::2/64"}}}
	b.NICs = []NIC{b.NIC, {Name: "eth1", MTU: 1500, Addrs: []string{"198.18.12.2/24", "fd00:12::2/64"}}}
	a.NIC, b.NIC = NIC{}, NIC{}
	a.Routes = append(a.Routes, "198.18.12.0/24 via 198.18.11.1", "fd00:12::/64 via fd00:11::1")
	b.Routes = append(b.Routes, "198.18.11.0/24 via 198.18.12.1", "fd00:11::/64 via fd00:12::1")
	return append(hosts, Host{
		Name: "linux",
		NICs: []NIC{
			{Name: "eth0", MTU: 1500, Addrs: []string{"198.18.11.1/24", "fd00:11::1/64"}},
			{Name: "eth1", MTU: 1500, Addrs: []string{"198.18.12.1/24", "fd00:12::1/64"}},
		},
		Forwarding: true,
	})
}

// jumboFirewall is story 4 of docs/stories.md: TSO super-packets through a
// virtual switch that does not segment, into a 1500-byte firewall.
func jumboFirewall() Scenario {
	dropJumbo := FirewallRule{Name: "drop-jumbo", Iface: "eth0", DropAbove: 1500, ICMP: true}
	clamp := []FirewallRule{dropJumbo,
		{Name: "clamp-syn", Iface: "eth0", ClampMSS: 1400},
		{Name: "clamp-synack", Iface: "eth1", ClampMSS: 1400}}
	return Scenario{
		Name:  "jumbo-firewall",
		Title: "Jumbo super-packets into a 1500-byte firewall (VMXNET3)",
		Story: "VMware guests with VMXNET3 NICs behind an iptables firewall VM: big transfers lock up. The " +
			"guest's TSO hands the virtual switch super-packets larger than 1500 bytes with DF set — " +
			"between VMs nothing segments them — and the firewall drops them, telling the sender to " +
			"fragment. MSS clamping does not help: the packets are big because of TSO, not because of " +
			"the MSS. `ethtool -K eth0 tso off` on the guest fixes it.",
		Hosts: routed("guest", "server", NIC{MTU: 1500, Model: "tso-passthrough"}, NIC{MTU: 1500}),
		Links: []Link{}, // the router is the link
		Routers: []Router{{
			Name: "firewall",
			Ifaces: []RouterIface{
				{Name: "eth0", Host: "guest", Addrs: []string{"198.18.1.1/24", "fd00:1::1/64"}, MTU: 1500, MaxReceive: 65535},
				{Name: "eth1", Host: "server", Addrs: []string{"198.18.2.1/24", "fd00:2::1/64"}, MTU: 1500},
			},
			Firewall: []FirewallRule{dropJumbo},
		}},
		Steps: []Step{
			{
				Name:        "TSO on, super-packets cross the virtual switch",
				Description: "The guest (VMXNET3-like NIC: tso-passthrough) sends 4 MiB to the server through the firewall; given up after 3 s.",
				Traffic:     stalled("guest", "server", false),
				Expect: []Expectation{
					{Kind: ExpectWireAbove, Host: "guest", Size: 1500},
					{Kind: ExpectICMPFragNeeded, Host: "guest", Size: 1500},
					{Kind: ExpectStalls},
					{Kind: ExpectDrop, Host: "firewall", Reason: "firewall drop-jumbo: dropped"},
				},
				Explanation: "The guest's wire column carries the kernel's super-packets unsegmented (far above " +
					"1500 bytes, DF set). The firewall drops each and answers \"frag needed, mtu 1500\"; the " +
					"guest's MTU already is 1500, so the kernel keeps building super-packets: only lone " +
					"retransmissions of one MSS get through, and the transfer hangs.",
			},
			{
				Name:        "IPv6: TSO on, super-packets cross the virtual switch",
				Description: "The same 4 MiB over IPv6 (fd00:1::2 → fd00:2::2); given up after 3 s.",
				Traffic:     stalled("guest", "server", true),
				Expect: []Expectation{
					{Kind: ExpectWireAbove, Host: "guest", Size: 1500},
					{Kind: ExpectICMPFragNeeded, Host: "guest", Size: 1500},
					{Kind: ExpectStalls},
					{Kind: ExpectDrop, Host: "firewall", Reason: "firewall drop-jumbo: dropped"},
				},
				Explanation: "The same with IPv6: the guest's wire carries TCPv6 super-packets far above 1500 " +
					"bytes, the firewall drops them and answers ICMPv6 \"packet too big, mtu 1500\"; the " +
					"guest's MTU already is 1500, so nothing changes and the transfer hangs.",
			},
			{
				Name: "MSS clamping on the firewall (does not help)",
				Description: "TCPMSS --set-mss 1400 on the firewall for SYNs both ways (as --clamp-mss-to-pmtu " +
					"is tried in the story), then the same 4 MiB.",
				Router:  []RouterChange{{Router: "firewall", Firewall: &clamp}},
				Traffic: stalled("guest", "server", false),
				Expect: []Expectation{
					{Kind: ExpectWireAbove, Host: "guest", Size: 1500},
					{Kind: ExpectStalls},
					{Kind: ExpectEvent, Host: "firewall", Reason: "firewall clamp-synack: syn mss clamped"},
					{Kind: ExpectDrop, Host: "firewall", Reason: "firewall drop-jumbo: dropped"},
				},
				Explanation: "The SYNs now carry MSS 1400 (see the clamp counters), so each super-packet is " +
					"made of 1400-byte segments — but it is still one packet of up to 64 KiB on the wire: " +
					"TSO, not the MSS, makes it big. Still dropped, still hanging.",
			},
			{
				Name:        "ethtool -K eth0 tso off on the guest",
				Description: "`ethtool -K eth0 tso off` on the guest, then the same 4 MiB.",
				Setup:       []Cmd{{Host: "guest", Run: "ethtool -K eth0 tso off"}},
				Traffic:     Traffic{Kind: TrafficSend, From: "guest", To: "server", Bytes: 4 << 20, Timeout: 5 * time.Second},
				Expect: []Expectation{
					{Kind: ExpectBytesArrive},
					{Kind: ExpectWireMax, Host: "guest", Size: 1500},
				},
				Explanation: "Without TSO the kernel segments (GSO) before the NIC: nothing above the MTU " +
					"reaches the virtual switch, the firewall passes everything, the transfer completes.",
			},
		},
	}
}

// checksumScenario is story 5 of docs/stories.md: checksum offload, "bad
// checksum" in the capture, and a NIC that really leaves them bad.
func checksumScenario() Scenario {
	return Scenario{
		Name:  "checksum",
		Title: "Checksum offload: \"bad checksum\" in the capture",
		Story: "With transmit checksum offload the kernel leaves only the pseudo-header sum in the TCP " +
			"checksum field and the NIC fills in the rest: the sender's capture shows every outgoing " +
			"checksum as wrong (\"incorrect, maybe caused by TCP checksum offload\"), the wire carries " +
			"correct ones. The opposite failure: a NIC or tunnel that does not complete the checksum puts " +
			"bad checksums on the wire and the receiver drops the packets (the VXLAN/flannel " +
			"`tx-checksum-ip-generic off` workaround).",
		Hosts: []Host{
			{Name: "ginger", NIC: NIC{Name: "eth0", Addrs: []string{"198.18.0.1/15", "fd00::1/64"}, MTU: 1500}},
			{Name: "basil", NIC: NIC{Name: "eth0", Addrs: []string{"198.18.0.2/15", "fd00::2/64"}, MTU: 1500}, Services: []string{"discard"}},
		},
		Links: []Link{{Kind: LinkWire, A: "ginger", B: "basil"}},
		Steps: []Step{
			{
				Name:        "checksum offload, a NIC that completes",
				Description: "ginger sends 100,000 bytes to basil; its NIC completes checksums (standard).",
				Traffic:     Traffic{Kind: TrafficSend, From: "ginger", To: "basil", Bytes: 100000},
				Expect: []Expectation{
					{Kind: ExpectHostTXChecksumsPartial},
					{Kind: ExpectWireChecksumsComplete},
					{Kind: ExpectBytesArrive},
				},
				Explanation: "ginger's host-tx column is its tcpdump: every TCP checksum is partial (only the " +
					"pseudo-header sum; Wireshark says incorrect or partial). The NIC completes them after " +
					"the capture point: the wire column's checksums verify, and basil gets every byte.",
			},
			{
				Name:        "IPv6: checksum offload, a NIC that completes",
				Description: "ginger sends 100,000 bytes to basil over IPv6 (fd00::2).",
				Traffic:     Traffic{Kind: TrafficSend, From: "ginger", To: "basil", IPv6: true, Bytes: 100000},
				Expect: []Expectation{
					{Kind: ExpectHostTXChecksumsPartial},
					{Kind: ExpectWireChecksumsComplete},
					{Kind: ExpectBytesArrive},
				},
				Explanation: "The same with IPv6, where the TCP checksum is mandatory and covers an IPv6 " +
					"pseudo-header: ginger's capture shows partial checksums, the wire complete ones.",
			},
			{
				Name: "a NIC that does not complete checksums",
				Description: "ginger's NIC switched to model no-csum (the daemon's knob), then the same " +
					"100,000 bytes; given up after 3 s.",
				Models: []ModelChange{{Host: "ginger", Model: "no-csum"}},
				Traffic: Traffic{Kind: TrafficSend, From: "ginger", To: "basil", Bytes: 100000,
					Duration: 3 * time.Second, Timeout: 2 * time.Second},
				Expect: []Expectation{
					{Kind: ExpectWireChecksumsBad},
					{Kind: ExpectStalls},
					{Kind: ExpectDrop, Host: "basil", Reason: "kernel TcpInCsumErrors"},
				},
				Explanation: "The kernel still offloads the checksum, but the NIC puts the partial checksum on " +
					"the wire as it is: basil's kernel finds every segment (even the SYN) corrupt, drops it " +
					"and counts it (TcpInCsumErrors); the connection never gets anywhere.",
			},
			{
				Name:        "ethtool -K eth0 tx off on the sender",
				Description: "`ethtool -K eth0 tx off` on ginger (NIC still no-csum), then the same 100,000 bytes.",
				Setup:       []Cmd{{Host: "ginger", Run: "ethtool -K eth0 tx off"}},
				Traffic:     Traffic{Kind: TrafficSend, From: "ginger", To: "basil", Bytes: 100000, Timeout: 5 * time.Second},
				Expect: []Expectation{
					{Kind: ExpectWireChecksumsComplete},
					{Kind: ExpectBytesArrive},
				},
				Explanation: "With transmit checksum offload off the kernel computes every checksum itself " +
					"(and, since TSO needs it, segments in software too): the host-tx capture now shows " +
					"correct checksums, the NIC has nothing left to complete, and the transfer works again.",
			},
		},
	}
}

// csumTrust is a NIC that vouches for checksums it never checked: the
// veth driver of 2016 (story 6 of docs/stories.md).
func csumTrust() Scenario {
	return Scenario{
		Name:  "csum-trust",
		Title: "A NIC that vouches for checksums it never checked (veth, 2016)",
		Story: "In 2016 engineers at Twitter traced \"impossible\" errors (malformed strings, missing " +
			"fields) in services on a few racks to the network: TCP checksum errors had spiked there, " +
			"yet corrupted data reached applications. Reproduced with a tc rule corrupting packets: " +
			"between two hosts on bare metal no corrupted byte reached the server (the kernel dropped " +
			"the segment for its bad checksum and TCP sent it again); with the server in a container " +
			"behind a veth pair, corrupted data did. The veth driver marked every packet it passed as " +
			"checksum-verified (CHECKSUM_UNNECESSARY), including packets from the physical NIC that " +
			"nothing had verified. The kernel fix (\"veth: don't modify ip_summed\") went in that year. " +
			"The trap is in any NIC, virtual switch or driver that reports checksums it did not check.",
		Hosts: []Host{
			{Name: "client", NIC: NIC{Name: "eth0", Addrs: []string{"198.18.0.1/15", "fd00::1/64"}, MTU: 1500}},
			{Name: "server", NIC: NIC{Name: "eth0", Addrs: []string{"198.18.0.2/15", "fd00::2/64"}, MTU: 1500}, Services: []string{"discard"}},
		},
		Links: []Link{{Kind: LinkWire, A: "client", B: "server", Impair: Impairments{Corrupt: 0.01, Seed: 7}}},
		Steps: []Step{
			{
				Name: "an honest NIC, a wire that corrupts",
				Description: "client sends 4 MiB to server over a cable that flips a byte in 1 % of " +
					"packets (past the IP header); the server's NIC checks every checksum.",
				Traffic: Traffic{Kind: TrafficSend, From: "client", To: "server", Bytes: 4 << 20, Timeout: 5 * time.Second},
				Expect: []Expectation{
					{Kind: ExpectDataIntact},
					{Kind: ExpectDrop, Host: "server", Reason: "kernel TcpInCsumErrors"},
				},
				Explanation: "Each corrupted segment fails the checksum: the server's NIC does not vouch for " +
					"it (GRO will not merge it), its kernel checks it, drops it and counts it " +
					"(TcpInCsumErrors), and TCP sends it again. The application gets every byte as sent.",
			},
			{
				Name: "a NIC that vouches for every checksum",
				Description: "The server's NIC switched to model rx-csum-trusting (the daemon's knob: it " +
					"reports every packet's checksum as good, as the 2016 veth did), then the same 4 MiB.",
				Models:  []ModelChange{{Host: "server", Model: "rx-csum-trusting"}},
				Traffic: Traffic{Kind: TrafficSend, From: "client", To: "server", Bytes: 4 << 20, Timeout: 5 * time.Second},
				Expect: []Expectation{
					{Kind: ExpectDataCorrupt},
				},
				Explanation: "Nothing checks the corrupted segments any more: the NIC merges them and hands " +
					"the kernel packets whose checksum it says needs no check, the kernel believes it, TCP " +
					"acknowledges them, and the application reads the wrong bytes — the corruption counters " +
					"of the wire show how many packets were hit; no checksum error is counted anywhere.",
			},
			{
				Name:        "the fix: a NIC that checks again",
				Description: "The server's NIC back to the standard model (the fixed driver), then the same 4 MiB.",
				Models:      []ModelChange{{Host: "server", Model: "standard"}},
				Traffic:     Traffic{Kind: TrafficSend, From: "client", To: "server", Bytes: 4 << 20, Timeout: 5 * time.Second},
				Expect: []Expectation{
					{Kind: ExpectDataIntact},
					{Kind: ExpectDrop, Host: "server", Reason: "kernel TcpInCsumErrors"},
				},
				Explanation: "The wire still corrupts, but every bad segment is dropped and sent again: " +
					"corruption costs retransmissions, never data.",
			},
		},
	}
}

// gvisorGRO is a userspace router that drops what GRO merged: gVisor's
// netstack forwarding (story 7 of docs/stories.md).
func gvisorGRO() Scenario {
	return Scenario{
		Name:  "gvisor-gro",
		Title: "A userspace router that drops what GRO merged (gVisor, 2026)",
		Story: "Docker inside gVisor (google/gvisor issue 14011, 2026): downloads into the containers " +
			"crawled at about 35 KB/s. The host coalesced what it received (GRO) and handed the sandbox " +
			"frames far larger than the MTU — 2868 to 20076 bytes against a 1466-byte link — and " +
			"gVisor's netstack, forwarding them to the containers' bridge, asked \"is this packet bigger " +
			"than the MTU?\" instead of \"would its segments fit?\": it dropped every one, without a " +
			"word (no ICMP), so the sender advanced only by retransmitting single segments after " +
			"timeouts. Linux forwards such packets, checking each future segment against the MTU " +
			"(skb_gso_validate_network_len), and segments them on the way out.",
		Hosts: routed("web", "client", NIC{MTU: 1500}, NIC{MTU: 1500}),
		Links: []Link{},
		Routers: []Router{{
			Name: "sandbox",
			Ifaces: []RouterIface{
				{Name: "eth1", Host: "web", Addrs: []string{"198.18.1.1/24", "fd00:1::1/64"}, MTU: 1500, GRO: GRODropsMerged},
				{Name: "eth0", Host: "client", Addrs: []string{"198.18.2.1/24", "fd00:2::1/64"}, MTU: 1500},
			},
		}},
		Steps: []Step{
			{
				Name: "GRO on, gVisor's forwarding",
				Description: "web sends a 4 MiB response to client through the sandbox's netstack (GRO on " +
					"its eth1, MTU 1500 everywhere); given up after 3 s.",
				Traffic: stalled("web", "client", false),
				Expect: []Expectation{
					{Kind: ExpectStalls},
					{Kind: ExpectNoICMPFragNeeded, Host: "web"},
					{Kind: ExpectDrop, Host: "sandbox", Reason: "eth1: gro merged dropped"},
				},
				Explanation: "web's wire carries 1500-byte packets; the sandbox's GRO merges them, and its " +
					"forwarding drops every merged packet bigger than eth0's 1500 bytes (the sandbox lane " +
					"shows them crossed out). Unlike the 2014 router, it says nothing: no ICMP reaches " +
					"web, whose TCP only learns of the loss by timeouts and sends one segment again — " +
					"which, alone, has nothing to merge with and gets through. The transfer crawls.",
			},
			{
				Name: "the fix: forward what GRO merged, as Linux does",
				Description: "The sandbox's forwarding fixed (GRO fixed: merged packets forwarded whole, " +
					"their segments checked against the MTU, cut on the way out), then the same response.",
				Router:  []RouterChange{{Router: "sandbox", Iface: "eth1", GRO: GROFixed}},
				Traffic: Traffic{Kind: TrafficSend, From: "web", To: "client", Bytes: 4 << 20, Timeout: 5 * time.Second},
				Expect: []Expectation{
					{Kind: ExpectBytesArrive},
					{Kind: ExpectWireMax, Host: "client", Size: 1500},
				},
				Explanation: "GRO still merges, but the forwarding checks each future segment against " +
					"eth0's MTU and the egress NIC cuts the merged packet back into 1500-byte ones: the " +
					"response arrives whole, at full speed.",
			},
		},
	}
}
