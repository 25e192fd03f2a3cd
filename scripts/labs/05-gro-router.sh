#!/usr/bin/env bash
# Lab 5 — the router whose GRO broke forwarding (story 3, Debian 3.2.60)
#
# WHAT IT SHOWS
#   `vnic up` has no router, so this lab runs the built-in scenario
#   `vnic lab run gro-router`: web (198.18.1.2, fd00:1::2) — router —
#   client (198.18.2.2, fd00:2::2), MTU 1500 everywhere, the router's eth1
#   (web side) with the 2014 GRO bug. Then we read its pcapng like a
#   detective. The web server sends 4 MiB to the client:
#   - step 1 (IPv4, GRO on): the router merges the 1500-byte packets it
#     receives into one big packet, checks the merged length against eth0's
#     MTU 1500, refuses, and answers ICMP "fragmentation needed, mtu 1500".
#     The ICMP quotes the refused packet: thousands of bytes, DF set, a
#     whole TCP segment, never a fragment. The web server's wire never
#     carried more than 1500 bytes, and its MTU already is 1500: it cannot
#     act on the ICMP, and the transfer stalls.
#   - step 2 (IPv6, GRO on): the same with ICMPv6 "packet too big, mtu
#     1500" (type 2); IPv6 routers never fragment.
#   - step 3: `ethtool -K eth1 gro off` on the router: the transfer completes.
#   The router's merged packets are not in the pcapng (the captures sit on
#   the hosts' NICs); the router's counters ("eth1: gro merged forwarded
#   whole") and the ICMP's quoted header are how we see them.
#
# WHAT TO LOOK FOR
#   - icmp.type == 3 && icmp.code == 4 arriving on web.eth0@wire, icmp.mtu
#     1500, and the quoted ip.len (the second value): 2948, 4396, 7292 ...
#     = n × 1448 + 52, far above the MTU that the ICMP itself names.
#   - ip.len <= 1500, DF on every data packet web put on its wire.
#   - the summary of each step: what did not arrive at the next capture
#     point and where it died (the router's forwarding), and the events
#     (GRO merged packets handed to forwarding whole, ICMP sent back).
#   - per TCP connection, the bytes that reached the client's wire.
#
# TRY IT BY HAND (as root)
#   bin/vnic lab run gro-router --out /tmp/gro       # also writes report.html
#   tshark -r /tmp/gro/gro-router.pcapng -Y 'icmp.type==3 && icmp.code==4' \
#       -T fields -e frame.interface_name -e icmp.mtu -e ip.len -e ip.flags.df
#   tshark -r /tmp/gro/gro-router.pcapng -Y 'icmpv6.type==2' \
#       -T fields -e frame.interface_name -e icmpv6.mtu -e ipv6.plen
#   tcpdump -nn -r /tmp/gro/gro-router.pcapng 'icmp[0] == 3 and icmp[1] == 4' | head
#   bin/vnic lab show gro-router                     # the scenario as YAML
#
# Run: sudo scripts/labs/05-gro-router.sh   (exit status 0 = all checks passed)
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

NS=lab5-$$ # not used by `vnic lab run` (it names its own namespaces), kept for the cleanup
lab_init lab5
PCAP=$WORK/gro-router.pcapng

say "Run the scenario: web — router (GRO bug on eth1) — client, MTU 1500"
lab_run gro-router
lab_summary "$WORK/gro-router.txt"
note ""
note "The side-by-side view of step 1 (first 16 lines; web's tcpdump | web's wire | the router's tcpdump on eth1 and eth0 | client's tcpdump):"
awk '/Step 1\// { on = 1 } on && /^ +ms \| / { p = 1 } p && n++ < 16 { print "      " $0 }' "$WORK/gro-router.txt"

say "1. ICMP \"fragmentation needed\" arriving at the web server"
printf "    \$ tshark -r gro-router.pcapng -Y 'icmp.type==3 && icmp.code==4' -T fields -e frame.interface_name -e icmp.mtu -e ip.len -e ip.flags.df\n"
pcap_fields 'icmp.type==3 && icmp.code==4' frame.interface_name icmp.mtu ip.len ip.flags.df >"$WORK/fragneeded.txt"
awk 'NR <= 6 { print "      " $0 }' "$WORK/fragneeded.txt"
note "(ip.len and ip.flags.df: the ICMP's own header, then the header it quotes: the packet the router refused)"
# On web's wire: count, the MTUs named, the quoted (refused) lengths and DF bits.
read -r fn_n fn_mtu_bad refused_min refused_max refused_nodf < <(awk -F'\t' '
	$1 == "web.eth0@wire" {
		n++; if ($2 != 1500) bad++
		split($3, l, ","); split($4, d, ",")
		if (min == "" || l[2] < min) min = l[2]; if (l[2] > max) max = l[2]
		if (d[2] != 1) nodf++
	}
	END { printf "%d %d %d %d %d\n", n, bad, min, max, nodf }' "$WORK/fragneeded.txt")
note "on web.eth0@wire: $fn_n frag needed, $fn_mtu_bad with an MTU other than 1500; refused packets $refused_min–$refused_max bytes, $refused_nodf without DF"
printf "    \$ tcpdump -nn -r gro-router.pcapng 'icmp[0] == 3 and icmp[1] == 4' | head -3\n"
tcpdump -nn -r "$PCAP" 'icmp[0] == 3 and icmp[1] == 4' 2>/dev/null | awk 'NR <= 3 { print "      " $0 }'

say "2. The same over IPv6: ICMPv6 \"packet too big\""
printf "    \$ tshark -r gro-router.pcapng -Y 'icmpv6.type==2' -T fields -e frame.interface_name -e icmpv6.mtu -e ipv6.plen\n"
pcap_fields 'icmpv6.type==2' frame.interface_name icmpv6.mtu ipv6.plen >"$WORK/ptb.txt"
awk 'NR <= 4 { print "      " $0 }' "$WORK/ptb.txt"
note "(ipv6.plen: the ICMPv6's payload length, then the refused packet's: add 40 for the IPv6 header)"
read -r ptb_n ptb_mtu_bad ptb_max < <(awk -F'\t' '
	$1 == "web.eth0@wire" { n++; if ($2 != 1500) bad++; split($3, l, ","); if (l[2] + 40 > max) max = l[2] + 40 }
	END { printf "%d %d %d\n", n, bad, max }' "$WORK/ptb.txt")
note "on web.eth0@wire: $ptb_n packet too big, $ptb_mtu_bad with an MTU other than 1500; largest refused packet $ptb_max bytes"

say "3. What web put on its wire: MTU-sized packets with DF, nothing bigger"
printf "    \$ tshark -r gro-router.pcapng -Y 'frame.interface_name==\"web.eth0@wire\" && ip.src==198.18.1.2 && tcp.len>0 && !icmp' -T fields -e ip.len -e ip.flags.df | sort | uniq -c\n"
pcap_fields 'frame.interface_name=="web.eth0@wire" && ip.src==198.18.1.2 && tcp.len>0 && !icmp' ip.len ip.flags.df |
	sort | uniq -c | sort -rn >"$WORK/webwire.txt"
awk 'NR <= 5 { print "      " $0 }' "$WORK/webwire.txt"
read -r web_max web_nodf < <(awk '{ if ($2 > m) m = $2; if ($3 != 1) nodf += $1 } END { printf "%d %d\n", m, nodf }' "$WORK/webwire.txt")

say "4. Bytes that reached the client's wire, per connection (in step order)"
printf "    \$ tshark -r gro-router.pcapng -Y 'frame.interface_name==\"client.eth0@wire\" && tcp.dstport==9 && tcp.len>0 && !icmp && !icmpv6' -T fields -e ip.version -e tcp.srcport -e tcp.seq -e tcp.len\n"
pcap_fields 'frame.interface_name=="client.eth0@wire" && tcp.dstport==9 && tcp.len>0 && !icmp && !icmpv6' ip.version tcp.srcport tcp.seq tcp.len |
	awk '{ k = "IPv" $1 " port " $2; if (!(k in m)) o[++n] = k; e = $3 + $4 - 1; if (e > m[k]) m[k] = e }
		END { for (i = 1; i <= n; i++) print o[i], m[o[i]] }' >"$WORK/streams.txt"
sed 's/^/      /' "$WORK/streams.txt"
mapfile -t got < <(awk '{ print $NF }' "$WORK/streams.txt")
router_drops=$(lab_count "$WORK/gro-router.txt" 'router \\(forwarding\\): too big')
router_merged=$(lab_count "$WORK/gro-router.txt" 'GRO merged packet handed to forwarding whole')
note "router counters, all steps: $router_merged GRO-merged packets handed to forwarding whole, $router_drops of them refused as too big"

say "CHECKS"
check "vnic lab run gro-router: every expectation holds (exit $LAB_RC)" test "$LAB_RC" -eq 0
check "web receives ICMP frag needed on its wire ($fn_n), all naming mtu 1500 ($fn_mtu_bad others)" test "$fn_n" -gt 0 -a "$fn_mtu_bad" -eq 0
check "the packets the router refused were merged: all above 1500 ($refused_min–$refused_max bytes)" test "$refused_min" -gt 1500
check "the refused packets carry DF: whole TCP segments, not fragments ($refused_nodf without DF)" test "$refused_nodf" -eq 0
check "web's wire never carried a data packet above 1500 (largest $web_max), all with DF ($web_nodf without)" test "$web_max" -le 1500 -a "$web_max" -gt 0 -a "$web_nodf" -eq 0
check "IPv6: web receives ICMPv6 packet too big, mtu 1500 ($ptb_n, $ptb_mtu_bad others; refused up to $ptb_max bytes)" test "$ptb_n" -gt 0 -a "$ptb_mtu_bad" -eq 0 -a "$ptb_max" -gt 1500
check "the router counted the merged packets it refused ($router_drops of $router_merged)" test "$router_drops" -gt 0 -a "$router_merged" -ge "$router_drops"
check "three connections reached the client's wire (${#got[@]})" test "${#got[@]}" -eq 3
check "GRO on, IPv4: the transfer stalled (${got[0]:-0} of 4194304 bytes)" test "${got[0]:-0}" -lt 2097152
check "GRO on, IPv6: the transfer stalled (${got[1]:-0} of 4194304 bytes)" test "${got[1]:-0}" -lt 2097152
check "gro off: the transfer completed (${got[2]:-0} of 4194304 bytes)" test "${got[2]:-0}" -eq 4194304
lab_finish
