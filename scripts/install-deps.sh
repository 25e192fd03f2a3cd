#!/usr/bin/env bash
# Installs what vnic's tests, labs and benchmarks use and a fresh Debian or
# Ubuntu machine lacks: iproute2 (ip netns), ethtool, tcpdump, tshark,
# iperf3, ping, nc, curl, and chromium (the lab report is checked in a real
# browser). Quick and silent when everything is there.
set -euo pipefail
need=()
for pair in ip:iproute2 ethtool:ethtool tcpdump:tcpdump tshark:tshark iperf3:iperf3 \
	ping:iputils-ping nc:netcat-openbsd curl:curl make:make chromium:chromium; do
	cmd=${pair%%:*} pkg=${pair#*:}
	command -v "$cmd" >/dev/null 2>&1 || need+=("$pkg")
done
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "install-deps: missing ${need[*]}; run as root (sudo) to install them" >&2
	exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
	echo "install-deps: missing ${need[*]} and no apt-get here: install them with your package manager" >&2
	exit 1
fi
echo "install-deps: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
