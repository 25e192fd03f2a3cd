#!/usr/bin/env bash
# Lab 6 — jumbo super-packets into a 1500-byte firewall (story 4, VMXNET3)
#
# WHAT IT SHOWS
#   `vnic up` has no firewall, so this lab runs the built-in scenario
#   `vnic lab run jumbo-firewall`: guest (198.18.1.2, fd00:1::2) —
#   firewall — server (198.18.2.2, fd00:2::2), MTU 1500 everywhere. The
#   guest's NIC is "tso-passthrough", like VMXNET3 between VMs: it hands the
#   kernel's TSO super-packets to the virtual switch as they are, nothing
#   segments them. The firewall drops everything above 1500 bytes and
#   answers ICMP "fragmentation needed, mtu 1500". The guest sends 4 MiB:
#   - step 1 (IPv4, TSO on): super-packets of several KB with DF on the
#     guest's wire; the firewall drops them; the transfer hangs. The guest
#     cannot act on the ICMP: its MTU already is 1500.
#   - step 2 (IPv6, TSO on): the same with ICMPv6 "packet too big".
#   - step 3: MSS clamping (TCPMSS --set-mss 1400) on the firewall: the
#     SYN-ACK now says MSS 1400 — and the super-packets are still there,
#     made of 1400-byte segments: TSO, not the MSS, makes them big.
#   - step 4: `ethtool -K eth0 tso off` on the guest: the kernel segments
#     before the NIC, nothing above 1500 reaches the switch, the transfer
#     completes.
#
# WHAT TO LOOK FOR
#   - ip.len far above 1500 with DF on guest.eth0@wire (ip.src 198.18.1.2).
#   - icmp.type == 3 && icmp.code == 4 (icmpv6.type == 2) on the guest's
#     wire, mtu 1500; the quoted header names the dropped super-packet.
#   - tcp.options.mss_val in the SYN-ACKs: 1460, then 1400 with the clamp.
#   - the "did not arrive" lines: "N  firewall (firewall rule drop-jumbo):
#     above 1500 bytes: dropped".
#
# TRY IT BY HAND (as root)
#   bin/vnic lab run jumbo-firewall --out /tmp/fw    # also writes report.html
#   tshark -r /tmp/fw/jumbo-firewall.pcapng -Y 'frame.interface_name=="guest.eth0@wire" && ip.len > 1500' \
#       -T fields -e tcp.srcport -e ip.len -e ip.flags.df -e tcp.len
#   tshark -r /tmp/fw/jumbo-firewall.pcapng -Y 'tcp.flags.syn==1 && tcp.flags.ack==1' \
#       -T fields -e frame.interface_name -e tcp.dstport -e tcp.options.mss_val
#   tcpdump -nn -r /tmp/fw/jumbo-firewall.pcapng 'icmp[0] == 3 or icmp6[0] == 2' | head
#   bin/vnic lab show jumbo-firewall                 # the scenario as YAML
#
# Run: sudo scripts/labs/06-jumbo-firewall.sh   (exit status 0 = all checks passed)
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

NS=lab6-$$ # not used by `vnic lab run` (it names its own namespaces), kept for the cleanup
lab_init lab6
PCAP=$WORK/jumbo-firewall.pcapng
GW='frame.interface_name=="guest.eth0@wire"'

say "Run the scenario: guest (TSO passthrough) — firewall (drop > 1500) — server, MTU 1500"
lab_run jumbo-firewall
lab_summary "$WORK/jumbo-firewall.txt"

say "The connections, in step order (the guest's SYNs on its wire)"
printf "    \$ tshark -r jumbo-firewall.pcapng -Y '%s && tcp.flags.syn==1 && tcp.flags.ack==0' -T fields -e ip.version -e tcp.srcport\n" "$GW"
pcap_fields "$GW && tcp.flags.syn==1 && tcp.flags.ack==0" ip.version tcp.srcport | awk '!s[$0]++' >"$WORK/conns.txt"
sed 's/^/      /' "$WORK/conns.txt"
mapfile -t port < <(awk '{ print $2 }' "$WORK/conns.txt")
note "step 1: port ${port[0]:-?} (IPv4), step 2: ${port[1]:-?} (IPv6), step 3 (clamp): ${port[2]:-?}, step 4 (tso off): ${port[3]:-?}"

# per PORT: "count-above-1500 largest no-DF-above-1500" of the guest's outgoing data packets.
wire_big() {
	pcap_fields "$GW && tcp.srcport==$1 && tcp.len>0 && !icmp && !icmpv6" ip.len ipv6.plen ip.flags.df |
		awk -F'\t' '{ l = $1 != "" ? $1 : $2 + 40; if (l > m) m = l; if (l > 1500) { n++; if ($1 != "" && $3 != 1) nodf++ } }
			END { printf "%d %d %d\n", n, m, nodf }'
}
# delivered PORT: bytes of the connection that reached the server's wire.
delivered() {
	pcap_fields "frame.interface_name==\"server.eth0@wire\" && tcp.srcport==$1 && tcp.len>0 && !icmp && !icmpv6" tcp.seq tcp.len |
		awk '{ e = $1 + $2 - 1; if (e > m) m = e } END { print m + 0 }'
}

say "1. Super-packets above 1500 bytes on the guest's wire (step 1)"
printf "    \$ tshark -r jumbo-firewall.pcapng -Y '%s && tcp.srcport==%s && ip.len>1500 && !icmp' -T fields -e ip.len -e ip.flags.df -e tcp.seq -e tcp.len\n" "$GW" "${port[0]:-0}"
pcap_fields "$GW && tcp.srcport==${port[0]:-0} && ip.len>1500 && !icmp" ip.len ip.flags.df tcp.seq tcp.len | awk 'NR <= 6 { print "      " $0 }'
read -r s1_n s1_max s1_nodf < <(wire_big "${port[0]:-0}")
read -r s2_n s2_max _ < <(wire_big "${port[1]:-0}")
note "step 1: $s1_n packets above 1500 (largest $s1_max, $s1_nodf without DF); step 2 (IPv6): $s2_n above 1500 (largest $s2_max)"

say "2. The firewall's answer: ICMP frag needed / ICMPv6 packet too big, mtu 1500"
printf "    \$ tshark -r jumbo-firewall.pcapng -Y '%s && (icmp.type==3 || icmpv6.type==2)' -T fields -e icmp.mtu -e icmpv6.mtu -e ip.len -e ipv6.plen\n" "$GW"
pcap_fields "$GW && (icmp.type==3 || icmpv6.type==2)" icmp.mtu icmpv6.mtu ip.len ipv6.plen >"$WORK/icmp.txt"
awk 'NR <= 3 { print "      " $0 }' "$WORK/icmp.txt"
read -r fn4 fn6 fn_bad < <(awk -F'\t' '{ if ($1 != "") { v4++; if ($1 != 1500) bad++ } else { v6++; if ($2 != 1500) bad++ } } END { printf "%d %d %d\n", v4, v6, bad }' "$WORK/icmp.txt")
note "on guest.eth0@wire: $fn4 ICMP frag needed, $fn6 ICMPv6 packet too big, $fn_bad with an MTU other than 1500"
printf "    \$ tcpdump -nn -r jumbo-firewall.pcapng 'icmp[0] == 3 or icmp6[0] == 2' | head -2\n"
tcpdump -nn -r "$PCAP" 'icmp[0] == 3 or icmp6[0] == 2' 2>/dev/null | awk 'NR <= 2 { print "      " $0 }'
fw_drops=$(lab_count "$WORK/jumbo-firewall.txt" 'firewall rule drop-jumbo\\): above')
note "firewall counters, all steps: drop-jumbo dropped $fw_drops"

say "3. MSS clamping (step 3): the SYN-ACK says 1400, the super-packets stay"
printf "    \$ tshark -r jumbo-firewall.pcapng -Y '%s && tcp.flags.syn==1 && tcp.flags.ack==1 && ip' -T fields -e tcp.dstport -e tcp.options.mss_val\n" "$GW"
pcap_fields "$GW && tcp.flags.syn==1 && tcp.flags.ack==1 && ip" tcp.dstport tcp.options.mss_val | awk '!s[$0]++' >"$WORK/synack.txt"
sed 's/^/      /' "$WORK/synack.txt"
mss3=$(awk -v p="${port[2]:-0}" '$1 == p { print $2; exit }' "$WORK/synack.txt")
read -r s3_n s3_max _ < <(wire_big "${port[2]:-0}")
seg3=$(pcap_fields "frame.interface_name==\"server.eth0@wire\" && tcp.srcport==${port[2]:-0} && tcp.len>0 && !icmp" tcp.len | sort -n | tail -1)
note "step 3: MSS ${mss3:-?}; $s3_n packets above 1500 on the guest's wire (largest $s3_max); the largest segment that got through: ${seg3:-0}"

say "4. tso off (step 4): nothing above 1500, the transfer completes"
read -r s4_n s4_max _ < <(wire_big "${port[3]:-0}")
d1=$(delivered "${port[0]:-0}")
d2=$(delivered "${port[1]:-0}")
d3=$(delivered "${port[2]:-0}")
d4=$(delivered "${port[3]:-0}")
note "step 4: $s4_n packets above 1500 on the guest's wire (largest $s4_max)"
note "bytes on the server's wire per step: $d1, $d2, $d3, $d4 (of 4194304)"

say "CHECKS"
check "vnic lab run jumbo-firewall: every expectation holds (exit $LAB_RC)" test "$LAB_RC" -eq 0
check "four connections, one per step (${#port[@]})" test "${#port[@]}" -eq 4
check "TSO on: super-packets above 1500 on the guest's wire ($s1_n, largest $s1_max)" test "$s1_n" -gt 0
check "TSO on: the super-packets carry DF ($s1_nodf without)" test "$s1_nodf" -eq 0
check "the firewall answers ICMP frag needed, mtu 1500, on the guest's wire ($fn4, $fn_bad other MTUs)" test "$fn4" -gt 0 -a "$fn_bad" -eq 0
check "the firewall counted its drops ($fw_drops)" test "$fw_drops" -gt 0
check "TSO on: the transfer hangs ($d1 of 4194304 bytes)" test "$d1" -lt 2097152
check "IPv6: super-packets above 1500 ($s2_n, largest $s2_max) and ICMPv6 packet too big ($fn6)" test "$s2_n" -gt 0 -a "$fn6" -gt 0
check "IPv6: the transfer hangs ($d2 of 4194304 bytes)" test "$d2" -lt 2097152
check "clamp: the SYN-ACK reaches the guest with MSS 1400 (${mss3:-none})" test "${mss3:-0}" -eq 1400
check "clamp: still super-packets above 1500 on the guest's wire ($s3_n, largest $s3_max)" test "$s3_n" -gt 0
check "clamp: the transfer still hangs ($d3 of 4194304 bytes)" test "$d3" -lt 2097152
check "tso off: nothing above 1500 on the guest's wire (largest $s4_max)" test "$s4_n" -eq 0 -a "$s4_max" -gt 0
check "tso off: the transfer completes ($d4 of 4194304 bytes)" test "$d4" -eq 4194304
lab_finish
