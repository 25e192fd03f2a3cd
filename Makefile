# vnic — make targets. `make test` is the test command CI runs (as root).
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
GO       ?= go
PKGS     ?= ./...
# Packages that start goroutines: run under the race detector too.
RACE_PKGS ?= ./vnic/...
FUZZTIME ?= 10s
BENCHTIME ?= 1s
BENCHCOUNT ?= 5

.PHONY: all build deps up pair demo test test-short race fuzz bench bench-micro bench-pair bench-farend bench-nic bench-retrans soak lint fmt clean install-extcap

all: build

## build: the vnic binary, bin/vnic.
build:
	$(GO) build -o bin/vnic ./cmd/vnic

## install-extcap: make every running vnic's capture points Wireshark/tshark
##                 interfaces (tshark -i vnic0@wire): bin/vnic linked as
##                 vnic-extcap into Wireshark's extcap directory.
EXTCAP_DIR ?= $(shell tshark -G folders 2>/dev/null | awk -F'\t+' '/^Extcap path/ {print $$2}')
install-extcap: build
	@test -n "$(EXTCAP_DIR)" || { echo "no Wireshark extcap directory (is tshark installed? make deps)"; exit 1; }
	ln -sf $(CURDIR)/bin/vnic $(EXTCAP_DIR)/vnic-extcap
	@echo "installed: $(EXTCAP_DIR)/vnic-extcap; try: tshark -D | grep @wire"

## deps: install what a fresh Debian/Ubuntu machine lacks (iproute2, ethtool,
##       tcpdump, tshark, iperf3, ping, nc, curl); quick when all are there.
deps:
	@bash scripts/install-deps.sh

## up: the main job — vnic0 in network namespace "vnic" (198.18.0.1/15,
##     fd00::1/64) with the gVisor peer at 198.18.0.2 / fd00::2, recording
##     host-tx, wire and host-rx into vnic.pcapng. Ctrl-C tears it down.
NETNS ?= vnic
up: deps build
	./bin/vnic up --netns $(NETNS) --pcap vnic.pcapng

## pair: two vnic NICs joined by a wire — vnic0 in namespace vnic-a
##       (198.18.0.1) and vnic0 in vnic-b (198.18.0.2); iperf3 -s in one,
##       iperf3 -c in the other. Ctrl-C tears both down.
pair: deps build
	./bin/vnic up --netns vnic-a --wire netns:vnic-b

## demo: the tso-capture lab (docs/stories.md, story 1): ginger's tcpdump vs the
##       wire vs basil's tcpdump, GSO on and off; lab-out/ gets the pcapng and
##       report.html.
demo: deps build
	./bin/vnic lab run tso-capture --out lab-out

## test: every test; the root-only ones (kernel differential tests) run when root.
##       With CI=true a root-only test that would skip fails instead.
test: deps lint
	$(GO) test -count=1 $(PKGS)
	$(GO) test -count=1 -race $(RACE_PKGS)

## test-short: the pure tests only (no root needed).
test-short:
	$(GO) test -count=1 -short $(PKGS)

## fuzz: a short smoke run of every fuzz target (FUZZTIME each).
fuzz:
	@set -e; for pkg in $$($(GO) list $(PKGS)); do \
	  dir=$$($(GO) list -f '{{.Dir}}' $$pkg); \
	  for fn in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go 2>/dev/null | sed 's/^func //'); do \
	    echo "== $$pkg $$fn ($(FUZZTIME))"; \
	    $(GO) test -run='^$$' -fuzz="^$$fn\$$" -fuzztime=$(FUZZTIME) $$pkg; \
	  done; \
	done

## bench: the engine micro-benchmarks, the pair against its floor, the far
##        ends against the kernel's, the whole NIC against its references,
##        and the needless retransmissions of a two-way load.
bench: bench-micro bench-pair bench-farend bench-nic bench-retrans

## bench-micro: segment/coalesce micro-benchmarks, each beside its physical
##              floor (one checksum pass + one copy over the same bytes).
bench-micro:
	$(GO) test -run='^$$' -bench=. -benchmem -cpu=1 -benchtime=$(BENCHTIME) -count=$(BENCHCOUNT) ./segment/ ./coalesce/ | tee bench/micro.txt
	@$(GO) run ./scripts/benchratio < bench/micro.txt

## lint: gofmt and go vet must be clean.
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

fmt:
	gofmt -w $$(git ls-files '*.go')

## bench-pair: vnic up --wire netns:B against the null TUN relay (the floor
##             of any TUN NIC), the wireguard-go pair and veth, with iperf3:
##             1 stream, 4 streams, --bidir, ping under load, idle CPU
##             (root, ~6 min; bench/pair.txt).
bench-pair: deps
	$(GO) run ./scripts/benchnic -pair

## bench-farend: the VXLAN wire (two TAP vnics, daemons in two underlay
##               namespaces) against the kernel's VXLAN over the same veth
##               underlay, and the dev: wire against a veth pair, iperf3 1 and
##               4 streams, CPU per GB (root, ~3 min; bench/farend.txt).
bench-farend: deps
	$(GO) run ./scripts/benchnic -farend

## bench-nic: TCP throughput through vnic, the wireguard-go engine and a plain
##            veth pair, in one run (root).
bench-nic: deps
	$(GO) run ./scripts/benchnic

## bench-retrans: upload and download at once through the NIC and the gVisor
##                peer (BIDIR_SECONDS, default 10): throughput each way, the
##                peer's retransmissions, the host's DSACKs, and the spurious
##                retransmissions per packet the peer put on the wire (root;
##                target <= 0.01 %).
bench-retrans:
	$(GO) test -run='^$$' -bench=BidirRetransmissions -benchtime=1x ./vnic/traffic/ | tee bench/retrans.txt

## soak: a NIC at full speed both ways (upload, verified download, echo)
##       for SOAK (default 10m) through the gVisor peer, capture on at
##       --snaplen 128 for a fifth of it, across a pair (--wire netns:B) for
##       another fifth; fails on any loss, drop, memory or goroutine growth,
##       or fd leak (root; not in CI).
SOAK ?= 10m
soak:
	$(GO) run ./scripts/soak -duration $(SOAK)

clean:
	rm -rf bin bench/micro.txt
