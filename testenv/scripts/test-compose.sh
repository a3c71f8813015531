#!/usr/bin/env bash
# The container stack, where a Docker engine answers: build the images
# (FROM scratch, nothing pulled), bring docker-compose.yml up healthy, run
# the seed's own commands from the host — docker login and docker image
# pull through the origin — check from the cache's metrics that the layers
# came from the cache, and tear everything down.
source "$(dirname "$0")/lib.sh"

if ! docker info >/dev/null 2>&1; then
	echo "SKIP: compose stack: no Docker engine answers 'docker info' on this machine"
	exit 0
fi
if docker compose version >/dev/null 2>&1; then COMPOSE="docker compose"; else COMPOSE=docker-compose; fi
command -v docker-compose >/dev/null 2>&1 || [ "$COMPOSE" = "docker compose" ] || fail "no Compose tool (docker compose or docker-compose)"
export COMPOSE COMPOSE_PROJECT_NAME=dtrcache-ci DOCKER_CONFIG=$WORK/docker
down() { $COMPOSE down -v --remove-orphans >/dev/null 2>&1 || true; docker image rm 127.0.0.1:8443/website/ui:3-stable >/dev/null 2>&1 || true; }
trap 'rc=$?; down; (exit $rc); cleanup' EXIT
down

make -s image >"$WORK/image.log" 2>&1 || { cat "$WORK/image.log"; fail "make image"; }
testenv/scripts/compose-up.sh >"$WORK/compose.log" 2>&1 || { cat "$WORK/compose.log"; fail "compose stack did not come up healthy"; }
pass "images built FROM scratch; compose stack healthy; seed pushed the image and registered the cache"

echo dtrcache | docker login 127.0.0.1:8443 -u alice --password-stdin >"$WORK/login.log" 2>&1 || { cat "$WORK/login.log"; fail "docker login"; }
docker image pull 127.0.0.1:8443/website/ui:3-stable >"$WORK/pull.log" 2>&1 || { cat "$WORK/pull.log"; fail "docker image pull"; }
served=$(curl -s http://127.0.0.1:5001/metrics | awk '/^dtrcache_blob_requests_total\{mode="redirect",result="(miss|hit|joined)"\}/ {s += $NF} END {print s + 0}')
layers=$(docker image inspect -f '{{len .RootFS.Layers}}' 127.0.0.1:8443/website/ui:3-stable)
[ "$served" -ge "$layers" ] || fail "the cache served $served blobs for $layers layers"
pass "docker login + docker image pull 127.0.0.1:8443/website/ui:3-stable: $layers layers, $served blobs served by the cache"

# The same cache is the office's HTTPS_PROXY: the intercepted registry
# answers through it; other destinations are refused.
code=$(curl -s -o /dev/null -w '%{http_code}' -x http://127.0.0.1:3128 -u alice:dtrcache http://wan:8443/v2/)
[ "$code" = 200 ] || fail "GET http://wan:8443/v2/ through the forward proxy: $code"
code=$(curl -s -o /dev/null -w '%{http_code}' -x http://127.0.0.1:3128 http://example.org/ || true)
[ "$code" = 403 ] || fail "a destination outside the lists answered $code through the proxy, want 403"
pass "forward proxy on 127.0.0.1:3128: the intercepted registry answers, other destinations get 403"
