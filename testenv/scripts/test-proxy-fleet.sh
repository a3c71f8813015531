#!/usr/bin/env bash
# HTTPS_PROXY on several boxes, chained to the office's mirror fleet, with
# real parts: Debian's docker-registry over TLS with htpasswd (the real
# registry, reached as registry.test), two `dtrcache cache` mirror nodes
# behind Debian's nginx (deploy/nginx/mirror-fleet.conf), two forward proxy
# nodes whose forward_proxy.blob_mirror is that nginx, skopeo clients.
#  1. Four clients, two on each proxy node, pull one image at once: every
#     blob crosses to the registry once (a GET by the mirror fleet's
#     account), none with the clients' credentials; the registry authorized
#     every client (its manifest GET, answered with its credentials,
#     vouches for the blobs: no HEAD per blob); the copies equal a direct
#     one.
#  2. A wrong password through a proxy node: the registry's 401, no bytes.
#  3. The mirror fleet stopped: a new image still pulls through a proxy
#     node, filled from the registry with the client's credentials.
source "$(dirname "$0")/lib.sh"
command -v nginx >/dev/null || fail "nginx not installed (testenv/scripts/install-deps.sh)"

REG=127.0.0.1:$(free_port)
pki=$WORK/pki
make_test_pki "$pki" "DNS:registry.test,IP:127.0.0.1"
for u in alice office-mirror; do echo pw | "$BIN" htpasswd --cost 4 "$u"; done >"$WORK/htpasswd"
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
for i in 1 2; do
	"$seed" --registry "$REG" --image "team/app:$i" --layers 4 --size 512KiB --seed $((60 + i)) --user alice --password pw --insecure-tls >"$WORK/seed$i.out"
done
blobs_of() { awk '/^config/{print $2} /^layers/{for(i=2;i<=NF;i++) print $i}' "$WORK/seed$1.out"; }

# The office's mirror fleet: two nodes with their own account at the
# registry, behind nginx.
echo pw >"$WORK/mirror-password" && chmod 600 "$WORK/mirror-password"
NODES=()
for n in 1 2; do
	port=$(free_port)
	NODES+=("127.0.0.1:$port")
	cat >"$WORK/mirror$n.yml" <<YAML
log: {level: info, format: json}
http: {addr: 127.0.0.1:$port}
storage: {root: $WORK/mirror$n}
fill: {prefetch: 0}
mirror:
  upstreams:
    - name: registry
      hosts: [registry.test]     # the ?ns= the proxy nodes send
      url: https://$REG
      username: office-mirror
      password_file: $WORK/mirror-password
      cas: [$pki/ca.crt]
YAML
	bg "mirror$n" "$BIN" cache --config "$WORK/mirror$n.yml"
	MIRRORPID[$n]=${PIDS[-1]}
done
for a in "${NODES[@]}"; do wait_http "http://$a/readyz"; done
LB=127.0.0.1:$(free_port)
mkdir -p "$WORK/nginx"
sed -e "s/cache-1.office.internal:5000/${NODES[0]}/; s/cache-2.office.internal:5000/${NODES[1]}/; /cache-3.office.internal/d" \
	-e "s/listen 5000;/listen $LB;/" deploy/nginx/mirror-fleet.conf >"$WORK/nginx/fleet.conf"
start_nginx fleet.conf

# Two HTTPS_PROXY nodes of the office, both chained to the fleet for blobs.
"$BIN" ca init --dir "$WORK/office" >/dev/null
"$BIN" ca cert --dir "$WORK/office" >"$WORK/office.crt"
mkdir -p "$WORK/office-certs" && cp "$WORK/office.crt" "$WORK/office-certs/ca.crt"
PROXIES=()
for n in 1 2; do
	PROXIES+=("127.0.0.1:$(free_port)")
	cat >"$WORK/proxy$n.yml" <<YAML
log: {level: info, format: json}
http: {addr: 127.0.0.1:$(free_port)}
storage: {root: $WORK/proxy$n}
forward_proxy:
  addr: ${PROXIES[-1]}
  ca_dir: $WORK/office
  intercept: [registry.test]
  hosts: {registry.test: "$REG"}
  allow_private: [127.0.0.0/8]   # the registry is on loopback in this test
  cas: [$pki/ca.crt]
  blob_mirror: {url: "http://$LB"}
YAML
	bg "proxy$n" "$BIN" cache --config "$WORK/proxy$n.yml"
done
for p in "${PROXIES[@]}"; do wait_http "http://$p/healthz"; done

# Registry access log: who asked for which blob (the mirror nodes' client
# says dtrcache/…, the clients and the proxies' probes say skopeo/…).
count() { grep -c "\"$1 /v2/team/app/blobs/$2 HTTP/1.1\" [0-9]* [0-9]* \"[^\"]*\" \"$3" "$WORK/registry.log" || true; }
proxy_copy() { # proxy_copy PROXY IMAGE DIR [CREDS]
	HTTPS_PROXY=http://$1 https_proxy=http://$1 NO_PROXY= no_proxy= \
		skopeo copy --quiet --src-cert-dir "$WORK/office-certs" --src-creds "${4:-alice:pw}" "docker://registry.test/$2" "dir:$WORK/$3" >"$WORK/$3.err" 2>&1
}
env -u HTTPS_PROXY -u https_proxy skopeo copy --quiet --src-cert-dir "$pki/certs" --src-creds alice:pw "docker://$REG/team/app:1" "dir:$WORK/direct1"
env -u HTTPS_PROXY -u https_proxy skopeo copy --quiet --src-cert-dir "$pki/certs" --src-creds alice:pw "docker://$REG/team/app:2" "dir:$WORK/direct2"
declare -A before
for d in $(blobs_of 1); do before[$d]=$(count GET "$d" skopeo); done

# 1. Four clients on two proxy nodes.
pids=()
for c in 1 2; do
	for n in 1 2; do proxy_copy "${PROXIES[$((n - 1))]}" team/app:1 "c$c-p$n" & pids+=($!); done
done
for p in "${pids[@]}"; do wait "$p" || fail "a pull through a proxy node failed: $(cat "$WORK"/c*-p*.err)"; done
for c in 1 2; do for n in 1 2; do diff -r "$WORK/direct1" "$WORK/c$c-p$n" >/dev/null || fail "copy c$c-p$n differs from the direct copy"; done; done
nblobs=0
for d in $(blobs_of 1); do
	nblobs=$((nblobs + 1))
	m=$(count GET "$d" dtrcache/)
	[ "$m" -eq 1 ] || fail "blob $d: $m GETs at the registry by the mirror fleet, want 1"
	c=$(($(count GET "$d" skopeo) - before[$d]))
	[ "$c" -eq 0 ] || fail "blob $d: $c GETs at the registry with the clients' credentials, want 0"
	h=$(count HEAD "$d" skopeo)
	[ "$h" -eq 0 ] || fail "blob $d: $h authorization HEADs at the registry, want 0 (each client's manifest vouched for it)"
done
mf=$(grep -c '"GET /v2/team/app/manifests/[^ ]* HTTP/1.1" 200 [0-9]* "[^"]*" "skopeo' "$WORK/registry.log" || true)
[ "$mf" -ge 4 ] || fail "$mf manifest GETs answered 200 to the clients, want one per client at least (each authorizes its client)"
pass "4 clients on 2 HTTPS_PROXY nodes: $nblobs blobs crossed to the registry once each (by the mirror fleet), none with the clients' credentials; every client authorized by the registry; copies equal the direct one"

# 2. A wrong password is the registry's answer.
if proxy_copy "${PROXIES[0]}" team/app:1 wrong alice:nope; then fail "a wrong password pulled through a proxy node"; fi
grep -qi "unauthorized\|401\|authentication required" "$WORK/wrong.err" || fail "wrong password: $(cat "$WORK/wrong.err")"
pass "a wrong password through a proxy node: the registry's 401, though the blobs are in the proxy's store"

# 3. Without the fleet, the proxy fills from the registry itself.
kill "$NGINXPID" "${MIRRORPID[1]}" "${MIRRORPID[2]}"
wait "$NGINXPID" "${MIRRORPID[1]}" "${MIRRORPID[2]}" 2>/dev/null || true
proxy_copy "${PROXIES[1]}" team/app:2 nofleet || fail "pull with the fleet down: $(cat "$WORK/nofleet.err")"
diff -r "$WORK/direct2" "$WORK/nofleet" >/dev/null || fail "the copy made without the fleet differs"
for d in $(blobs_of 2); do
	[ "$(count GET "$d" dtrcache/)" -eq 0 ] || fail "blob $d came from the stopped fleet"
	[ "$(count GET "$d" skopeo)" -eq 2 ] || fail "blob $d: $(count GET "$d" skopeo) GETs with the client's credentials, want 2 (the direct copy and the proxy's fill)"
done
grep -q '"blob mirror failed; filling from the registry"' "$WORK/proxy2.log" || fail "proxy node 2 did not log the fallback"
pass "mirror fleet stopped: a new image pulled through a proxy node, filled from the registry with the client's credentials"
