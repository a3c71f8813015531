#!/usr/bin/env bash
# Shell-level test of the forward proxy (HTTPS_PROXY) with real parts.
# Registries served over TLS with htpasswd auth under non-loopback names
# (registry.test, registry3.test) that only the proxy's host map knows, so
# the clients really go through HTTPS_PROXY; their certificates come from a
# throwaway test CA that the proxy trusts (cas); clients trust the office
# CA made by `dtrcache ca init`.
#
#  1. skopeo copy through the proxy, cold then warm: digest-equal to a
#     direct copy; one blob GET per blob at the registry (Debian's
#     docker-registry, counted in its access log), none when warm.
#  2. 8 skopeo copies of a cold image at once: one blob GET per blob.
#  3. No credentials: 401 with the registry's challenge, though cached.
#  4. CONNECT to a host in neither list, and to 169.254.169.254:80: 403.
#     A tunnelled host: its own certificate and the same bytes.
#  5. The OCI distribution-spec conformance suite (pull, HEAD, range,
#     push, delete) against registry3.test through the proxy.
source "$(dirname "$0")/lib.sh"

REG=127.0.0.1:$(free_port)
REG3=127.0.0.1:$(free_port)
PROXY=127.0.0.1:$(free_port)
API=127.0.0.1:$(free_port)

# The registries' own TLS certificate, from a throwaway test CA.
pki=$WORK/pki
make_test_pki "$pki" "DNS:registry.test,DNS:registry3.test,DNS:tunnel.test,IP:127.0.0.1" # certs/ca.crt: skopeo --src-cert-dir for direct copies

echo pw | "$BIN" htpasswd --cost 4 alice >"$WORK/htpasswd"

cat >"$WORK/registry.yml" <<YAML
version: 0.1
log: {level: info, accesslog: {disabled: false}}
storage: {filesystem: {rootdirectory: $WORK/registry}, delete: {enabled: true}}
http: {addr: $REG, tls: {certificate: $pki/registry.crt, key: $pki/registry.key}}
auth: {htpasswd: {realm: dtrcache-test, path: $WORK/htpasswd}}
YAML
bg registry docker-registry serve "$WORK/registry.yml"
CURL_CA_BUNDLE=$pki/ca.crt wait_http "https://$REG/v2/"

seed=$(go_tool ./testenv/cmd/seed)
seed_image() { # seed_image IMAGE SEED OUT
	"$seed" --registry "$REG" --image "$1" --layers 3 --size 3MiB --seed "$2" --user alice --password pw --insecure-tls >"$3"
}
seed_image website/ui:3-stable 42 "$WORK/seed.out"
seed_image website/api:1 43 "$WORK/seed2.out"
blobs_of() { awk '/^config/{print $2} /^layers/{for(i=2;i<=NF;i++) print $i}' "$1"; }
manifest=$(awk '/^manifest/{print $2}' "$WORK/seed.out")

# The office CA and the cache with its forward proxy.
"$BIN" ca init --dir "$WORK/office" >/dev/null
"$BIN" ca cert --dir "$WORK/office" >"$WORK/office.crt"
mkdir -p "$WORK/office-certs" && cp "$WORK/office.crt" "$WORK/office-certs/ca.crt"
[ "$(stat -c %a "$WORK/office/ca.key")" = 600 ] || fail "office CA key is not 0600"
cat >"$WORK/cache.yml" <<YAML
log: {level: info, format: json}
http: {addr: $API}
storage: {root: $WORK/cache}
forward_proxy:
  addr: $PROXY
  ca_dir: $WORK/office
  intercept: [registry.test, registry3.test]
  tunnel: [tunnel.test]
  hosts: {registry.test: "$REG", registry3.test: "$REG3", tunnel.test: "$REG"}
  allow_private: [127.0.0.0/8]   # the registries are on loopback in this test
  cas: [$pki/ca.crt]
YAML
bg cache "$BIN" cache --config "$WORK/cache.yml"
wait_http "http://$API/healthz"
wait_http "http://$PROXY/healthz"

blob_gets() { grep -c "\"GET /v2/$1/blobs/$2 " "$WORK/registry.log" || true; }
all_blob_gets() { grep -c '"GET /v2/[^ ]*/blobs/sha256:' "$WORK/registry.log" || true; }
direct_copy() { env -u HTTPS_PROXY -u https_proxy skopeo copy --quiet --src-cert-dir "$pki/certs" --src-creds alice:pw "docker://$REG/$1" "dir:$WORK/$2"; }
proxy_copy() {
	HTTPS_PROXY=http://$PROXY https_proxy=http://$PROXY NO_PROXY= no_proxy= \
		skopeo copy --quiet --src-cert-dir "$WORK/office-certs" --src-creds alice:pw "docker://registry.test/$1" "dir:$WORK/$2"
}
now_ms() { date +%s%3N; }

# 1. Cold and warm copies.
direct_copy website/ui:3-stable direct
before=$(all_blob_gets)
t0=$(now_ms)
proxy_copy website/ui:3-stable cold
t1=$(now_ms)
cold=$(all_blob_gets)
proxy_copy website/ui:3-stable warm
t2=$(now_ms)
warm=$(all_blob_gets)
nblobs=$(blobs_of "$WORK/seed.out" | wc -l)
[ $((cold - before)) -eq "$nblobs" ] || fail "cold copy caused $((cold - before)) blob GETs at the registry, want $nblobs"
[ "$warm" -eq "$cold" ] || fail "warm copy caused $((warm - cold)) blob GETs at the registry, want 0"
for d in cold warm; do
	diff -r "$WORK/direct" "$WORK/$d" >/dev/null || fail "$d copy differs from the direct copy"
done
[ "sha256:$(sha256sum "$WORK/warm/manifest.json" | cut -d' ' -f1)" = "$manifest" ] || fail "manifest digest differs"
pass "skopeo through HTTPS_PROXY: cold ($((t1 - t0)) ms, $nblobs blob GETs) and warm ($((t2 - t1)) ms, 0 blob GETs) equal the direct copy; manifest $manifest"

# 2. Eight clients at once on a cold image.
pids=()
for i in 1 2 3 4 5 6 7 8; do
	proxy_copy website/api:1 "many$i" &
	pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || fail "a concurrent copy failed"; done
for b in $(blobs_of "$WORK/seed2.out"); do
	n=$(blob_gets website/api "$b")
	[ "$n" -eq 1 ] || fail "8 concurrent copies: $b fetched $n times from the registry, want 1"
done
for i in 2 3 4 5 6 7 8; do diff -r "$WORK/many1" "$WORK/many$i" >/dev/null || fail "concurrent copy $i differs"; done
pass "8 concurrent skopeo copies: one blob GET per blob at the registry"

# 3. Authorization is never skipped.
layer=$(awk '/^layers/{print $2}' "$WORK/seed.out")
url=https://registry.test/v2/website/ui/blobs/$layer
pcurl() { curl -s --proxy "http://$PROXY" --noproxy '' --cacert "$WORK/office.crt" "$@"; }
code=$(pcurl -o "$WORK/anon.out" -D "$WORK/anon.headers" -w '%{http_code}' "$url")
[ "$code" = 401 ] || fail "blob without credentials: $code, want 401"
grep -qi '^www-authenticate: basic realm="dtrcache-test"' "$WORK/anon.headers" || fail "the registry's challenge did not reach the client"
[ "$(pcurl -I -o /dev/null -w '%{http_code}' "$url")" = 401 ] || fail "HEAD without credentials is not 401"
[ "$(pcurl -o /dev/null -w '%{http_code}' -u alice:wrong "$url")" = 401 ] || fail "wrong password is not 401"
gets=$(blob_gets website/ui "$layer")
pcurl -u alice:pw -o "$WORK/layer.out" "$url"
[ "sha256:$(sha256sum "$WORK/layer.out" | cut -d' ' -f1)" = "$layer" ] || fail "alice's blob is corrupt"
[ "$(blob_gets website/ui "$layer")" -eq "$gets" ] || fail "alice's read of a cached blob went to the registry"
pass "no credentials or a wrong password: 401 with the registry's challenge although the blob is cached; alice: from the store"

# 4. Not an open relay; tunnels untouched.
connect_code() { curl -s -o /dev/null --proxytunnel --proxy "http://$PROXY" --noproxy '' -w '%{http_connect}' "$1" || true; }
[ "$(connect_code https://evil.test/)" = 403 ] || fail "CONNECT evil.test:443 is not 403"
[ "$(connect_code http://169.254.169.254/latest/meta-data/)" = 403 ] || fail "CONNECT 169.254.169.254:80 is not 403"
[ "$(connect_code "https://127.0.0.1:${REG##*:}/v2/")" = 403 ] || fail "CONNECT to the registry's address is not 403"
[ "$(curl -s -o /dev/null --proxy "http://$PROXY" --noproxy '' -w '%{http_code}' http://169.254.169.254/latest/meta-data/)" = 403 ] ||
	fail "plain GET http://169.254.169.254/ is not 403"
real=$(openssl x509 -in "$pki/registry.crt" -noout -fingerprint -sha256)
seen=$(openssl s_client -proxy "$PROXY" -connect tunnel.test:443 -servername tunnel.test </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256)
[ "$seen" = "$real" ] || fail "the tunnel presented $seen, not the registry's own certificate ($real)"
curl -s --fail --cacert "$pki/ca.crt" -u alice:pw -o "$WORK/direct.blob" "https://$REG/v2/website/ui/blobs/$layer"
curl -s --fail --proxy "http://$PROXY" --noproxy '' --cacert "$pki/ca.crt" -u alice:pw -o "$WORK/tunnel.blob" "https://tunnel.test/v2/website/ui/blobs/$layer"
cmp -s "$WORK/direct.blob" "$WORK/tunnel.blob" || fail "bytes through the tunnel differ from a direct download"
seen=$(openssl s_client -proxy "$PROXY" -connect registry.test:443 -servername registry.test </dev/null 2>/dev/null | openssl x509 -noout -issuer)
grep -q "dtrcache office CA" <<<"$seen" || fail "registry.test is not intercepted with the office CA ($seen)"
pass "CONNECT outside the lists and to 169.254.169.254:80: 403; tunnel: the registry's own certificate and identical bytes"

# 5. OCI conformance through the proxy, against distribution v3 (Debian's
# docker-registry 2.8 refuses some OCI 1.1 fixtures). Off: only what
# distribution v3 itself fails when the suite runs against it directly —
# tag listing of index fixtures, non-distributable layers, sha512 uploads
# (as for the mirror), and the referrers API with the manifests that have
# a subject (no OCI-Subject header, 404 for /referrers/). Everything else
# is on: pull, HEAD, range, push, mount and delete; pushes and deletes
# pass through to the registry unchanged.
conf="$WORK/bin/conformance"
GOBIN="$WORK/bin" go install github.com/opencontainers/distribution-spec/conformance@v0.0.0-20260831232431-97274622c111
registry=$(go_tool ./testenv/cmd/registry)
bg registry3 "$registry" --addr "$REG3" --htpasswd "$WORK/htpasswd" --tls-cert "$pki/registry.crt" --tls-key "$pki/registry.key"
CURL_CA_BUNDLE=$pki/ca.crt wait_http "https://$REG3/v2/"
(
	cd "$WORK"
	HTTPS_PROXY=http://$PROXY https_proxy=http://$PROXY NO_PROXY= no_proxy= SSL_CERT_FILE="$WORK/office.crt" \
	OCI_REGISTRY=registry3.test OCI_TLS=enabled OCI_USERNAME=alice OCI_PASSWORD=pw \
	OCI_REPO1=conformance/repo1 OCI_REPO2=conformance/repo2 OCI_VERSION=1.1 \
	OCI_API_TAGS_LIST=false OCI_DATA_NONDISTRIBUTABLE=false OCI_DATA_SHA512=false \
	OCI_API_REFERRER=false OCI_DATA_SUBJECT=false OCI_DATA_SUBJECT_MISSING=false OCI_DATA_SUBJECT_LIST=false \
	OCI_RESULTS_DIR="$WORK/conformance" OCI_LOG=warn \
	"$conf" >"$WORK/conformance.log" 2>&1
) || true
for api in "Blob get" "Blob get range" "Blob head" "Blob push" "Blob chunked" "Blob mount" "Blob delete" "Manifest put by digest" \
	"Manifest get by digest" "Manifest get by tag" "Manifest head by digest" "Manifest head by tag" "Manifest delete"; do
	line=$(grep -E "^  $api\.+:" "$WORK/conformance.log") || { cat "$WORK/conformance.log"; fail "conformance: no result for $api"; }
	case "$line" in
	*Pass) ;;
	*) cat "$WORK/conformance.log"; fail "conformance: $line" ;;
	esac
done
if ! grep -q 'OCI Conformance Result: Pass' "$WORK/conformance.log"; then
	cat "$WORK/conformance.log"
	fail "conformance: a test failed"
fi
conformance_ranges_pass "$WORK/conformance/junit.xml"
reads=$(grep '"host":"registry3.test:443"' "$WORK/cache.log" | grep -c '"result":"\(hit\|miss\|joined\)"' || true)
[ "$reads" -gt 0 ] || fail "conformance: no blob read was served by the proxy's store"
pass "OCI conformance through HTTPS_PROXY: pull, HEAD, range, push, mount and delete pass ($reads blob reads from the store)"

metrics=$(curl -s "http://$API/metrics")
for m in 'dtrcache_forward_requests_total{result="hit"}' 'dtrcache_forward_connects_total{action="denied"}' 'dtrcache_forward_auth_checks_total{result="vouched"}' 'dtrcache_forward_manifest_vouches_total' 'dtrcache_forward_bytes_total{source="tunnel"}'; do
	grep -qF "$m" <<<"$metrics" || fail "/metrics lacks $m"
done
pass "forward proxy metrics on the cache's /metrics"
