# vnic — make targets. `make test` is the test command CI runs (as root).
GO       ?= go
PKGS     ?= ./...
# Packages that start goroutines: run under the race detector too.
RACE_PKGS ?= ./vnic/...
FUZZTIME ?= 10s
BENCHTIME ?= 1s
BENCHCOUNT ?= 5

.PHONY: all build test test-short race fuzz bench lint fmt clean

all: build

build:
	$(GO) build ./...

## test: every test; the root-only ones (kernel differential tests) run when root.
##       With CI=true a root-only test that would skip fails instead.
test: lint
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

## bench: the segment/coalesce micro-benchmarks, each beside its physical floor
##        (one checksum pass + one copy over the same bytes).
bench:
	$(GO) test -run='^$$' -bench=. -benchmem -benchtime=$(BENCHTIME) -count=$(BENCHCOUNT) ./segment/ ./coalesce/ | tee bench/micro.txt
	@$(GO) run ./scripts/benchratio < bench/micro.txt

## lint: gofmt and go vet must be clean.
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -f bench/micro.txt
