#!/usr/bin/env bash
# Lab 2 — the forcedeth NIC that segments behind your back (hardware MTU < MTU)
#
# WHAT IT SHOWS
#   `vnic up --mtu 9000 --hw-mtu 1500` models the nForce/forcedeth NIC of the
#   story: the driver accepts MTU 9000, but the hardware only does 1500.
#   Here the Linux host in the namespace is "server1" (the host with that
#   NIC) and it is the sender. TCP still works, because the NIC quietly uses
#   TSO to cut every TCP packet to fit 1500 bytes:
#   - tcpdump on vnic0 shows TCP segments of 8948 bytes and more (MSS 8960
#     minus 12 bytes of timestamps, and GSO multiples of it);
#   - the wire (vnic pcapng, vnic0@wire) shows the same bytes as <= 1448-byte
#     segments in <= 1500-byte packets, each with its own TCP header: no IP
#     fragmentation at all.
#   Everything else is not rescued:
#   - `ping -s 10000` leaves as two IP fragments, 8996 + 1052 bytes (9010 and
#     1066 with an Ethernet header, as in the story); the NIC drops the big
#     one (`vnic stat`: exceeds_mtu) and the echo never completes.
#   - Jumbo frames sent *to* this NIC are dropped (rx_exceeds_hw_mtu): a
#     download from the peer, whose MTU is also 9000, stalls.
#   The fix: MTU 1500 — on both ends. Setting it only on this host
#   (`ip link set vnic0 mtu 1500`) fixes downloads (the host now advertises
#   MSS 1460) but NOT the big ping: the request now leaves as 1500-byte
#   fragments and arrives, but the peer (still MTU 9000) answers with a
#   9000-byte first fragment that this NIC cannot receive. With MTU 1500 on
#   both ends (in the story: server1 and server2) the ping completes.
#
# WHAT TO LOOK FOR
#   - tcpdump: "length 8948", "length 17896" ...; the pcapng wire: 1448, 1448 ...
#     with comments "out: segment k/n of host-tx #N".
#   - tcpdump -v of the ping: "length 8996, ... flags [+]" then "offset 8976".
#   - `vnic stat`: drops "exceeds_mtu" (tx) and "rx_exceeds_hw_mtu" (rx).
#
# TRY IT BY HAND (as root)
#   bin/vnic up --netns lab --mtu 9000 --hw-mtu 1500 --pcap /tmp/lab.pcapng &
#   ip netns exec lab tcpdump -i vnic0 -nn -v &
#   head -c 100000 /dev/zero | ip netns exec lab nc -N 198.18.0.2 9
#   tshark -r /tmp/lab.pcapng -Y 'frame.interface_name contains "wire" && tcp.len > 0' \
#       -T fields -e ip.len -e ip.flags.mf -e tcp.seq -e tcp.len -e frame.comment
#   ip netns exec lab ping -c1 -s 10000 198.18.0.2      # fails
#   ip netns exec lab curl -m 3 -o /dev/null 198.18.0.2/bytes/100000   # stalls
#   bin/vnic stat --netns lab
#   ip netns exec lab ip link set vnic0 mtu 1500         # then ping and curl again
#   # and restart with `vnic up --netns lab` (MTU 1500 everywhere): ping works
#
# Run: sudo scripts/labs/02-forcedeth.sh   (exit status 0 = all checks passed)
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

NS=lab2-$$
lab_init lab2
PCAP=$WORK/lab2.pcapng

say "Start the forcedeth-like NIC: MTU 9000, hardware MTU 1500"
vnic_start --mtu 9000 --hw-mtu 1500 --pcap "$PCAP"
run_ns ip -br link show vnic0

say "Part 1: upload 100 KB to the discard port, source port 42001"
tcpdump_start "$WORK/up.txt" 'tcp port 42001'
printf '    $ head -c 100000 /dev/zero | ip netns exec %s nc -N -p 42001 198.18.0.2 9\n' "$NS"
head -c 100000 /dev/zero | in_ns nc -N -p 42001 198.18.0.2 9
tcpdump_stop
note "tcpdump -i vnic0 (what the kernel handed the NIC):"
show "$WORK/up.txt"
read -r up_n up_sum up_max < <(lengths "$WORK/up.txt" | stats)
wire_up='frame.interface_name contains "wire" && tcp.srcport == 42001 && tcp.len > 0'
pcap_wait "$wire_up" 70
read -r w_n w_sum w_max < <(pcap_fields "$wire_up" tcp.len | stats)
read -r _ _ w_iplen < <(pcap_fields "$wire_up" ip.len | stats)
w_frag=$(pcap_fields "$wire_up && (ip.flags.mf == 1 || ip.frag_offset > 0)" frame.number | wc -l)
note ""
note "The wire (vnic pcapng), first host-tx super-packet and its segments:"
first_tx=$(pcap_fields 'frame.interface_name contains "host-tx" && tcp.srcport == 42001 && tcp.len > 1448' frame.comment | head -1 | grep -o 'host-tx #[0-9]*' || true)
printf "    \$ tshark -r lab2.pcapng -Y 'tcp.srcport == 42001 && frame.comment contains \"%s\"' ...\n" "$first_tx"
pcap_fields "tcp.srcport == 42001 && frame.comment contains \"$first_tx:\" || frame.comment contains \"of $first_tx\"" \
	frame.interface_name ip.len tcp.seq tcp.len frame.comment | sed 's/^/      /'
note "tcpdump: $up_n data packets, largest $up_max; wire: $w_n packets, largest TCP payload $w_max, largest IP packet $w_iplen, $w_frag IP fragments"

say "Part 2: ping -s 10000 (not TCP: TSO cannot rescue it)"
tcpdump_start "$WORK/ping.txt" -v icmp
set +e
run_ns ping -c1 -W2 -s 10000 198.18.0.2
ping1=$?
set -e
tcpdump_stop
show "$WORK/ping.txt"
exceeds=$(stat_drop exceeds_mtu)
note "vnic stat: exceeds_mtu = $exceeds"
# Fragments of the echo request on the wire, by IP length (reassembly off).
tsk_ping() { tshark -r "$PCAP" -o ip.defragment:FALSE -Y "$1" -T fields -e ip.len 2>/dev/null | tr '\n' ' '; }
ping_tx=$(tsk_ping 'frame.interface_name contains "host-tx" && ip.proto == 1 && ip.dst == 198.18.0.2')
ping_wire=$(tsk_ping 'frame.interface_name contains "wire" && ip.proto == 1 && ip.dst == 198.18.0.2')
note "echo request fragments (IP lengths): host-tx: $ping_tx; wire: $ping_wire"

say "Part 3: a download from the peer (whose MTU is 9000 too): jumbo frames come back"
set +e
run_ns curl -s -m 3 -o /dev/null -w 'HTTP %{http_code}, %{size_download} bytes\n' 198.18.0.2/bytes/100000
curl1=$?
set -e
rxdrop1=$(stat_drop rx_exceeds_hw_mtu)
note "curl exit status $curl1 (28 = timed out); vnic stat: rx_exceeds_hw_mtu = $rxdrop1"

say "Part 4: the fix on this host only: ip link set vnic0 mtu 1500"
run_ns ip link set vnic0 mtu 1500
set +e
run_ns curl -s -m 5 -o /dev/null -w 'HTTP %{http_code}, %{size_download} bytes\n' 198.18.0.2/bytes/100000
curl2=$?
set -e
tcpdump_start "$WORK/ping2.txt" -v icmp
set +e
run_ns ping -c1 -W2 -s 10000 198.18.0.2
ping2=$?
set -e
tcpdump_stop
show "$WORK/ping2.txt"
reply_wire=$(tsk_ping 'frame.interface_name contains "wire" && ip.proto == 1 && ip.src == 198.18.0.2')
reply_rx=$(tsk_ping 'frame.interface_name contains "host-rx" && ip.proto == 1 && ip.src == 198.18.0.2')
note "echo reply fragments (IP lengths): on the wire: $reply_wire; handed to the host (host-rx): $reply_rx"
note "(the peer still has MTU 9000: its 8996-byte first reply fragment is too big for this NIC to receive)"
run "$VNIC" stat --netns "$NS"

say "Part 5: MTU 1500 on both ends (restart: vnic up --netns $NS, i.e. --mtu 1500)"
vnic_stop
vnic_start
set +e
run_ns ping -c1 -W2 -s 10000 198.18.0.2
ping3=$?
set -e

say "CHECKS"
check "upload: tcpdump on vnic0 shows TCP packets far above 1448 (largest $up_max)" test "$up_max" -gt 4000
check "upload: all 100000 bytes handed to the NIC (got $up_sum)" test "$up_sum" -eq 100000
check "upload: wire TCP payloads <= 1448 (largest $w_max) in <= 1500-byte packets (largest $w_iplen)" test "$w_max" -le 1448 -a "$w_iplen" -le 1500
check "upload: the wire carried all 100000 bytes (got $w_sum in $w_n packets)" test "$w_sum" -eq 100000
check "upload: no IP fragmentation on the wire ($w_frag fragments): every packet has its own TCP header" test "$w_frag" -eq 0
check "ping -s 10000 at MTU 9000 fails (exit $ping1)" test "$ping1" -ne 0
check "ping: host-tx has fragments 8996 + 1052 (got: ${ping_tx% })" test "${ping_tx% }" = "8996 1052"
check "ping: only the 1052-byte last fragment reached the wire (got: ${ping_wire% })" test "${ping_wire% }" = "1052"
check "ping: vnic stat counts the dropped fragment as exceeds_mtu ($exceeds)" test "$exceeds" -ge 1
check "download at MTU 9000 stalls (curl exit $curl1)" test "$curl1" -ne 0
check "download: the NIC drops received jumbo frames (rx_exceeds_hw_mtu $rxdrop1)" test "$rxdrop1" -ge 1
check "host MTU 1500: the download works (curl exit $curl2)" test "$curl2" -eq 0
check "host MTU 1500 only: ping -s 10000 still fails (exit $ping2)" test "$ping2" -ne 0
check "host MTU 1500 only: the peer's reply came as 8996 + 1052 (wire: ${reply_wire% })" test "${reply_wire% }" = "8996 1052"
check "host MTU 1500 only: the NIC dropped the 8996-byte reply fragment (host-rx: ${reply_rx% })" test "${reply_rx% }" = "1052"
check "MTU 1500 on both ends: ping -s 10000 works (exit $ping3)" test "$ping3" -eq 0
lab_finish
