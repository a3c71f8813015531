#!/usr/bin/env bash
# Downtime of a crash at 1,000,000 blobs (part of make bench-store): a
# `dtrcache cache` mirror on the store BenchmarkHit1M seeded (in
# $CASSTORE_BENCH_DIR or the temp dir), killed with SIGKILL, started again,
# and timed from the kill to the first /readyz 200 and to the log line that
# the background reconciliation ended. Then stopped with SIGTERM (a clean
# shutdown, so the seeded store stays reusable). ROUNDS (3) kills.
cd "$(dirname "$0")/../.."
go build -o bin/dtrcache ./cmd/dtrcache
source testenv/scripts/lib.sh
STORE=${CASSTORE_BENCH_DIR:-${TMPDIR:-/tmp}}/dtrcache-bench-1m
[ -f "$STORE/digests.txt" ] || fail "no 1M-blob store in $STORE: run the Hit1M benchmark first (make bench-store)"
ROUNDS=${ROUNDS:-3}
mkdir -p "$WORK/root"
ln -s "$STORE" "$WORK/root/mirror"
API=127.0.0.1:$(free_port)
cat >"$WORK/cache.yml" <<YAML
log: {level: info, format: json}
http: {addr: "$API"}
storage: {root: "$WORK/root"}
mirror: {upstreams: [{name: none, url: "http://127.0.0.1:9"}]}
YAML
now() { date +%s.%N; }
wait_ready() {
	local i
	for i in $(seq 1 6000); do
		[ "$(curl -s -o /dev/null -w '%{http_code}' "http://$API/readyz")" = 200 ] && return 0
		sleep 0.01
	done
	fail "/readyz never 200"
}
"$BIN" cache --config "$WORK/cache.yml" >"$WORK/cache-0.log" 2>&1 &
pid=$!
wait_ready
for r in $(seq 1 "$ROUNDS"); do
	kill -9 "$pid"
	wait "$pid" 2>/dev/null || true
	t0=$(now)
	"$BIN" cache --config "$WORK/cache.yml" >"$WORK/cache-$r.log" 2>&1 &
	pid=$!
	wait_ready
	t1=$(now)
	for i in $(seq 1 1200); do
		grep -q 'reconciled store after unclean shutdown' "$WORK/cache-$r.log" && break
		sleep 0.1
	done
	t2=$(now)
	grep -q 'reconciled store after unclean shutdown' "$WORK/cache-$r.log" || fail "reconciliation did not end in 120 s"
	printf 'round %d: SIGKILL → /readyz 200 in %.2f s; reconciliation ended after %.1f s\n' "$r" "$(echo "$t1 - $t0" | bc)" "$(echo "$t2 - $t0" | bc)"
done
kill -TERM "$pid"
wait "$pid" 2>/dev/null || true
[ -f "$STORE/clean-shutdown" ] || fail "store not closed cleanly"
