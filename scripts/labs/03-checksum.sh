#!/usr/bin/env bash
# Lab 3 — Checksum offload: "bad checksum" in the capture (story 5)
#
# WHAT IT SHOWS
#   With transmit checksum offload (tx-checksumming on), the kernel puts
#   only the pseudo-header sum into the TCP checksum field and leaves the
#   rest to the NIC (virtio: NEEDS_CSUM, csum_start/csum_offset). tcpdump
#   sits before the NIC, so `tcpdump -vv -i vnic0` reports every outgoing
#   TCP checksum as "incorrect" — while incoming ones (finished by the
#   peer) are "correct". The wire, after the NIC filled them in, carries
#   correct checksums: tshark with `-o tcp.check_checksum:TRUE` on the vnic
#   pcapng says "Good" on vnic0@wire and "Bad" on vnic0@host-tx for the
#   very same packets. `ethtool -K vnic0 tx off` makes the kernel compute
#   the checksum itself (and switches TSO off with it: TSO needs checksum
#   offload), so tcpdump now says "correct".
#
# WHAT TO LOOK FOR
#   - tcpdump -vv: "cksum 0x8c4e (incorrect -> 0x4845)" on 198.18.0.1 > ...
#     lines; "(correct)" on 198.18.0.2 > ... lines.
#   - tshark on host-tx: "Bad checksum [should be 0x....]" and a pcapng
#     comment "needs_csum csum_start=20 csum_offset=16"; on the wire the
#     checksum equals the "should be" value.
#   - After `tx off`: ethtool lists tcp-segmentation-offload: off as well.
#
# TRY IT BY HAND (as root)
#   bin/vnic up --netns lab --pcap /tmp/lab.pcapng &
#   ip netns exec lab tcpdump -vv -i vnic0 -nn tcp &
#   head -c 3000 /dev/zero | ip netns exec lab nc -N 198.18.0.2 9
#   tshark -r /tmp/lab.pcapng -o tcp.check_checksum:TRUE -Y tcp -T fields \
#       -e frame.interface_name -e tcp.checksum -e tcp.checksum.status -e frame.comment
#   echo hi | ip netns exec lab nc -u -w1 198.18.0.2 9   # UDP: the same story
#   ip netns exec lab ethtool -K vnic0 tx off             # and send again
#
# Run: sudo scripts/labs/03-checksum.sh   (exit status 0 = all checks passed)
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

NS=lab3-$$
lab_init lab3
PCAP=$WORK/lab3.pcapng

say "Start the NIC (checksum offload on)"
vnic_start --pcap "$PCAP"
printf '    $ ip netns exec %s ethtool -k vnic0\n' "$NS"
in_ns ethtool -k vnic0 | grep -E '^(tx-checksumming|tcp-segmentation-offload):' | sed 's/^/      /'

# send PORT: 3000 bytes to the discard port from source port PORT, with
# tcpdump -vv running; the text lands in $WORK/PORT.txt.
send() {
	tcpdump_start "$WORK/$1.txt" -vv "tcp port $1"
	printf '    $ head -c 3000 /dev/zero | ip netns exec %s nc -N -p %s 198.18.0.2 9\n' "$NS" "$1"
	head -c 3000 /dev/zero | in_ns nc -N -p "$1" 198.18.0.2 9
	tcpdump_stop
	show "$WORK/$1.txt"
}
# verdicts PORT DIR: the tcpdump checksum verdicts ("correct"/"incorrect")
# of packets from (DIR=out) or to (DIR=in) the local port PORT, one per line.
verdicts() {
	local pat="198.18.0.1.$1 >"
	[[ $2 == in ]] && pat="> 198.18.0.1.$1:"
	grep -F -- "$pat" "$WORK/$1.txt" | grep -o 'cksum 0x[0-9a-f]* ([a-z]*' | awk '{ sub(/\(/, "", $3); print $3 }'
}
count() { grep -cx "$1" || true; }
# pcap_status PORT IFACE: tshark's checksum status per outgoing packet
# (0 = Bad, 1 = Good, 2 = Unverified).
pcap_status() {
	tshark -r "$PCAP" -o tcp.check_checksum:TRUE \
		-Y "frame.interface_name contains \"$2\" && tcp.srcport == $1" \
		-T fields -e tcp.checksum.status 2>/dev/null
}

say "Part 1: tx checksum offload on: tcpdump -vv, 3000 bytes from port 43001"
send 43001
out_bad=$(verdicts 43001 out | count incorrect)
out_all=$(verdicts 43001 out | wc -l)
in_good=$(verdicts 43001 in | count correct)
in_all=$(verdicts 43001 in | wc -l)
pcap_wait 'frame.interface_name contains "wire" && tcp.srcport == 43001' "$out_all"
note ""
note "The same packets in the vnic pcapng (tshark -o tcp.check_checksum:TRUE):"
printf "    \$ tshark -r lab3.pcapng -o tcp.check_checksum:TRUE -Y 'tcp.srcport == 43001' -T fields -e frame.interface_name -e tcp.len -e tcp.checksum -e tcp.checksum.status -e _ws.expert.message\n"
tshark -r "$PCAP" -o tcp.check_checksum:TRUE -Y 'tcp.srcport == 43001' -T fields \
	-e frame.interface_name -e tcp.len -e tcp.checksum -e tcp.checksum.status -e _ws.expert.message 2>/dev/null |
	sed 's/,This frame is a (suspected) [a-z-]*[a-z ]*//; s/^/      /'
tx_bad=$(pcap_status 43001 host-tx | count 0)
tx_all=$(pcap_status 43001 host-tx | wc -l)
wire_good=$(pcap_status 43001 wire | count 1)
wire_all=$(pcap_status 43001 wire | wc -l)
note "tcpdump: $out_bad/$out_all outgoing incorrect, $in_good/$in_all incoming correct; pcapng: host-tx $tx_bad/$tx_all Bad, wire $wire_good/$wire_all Good"

say "Part 2: ethtool -K vnic0 tx off, the same 3000 bytes from port 43002"
run_ns ethtool -K vnic0 tx off
printf '    $ ip netns exec %s ethtool -k vnic0\n' "$NS"
in_ns ethtool -k vnic0 | grep -E '^(tx-checksumming|tcp-segmentation-offload):' | sed 's/^/      /'
send 43002
off_good=$(verdicts 43002 out | count correct)
off_all=$(verdicts 43002 out | wc -l)
pcap_wait 'frame.interface_name contains "wire" && tcp.srcport == 43002' "$off_all"
off_wire_good=$(pcap_status 43002 wire | count 1)
off_wire_all=$(pcap_status 43002 wire | wc -l)
note "tcpdump: $off_good/$off_all outgoing correct; wire: $off_wire_good/$off_wire_all Good"

say "CHECKS"
check "tx offload on: tcpdump -vv shows every outgoing TCP checksum incorrect ($out_bad/$out_all)" test "$out_all" -ge 4 -a "$out_bad" -eq "$out_all"
check "tx offload on: incoming TCP checksums are correct ($in_good/$in_all)" test "$in_all" -ge 2 -a "$in_good" -eq "$in_all"
check "tx offload on: pcapng host-tx checksums are Bad, as tcpdump saw them ($tx_bad/$tx_all)" test "$tx_all" -ge 4 -a "$tx_bad" -eq "$tx_all"
check "tx offload on: pcapng wire checksums are all Good: the NIC completed them ($wire_good/$wire_all)" test "$wire_all" -ge 4 -a "$wire_good" -eq "$wire_all"
check "tx off: tcpdump -vv shows every outgoing TCP checksum correct ($off_good/$off_all)" test "$off_all" -ge 4 -a "$off_good" -eq "$off_all"
check "tx off: the wire still carries good checksums ($off_wire_good/$off_wire_all)" test "$off_wire_all" -ge 4 -a "$off_wire_good" -eq "$off_wire_all"
lab_finish
