#!/usr/bin/env bash
# Lab 1 — "Len is far bigger than the MSS" (TSO/GSO capture discrepancy)
#
# WHAT IT SHOWS
#   We send 10,000 bytes with netcat over a 1500-byte-MTU link (TCP
#   timestamps on, so MSS = 1500 - 20 IP - 20 TCP - 12 options = 1448).
#   With TSO/GSO on, `tcpdump -i vnic0` shows outgoing TCP segments of
#   several thousand bytes (e.g. 7240 and 2760): far more than the MSS.
#   Yet the wire never carried them: the NIC (here vnic, in Go) cut them
#   into <= 1448-byte segments after the capture point. The vnic pcapng
#   proves it: interface vnic0@host-tx is what tcpdump saw, vnic0@wire is
#   what really crossed the link. With `ethtool -K vnic0 gso off tso off`
#   the kernel segments before the capture point, and tcpdump shows
#   1448 x 6 + 1312: seven segments, none above the MSS.
#
# WHAT TO LOOK FOR
#   - "length 7240" (or 2896, 4344 ...) in tcpdump: a multiple of 1448.
#   - In the pcapng, the comment "out: segment 2/5 of host-tx #N": one big
#     host-tx packet became several wire packets, same bytes, same seq range.
#   - After ethtool: every length <= 1448 in tcpdump too.
#
# TRY IT BY HAND (as root, in two terminals)
#   bin/vnic up --netns lab --pcap /tmp/lab.pcapng          # terminal 1
#   ip netns exec lab ethtool -k vnic0 | grep -E 'segmentation|checksumming'
#   ip netns exec lab tcpdump -i vnic0 -nn tcp &             # terminal 2
#   head -c 10000 /dev/urandom | ip netns exec lab nc -N 198.18.0.2 9
#   tshark -r /tmp/lab.pcapng -Y 'tcp.len > 0' \
#       -T fields -e frame.interface_name -e tcp.seq -e tcp.len -e frame.comment
#   ip netns exec lab ethtool -K vnic0 gso off tso off       # and send again
#   ip netns exec lab ethtool -K vnic0 tso off               # only TSO off? try it
#   bin/vnic stat --netns lab                                # super-packets, segments
#
# Run: sudo scripts/labs/01-tso-capture.sh   (exit status 0 = all checks passed)
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

NS=lab1-$$
lab_init lab1
PCAP=$WORK/lab1.pcapng
head -c 10000 /dev/urandom >"$WORK/10k.bin"

say "Start the NIC in namespace $NS (vnic0 = 198.18.0.1, peer host = 198.18.0.2)"
vnic_start --pcap "$PCAP"
printf '    $ ip netns exec %s ethtool -k vnic0\n' "$NS"
in_ns ethtool -k vnic0 | grep -E '^(tcp-segmentation-offload|generic-segmentation-offload|tx-checksumming):' | sed 's/^/      /'

say "Part 1: TSO/GSO on. Send 10,000 bytes to the discard port (9), source port 41001"
tcpdump_start "$WORK/on.txt" 'tcp port 41001'
printf '    $ ip netns exec %s nc -N -p 41001 198.18.0.2 9 < 10k.bin\n' "$NS"
in_ns nc -N -p 41001 198.18.0.2 9 <"$WORK/10k.bin"
tcpdump_stop
note "What tcpdump -i vnic0 saw (the kernel's view, before the NIC):"
show "$WORK/on.txt"
read -r on_n on_sum on_max < <(lengths "$WORK/on.txt" | stats)

note ""
note "What crossed the wire (vnic pcapng, interface vnic0@wire):"
wire_on='frame.interface_name contains "wire" && tcp.srcport == 41001 && tcp.len > 0'
pcap_wait "$wire_on" 7
printf "    \$ tshark -r lab1.pcapng -Y '%s' -T fields -e tcp.seq -e tcp.len -e frame.comment\n" "$wire_on"
pcap_fields "$wire_on" tcp.seq tcp.len frame.comment | sed 's/^/      /'
read -r won_n won_sum won_max < <(pcap_fields "$wire_on" tcp.len | stats)
note "tcpdump: $on_n data segments, largest $on_max bytes; wire: $won_n segments, largest $won_max bytes"

say "Part 2: ethtool -K vnic0 gso off tso off, and send the same 10,000 bytes (source port 41002)"
run_ns ethtool -K vnic0 gso off tso off
tcpdump_start "$WORK/off.txt" 'tcp port 41002'
printf '    $ ip netns exec %s nc -N -p 41002 198.18.0.2 9 < 10k.bin\n' "$NS"
in_ns nc -N -p 41002 198.18.0.2 9 <"$WORK/10k.bin"
tcpdump_stop
show "$WORK/off.txt"
read -r off_n _ _ < <(lengths "$WORK/off.txt" | stats)
off_list=$(lengths "$WORK/off.txt" | tr '\n' ' ')
wire_off='frame.interface_name contains "wire" && tcp.srcport == 41002 && tcp.len > 0'
pcap_wait "$wire_off" 7
read -r woff_n woff_sum woff_max < <(pcap_fields "$wire_off" tcp.len | stats)
note "tcpdump: $off_n data segments: $off_list; wire: $woff_n segments, largest $woff_max"
run "$VNIC" stat --netns "$NS"

say "CHECKS"
check "GSO/TSO on: tcpdump shows a segment above the MSS (largest $on_max > 1448)" test "$on_max" -gt 1448
check "GSO/TSO on: tcpdump carried all 10000 bytes (got $on_sum)" test "$on_sum" -eq 10000
check "GSO/TSO on: wire segments are all <= 1448 (largest $won_max)" test "$won_max" -le 1448
check "GSO/TSO on: wire carried all 10000 bytes in 7 segments (got $won_sum in $won_n)" test "$won_sum" -eq 10000 -a "$won_n" -eq 7
check "GSO/TSO off: tcpdump shows 1448 x 6 + 1312 (got: ${off_list% })" test "${off_list% }" = "1448 1448 1448 1448 1448 1448 1312"
check "GSO/TSO off: wire the same, all <= 1448 ($woff_n segments, $woff_sum bytes)" test "$woff_max" -le 1448 -a "$woff_sum" -eq 10000
lab_finish
