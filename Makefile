# Tributary. The two set-up commands on a fresh Debian machine with Go:
#   make demo   # runs the pipeline end to end locally
#   make test   # runs every test (installs what it needs)
SHELL := /bin/bash
GO ?= go
BIN := $(CURDIR)/bin
PROTOC_GEN_GO_VERSION := v1.36.12
# Counted in executions, not seconds: a duration budget races the fuzz
# coordinator's deadline on go1.26 (go.dev/issue/75804) and fails at random.
FUZZTIME ?= 30000x

.PHONY: all build test fuzz deps servers demo demo-stop bench proto fmt vet clean images

all: build

build:
	$(GO) build -o $(BIN)/ ./cmd/...

deps:
	@bash scripts/install-deps.sh

# Test servers built from source once per version into ~/.cache/tributary
# (cold: Loki ~9 min, ZincSearch ~4 min, kube-apiserver + etcd ~15 min, Jaeger ~3 min,
# Prometheus 3 ~3 min on 2 cores; then instant).
servers:
	@bash scripts/build-loki.sh >/dev/null
	@bash scripts/build-zinc.sh >/dev/null
	@bash scripts/build-kube.sh >/dev/null
	@bash scripts/build-jaeger.sh >/dev/null
	@bash scripts/build-prometheus.sh >/dev/null

fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

# Every test, against real servers (kfake, Prometheus from Debian, and the
# servers built by scripts/), plus a short run of every fuzz target.
test: deps servers fmt vet
	$(GO) test -count=1 -timeout 25m ./...
	$(MAKE) fuzz

# One instrumented test binary per package, run once per target from the
# package's directory (where testdata/fuzz is) with the fuzz cache go test
# uses: the same runs as `go test -fuzz`, without a go invocation, package
# load and link per target.
fuzz:
	@set -e; bin=$$(mktemp -d); trap 'rm -rf "$$bin"' EXIT; cache=$$($(GO) env GOCACHE)/fuzz; \
	$(GO) list -f '{{.ImportPath}} {{.Dir}}' ./... | while read -r pkg dir; do \
	  targets=$$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go 2>/dev/null | sed 's/func //'); \
	  [ -n "$$targets" ] || continue; \
	  $(GO) test -c -fuzz=. -o "$$bin/fuzz.test" $$pkg; \
	  for f in $$targets; do \
	    echo "fuzz $$pkg $$f ($(FUZZTIME))"; \
	    (cd $$dir && "$$bin/fuzz.test" -test.run='^$$' -test.fuzz="^$$f$$" -test.fuzztime=$(FUZZTIME) -test.fuzzcachedir="$$cache/$$pkg") \
	      >/tmp/tributary-fuzz.log 2>&1 || { cat /tmp/tributary-fuzz.log; exit 1; }; \
	  done; \
	done

demo: deps build
	@bash scripts/demo.sh start

demo-stop:
	@bash scripts/demo.sh stop

# Load tool against the real pieces; table plus one JSON line (last).
# BENCH_SECONDS sets each phase's length (default 20: under 5 minutes, and
# ~4 more for the agent phase's two points at a 15 s scrape interval),
# BENCH_CONCURRENCY the load tool's senders (default 8), BENCH_PHASES a
# subset of the phases (e.g. BENCH_PHASES=agent; default all), BENCH_ARGS
# more flags of `loadgen bench` (e.g. -agent.targets=20).
BENCH_SECONDS ?= 20
BENCH_CONCURRENCY ?= 8
BENCH_PHASES ?=
BENCH_ARGS ?=
# The baselines built from the Go module proxy, vmagent for the agent
# phase (cold ~4 min), an OpenTelemetry Collector for the spans phase
# (cold ~10 min) and Promtail for the logs-agent phase (cold ~8 min on
# idle cores, over an hour on the loaded shared machine), are built here
# only (then cached), never by make test.
bench: deps build
	@vmagent=""; case ",$(BENCH_PHASES)," in ,,|*,agent,*) vmagent="$$(bash scripts/build-vmagent.sh)";; esac; \
	otelcol=""; case ",$(BENCH_PHASES)," in ,,|*,spans,*) otelcol="$$(bash scripts/build-otelcol.sh)";; esac; \
	promtail=""; case ",$(BENCH_PHASES)," in ,,|*,logs-agent,*) promtail="$$(bash scripts/build-promtail.sh)";; esac; \
	$(BIN)/loadgen bench -bin=$(BIN) -root=$(CURDIR) -seconds=$(BENCH_SECONDS) -concurrency=$(BENCH_CONCURRENCY) \
	  -phases="$(BENCH_PHASES)" -vmagent="$$vmagent" -otelcol="$$otelcol" -promtail="$$promtail" $(BENCH_ARGS)

# Container images, one per Dockerfile target, where docker or podman exists.
IMAGE_TAG ?= dev
images:
	@engine=$$(command -v docker || command -v podman) || { echo "make images: no docker or podman on this machine; nothing built"; exit 1; }; \
	for t in gateway ingester agent loadgen; do $$engine build --target $$t -t tributary/$$t:$(IMAGE_TAG) . || exit 1; done

# Regenerates proto/ Go code with pinned generators (protoc from Debian).
proto:
	@command -v protoc >/dev/null || { sudo=""; [ "$$(id -u)" -ne 0 ] && sudo=sudo; $$sudo apt-get update -qq && $$sudo apt-get install -y -qq --no-install-recommends protobuf-compiler; }
	GOBIN=$(BIN) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	PATH=$(BIN):$$PATH protoc --go_out=. --go_opt=module=github.com/tributary-io/tributary proto/record/v1/*.proto

clean:
	rm -rf $(BIN) .demo
