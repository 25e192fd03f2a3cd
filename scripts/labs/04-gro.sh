#!/usr/bin/env bash
# Lab 4 — GRO: the receive side of the capture discrepancy
#
# WHAT IT SHOWS
#   The flip side of labs 1 and 3. We download 1,000,000 bytes over HTTP
#   from the peer (MTU 1500). Every packet on the wire is <= 1500 bytes,
#   but `tcpdump -i vnic0` shows *inbound* TCP segments far larger than
#   the MTU (tens of kilobytes): the NIC's GRO (here vnic, in Go) merged
#   consecutive wire packets into one super-packet before handing it to
#   the kernel, and tcpdump sits after that point. (This is why a router
#   with GRO on sees packets "too big to forward" — story 3.) With
#   `ethtool -K vnic0 gro off` the daemon stops merging and tcpdump shows
#   the packets as they were on the wire, <= 1448 bytes of payload.
#
# WHAT TO LOOK FOR
#   - tcpdump: "198.18.0.2.80 > 198.18.0.1.N: ... length 23168" and such.
#   - pcapng: vnic0@host-rx frames with the comment "merged 16 wire
#     packets; gso=tcpv4 gso_size=1448", vnic0@wire frames of <= 1500.
#   - `vnic stat`: "GRO super-packets" on the host-rx line; after
#     `gro off`, the "gro off" in its first line.
#
# TRY IT BY HAND (as root)
#   bin/vnic up --netns lab --pcap /tmp/lab.pcapng &
#   ip netns exec lab tcpdump -i vnic0 -nn 'tcp src port 80' &
#   ip netns exec lab curl -o /dev/null 198.18.0.2/bytes/1000000
#   tshark -r /tmp/lab.pcapng -Y 'tcp.srcport == 80 && tcp.len > 0' \
#       -T fields -e frame.interface_name -e tcp.seq -e tcp.len -e frame.comment
#   bin/vnic stat --netns lab
#   ip netns exec lab ethtool -K vnic0 gro off                # and download again
#
# Run: sudo scripts/labs/04-gro.sh   (exit status 0 = all checks passed)
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

NS=lab4-$$
lab_init lab4
PCAP=$WORK/lab4.pcapng

say "Start the NIC (GRO on)"
vnic_start --pcap "$PCAP"
printf '    $ ip netns exec %s ethtool -k vnic0\n' "$NS"
in_ns ethtool -k vnic0 | grep -E '^generic-receive-offload:' | sed 's/^/      /'

# download PORT: 1,000,000 bytes over HTTP from local port PORT with
# tcpdump on; prints the byte count curl got into $WORK/PORT.size.
download() {
	tcpdump_start "$WORK/$1.txt" "tcp port $1 and src host 198.18.0.2"
	printf '    $ ip netns exec %s curl -s --local-port %s -o /dev/null 198.18.0.2/bytes/1000000\n' "$NS" "$1"
	in_ns curl -s --local-port "$1" -m 20 -o /dev/null -w '%{size_download}\n' 198.18.0.2/bytes/1000000 >"$WORK/$1.size" || true
	note "curl downloaded $(cat "$WORK/$1.size") bytes"
	tcpdump_stop
	note "tcpdump -i vnic0, inbound data (first 8 lines of $(lengths "$WORK/$1.txt" | wc -l)):"
	grep -v 'length 0$' "$WORK/$1.txt" | awk 'NR <= 8 { print "      " $0 }'
}
wire_max() { pcap_fields "frame.interface_name contains \"wire\" && tcp.dstport == $1" ip.len | stats | awk '{ print $3 }'; }

say "Part 1: GRO on: curl 198.18.0.2/bytes/1000000 (local port 44001)"
download 44001
read -r on_n on_sum on_max < <(lengths "$WORK/44001.txt" | stats)
pcap_wait "frame.interface_name contains \"host-rx\" && tcp.dstport == 44001 && tcp.len > 0" "$on_n"
on_wire=$(wire_max 44001)
note ""
note "The vnic pcapng (first 14 frames): wire packets, and the host-rx super-packets GRO made of them:"
printf "    \$ tshark -r lab4.pcapng -Y 'tcp.dstport == 44001 && tcp.len > 0' -T fields -e frame.interface_name -e ip.len -e tcp.seq -e tcp.len -e frame.comment\n"
tshark -r "$PCAP" -Y 'tcp.dstport == 44001 && tcp.len > 0' -T fields \
	-e frame.interface_name -e ip.len -e tcp.seq -e tcp.len -e frame.comment 2>/dev/null |
	awk 'NR <= 14 { print "      " $0 }'
gro_sp=$("$VNIC" stat --netns "$NS" | awk '$1 == "host-rx" { print $6 }')
note "tcpdump: $on_n inbound data packets, largest $on_max bytes of TCP payload; wire: largest IP packet $on_wire bytes; vnic stat: $gro_sp GRO super-packets"

say "Part 2: ethtool -K vnic0 gro off (the daemon follows), download again (local port 44002)"
run_ns ethtool -K vnic0 gro off
for ((i = 0; i < 50; i++)); do
	"$VNIC" stat --netns "$NS" | awk 'NR == 1 && /gro off/ { f = 1 } END { exit !f }' && break
	sleep 0.1
done
printf '    $ vnic stat --netns %s\n' "$NS"
"$VNIC" stat --netns "$NS" | awk 'NR == 1 { print "      " $0 }'
download 44002
read -r off_n _ off_max < <(lengths "$WORK/44002.txt" | stats)
pcap_wait "frame.interface_name contains \"host-rx\" && tcp.dstport == 44002 && tcp.len > 0" "$off_n"
off_wire=$(wire_max 44002)
note "tcpdump: $off_n inbound data packets, largest $off_max bytes; wire: largest IP packet $off_wire bytes"

say "CHECKS"
check "GRO on: curl got 1000000 bytes ($(cat "$WORK/44001.size"))" test "$(cat "$WORK/44001.size")" = 1000000
check "GRO on: tcpdump shows inbound TCP segments far above the MTU (largest $on_max)" test "$on_max" -gt 1500
check "GRO on: the HTTP response bytes all show in tcpdump (got $on_sum >= 1000000)" test "$on_sum" -ge 1000000
check "GRO on: the wire packets are <= 1500 bytes (largest $on_wire)" test "$on_wire" -le 1500
check "gro off: curl got 1000000 bytes ($(cat "$WORK/44002.size"))" test "$(cat "$WORK/44002.size")" = 1000000
check "gro off: tcpdump shows inbound TCP payloads <= 1448 (largest $off_max)" test "$off_max" -le 1448
check "gro off: the wire packets are <= 1500 bytes (largest $off_wire)" test "$off_wire" -le 1500
lab_finish
