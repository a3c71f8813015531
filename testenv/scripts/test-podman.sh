#!/usr/bin/env bash
# Shell-level test with podman (Debian's 4.3, no daemon): every podman call
# has its own store (--root, --runroot, --tmpdir under the test's
# directory, the vfs driver), a private registries.conf
# (CONTAINERS_REGISTRIES_CONF), containers.conf, storage.conf and
# signature policy, so the machine's configuration is neither read for
# registries nor written. The backend is Debian's docker-registry.
#  1. Mirror mode: registries.conf names the mirror as the backend's
#     [[registry.mirror]]. podman sends no request to the backend; every
#     blob GET there is dtrcache's; the image digest podman records is the
#     one the seed pushed. A second pull into a fresh store is served from
#     the mirror's store (no new blob GET at the backend).
#  2. HTTPS_PROXY: a TLS registry under a name only the cache's host map
#     knows (registry.test), podman trusting the office CA (--cert-dir):
#     the blobs come through the forward proxy, once from the registry.
#  3. A repository nobody pushed: podman fails (non-zero, naming the image)
#     after the mirror's 404 and the backend's own; the cache still answers.
source "$(dirname "$0")/lib.sh"

command -v podman >/dev/null || fail "podman not installed (make deps)"

REG=127.0.0.1:$(free_port)
MIRROR=127.0.0.1:$(free_port)
REPO=website/ui
TAG=3-stable
REF=$REG/$REPO:$TAG

# --- podman, private to this test.
P=$WORK/podman
mkdir -p "$P/tmp"
echo '{"default": [{"type": "insecureAcceptAnything"}]}' >"$P/policy.json"
echo "{}" >"$P/auth.json" # no credentials; --authfile keeps podman off the machine's
printf '[engine]\nevents_logger = "none"\n' >"$P/containers.conf"
# storage.conf must name both roots; each call's --root and --runroot override them.
printf '[storage]\ndriver = "vfs"\ngraphroot = "%s"\nrunroot = "%s"\n' "$P/default/root" "$P/default/run" >"$P/storage.conf"
cat >"$P/registries.conf" <<TOML
unqualified-search-registries = []

[[registry]]
location = "$REG"
insecure = true

[[registry.mirror]]
location = "$MIRROR"
insecure = true
TOML
export CONTAINERS_REGISTRIES_CONF=$P/registries.conf CONTAINERS_CONF=$P/containers.conf CONTAINERS_STORAGE_CONF=$P/storage.conf
# Not REGISTRY_AUTH_FILE: docker-registry takes REGISTRY_* variables as its configuration (auth.file).
# podman_ STORE ARGS... runs podman on the store $P/STORE.
podman_() {
	local s=$P/$1
	shift
	TMPDIR=$P/tmp podman --root "$s/root" --runroot "$s/run" --tmpdir "$s/tmp" --storage-driver vfs --events-backend none "$@"
}
# pull STORE REF [ARGS...] pulls REF into STORE (output in $WORK/pull.log)
# and sets SECS to the seconds it took.
pull() {
	local store=$1 ref=$2 t0
	shift 2
	t0=$(date +%s%N)
	podman_ "$store" pull --authfile "$P/auth.json" --signature-policy "$P/policy.json" "$@" "$ref" >"$WORK/pull.log" 2>&1 ||
		fail "podman pull $* $ref: $(tail -n 5 "$WORK/pull.log")"
	SECS=$(awk -v a="$t0" -v b="$(date +%s%N)" 'BEGIN {printf "%.2f", (b - a) / 1e9}')
}
image_digest() { podman_ "$1" image inspect --format '{{.Digest}}' "$2"; }

# backend_since N prints the backend's access-log lines after the first N.
backend_lines() { grep -c '" [0-9][0-9][0-9] ' "$WORK/$1.log" || true; }
backend_since() { grep '" [0-9][0-9][0-9] ' "$WORK/$1.log" | tail -n +$(($2 + 1)) || true; }
# Of those lines: the blob GETs of $REPO, and the lines whose User-Agent
# (the last quoted field) is not dtrcache's.
blob_gets() { backend_since "$1" "$2" | grep -c "\"GET /v2/$REPO/blobs/sha256:" || true; }
not_dtrcache() { backend_since "$1" "$2" | awk -F'"' '$(NF-1) !~ /^dtrcache\//'; }

# --- the backend, its image, the mirror.
start_docker_registry registry "$REG"
seed=$(go_tool ./testenv/cmd/seed)
"$seed" --registry "$REG" --image "$REPO:$TAG" --layers 3 --size 2MiB --realistic --seed 42 >"$WORK/seed.out"
manifest=$(awk '/^manifest/{print $2}' "$WORK/seed.out")
nblobs=$(($(sed -n 's/^layers //p' "$WORK/seed.out" | wc -w) + 1))
start_mirror mirror "$MIRROR" "$REG"
MIRRORPID=${PIDS[-1]}
served() { metric "$MIRROR" 'dtrcache_blob_requests_total{mode="mirror",result="'"$1"'"}'; }
pass "$(podman --version) with its own store, registries.conf ($REG mirrored by $MIRROR), containers.conf, storage.conf (vfs) and policy"

# --- 1. mirror mode: a cold pull, then a fresh store.
mark=$(backend_lines registry)
pull cold "$REF"
cold_secs=$SECS
wait_for "the backend logged $(blob_gets registry "$mark") blob GETs, want $nblobs" test "$(blob_gets registry "$mark")" -ge "$nblobs"
[ "$(blob_gets registry "$mark")" -eq "$nblobs" ] || fail "cold pull: $(blob_gets registry "$mark") blob GETs at the backend, want $nblobs (one fill per blob)"
[ -z "$(not_dtrcache registry "$mark")" ] || fail "cold pull: requests at the backend not from dtrcache (podman past the mirror?): $(not_dtrcache registry "$mark")"
[ "$(image_digest cold "$REF")" = "$manifest" ] || fail "podman recorded $(image_digest cold "$REF") for $REF, the seed pushed $manifest"
cold_how="miss $(served miss), joined $(served joined), hit $(served hit)" # hits: prefetches the manifest's GET started had finished
cold_served=$(($(served miss) + $(served joined) + $(served hit)))
[ "$cold_served" -eq "$nblobs" ] || fail "cold pull: the mirror served $cold_served blobs to podman, want $nblobs"
pass "podman pull $REF (registries.conf mirror): ${cold_secs}s; podman sent no request to the backend, $nblobs blob GETs there all dtrcache's, $cold_served blobs served by the mirror ($cold_how); image digest $manifest = the pushed one"

mark=$(backend_lines registry)
hits=$(served hit)
pull warm "$REF"
[ "$(blob_gets registry "$mark")" -eq 0 ] || fail "fresh store: $(blob_gets registry "$mark") blob GETs at the backend, want 0"
[ -z "$(not_dtrcache registry "$mark")" ] || fail "fresh store: requests at the backend not from dtrcache: $(not_dtrcache registry "$mark")"
[ $(($(served hit) - hits)) -eq "$nblobs" ] || fail "fresh store: the mirror served $(($(served hit) - hits)) blobs from its store, want $nblobs"
[ "$(image_digest warm "$REF")" = "$manifest" ] || fail "fresh store: podman recorded $(image_digest warm "$REF")"
pass "the same pull into a fresh podman store: ${SECS}s, 0 blob GETs at the backend, $nblobs blobs from the mirror's store, digest $manifest"

# --- 2. HTTPS_PROXY: registry.test over TLS, known only to the cache.
pki=$WORK/pki
make_test_pki "$pki" "DNS:registry.test,IP:127.0.0.1"
TLSREG=127.0.0.1:$(free_port)
PROXY=127.0.0.1:$(free_port)
API=127.0.0.1:$(free_port)
cat >"$WORK/tlsregistry.yml" <<YAML
version: 0.1
log: {level: info, accesslog: {disabled: false}}
storage: {filesystem: {rootdirectory: $WORK/tlsregistry}}
http: {addr: $TLSREG, tls: {certificate: $pki/registry.crt, key: $pki/registry.key}}
YAML
bg tlsregistry docker-registry serve "$WORK/tlsregistry.yml"
CURL_CA_BUNDLE=$pki/ca.crt wait_http "https://$TLSREG/v2/"
"$seed" --registry "$TLSREG" --image "$REPO:$TAG" --layers 3 --size 2MiB --realistic --seed 43 --insecure-tls >"$WORK/seed-tls.out"
tls_manifest=$(awk '/^manifest/{print $2}' "$WORK/seed-tls.out")
"$BIN" ca init --dir "$WORK/office" >/dev/null
mkdir -p "$WORK/office-certs" && "$BIN" ca cert --dir "$WORK/office" >"$WORK/office-certs/ca.crt"
cat >"$WORK/proxy.yml" <<YAML
log: {level: info, format: json}
http: {addr: $API}
storage: {root: $WORK/proxy}
forward_proxy:
  addr: $PROXY
  ca_dir: $WORK/office
  intercept: [registry.test]
  hosts: {registry.test: "$TLSREG"}
  allow_private: [127.0.0.0/8]   # the registry is on loopback in this test
  cas: [$pki/ca.crt]
YAML
bg proxy "$BIN" cache --config "$WORK/proxy.yml"
wait_http "http://$API/healthz"
wait_http "http://$PROXY/healthz"
proxied() { metric "$API" 'dtrcache_forward_requests_total{result="'"$1"'"}'; }
ppull() { HTTPS_PROXY=http://$PROXY https_proxy=http://$PROXY NO_PROXY= no_proxy= pull "$1" "registry.test/$REPO:$TAG" --cert-dir "$WORK/office-certs"; }

mark=$(backend_lines tlsregistry)
ppull proxy-cold
pcold_secs=$SECS
wait_for "the TLS registry logged $(blob_gets tlsregistry "$mark") blob GETs, want $nblobs" test "$(blob_gets tlsregistry "$mark")" -ge "$nblobs"
[ "$(blob_gets tlsregistry "$mark")" -eq "$nblobs" ] || fail "proxy cold pull: $(blob_gets tlsregistry "$mark") blob GETs at the registry, want $nblobs"
# The proxy's fills go out with the client's User-Agent (podman's), so the
# registry's log cannot tell them apart; the proxy's log says what it did.
fills=$(grep -c '"result":"\(miss\|joined\)","path":"/v2/'"$REPO"'/blobs/' "$WORK/proxy.log" || true)
[ "$fills" -eq "$nblobs" ] || fail "proxy cold pull: the proxy logged $fills blob misses/joins, want $nblobs"
[ "$(image_digest proxy-cold "registry.test/$REPO:$TAG")" = "$tls_manifest" ] || fail "proxy pull: podman recorded $(image_digest proxy-cold "registry.test/$REPO:$TAG"), the seed pushed $tls_manifest"
[ $(($(proxied miss) + $(proxied joined))) -eq "$nblobs" ] || fail "proxy cold pull: the proxy filled $(($(proxied miss) + $(proxied joined))) blobs, want $nblobs"
pass "HTTPS_PROXY=http://$PROXY podman pull registry.test/$REPO:$TAG --cert-dir (office CA): ${pcold_secs}s; $nblobs blob GETs at the registry (the proxy's fills: $fills misses/joins in its log); digest $tls_manifest = the pushed one"
mark=$(backend_lines tlsregistry)
hits=$(proxied hit)
ppull proxy-warm
[ "$(blob_gets tlsregistry "$mark")" -eq 0 ] || fail "proxy, fresh store: $(blob_gets tlsregistry "$mark") blob GETs at the registry, want 0"
[ $(($(proxied hit) - hits)) -eq "$nblobs" ] || fail "proxy, fresh store: $(($(proxied hit) - hits)) blobs from the proxy's store, want $nblobs"
[ "$(image_digest proxy-warm "registry.test/$REPO:$TAG")" = "$tls_manifest" ] || fail "proxy, fresh store: wrong digest"
pass "through HTTPS_PROXY into a fresh store: ${SECS}s, 0 blob GETs at the registry, $nblobs blobs from the proxy's store"

# --- 3. a repository nobody pushed.
missing=$REG/website/missing:1
mark=$(backend_lines registry)
t0=$(date +%s%N)
if podman_ cold pull --authfile "$P/auth.json" --signature-policy "$P/policy.json" "$missing" >"$WORK/missing.log" 2>&1; then
	fail "podman pull $missing succeeded"
fi
secs=$(awk -v a="$t0" -v b="$(date +%s%N)" 'BEGIN {printf "%.2f", (b - a) / 1e9}')
grep -q "$missing" "$WORK/missing.log" || fail "podman's error does not name $missing: $(cat "$WORK/missing.log")"
grep -q '"status":404' "$WORK/mirror.log" && grep '"status":404' "$WORK/mirror.log" | grep -q 'website/missing' ||
	fail "the mirror logged no 404 for website/missing"
# containers/image tries each mirror, then the registry itself: after the
# mirror's 404 podman asks the backend (its own User-Agent) and fails on its 404.
direct=$(backend_since registry "$mark" | awk -F'"' '$(NF-1) ~ /^containers\// && $2 ~ /\/v2\/website\/missing\/manifests\//' | wc -l)
[ "$direct" -ge 1 ] || fail "podman did not ask the backend itself after the mirror's 404: $(backend_since registry "$mark")"
kill -0 "$MIRRORPID" 2>/dev/null || fail "the mirror exited"
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://$MIRROR/healthz")" = 200 ] || fail "the mirror's /healthz is not 200 after the failed pull"
pull warm "$REF"
pass "podman pull $missing: exit non-zero in ${secs}s, \"$(grep -m1 -o 'Error: .*' "$WORK/missing.log" | cut -c1-140)\"; the mirror answered 404, podman then asked the backend itself ($direct manifest requests), which answered 404 too; the mirror still serves"
