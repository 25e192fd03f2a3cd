#!/usr/bin/env bash
# run-all.sh — run every offload lab in turn and print a summary.
# Exit status: 0 if every lab passed, 1 otherwise.
# Usage: sudo scripts/labs/run-all.sh [-q]   (-q: show only the CHECKS of each lab)
# Environment: VNIC=/path/to/vnic to use a given binary; LAB_KEEP=1 keeps captures.
set -euo pipefail
dir=$(cd "$(dirname "$0")" && pwd)
quiet=0
[[ "${1:-}" == -q ]] && quiet=1

results=()
failed=0
for lab in "$dir"/[0-9][0-9]-*.sh; do
	name=$(basename "$lab")
	printf '\n######## %s ########\n' "$name"
	start=$SECONDS
	log=$(mktemp)
	set +e
	if ((quiet)); then
		"$lab" >"$log" 2>&1
		rc=$?
		grep -E '^(PASS|FAIL|RESULT):' "$log" || cat "$log"
	else
		"$lab" 2>&1 | tee "$log"
		rc=${PIPESTATUS[0]}
	fi
	set -e
	rm -f "$log"
	if ((rc == 0)); then
		results+=("PASS  $name  ($((SECONDS - start)) s)")
	else
		results+=("FAIL  $name  (exit $rc, $((SECONDS - start)) s)")
		failed=$((failed + 1))
	fi
done

printf '\n######## summary ########\n'
printf '%s\n' "${results[@]}"
if ((failed > 0)); then
	printf '%d lab(s) failed\n' "$failed"
	exit 1
fi
printf 'all %d labs passed\n' "${#results[@]}"
