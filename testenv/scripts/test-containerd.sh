#!/usr/bin/env bash
# Shell-level test with containerd's own client: a private containerd
# (Debian's 1.6, its own root, state and socket, the native snapshotter, no
# CRI) and `ctr images pull`, against Debian's docker-registry as the
# backend.
#  1. Mirror mode: a hosts.toml for the backend's host:port names the
#     mirror (pull, resolve). containerd sends no request to the backend;
#     every blob GET there is dtrcache's; the image digest containerd
#     records is the backend's. The image and its content removed, a second
#     pull is served from the store (no new blob GET at the backend).
#  2. The misconfiguration the README warns about: a hosts.toml for
#     another name of the same registry (localhost:PORT), so containerd's
#     ?ns= is one the mirror does not know. The mirror refuses, warns once
#     and counts it; containerd pulls from the registry itself.
#  3. The DTR flow: `ctr --user alice` pulls through the origin, whose 307s
#     send containerd to the cache registered for alice.
source "$(dirname "$0")/lib.sh"

{ command -v containerd && command -v ctr; } >/dev/null || fail "containerd and ctr not installed (make deps)"

REG_PORT=$(free_port)
REG=127.0.0.1:$REG_PORT
MIRROR=127.0.0.1:$(free_port)
REPO=website/ui
REF=$REG/$REPO:3-stable

# --- containerd, private to this test.
CTRD=$WORK/containerd
SOCK=$CTRD/containerd.sock
mkdir -p "$CTRD"
cat >"$CTRD/config.toml" <<TOML
version = 2
# No CRI; no snapshotter that needs a kernel feature, a filesystem or a
# device (pulls unpack with "native", plain copies); no /opt plugin dir.
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.internal.v1.opt",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.overlayfs",
  "io.containerd.snapshotter.v1.zfs",
]
TOML
bg containerd containerd --config "$CTRD/config.toml" --root "$CTRD/root" --state "$CTRD/state" --address "$SOCK"
CTRDPID=${PIDS[-1]}
ctr_() { ctr --address "$SOCK" --namespace dtrtest "$@"; }
ctrd_up() { kill -0 "$CTRDPID" 2>/dev/null || fail "containerd exited: $(tail -n 5 "$WORK/containerd.log")"; ctr_ version >/dev/null 2>&1; }
wait_for "containerd did not answer on $SOCK" ctrd_up
pass "containerd $(ctr_ version | awk '/Version:/ {v = $2} END {print v}') answers on its own socket (root, state in the test's directory; native snapshotter)"

# pull REF [ARGS...] pulls REF with ctr into the native snapshotter
# (output in $WORK/pull.log) and sets SECS to the seconds it took.
pull() {
	local ref=$1 t0
	shift
	t0=$(date +%s%N)
	ctr_ images pull --plain-http --snapshotter native "$@" "$ref" >"$WORK/pull.log" 2>&1 ||
		fail "ctr images pull $* $ref: $(tail -n 5 "$WORK/pull.log")"
	SECS=$(awk -v a="$t0" -v b="$(date +%s%N)" 'BEGIN {printf "%.2f", (b - a) / 1e9}')
}
# image_digest prints the digest containerd recorded for REF.
image_digest() { ctr_ images ls "name==$1" | awk 'NR == 2 {print $3}'; }
# forget REF removes the image and lets containerd's garbage collector
# delete its content and snapshots; nothing may be left.
forget() {
	ctr_ images rm --sync "$1" >/dev/null
	[ -z "$(ctr_ content ls -q)" ] || fail "content left after ctr images rm --sync: $(ctr_ content ls -q | tr '\n' ' ')"
	[ -z "$(ctr_ snapshots --snapshotter native ls | tail -n +2)" ] || fail "snapshots left after ctr images rm --sync: $(ctr_ snapshots --snapshotter native ls)"
}
# backend_since N prints the backend's access-log lines after the first N.
backend_lines() { grep -c '" [0-9][0-9][0-9] ' "$WORK/registry.log" || true; }
backend_since() { grep '" [0-9][0-9][0-9] ' "$WORK/registry.log" | tail -n +$(($1 + 1)) || true; }
# Of those lines: the blob GETs of repository $2, and the lines whose
# User-Agent (the last quoted field) is not dtrcache's.
blob_gets() { backend_since "$1" | grep -c "\"GET /v2/$2/blobs/sha256:" || true; }
not_dtrcache() { backend_since "$1" | awk -F'"' '$(NF-1) !~ /^dtrcache\//'; }
foreign_blob_gets() { not_dtrcache "$1" | grep "\"GET /v2/$2/blobs/sha256:" || true; }

# --- the backend, its image, the mirror.
start_docker_registry registry "$REG"
seed=$(go_tool ./testenv/cmd/seed)
"$seed" --registry "$REG" --image "$REPO:3-stable" --layers 3 --size 2MiB --realistic --seed 42 >"$WORK/seed.out"
manifest=$(awk '/^manifest/{print $2}' "$WORK/seed.out")
nblobs=$(($(sed -n 's/^layers //p' "$WORK/seed.out" | wc -w) + 1))
head=$(curl -sfI -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
	"http://$REG/v2/$REPO/manifests/3-stable" | tr -d '\r' | awk -F': ' 'tolower($1) == "docker-content-digest" {print $2}')
[ "$head" = "$manifest" ] || fail "the backend's manifest digest is '$head', the seed pushed $manifest"

start_mirror mirror "$MIRROR" "$REG"

# hosts_toml NAME SERVER writes containerd's hosts.toml for registry NAME
# (its directory under $WORK/hosts): the mirror first, then SERVER.
hosts_toml() {
	mkdir -p "$WORK/hosts/$1"
	cat >"$WORK/hosts/$1/hosts.toml" <<TOML
server = "http://$2"

[host."http://$MIRROR"]
  capabilities = ["pull", "resolve"]
TOML
}
served() { metric "$MIRROR" 'dtrcache_blob_requests_total{mode="mirror",result="'"$1"'"}'; }

# --- 1. mirror mode, cold then warm.
hosts_toml "$REG" "$REG"
mark=$(backend_lines)
pull "$REF" --hosts-dir "$WORK/hosts"
cold_secs=$SECS
wait_for "the backend logged $(blob_gets "$mark" "$REPO") blob GETs, want $nblobs" test "$(blob_gets "$mark" "$REPO")" -ge "$nblobs"
[ "$(blob_gets "$mark" "$REPO")" -eq "$nblobs" ] || fail "cold pull: $(blob_gets "$mark" "$REPO") blob GETs at the backend, want $nblobs (one fill per blob)"
[ -z "$(not_dtrcache "$mark")" ] || fail "cold pull: requests at the backend not from dtrcache: $(not_dtrcache "$mark")"
[ "$(image_digest "$REF")" = "$manifest" ] || fail "containerd recorded $(image_digest "$REF") for $REF, the backend has $manifest"
cold_how="miss $(served miss), joined $(served joined), hit $(served hit)" # hits: the prefetch the manifest's GET started had finished
cold_served=$(($(served miss) + $(served joined) + $(served hit)))
[ "$cold_served" -eq "$nblobs" ] || fail "cold pull: the mirror served $cold_served blobs to containerd, want $nblobs"
pass "ctr images pull $REF (hosts.toml -> mirror): ${cold_secs}s; containerd sent no request to the backend, $nblobs blob GETs there all dtrcache's, $cold_served blobs served by the mirror ($cold_how); image digest $manifest = the backend's"

forget "$REF"
mark=$(backend_lines)
hits=$(served hit)
pull "$REF" --hosts-dir "$WORK/hosts"
[ "$(blob_gets "$mark" "$REPO")" -eq 0 ] || fail "warm pull: $(blob_gets "$mark" "$REPO") blob GETs at the backend, want 0"
[ -z "$(not_dtrcache "$mark")" ] || fail "warm pull: requests at the backend not from dtrcache: $(not_dtrcache "$mark")"
[ $(($(served hit) - hits)) -eq "$nblobs" ] || fail "warm pull: the mirror served $(($(served hit) - hits)) blobs from its store, want $nblobs"
[ "$(image_digest "$REF")" = "$manifest" ] || fail "warm pull: containerd recorded $(image_digest "$REF")"
pass "image, content and snapshots removed from containerd (ctr images rm --sync), pulled again: ${SECS}s, 0 blob GETs at the backend, $nblobs blobs from the mirror's store"
forget "$REF"

# --- 2. a registry name the mirror does not know: ?ns=localhost:PORT.
alias=localhost:$REG_PORT
hosts_toml "$alias" "$alias"
mark=$(backend_lines)
unknown=$(metric "$MIRROR" dtrcache_mirror_unknown_ns_requests_total)
pull "$alias/$REPO:3-stable" --hosts-dir "$WORK/hosts"
refused=$(($(metric "$MIRROR" dtrcache_mirror_unknown_ns_requests_total) - unknown))
logged=$(grep -c '"status":404,.*"error":"404 NAME_UNKNOWN: this cache does not mirror '"$alias"'"' "$WORK/mirror.log" || true)
direct=$(backend_since "$mark" | awk -F'"' '$(NF-1) ~ /^containerd\// && $2 ~ /^GET \/v2\/'"${REPO//\//\\/}"'\/blobs\/sha256:/' | wc -l)
warned=$(grep -c '"ns":"'"$alias"'"' "$WORK/mirror.log" || true)
# containerd 1.6 tries the mirror first for every request (the tag's HEAD,
# the manifest's GET by digest, each blob's GET) and, on the 404, the
# registry itself: one refusal per request, none remembered.
[ "$refused" -eq $((nblobs + 2)) ] || fail "ns=$alias: dtrcache_mirror_unknown_ns_requests_total counted $refused, want $((nblobs + 2)) (the manifest's HEAD and GET, $nblobs blob GETs)"
[ "$logged" -eq "$refused" ] || fail "ns=$alias: the mirror's access log has $logged NAME_UNKNOWN 404s, the metric $refused"
[ "$warned" -eq 1 ] || fail "ns=$alias: the mirror's log names it $warned times, want one warning"
grep '"ns":"'"$alias"'"' "$WORK/mirror.log" | grep -q '"level":"warn"' || fail "ns=$alias: the mirror's log line is not a warning"
[ "$direct" -eq "$nblobs" ] || fail "ns=$alias: containerd fetched $direct blobs from the backend itself, want $nblobs"
[ "$(image_digest "$alias/$REPO:3-stable")" = "$manifest" ] || fail "ns=$alias: containerd recorded $(image_digest "$alias/$REPO:3-stable")"
pass "hosts.toml for $alias (ns unknown to the mirror): the pull succeeds (${SECS}s) past the mirror, containerd fetched all $direct blobs from the backend itself; the mirror refused all $refused of containerd's requests (404 NAME_UNKNOWN; the manifest's HEAD and GET, $nblobs blob GETs), counted $refused in dtrcache_mirror_unknown_ns_requests_total, and warned once"
forget "$alias/$REPO:3-stable"

# --- 3. the DTR flow: origin + cache, alice's profile names the cache.
start_origin_cache "$REG"
"$seed" --registry "$ORIGIN" --user admin --password "$PW" --image website/api:1 --layers 3 --size 2MiB --realistic --seed 7 \
	--api "http://$ORIGIN" --cache asia --cache-host "http://$CACHE" --cache-account cache-asia --cache-users alice >"$WORK/seed-origin.out" 2>&1 ||
	fail "push through the origin: $(cat "$WORK/seed-origin.out")"
api_manifest=$(awk '/^manifest/{print $2}' "$WORK/seed-origin.out")
asia_up() { [ "$(metric "$ORIGIN" 'dtrcache_origin_cache_node_up{cache="asia"')" -eq 1 ]; }
wait_for "the origin does not take cache asia as up (dtrcache_origin_cache_node_up)" asia_up
redirected() { metric "$ORIGIN" 'dtrcache_origin_redirects_total{cache="asia"}'; }
cache_served() { metric "$CACHE" 'dtrcache_blob_requests_total{mode="redirect"'; }
mark=$(backend_lines)
r0=$(redirected) c0=$(cache_served)
pull "$ORIGIN/website/api:1" --user "alice:$PW"
wait_for "the backend logged $(blob_gets "$mark" website/api) blob GETs of website/api, want $nblobs" test "$(blob_gets "$mark" website/api)" -ge "$nblobs"
[ "$(blob_gets "$mark" website/api)" -eq "$nblobs" ] || fail "origin pull: $(blob_gets "$mark" website/api) blob GETs at the backend, want $nblobs"
# The origin passes manifest requests through (with containerd's
# User-Agent); a blob GET at the backend must be dtrcache's own.
[ -z "$(foreign_blob_gets "$mark" website/api)" ] || fail "origin pull: blob GETs at the backend not from dtrcache: $(foreign_blob_gets "$mark" website/api)"
[ $(($(redirected) - r0)) -eq "$nblobs" ] || fail "origin pull: the origin redirected $(($(redirected) - r0)) blobs to asia, want $nblobs"
[ $(($(cache_served) - c0)) -eq "$nblobs" ] || fail "origin pull: the cache served $(($(cache_served) - c0)) blobs, want $nblobs"
[ "$(image_digest "$ORIGIN/website/api:1")" = "$api_manifest" ] || fail "origin pull: containerd recorded $(image_digest "$ORIGIN/website/api:1"), the backend has $api_manifest"
pass "ctr images pull --user alice $ORIGIN/website/api:1: ${SECS}s; the origin 307'd all $nblobs blobs to cache asia, which served them; $nblobs blob GETs at the backend, all dtrcache's (the cache's fills through the origin); digest $api_manifest"
forget "$ORIGIN/website/api:1"
mark=$(backend_lines)
hits=$(metric "$CACHE" 'dtrcache_blob_requests_total{mode="redirect",result="hit"}')
pull "$ORIGIN/website/api:1" --user "alice:$PW"
[ "$(blob_gets "$mark" website/api)" -eq 0 ] || fail "origin pull again: $(blob_gets "$mark" website/api) blob GETs at the backend, want 0"
[ $(($(metric "$CACHE" 'dtrcache_blob_requests_total{mode="redirect",result="hit"}') - hits)) -eq "$nblobs" ] || fail "origin pull again: the cache's store did not serve all $nblobs blobs"
pass "pulled again through the origin: ${SECS}s, 0 blob GETs at the backend, $nblobs blobs from the cache's store"
forget "$ORIGIN/website/api:1"
