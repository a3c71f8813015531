#!/usr/bin/env bash
# The benchmark harness, CI-sized: every system (direct, dtrcache mirror
# and redirect, distribution's pull-through cache, nginx proxy_cache) and
# every scenario on small images over a fast emulated WAN, to prove the
# harness works end to end. The numbers of a quick run mean nothing; full
# runs (`go run ./benchmarks`) produce the README's table.
source "$(dirname "$0")/lib.sh"

go run ./benchmarks --quick --out "$WORK/bench" >"$WORK/bench.log" 2>&1 || { tail -n 40 "$WORK/bench.log"; fail "benchmark harness"; }
for f in report.md results.json; do [ -s "$WORK/bench/$f" ] || fail "no $f"; done
ls "$WORK/bench"/*.png >/dev/null 2>&1 || fail "no charts"
for s in direct dtrcache-mirror dtrcache-redirect distribution-proxy nginx; do
	grep -q "| $s" "$WORK/bench/report.md" || fail "no row for $s in the report"
done
for t in "Cold pull" "Warm pull" "16 clients" "Range read" "cut" "throughput"; do
	grep -qi "$t" "$WORK/bench/report.md" || fail "no section for $t"
done
python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); assert r["results"] and r["targets"]' "$WORK/bench/results.json" || fail "results.json incomplete"
pass "benchmark harness (quick): $(grep -c '^| ' "$WORK/bench/report.md") table rows, $(ls "$WORK/bench"/*.png | wc -l) charts"
