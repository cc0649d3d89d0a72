# swarmsec: `make demo` and `make test` do everything on a fresh machine.
SHELL := /bin/bash
GO ?= go
BIN := bin/swarmsec
GOFLAGS_STATIC := CGO_ENABLED=0

.PHONY: all build image image-locked test test-unit test-integration test-e2e bench bench-scale soak fuzz demo demo-down docker vet fmt-check lint clean

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
# (a three-node docker-in-docker Swarm) tests.
# The unit tests first (they use both cores); then the integration tests
# (the machine's engine as a one-node Swarm) and the e2e tests (their own
# docker-in-docker Swarm) side by side: both mostly wait for Swarm, and
# they share nothing but the machine's engine, on which their objects are
# apart (names and labels of their own run).
test: test-unit
	@$(MAKE) --no-print-directory -j2 test-integration test-e2e

# The race detector on every unit test; goleak guards the controller,
# watcher and server tests; the transition property test runs here too.
test-unit:
	$(GO) test -count=1 -race ./...

# docker makes sure an engine answers, installing and starting one if needed.
docker:
	@scripts/ensure-docker.sh

# Only the packages with integration tests: the others ran in test-unit.
INTEGRATION_PKGS := $(shell grep -rl --include='*_test.go' '^//go:build.*integration' . | xargs -r -n1 dirname | sort -u)
test-integration: docker
	$(GO) test -count=1 -tags integration -timeout 25m $(INTEGRATION_PKGS)

test-e2e: docker
	$(GO) test -count=1 -p 1 -tags e2e -timeout 45m -v ./e2e/... 2>&1 | tee .e2e.log | grep --line-buffered -E '^(=== RUN|--- |PASS|FAIL|ok|panic|e2e:|\s+\S+_test.go)' ; exit $${PIPESTATUS[0]}

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
