#!/usr/bin/env bash
# The benchmark harness, CI-sized: every system (direct, dtrcache mirror
# and redirect, distribution's pull-through cache, nginx proxy_cache) and
# every scenario on small images over a fast emulated WAN, and the
# mirroring benchmark (dtrcache push mirroring, skopeo sync, regsync, crane
# copy) on a 24 MiB set, to prove the harness works end to end. The numbers of a quick run mean nothing; full
# runs (`go run ./benchmarks`) produce the README's table.
source "$(dirname "$0")/lib.sh"

go run ./benchmarks --quick --out "$WORK/bench" >"$WORK/bench.log" 2>&1 || { tail -n 40 "$WORK/bench.log"; fail "benchmark harness"; }
for f in report.md results.json; do [ -s "$WORK/bench/$f" ] || fail "no $f"; done
ls "$WORK/bench"/*.png >/dev/null 2>&1 || fail "no charts"
for s in direct dtrcache-mirror dtrcache-redirect distribution-proxy nginx; do
	grep -q "| $s" "$WORK/bench/report.md" || fail "no row for $s in the report"
done
for t in "Cold pull" "Warm pull" "16 clients" "Range read" "cut" "throughput" "resumes with a Range"; do
	grep -qi "$t" "$WORK/bench/report.md" || fail "no section for $t"
done
python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); assert r["results"] and r["targets"]' "$WORK/bench/results.json" || fail "results.json incomplete"
pass "benchmark harness (quick): $(grep -c '^| ' "$WORK/bench/report.md") table rows, $(ls "$WORK/bench"/*.png | wc -l) charts"
# The mirroring scenarios: every system mirrored the set digest-equal (a
# failed run has "(failed)" in its row), the cut and the promotion ran.
for f in mirror.md mirror.json mirror-shared.png mirror-per-conn.png; do [ -s "$WORK/bench/$f" ] || fail "no $f"; done
for s in dtrcache-push skopeo-sync regsync crane-copy; do
	grep -q "^| $s | [0-9.]* s |" "$WORK/bench/mirror.md" || fail "no successful mirror row for $s: $(grep "| $s" "$WORK/bench/mirror.md")"
done
grep -q '^| dtrcache-push | yes | ' "$WORK/bench/mirror.md" || fail "dtrcache did not complete the cut run"
python3 - "$WORK/bench/mirror.json" <<'PY' || fail "mirror.json: dtrcache's bytes or promotion"
import json, sys
r = json.load(open(sys.argv[1]))
u = r["unique_blob_bytes"]
for res in r["results"]:
    if res["system"] != "dtrcache-push":
        continue
    assert res["runs"], res
    m = res["median"]
    if res["scenario"] in ("mirror", "cut"):
        # The set's blobs cross once (headers add a little on 24 MiB).
        assert m["wan_bytes"] / u < 1.02, (res["scenario"], m["wan_bytes"] / u)
    if res["scenario"] == "promotion":
        assert m["blob_gets"] == 0 and m["requests_per_blob"] <= 2, m
PY
pass "mirroring benchmark (quick): $(grep -c '^| ' "$WORK/bench/mirror.md") table rows; dtrcache sent the set once, promoted with no blob read"
