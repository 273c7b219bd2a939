# Floe — the two commands a new user needs are `make run` and `make test`.
SHELL := /bin/bash
GO ?= go
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
# Packages with goroutines of their own run under the race detector; the rest
# (mostly end-to-end tests whose clients dominate the runtime) run without it.
RACE_PKGS := ./wal/... ./agent/... ./catalog/... ./objstore/... ./segment/... ./compaction/... ./cmd/...
TEST_TIMEOUT ?= 20m

.PHONY: all build run test test-go lint services services-stop bench fuzz clean

all: build

build:
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o bin/floe ./cmd/floe

## run: one agent on localhost:9092 with a local-directory bucket and SQLite
## catalog under ./floe-data (the embedded default).
run: build
	./bin/floe dev

## test: install and start PostgreSQL, MinIO, fake-gcs-server and kcat, then
## run every test. Services are stopped afterwards whatever the outcome.
test:
	@scripts/services.sh start
	@set -o pipefail; eval "$$(scripts/services.sh env)"; \
	  rc=0; $(MAKE) --no-print-directory test-go || rc=$$?; \
	  scripts/services.sh stop; exit $$rc

test-go: lint
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) $(RACE_PKGS)
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) $$($(GO) list ./... | grep -vE '^github.com/floebroker/floe/(wal|agent|catalog|objstore|segment|compaction|cmd)(/|$$)')

lint:
	@out=$$(gofmt -l $$(find . -name '*.go' -not -path './.build/*')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

services:
	scripts/services.sh start

services-stop:
	scripts/services.sh stop

## bench: the benchmark harness (kfake baseline vs Floe setups); writes BENCHMARKS.md.
bench:
	@scripts/services.sh start
	@eval "$$(scripts/services.sh env)"; rc=0; \
	  $(GO) run ./cmd/floe bench -out BENCHMARKS.md || rc=$$?; \
	  scripts/services.sh stop; exit $$rc

## fuzz: run each fuzz target briefly.
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list 'Fuzz.*' $$pkg 2>/dev/null | grep '^Fuzz'); do \
	    $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime 20s $$pkg || exit 1; \
	  done; \
	done

clean:
	rm -rf bin .build
