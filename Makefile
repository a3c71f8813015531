# dtrcache — build, test and run targets. `make test` is what CI runs.
GO      ?= go
BIN     ?= bin/dtrcache
GOBIN   := $(shell $(GO) env GOPATH)/bin
export PATH := $(GOBIN):$(PATH)

.PHONY: all build deps lint test test-go test-shell bench bench-store bench-report bench-state bench-redirect fuzz clean dist image up down demo release

IMAGE         ?= dtrcache:dev
TESTENV_IMAGE ?= dtrcache-testenv:dev
COMPOSE       ?= $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)
ETCD_IMAGE    ?= dtrcache-etcd:dev
TESTENV_TOOLS := registry wan seed probe splitproxy hainit

all: build

# Build stamps shown by `dtrcache version`. VERSION is the nearest v* tag
# (v0.0.0-<commit> without one); DATE is the commit's time, or
# SOURCE_DATE_EPOCH, so two builds of one commit are byte-identical.
DESCRIBE := $(shell git describe --tags --match 'v[0-9]*' --always --dirty --abbrev=12 2>/dev/null)
VERSION  ?= $(if $(filter v%,$(DESCRIBE)),$(DESCRIBE),v0.0.0-$(or $(DESCRIBE),unknown))
COMMIT   ?= $(shell git rev-parse HEAD 2>/dev/null)
DATE     ?= $(shell date -u -d @$${SOURCE_DATE_EPOCH:-$$(git log -1 --format=%ct 2>/dev/null || date +%s)} +%Y-%m-%dT%H:%M:%SZ)
STAMP    := -X main.version=$(VERSION) -X main.commit=$(COMMIT) -X main.date=$(DATE)

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(STAMP)' -o $(BIN) ./cmd/dtrcache

# release builds static, stripped binaries for PLATFORMS, their SHA256SUMS,
# and (where a Docker engine answers) the FROM scratch image per platform,
# saved next to them: see deploy/release.sh.
PLATFORMS   ?= linux/amd64 linux/arm64
RELEASE_DIR ?= dist/release
release:
	GO="$(GO)" VERSION="$(VERSION)" STAMP="$(STAMP)" PLATFORMS="$(PLATFORMS)" deploy/release.sh $(RELEASE_DIR)

deps:
	@testenv/scripts/install-deps.sh
	@$(GO) mod download

lint: deps
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	staticcheck ./...
	@# The store and the binary build beyond Linux (portable fallbacks in
	@# casstore/platform_other.go); the benchmark harness is Linux-only.
	GOOS=darwin $(GO) build ./...
	GOOS=windows $(GO) vet ./casstore/ ./cmd/... ./policy/ ./proxy/...

test-go:
	$(GO) test -race -count=1 -timeout 15m ./...

test-shell: build
	@for t in testenv/scripts/test-*.sh; do [ -e "$$t" ] || continue; echo "== $$t"; BIN=$(abspath $(BIN)) bash "$$t" || exit 1; done

test: deps lint test-go test-shell

# demo runs the US/Asia topology and pulls through it (DEMO_FLAGS, e.g.
# "--keep" or "--layers 8 --layer-size 64MiB"). The demo is a program of
# the test environment (testenv/cmd/demo), not part of bin/dtrcache. It
# compiles with build's settings (CGO_ENABLED=0, -trimpath), so the two
# share the build cache: a `make build` after it compiles only what the
# production binary adds, not every package again.
demo:
	CGO_ENABLED=0 $(GO) run -trimpath ./testenv/cmd/demo $(DEMO_FLAGS)

# bench runs the quick Go benchmarks; bench-store the ones that seed a
# million blobs or fill 4 GiB (minutes; the 1M-blob store is kept in the
# temp dir between runs), and the downtime of a SIGKILL at 1M blobs
# (benchmarks/restart); bench-report the comparison with peers.
bench:
	$(GO) test -run '^$$' -bench 'Fill|Evict100k|Warm' -benchmem ./casstore/ ./proxy/...

bench-store:
	CASSTORE_FILL_DIR=/dev/shm $(GO) test -run '^$$' -bench 'Hit1M|Open1M|Readers16|Fill' -benchtime 1x -timeout 60m ./casstore/
	$(GO) test -run '^$$' -bench 'Hit1M' -benchtime 200000x -timeout 60m ./casstore/
	bash benchmarks/restart/run.sh

bench-report: deps
	$(GO) run ./benchmarks --out benchmarks/results/latest

# bench-state compares the origin's state stores, Badger and an embedded
# etcd, in one run (transactions, job claims, watch latency).
bench-state:
	$(GO) test -run '^$$' -bench . -benchtime 2s -count 3 ./proxy/state/etcdstate/

# bench-redirect loads one origin replica's redirect path with wrk
# (authorized blob GETs answered 307), on Badger and on a one-member etcd
# process (benchmarks/redirect/run.sh; OUT=file writes the table).
bench-redirect: build
	BIN=$(abspath $(BIN)) benchmarks/redirect/run.sh

# fuzz runs every fuzz target for FUZZTIME each (default 20s).
FUZZTIME ?= 20s
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

# dist assembles the image build contexts (dtrcache, the test environment,
# etcd for the compose profile ha): static binaries, CA
# certificates and a non-root user, so the images build FROM scratch
# without pulling anything.
dist: build
	rm -rf dist && mkdir -p dist/dtrcache/var/lib/dtrcache dist/testenv/data dist/etcd/data
	cp $(BIN) dist/dtrcache/dtrcache
	for t in $(TESTENV_TOOLS); do CGO_ENABLED=0 $(GO) build -trimpath -o dist/testenv/$$t ./testenv/cmd/$$t || exit 1; done
	CGO_ENABLED=0 $(GO) build -trimpath -o dist/etcd/etcd ./testenv/cmd/etcd
	cp dist/testenv/probe dist/etcd/probe
	for d in dist/dtrcache dist/testenv dist/etcd; do \
	  cp /etc/ssl/certs/ca-certificates.crt $$d/ && \
	  printf 'root:x:0:0:root:/:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/var/lib/dtrcache:/sbin/nologin\n' > $$d/passwd && \
	  printf 'root:x:0:\nnonroot:x:65532:\n' > $$d/group; done

image: dist
	docker build -q -t $(IMAGE) -f Dockerfile dist/dtrcache
	docker build -q -t $(TESTENV_IMAGE) -f testenv/Dockerfile dist/testenv
	docker build -q -t $(ETCD_IMAGE) -f testenv/Dockerfile.etcd dist/etcd

# up starts the compose stack and waits until the seed job has finished.
up: image
	COMPOSE="$(COMPOSE)" testenv/scripts/compose-up.sh

down:
	$(COMPOSE) down -v --remove-orphans

clean:
	rm -rf bin dist
