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
# The second pass runs the store's users, the CLI, the agents and the whole
# e2e cluster suite against an external 3-member etcd (Debian's etcd-server)
# instead of the embedded one; the single-node e2e tests (`podnet up`, which
# always embeds its store) and the TestExternalEtcd subsets are the first
# pass's.
ETCD_PKGS := ./internal/agent/ ./internal/cli/ ./internal/clusteripam/ ./internal/controller/ ./internal/store/ ./test/e2e/
test: deps build
	PODNET_BIN=$(BIN) $(GO) test -count=1 -p 2 -timeout 40m $(PKGS)
	PODNET_BIN=$(BIN) PODNET_TEST_ETCD=external $(GO) test -count=1 -p 2 -timeout 40m \
		-skip '^(TestSingleNode|TestAgentRestart|TestExternalEtcd)$$' $(ETCD_PKGS)
	@scripts/leakcheck.sh

# Fast tests only: no root, no kernel.
unit:
	$(GO) test -count=1 -short $(PKGS)

# The README's main job.
demo: deps build
	scripts/demo.sh

bench-deps:
	@scripts/deps.sh iptables hyperfine iperf3 dnsperf nginx wrk

bench: deps bench-deps build
	bench/run.sh

clean:
	rm -rf $(BIN)
