#!/usr/bin/env bash
# install-deps.sh installs what dtrcache's tests need on a fresh Debian machine:
# the Debian packages for the real peers and clients (skopeo, docker-registry,
# nginx, haproxy, wrk, prometheus, containerd, podman, chromium for the console's browser tests), the Go lint
# tools, helm, etcd, and the mirroring peers of the benchmarks (regsync, crane). It does
# nothing for what is already there.
set -euo pipefail

need=()
command -v skopeo >/dev/null 2>&1 || need+=(skopeo)
command -v docker-registry >/dev/null 2>&1 || need+=(docker-registry)
command -v nginx >/dev/null 2>&1 || need+=(nginx-light)
command -v haproxy >/dev/null 2>&1 || need+=(haproxy)     # checks the README's HAProxy mirror-fleet configuration
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)   # promtool and the server (deploy/ tests)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
command -v file >/dev/null 2>&1 || need+=(file)
# containerd's own client against the mirror and the origin (test-containerd.sh):
# a private containerd daemon and ctr, both in the package.
{ command -v containerd && command -v ctr; } >/dev/null 2>&1 || need+=(containerd)
# podman against the mirror and the forward proxy (test-podman.sh): Debian's
# 4.3, no daemon; the test gives it its own store and configuration files.
command -v podman >/dev/null 2>&1 || need+=(podman)
# The console's browser tests (proxy/console, chromedp) drive a headless Chromium.
command -v chromium >/dev/null 2>&1 || need+=(chromium fonts-dejavu-core)

if [ ${#need[@]} -gt 0 ]; then
	echo "install-deps: installing Debian packages: ${need[*]}"
	sudo=""
	[ "$(id -u)" -eq 0 ] || sudo="sudo"
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

gobin=$(go env GOPATH)/bin
if [ ! -x "$gobin/staticcheck" ]; then
	echo "install-deps: installing staticcheck"
	go install honnef.co/go/tools/cmd/staticcheck@v0.8.2
fi
if [ ! -x "$gobin/helm" ]; then
	# Compiles for minutes; once per machine.
	echo "install-deps: installing helm"
	go install helm.sh/helm/v3/cmd/helm@v3.22.0
fi
# etcd as a separate process (test-ha.sh, the redirect benchmark, the compose
# profile ha): the server at the version go.mod pins for testenv/etcdtest,
# built static from testenv/cmd/etcd.
if [ ! -x "$gobin/etcd" ]; then
	echo "install-deps: building etcd (testenv/cmd/etcd)"
	(cd "$(dirname "$0")/../.." && CGO_ENABLED=0 go build -trimpath -o "$gobin/etcd" ./testenv/cmd/etcd)
fi
# The mirroring benchmark's peers (benchmarks/, `make bench-report`, and the
# quick form in test-bench-quick.sh): regclient's regsync and
# go-containerregistry's crane at the version go.mod uses.
if [ ! -x "$gobin/regsync" ]; then
	echo "install-deps: installing regsync"
	go install github.com/regclient/regclient/cmd/regsync@v0.11.7
fi
if [ ! -x "$gobin/crane" ]; then
	echo "install-deps: installing crane"
	go install "github.com/google/go-containerregistry/cmd/crane@$(cd "$(dirname "$0")/../.." && go list -m -f '{{.Version}}' github.com/google/go-containerregistry)"
fi
