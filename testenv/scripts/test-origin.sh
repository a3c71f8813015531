#!/usr/bin/env bash
# Shell-level test of the DTR flow with real parts: distribution v3 as the
# backend, `dtrcache origin` in front of it, `dtrcache cache` as the asia
# cache, skopeo (and docker, where an engine runs) as clients. The layers
# of a pull by alice must be served by the cache, digest-equal to the
# backend's image.
source "$(dirname "$0")/lib.sh"

REG=127.0.0.1:$(free_port)

registry=$(go_tool ./testenv/cmd/registry)
seed=$(go_tool ./testenv/cmd/seed)
bg registry "$registry" --addr "$REG"
wait_http "http://$REG/v2/"
start_origin_cache "$REG"

# Push through the origin as admin, register the cache, point alice at it.
"$seed" --registry "$ORIGIN" --user admin --password "$PW" --image website/ui:3-stable --layers 3 --size 2MiB --realistic >"$WORK/seed.out" 2>&1 ||
	{ cat "$WORK/seed.out"; fail "push through the origin"; }
grep -q '^manifest' "$WORK/seed.out" || fail "seed printed no manifest"
api() { curl -sS -u "$1:$PW" -X "$2" -H 'Content-Type: application/json' ${4:+-d "$4"} -o "$WORK/api.out" -w '%{http_code}' "http://$ORIGIN$3"; }
[ "$(api alice POST /api/v0/content_caches "{\"name\":\"x\",\"host\":\"http://$CACHE\"}")" = 403 ] || fail "a non-admin registered a cache"
[ "$(api admin POST /api/v0/content_caches "{\"name\":\"asia\",\"host\":\"http://$CACHE\",\"account\":\"cache-asia\"}")" = 201 ] ||
	fail "register asia: $(cat "$WORK/api.out")"
[ "$(api alice PATCH /api/v0/accounts/alice/settings '{"contentCache":"asia"}')" = 200 ] || fail "alice settings: $(cat "$WORK/api.out")"
pass "cache asia registered by admin (refused for alice); alice's profile points at it"

nblobs=$(( $(sed -n 's/^layers //p' "$WORK/seed.out" | wc -w) + 1 ))

skopeo copy --quiet --src-tls-verify=false --src-creds "alice:$PW" "docker://$ORIGIN/website/ui:3-stable" "dir:$WORK/alice"
skopeo copy --quiet --src-tls-verify=false "docker://$REG/website/ui:3-stable" "dir:$WORK/backend"
diff -r "$WORK/alice" "$WORK/backend" >/dev/null || fail "the image alice pulled differs from the backend's"
served=$(( $(metric "$CACHE" 'dtrcache_blob_requests_total{mode="redirect",result="miss"}') + $(metric "$CACHE" 'dtrcache_blob_requests_total{mode="redirect",result="joined"}') + $(metric "$CACHE" 'dtrcache_blob_requests_total{mode="redirect",result="hit"}') ))
redirects=$(metric "$ORIGIN" 'dtrcache_origin_redirects_total{cache="asia"}')
[ "$served" -eq "$nblobs" ] || fail "the cache served $served blobs, want $nblobs"
[ "$redirects" -eq "$nblobs" ] || fail "the origin redirected $redirects blobs, want $nblobs"
pass "skopeo --src-creds alice: $nblobs blobs redirected to and served by the cache; image digest-equal to the backend's"

skopeo copy --quiet --src-tls-verify=false --src-creds "bob:$PW" "docker://$ORIGIN/website/ui:3-stable" "dir:$WORK/bob"
[ "$(metric "$ORIGIN" 'dtrcache_origin_redirects_total{cache="asia"}')" -eq "$redirects" ] || fail "bob (no cache) was redirected"
pass "bob (no cache in his profile) pulled from the origin"

if docker info >/dev/null 2>&1; then
	export DOCKER_CONFIG=$WORK/docker # keep the login out of the user's docker config
	echo "$PW" | docker login "$ORIGIN" -u alice --password-stdin >"$WORK/docker-login.log" 2>&1 || fail "docker login: $(cat "$WORK/docker-login.log")"
	before=$(metric "$CACHE" 'dtrcache_blob_requests_total{mode="redirect"')
	docker image pull --quiet "$ORIGIN/website/ui:3-stable" >/dev/null
	after=$(metric "$CACHE" 'dtrcache_blob_requests_total{mode="redirect"')
	docker image rm "$ORIGIN/website/ui:3-stable" >/dev/null
	[ $((after - before)) -ge $((nblobs - 1)) ] || fail "docker pull: the cache served $((after - before)) blobs, want at least $((nblobs - 1)) layers"
	pass "docker login + docker image pull $ORIGIN/website/ui:3-stable: $((after - before)) blobs served by the cache"
else
	echo "SKIP: docker login/pull through origin + cache: no Docker engine answers 'docker info' on this machine"
fi
