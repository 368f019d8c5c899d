# podnet — see README.md. Every target that needs Debian packages calls `deps` first.
GO      ?= go
BIN     := $(CURDIR)/bin
PKGS    := ./...

.PHONY: all deps build test unit demo bench bench-deps clean

all: build

deps:
	@scripts/deps.sh

build:
	$(GO) build -o $(BIN)/podnet ./cmd/podnet
	$(GO) build -o $(BIN)/podnet-cni ./cmd/podnet-cni

# The whole suite: unit tests plus the root-only integration tests, which
# run in network namespaces of their own and clean up after themselves.
test: deps build
	PODNET_BIN=$(BIN) $(GO) test -count=1 -p 2 -timeout 40m $(PKGS)
	@scripts/leakcheck.sh

# Fast tests only: no root, no kernel.
unit:
	$(GO) test -count=1 -short $(PKGS)

# The README's main job.
demo: deps build
	scripts/demo.sh

bench-deps:
	@scripts/deps.sh iptables hyperfine iperf3

bench: deps bench-deps build
	bench/run.sh

clean:
	rm -rf $(BIN)
