# dtrcache — build, test and run targets. `make test` is what CI runs.
GO      ?= go
BIN     ?= bin/dtrcache
GOBIN   := $(shell $(GO) env GOPATH)/bin
export PATH := $(GOBIN):$(PATH)

.PHONY: all build deps lint test test-go test-shell bench fuzz clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN) ./cmd/dtrcache

deps:
	@testenv/scripts/install-deps.sh
	@$(GO) mod download

lint: deps
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	staticcheck ./...

test-go:
	$(GO) test -race -count=1 -timeout 15m ./...

test-shell: build
	@for t in testenv/scripts/test-*.sh; do [ -e "$$t" ] || continue; echo "== $$t"; BIN=$(abspath $(BIN)) bash "$$t" || exit 1; done

test: deps lint test-go test-shell

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./casstore/ ./proxy/

# fuzz runs every fuzz target for FUZZTIME each (default 20s).
FUZZTIME ?= 20s
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

clean:
	rm -rf bin dist
