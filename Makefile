# swarmsec: `make demo` and `make test` do everything on a fresh machine.
SHELL := /bin/bash
GO ?= go
BIN := bin/swarmsec
GOFLAGS_STATIC := CGO_ENABLED=0

.PHONY: all build image image-locked test test-unit test-unit-then-e2e test-integration test-e2e bench bench-scale soak fuzz demo demo-down docker vet fmt-check lint clean

all: build

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
DATE ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
LDFLAGS := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT) -X main.date=$(DATE)

build:
	$(GOFLAGS_STATIC) $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/swarmsec

# The image: the static binary on scratch, tagged swarmsec/swarmsec with
# each of IMAGE_TAGS (the version and latest). deploy/swarmsec.yml deploys
# it as a stack. Under a lock: the integration and e2e tests build it at
# the same time.
IMAGE_TAGS ?= $(VERSION) latest
image:
	@mkdir -p bin
	@flock bin/.image.lock $(MAKE) --no-print-directory image-locked

image-locked: build
	cp /etc/ssl/certs/ca-certificates.crt deploy/ca-certificates.crt 2>/dev/null || : > deploy/ca-certificates.crt
	docker build --build-arg VERSION=$(VERSION) $(foreach t,$(IMAGE_TAGS),-t swarmsec/swarmsec:$(t)) .

vet:
	$(GO) vet ./...
	$(GO) vet -tags integration,e2e ./...

# gofmt -l lists the files it would change; any listed file fails.
fmt-check:
	@out=$$(gofmt -l $$(find . -name '*.go' -not -path './.*' -not -path './bin/*' -not -path './e2e/.work/*')); \
	if [ -n "$$out" ]; then echo "gofmt: not formatted:"; echo "$$out"; exit 1; fi

# golangci-lint with .golangci.yml. The pinned version is installed into
# bin/tools on first use (the binary's name carries the version, so a bump
# installs the new one); GOLANGCI_LINT=path uses another binary.
GOLANGCI_LINT_VERSION := v2.15.0
TOOLS := $(CURDIR)/bin/tools
GOLANGCI_LINT ?= $(TOOLS)/golangci-lint-$(GOLANGCI_LINT_VERSION)

lint: $(GOLANGCI_LINT)
	$(GOLANGCI_LINT) run ./...

$(TOOLS)/golangci-lint-$(GOLANGCI_LINT_VERSION):
	mkdir -p $(TOOLS)
	GOBIN=$(TOOLS) $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)
	mv $(TOOLS)/golangci-lint $@

# Unit, integration (the machine's engine as a one-node Swarm) and e2e
# (docker-in-docker Swarms) tests, in two lanes: the integration tests from
# the start, beside the unit tests and then the e2e tests (two processes,
# see test-e2e). The Swarm tests mostly wait (rolling updates, timeouts),
# so they run beside the unit tests' computing rather than after it; the
# levels share nothing but the machine's engine, on which their objects are
# apart (names and labels of their own run). The longest lane, the
# integration tests, sets the wall time.
test: docker
	@$(MAKE) --no-print-directory -j2 test-integration test-unit-then-e2e

test-unit-then-e2e:
	@$(MAKE) --no-print-directory test-unit
	@$(MAKE) --no-print-directory test-e2e

# The race detector on every unit test; goleak guards the controller,
# watcher and server tests; the transition property test runs here too.
test-unit:
	$(GO) test -count=1 -race ./...

# docker makes sure an engine answers, installing and starting one if needed.
docker:
	@scripts/ensure-docker.sh

# Only the packages with integration tests: the others ran in test-unit.
# The whole -v output goes to .integration.log; the terminal shows each
# test's verdict and duration, and the output of those that failed.
INTEGRATION_PKGS := $(shell grep -rl --include='*_test.go' '^//go:build.*integration' . | xargs -r -n1 dirname | sort -u)
INTEGRATION_CMD := $(GO) test -count=1 -tags integration -timeout 25m -v $(INTEGRATION_PKGS)
test-integration: docker
	@echo '$(INTEGRATION_CMD)'; $(INTEGRATION_CMD) 2>&1 | tee .integration.log | grep --line-buffered -E '^(--- |FAIL|ok|panic)'; \
	rc=$${PIPESTATUS[0]}; if [ $$rc != 0 ]; then echo "the failed tests' output (all of it in .integration.log):"; \
	  awk '/^=== RUN   [^\/]*$$/ {buf = ""} {buf = buf $$0 "\n"} /^(--- FAIL|FAIL\t)/ {printf "%s", buf; buf = ""} /^panic/ {p = 1} p' .integration.log; fi; \
	exit $$rc

# The e2e tests run as two processes side by side, each on a docker-in-
# docker cluster of its own (a cluster's containers, networks, volumes and
# cgroups carry its run's ID; the nodes wait on Swarm far more than they
# compute). Shard a runs the tests E2E_A names; shard b runs every other
# test, so a new test lands in b by itself: to move one, add its name to
# E2E_A, and keep the shards about even (each shard's log, .e2e-a.log and
# .e2e-b.log, ends with its tests' durations). The test binary is built
# once for both.
E2E_A := TestTruthTable TestFailover
E2E_TEST := bin/e2e.test
E2E_FLAGS := -test.count=1 -test.timeout 45m -test.v
empty :=
E2E_RE := ^($(subst $(empty) $(empty),|,$(strip $(E2E_A))))$$
E2E_SHOWN := ^(=== RUN|--- |PASS|FAIL|ok|panic|e2e:|\s+\S+_test.go)
test-e2e: docker
	@mkdir -p bin
	$(GO) test -c -tags e2e -o $(E2E_TEST) ./e2e
	@cd e2e && start=$$(date +%s); \
	shard() { ../$(E2E_TEST) $(E2E_FLAGS) "$$2" '$(E2E_RE)' 2>&1 | tee ../.e2e-$$1.log \
	  | grep --line-buffered -E '$(E2E_SHOWN)' | sed -u "s/^/[e2e-$$1] /"; \
	  rc=$${PIPESTATUS[0]}; echo "[e2e-$$1] exit $$rc after $$(( $$(date +%s) - start )) s"; return $$rc; }; \
	shard a -test.run & a=$$!; shard b -test.skip & b=$$!; \
	wait $$a; ra=$$?; wait $$b; rb=$$?; exit $$(( ra || rb ))

# Benchmarks: compile+diff at 100, 1,000 and 10,000 services, and the loader.
bench:
	$(GO) test -run '^$$' -bench . -benchmem -count 1 ./reconciler/plan/... ./reconciler/manifest/...

# Scale on this machine's engine, held against the engine's own floor in the
# same run (not part of make test): SERVICES=5000 make bench-scale.
SERVICES ?= 1000
bench-scale: docker build
	$(GO) run ./dev/benchscale -services $(SERVICES) -swarmsec $(BIN)

# An hour under load on this machine's engine (not part of make test):
# SERVICES services, a drift a second, a manifest change a minute, resyncs
# every 30 s; prints the reverts' p99, the writes without a cause and the
# controller's memory and goroutines (slope and peak). SOAK_DURATION=10m
# for a shorter run.
SOAK_DURATION ?= 1h
soak: docker build
	$(GO) run ./dev/benchscale -services $(SERVICES) -swarmsec $(BIN) -soak $(SOAK_DURATION)

# Fuzz the manifest decoder (FUZZTIME=5m make fuzz for longer).
FUZZTIME ?= 60s
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzDecode -fuzztime $(FUZZTIME) ./reconciler/manifest/

# demo.sh runs scripts/ensure-docker.sh itself, once it has set aside a
# DOCKER_HOST that names an earlier demo's cluster.
demo:
	@e2e/demo.sh up

demo-down:
	@e2e/demo.sh down

clean:
	rm -rf bin
