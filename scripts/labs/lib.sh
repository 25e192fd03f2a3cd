# shellcheck shell=bash
# lib.sh — plumbing shared by the offload labs (sourced, not run).
#
# The labs themselves keep every command a student should type in plain
# sight; this file only holds the parts that are the same in every lab:
# finding/building bin/vnic, starting `vnic up` in the background in the
# lab's own namespace, waiting until it is ready, running tcpdump with a
# PID we can stop, cleaning up on exit, and the PASS/FAIL bookkeeping.
#
# Variables a lab may set before calling these functions:
#   NS       the lab's namespace (unique: lab1-$$ ...)
#   WORK     scratch directory for captures (created by lab_init)
# Environment the user may set:
#   VNIC=/path/to/vnic   use this binary instead of building bin/vnic
#   LAB_KEEP=1           keep the scratch directory (captures) afterwards

LAB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$LAB_DIR/../.." && pwd)

VNIC_PID=""
TCPDUMP_PID=""
FAILS=0
CHECKS=0

if [[ -t 1 ]]; then B=$'\033[1m' N=$'\033[0m'; else B="" N=""; fi
say()  { printf '\n%s==> %s%s\n' "$B" "$*" "$N"; }
note() { printf '    %s\n' "$*"; }
# run: echo a command the way a student would type it, then run it.
run()  { printf '    $ %s\n' "$*"; "$@"; }
# run_ns CMD...: the same for a command in the lab's namespace.
run_ns() { printf '    $ ip netns exec %s %s\n' "$NS" "$*"; ip netns exec "$NS" "$@"; }
# show FILE: print a capture's text, indented.
show() { grep -v '^$' "$1" | sed 's/^/      /' || true; }
die()  { printf 'lab: %s\n' "$*" >&2; exit 2; }

pass() { CHECKS=$((CHECKS + 1)); printf 'PASS: %s\n' "$*"; }
fail() { CHECKS=$((CHECKS + 1)); FAILS=$((FAILS + 1)); printf 'FAIL: %s\n' "$*"; }
# check DESCRIPTION COMMAND...: PASS if the command succeeds.
check() {
	local what=$1; shift
	if "$@"; then pass "$what"; else fail "$what"; fi
}

# lab_init NAME: root check, tools, binary, scratch dir, trap.
lab_init() {
	local name=$1 t
	[[ $(id -u) -eq 0 ]] || die "run me as root (sudo $0): namespaces and TUN devices need CAP_NET_ADMIN"
	for t in ip ethtool tcpdump tshark nc curl ping; do
		command -v "$t" >/dev/null || die "missing tool: $t (make deps installs them)"
	done
	if [[ -z "${VNIC:-}" ]]; then
		VNIC=$ROOT/bin/vnic
		if [[ ! -x $VNIC ]]; then
			say "building $VNIC"
			(cd "$ROOT" && go build -o "$ROOT/bin/vnic" ./cmd/vnic)
		fi
	fi
	[[ -x $VNIC ]] || die "no vnic binary at $VNIC"
	WORK=$(mktemp -d "/tmp/$name.XXXXXX")
	chmod 755 "$WORK"
	trap lab_cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
}

# lab_cleanup: the EXIT trap. Stops what we started, by PID, and removes
# the namespace if the daemon could not.
lab_cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	tcpdump_stop
	vnic_stop
	if [[ -n "${NS:-}" ]] && ns_exists "$NS"; then
		ip netns del "$NS" 2>/dev/null || true
	fi
	if [[ -n "${WORK:-}" && -d $WORK ]]; then
		if [[ "${LAB_KEEP:-0}" == 1 ]]; then
			printf 'captures kept in %s\n' "$WORK"
		else
			rm -rf -- "$WORK"
		fi
	fi
	exit "$rc"
}

# vnic_start ARGS...: `vnic up --netns $NS ARGS...` in the background;
# returns when `vnic stat` answers (the NIC, the peer and the control
# socket are all up).
vnic_start() {
	local i
	printf '    $ vnic up --netns %s %s &\n' "$NS" "$*"
	"$VNIC" up --netns "$NS" "$@" >>"$WORK/vnic.log" 2>&1 &
	VNIC_PID=$!
	for ((i = 0; i < 100; i++)); do
		kill -0 "$VNIC_PID" 2>/dev/null || { cat "$WORK/vnic.log" >&2; VNIC_PID=""; die "vnic up exited"; }
		if ip netns exec "$NS" ip link show vnic0 2>/dev/null | grep -q 'state \(UP\|UNKNOWN\)' &&
			"$VNIC" stat --netns "$NS" >/dev/null 2>&1; then
			return 0
		fi
		sleep 0.1
	done
	cat "$WORK/vnic.log" >&2
	die "vnic did not come up within 10 s"
}

# vnic_stop: SIGTERM the daemon (it removes the namespace it created) and wait.
vnic_stop() {
	if [[ -n "$VNIC_PID" ]]; then
		kill "$VNIC_PID" 2>/dev/null || true
		wait "$VNIC_PID" 2>/dev/null || true
		VNIC_PID=""
	fi
}

# tcpdump_start FILE ARGS...: tcpdump -i vnic0 -nn -l ARGS in the lab's
# namespace, text into FILE; returns once tcpdump is listening.
tcpdump_start() {
	local out=$1 i; shift
	printf '    $ ip netns exec %s tcpdump -i vnic0 -nn %s\n' "$NS" "$*"
	ip netns exec "$NS" tcpdump -i vnic0 -nn -l "$@" >"$out" 2>"$out.err" &
	TCPDUMP_PID=$!
	for ((i = 0; i < 50; i++)); do
		grep -q 'listening on' "$out.err" 2>/dev/null && return 0
		kill -0 "$TCPDUMP_PID" 2>/dev/null || { cat "$out.err" >&2; TCPDUMP_PID=""; die "tcpdump exited"; }
		sleep 0.1
	done
	die "tcpdump did not start"
}

# tcpdump_stop: give tcpdump a moment to see the last packets, then stop it.
tcpdump_stop() {
	if [[ -n "$TCPDUMP_PID" ]]; then
		sleep 0.3
		kill "$TCPDUMP_PID" 2>/dev/null || true
		wait "$TCPDUMP_PID" 2>/dev/null || true
		TCPDUMP_PID=""
	fi
}

ns_exists() { ip netns list | awk -v n="$1" '$1 == n { f = 1 } END { exit !f }'; }

# in_ns CMD...: run CMD in the lab's namespace (ip netns exec $NS CMD).
in_ns() { ip netns exec "$NS" "$@"; }

# stat_drop REASON: the drop counter REASON from `vnic stat` (0 if absent;
# the lines under "drops" are PLACE REASON COUNT).
stat_drop() {
	"$VNIC" stat --netns "$NS" | awk -v r="$1" '$2 == r { n += $3 } END { print n + 0 }'
}

# lengths FILE: the non-zero TCP "length N" values of a tcpdump text file.
# (The TCP length ends the line, or is followed by ": HTTP ..." and such.)
lengths() { grep -oE 'length [0-9]+(:|$)' "$1" | tr -d : | awk '$2 > 0 { print $2 }' || true; }
# stats: "count sum max" of numbers on stdin.
stats() { awk '{ n++; s += $1; if ($1 > m) m = $1 } END { printf "%d %d %d\n", n, s, m }'; }

# pcap_fields FILTER FIELDS...: tshark fields of the daemon's pcapng ($PCAP).
pcap_fields() {
	local filter=$1; shift
	local args=() f
	for f in "$@"; do args+=(-e "$f"); done
	tshark -r "$PCAP" -Y "$filter" -T fields "${args[@]}" 2>/dev/null
}

# pcap_wait FILTER N: wait (up to 5 s) until the daemon has written at
# least N frames matching FILTER into $PCAP (it writes asynchronously).
pcap_wait() {
	local i
	for ((i = 0; i < 25; i++)); do
		(($(pcap_fields "$1" frame.number | wc -l) >= $2)) && return 0
		sleep 0.2
	done
	return 0
}

# lab_run NAME: `vnic lab run NAME --out $WORK` in the background (its PID
# in VNIC_PID, so the EXIT trap can stop it: it removes its namespaces on
# SIGTERM); its text goes to $WORK/NAME.txt, its exit status to LAB_RC.
# shellcheck disable=SC2034 # LAB_RC is for the lab script
lab_run() {
	printf '    $ vnic lab run %s --out %s > %s.txt\n' "$1" "$WORK" "$1"
	"$VNIC" lab run "$1" --out "$WORK" >"$WORK/$1.txt" 2>&1 &
	VNIC_PID=$!
	LAB_RC=0
	wait "$VNIC_PID" || LAB_RC=$?
	VNIC_PID=""
}

# lab_summary FILE: the step headers, what did not arrive and the events
# (their counts start a line), and the expectation results of a `vnic lab
# run` text, indented.
lab_summary() {
	grep -E '━━|^did not arrive|^events|^ +[0-9]+  [^ ]|^  (PASS|FAIL) |^lab .* (PASSED|FAILED)' "$1" | sed 's/^/      /' || true
}

# lab_count FILE PATTERN: the sum of the counts on the summary lines of a
# `vnic lab run` text ("    31  router (forwarding): ...") that match
# PATTERN (an awk regular expression), over every step.
lab_count() {
	awk -v re="$2" '/^ +[0-9]+  / && $0 ~ re { s += $1 } END { print s + 0 }' "$1"
}

# lab_finish: print the verdict; exit 1 if any check failed.
lab_finish() {
	say "CHECKS: $((CHECKS - FAILS))/$CHECKS passed"
	if ((FAILS > 0)); then
		printf 'RESULT: FAIL (%d check(s) failed)\n' "$FAILS"
		exit 1
	fi
	printf 'RESULT: PASS\n'
	exit 0
}
