#!/usr/bin/env bash
# lib.sh: helpers for dtrcache's shell-level tests. Source it; it sets up a
# work directory and kills every background process on exit.
set -euo pipefail

WORK=$(mktemp -d "${TMPDIR:-/tmp}/dtrcache-test.XXXXXX")
PIDS=()
cleanup() {
	local rc=$?
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	if [ "$rc" -ne 0 ]; then
		echo "--- logs in $WORK (kept) ---"
		for f in "$WORK"/*.log; do [ -e "$f" ] && { echo "== $f"; tail -n 40 "$f"; }; done
	else
		rm -rf "$WORK"
	fi
	exit "$rc"
}
trap cleanup EXIT

# free_port prints a free TCP port on loopback.
free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# bg runs a command in the background with its output in $WORK/<name>.log.
bg() {
	local name=$1; shift
	"$@" >"$WORK/$name.log" 2>&1 &
	PIDS+=($!)
}

# wait_http waits until a URL answers (any HTTP status).
wait_http() {
	local url=$1 i
	for i in $(seq 1 150); do
		if curl -s -o /dev/null "$url"; then return 0; fi
		sleep 0.1
	done
	echo "FAIL: $url did not answer" >&2
	return 1
}

fail() { echo "FAIL: $*" >&2; exit 1; }
pass() { echo "ok: $*"; }

# start_nginx runs Debian's nginx in the background on the site file
# $WORK/nginx/$1 (which listens on $LB and answers /nginx-health), logging
# each request in $WORK/nginx-access.log with the format $2 (none when it is
# empty), and waits until it answers. NGINXPID is its process.
start_nginx() {
	local site=$1 format=${2:-} user="" log="access_log off;"
	[ "$(id -u)" -ne 0 ] || user="user root;" # workers must reach $WORK (0700)
	[ -z "$format" ] || log="log_format lb '$format'; access_log $WORK/nginx-access.log lb;"
	mkdir -p "$WORK/nginx"
	cat >"$WORK/nginx/nginx.conf" <<NGINX
$user
worker_processes 2;
error_log $WORK/nginx-error.log warn;
pid $WORK/nginx/nginx.pid;
events { worker_connections 1024; }
http {
  $log
  client_body_temp_path $WORK/nginx/body;
  proxy_temp_path $WORK/nginx/proxy;
  fastcgi_temp_path $WORK/nginx/fcgi;
  uwsgi_temp_path $WORK/nginx/uwsgi;
  scgi_temp_path $WORK/nginx/scgi;
  include $WORK/nginx/$site;
}
NGINX
	nginx -t -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" >"$WORK/nginx-t.log" 2>&1 || { cat "$WORK/nginx-t.log"; fail "nginx -t"; }
	bg nginx nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -g "daemon off;"
	NGINXPID=${PIDS[-1]}
	wait_http "http://$LB/nginx-health"
}

# go_tool builds a helper program of this repository into $WORK/bin.
go_tool() {
	local pkg=$1 name
	name=$(basename "$pkg")
	mkdir -p "$WORK/bin"
	[ -x "$WORK/bin/$name" ] || go build -o "$WORK/bin/$name" "$pkg"
	echo "$WORK/bin/$name"
}

: "${BIN:=$(pwd)/bin/dtrcache}"
[ -x "$BIN" ] || fail "dtrcache binary $BIN not built (run make build)"

# conformance_ranges_pass fails unless every range test of an OCI
# conformance run (its junit.xml) passed — none skipped, as the suite
# records "range 500-0" answered with the whole blob instead of 416.
conformance_ranges_pass() {
	python3 - "$1" <<'PY' || fail "conformance: range tests did not all pass"
import sys, xml.etree.ElementTree as ET
cases = [c for c in ET.parse(sys.argv[1]).iter("testcase") if c.get("name", "").rsplit("/", 1)[-1].startswith("range ")]
names = {c.get("name").rsplit("/", 1)[-1] for c in cases}
for want in ("range 500-1499", "range -500", "range 500-0", "range 5000-10000"):
    if want not in names:
        sys.exit("no result for the conformance test %r (have %r)" % (want, sorted(names)))
bad = [(c.get("name"), c.get("status")) for c in cases if c.get("status") != "passed"]
if bad:
    sys.exit("conformance range tests not passed: %r" % bad)
PY
}
