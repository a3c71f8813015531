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

# wait_for DESC CMD... runs CMD every 0.1 s until it succeeds, for at most
# 15 s, and fails naming DESC if it never does.
wait_for() {
	local desc=$1
	shift
	for _ in $(seq 1 150); do
		if "$@"; then return 0; fi
		sleep 0.1
	done
	fail "$desc (waited 15 s)"
}

# metric prints the sum of the samples on /metrics of the server at $1
# (host:port) whose line starts with $2 (a name, or a name and a prefix of
# its labels).
metric() { curl -s "http://$1/metrics" | awk -v m="$2" 'index($0, m) == 1 {s += $NF} END {print s + 0}'; }

# make_test_pki DIR SANS makes a throwaway test CA ($DIR/ca.crt, ca.key) and
# a TLS server certificate for registry.test signed by it ($DIR/registry.crt,
# registry.key), valid for a day, with the subjectAltName list SANS (e.g.
# "DNS:registry.test,IP:127.0.0.1"). $DIR/certs/ca.crt is a copy of the CA
# for clients that take a directory of certificates (skopeo --src-cert-dir).
make_test_pki() {
	local dir=$1 sans=$2
	mkdir -p "$dir/certs"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj "/CN=dtrcache registry test CA" \
		-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign \
		-keyout "$dir/ca.key" -out "$dir/ca.crt" 2>/dev/null || fail "openssl: the test CA"
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=registry.test" \
		-keyout "$dir/registry.key" -out "$dir/registry.csr" 2>/dev/null || fail "openssl: the registry.test key"
	openssl x509 -req -in "$dir/registry.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial -days 1 -out "$dir/registry.crt" \
		-extfile <(printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature\n' "$sans") 2>/dev/null || fail "openssl: the registry.test certificate"
	cp "$dir/ca.crt" "$dir/certs/ca.crt"
}

# start_docker_registry NAME ADDR runs Debian's docker-registry on ADDR
# (host:port, plain HTTP) with its storage in $WORK/NAME and its access
# log (the combined format: the request line, then the referer and the
# User-Agent in quotes) in $WORK/NAME.log, and waits until it answers.
start_docker_registry() {
	local name=$1 addr=$2
	cat >"$WORK/$name.yml" <<YAML
version: 0.1
log: {level: info, accesslog: {disabled: false}}
storage: {filesystem: {rootdirectory: $WORK/$name}, delete: {enabled: true}}
http: {addr: $addr}
YAML
	bg "$name" docker-registry serve "$WORK/$name.yml"
	wait_http "http://$addr/v2/"
}

# start_mirror NAME ADDR UPSTREAM [YAML] runs `dtrcache cache` in mirror mode
# on ADDR (host:port) with the one upstream http://UPSTREAM (named
# "backend"), its store in $WORK/NAME, its configuration in $WORK/NAME.yml
# (YAML, if given, appended: more top-level keys) and its log in
# $WORK/NAME.log, and waits until it answers. Its process is ${PIDS[-1]}.
start_mirror() {
	local name=$1 addr=$2 upstream=$3 extra=${4:-}
	cat >"$WORK/$name.yml" <<YAML
log: {level: info, format: json}
http: {addr: $addr}
storage: {root: $WORK/$name}
mirror:
  upstreams:
    - name: backend
      url: http://$upstream
$extra
YAML
	bg "$name" "$BIN" cache --config "$WORK/$name.yml"
	wait_http "http://$addr/healthz"
}

# start_origin_cache BACKEND runs `dtrcache origin` in front of the
# registry at BACKEND (host:port, plain HTTP) and `dtrcache cache` "asia"
# in redirect mode behind it, on free ports (ORIGIN and CACHE are set to
# them), and waits for both (logs: $WORK/origin.log, $WORK/cache.log). The
# accounts admin, alice, bob and cache-asia have the password $PW; team
# web (alice, bob) pulls website/**, the cache's account pulls everything.
# The cache is not registered at the origin yet.
start_origin_cache() {
	local backend=$1 u
	ORIGIN=127.0.0.1:$(free_port)
	CACHE=127.0.0.1:$(free_port)
	PW=dtrcache-demo-pw
	"$BIN" keys generate --dir "$WORK/keys" >/dev/null
	for u in admin alice bob cache-asia; do echo "$PW" | "$BIN" htpasswd --cost 4 "$u"; done >"$WORK/htpasswd"
	cat >"$WORK/policy.yml" <<YAML
admins: [admin]
teams:
  - {name: web, members: [alice, bob]}
  - {name: caches, members: [cache-asia]}
repositories:
  - pattern: "website/**"
    grants: [{team: web, actions: [pull]}]
  - pattern: "**"
    grants: [{team: caches, actions: [pull]}]
YAML
	cat >"$WORK/origin.yml" <<YAML
log: {level: info, format: json}
http: {addr: $ORIGIN}
backend: {url: http://$backend}
auth: {htpasswd: $WORK/htpasswd}
policy: $WORK/policy.yml
data_dir: $WORK/origin
keys: {dir: $WORK/keys, issuer: origin}
caches: {health_interval: 1s}
YAML
	echo "$PW" >"$WORK/cache-password"
	cat >"$WORK/cache.yml" <<YAML
name: asia
log: {level: info, format: json}
http: {addr: $CACHE}
storage: {root: $WORK/cache}
redirect:
  upstreams: [http://$ORIGIN]
  username: cache-asia
  password_file: $WORK/cache-password
  issuer: origin
YAML
	bg origin "$BIN" origin --config "$WORK/origin.yml"
	wait_http "http://$ORIGIN/healthz"
	bg cache "$BIN" cache --config "$WORK/cache.yml"
	wait_http "http://$CACHE/healthz"
}

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
