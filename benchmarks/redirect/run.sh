#!/usr/bin/env bash
# The origin's redirect path under load (make bench-redirect): wrk on
# loopback sends authorized blob GETs (Basic auth, blob.lua) to one
# `dtrcache origin` replica whose user has a healthy cache, and every answer
# must be a 307 to the cache. Run once with the Badger state and once with
# an etcd state (a one-member etcd server on loopback, WAL synced), same
# machine, same run. Prints requests per second and latency percentiles
# per store, as a Markdown table, and writes it to $OUT if set.
#
#   DURATION (15s) CONNS (64) THREADS (2) STORES ("badger etcd") OUT
# QUICK=1 makes it a smoke test (2s, 16 connections) that CI runs: it
# checks that every answer was a 307, not how fast.
cd "$(dirname "$0")/../.."
source testenv/scripts/lib.sh
command -v wrk >/dev/null || fail "wrk not installed (testenv/scripts/install-deps.sh)"
DURATION=${DURATION:-15s}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
STORES=${STORES:-badger etcd}
if [ -n "${QUICK:-}" ]; then DURATION=2s CONNS=16; fi
ETCD=${ETCD:-$(command -v etcd || echo "$(go env GOPATH)/bin/etcd")}
PW=bench-pw

REG=127.0.0.1:$(free_port)
cat >"$WORK/registry.yml" <<YAML
version: 0.1
log: {level: warn, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $WORK/registry}}
http: {addr: $REG}
YAML
bg registry docker-registry serve "$WORK/registry.yml"
wait_http "http://$REG/v2/"
"$BIN" keys generate --dir "$WORK/keys" >/dev/null
for u in admin alice cache-asia; do echo "$PW" | "$BIN" htpasswd --cost 10 "$u"; done >"$WORK/htpasswd"
cat >"$WORK/policy.yml" <<YAML
admins: [admin]
teams:
  - {name: web, members: [alice]}
  - {name: caches, members: [cache-asia]}
repositories:
  - {pattern: "website/**", grants: [{team: web, actions: [pull]}]}
  - {pattern: "**", grants: [{team: caches, actions: [pull]}]}
YAML
echo "$PW" >"$WORK/cache-password" && chmod 600 "$WORK/cache-password"
seed=$(go_tool ./testenv/cmd/seed)

# run STORE: one origin replica on STORE, its cache, wrk; prints a RESULT line.
run() {
	local store=$1 origin cache state
	origin=127.0.0.1:$(free_port)
	cache=127.0.0.1:$(free_port)
	case $store in
	badger) state="data_dir: $WORK/origin-badger" ;;
	etcd)
		[ -x "$ETCD" ] || fail "no etcd server at $ETCD (testenv/scripts/install-deps.sh installs it)"
		local client peer
		client=127.0.0.1:$(free_port)
		peer=127.0.0.1:$(free_port)
		bg etcd "$ETCD" --name bench --data-dir "$WORK/etcd" --listen-client-urls "http://$client" --advertise-client-urls "http://$client" \
			--listen-peer-urls "http://$peer" --initial-advertise-peer-urls "http://$peer" --initial-cluster "bench=http://$peer" --log-level warn
		ETCDPID=${PIDS[-1]}
		wait_http "http://$client/health"
		[ -e "$WORK/secrets.key" ] || { head -c 32 /dev/urandom >"$WORK/secrets.key" && chmod 600 "$WORK/secrets.key"; }
		state="state: {etcd: {endpoints: [http://$client], prefix: /bench/}}
policies: {secret_key: $WORK/secrets.key}"
		;;
	esac
	cat >"$WORK/origin-$store.yml" <<YAML
log: {level: info, format: json}
http: {addr: $origin}
backend: {url: http://$REG}
auth: {htpasswd: $WORK/htpasswd}
policy: $WORK/policy.yml
keys: {dir: $WORK/keys, issuer: origin}
caches: {health_interval: 1s}
$state
YAML
	cat >"$WORK/cache-$store.yml" <<YAML
name: asia
log: {level: warn, format: json}
http: {addr: $cache}
storage: {root: $WORK/cache-$store}
redirect: {upstreams: [http://$origin], username: cache-asia, password_file: $WORK/cache-password, issuer: origin}
YAML
	bg "origin-$store" "$BIN" origin --config "$WORK/origin-$store.yml"
	local opid=${PIDS[-1]}
	bg "cache-$store" "$BIN" cache --config "$WORK/cache-$store.yml"
	local cpid=${PIDS[-1]}
	wait_http "http://$origin/readyz"
	wait_http "http://$cache/readyz"
	"$seed" --registry "$origin" --user admin --password "$PW" --image website/ui:3-stable --layers 8 --size 64KiB --seed 7 \
		--api "http://$origin" --cache asia --cache-host "http://$cache" --cache-account cache-asia --cache-users alice >"$WORK/seed-$store.out" 2>&1 ||
		{ cat "$WORK/seed-$store.out"; fail "seed through the origin ($store)"; }
	local blobs="" d
	for d in $(awk '/^config/{print $2} /^layers/{for(i=2;i<=NF;i++) print $i}' "$WORK/seed-$store.out"); do
		blobs+="/v2/website/ui/blobs/$d "
	done
	local first=${blobs%% *} i code
	for i in $(seq 1 100); do
		code=$(curl -s -o /dev/null -w '%{http_code}' -u "alice:$PW" "http://$origin$first")
		[ "$code" = 307 ] && break
		sleep 0.1
	done
	[ "$code" = 307 ] || fail "$store: a blob GET by alice answered $code, want 307 (cache not healthy?)"
	BLOBS=$blobs AUTH=$(printf 'alice:%s' "$PW" | base64 -w0) wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency \
		-s benchmarks/redirect/blob.lua "http://$origin/" >"$WORK/wrk-$store.out" 2>&1 || { cat "$WORK/wrk-$store.out"; fail "wrk"; }
	local result
	result=$(grep '^RESULT' "$WORK/wrk-$store.out") || { cat "$WORK/wrk-$store.out"; fail "wrk printed no result"; }
	echo "$store $result"
	kill "$opid" "$cpid"
	wait "$opid" "$cpid" 2>/dev/null || true
	if [ "$store" = etcd ]; then kill "$ETCDPID"; wait "$ETCDPID" 2>/dev/null || true; fi
}

# run runs in this shell (not in a $(…) subshell), so every process it
# starts is in PIDS and killed on exit, also when it fails.
results=()
for s in $STORES; do
	run "$s" >"$WORK/result-$s"
	results+=("$(cat "$WORK/result-$s")")
done
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }
table="| state store | redirects/s | p50 | p99 | max | answers not 307 | socket errors |
|---|---|---|---|---|---|---|"
for r in "${results[@]}"; do
	others=$(field others "$r")
	[ "$others" = 0 ] || fail "${r%% *}: $others answers were not a 307 to the cache"
	[ "$(field redirects "$r")" -gt 0 ] || fail "${r%% *}: no redirects"
	table+="
| ${r%% *} | $(printf "%'d" "$(field rps "$r")") | $(field p50_ms "$r") ms | $(field p99_ms "$r") ms | $(field max_ms "$r") ms | $others | $(field errors "$r") |"
done
echo "wrk -t$THREADS -c$CONNS -d$DURATION, one origin replica, $(nproc) cores ($(uname -m)), $(date -u +%Y-%m-%d):"
echo "$table"
[ -z "${OUT:-}" ] || echo "$table" >"$OUT"
