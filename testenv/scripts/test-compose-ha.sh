#!/usr/bin/env bash
# The compose profile ha, where a Docker engine answers: build the images
# (FROM scratch, etcd from testenv/cmd/etcd, nothing pulled), run
# `docker compose --profile ha up`, wait until the three etcd members, both
# origin replicas and the three cache nodes are healthy (bounded; the
# profile starts the default stack's services too), register the fleet
# through one replica and see it on the other (etcd's watch), and tear
# everything down.
source "$(dirname "$0")/lib.sh"

if ! docker info >/dev/null 2>&1; then
	echo "SKIP: compose profile ha: no Docker engine answers 'docker info' on this machine"
	exit 0
fi
if docker compose version >/dev/null 2>&1; then COMPOSE="docker compose"; else COMPOSE=docker-compose; fi
command -v docker-compose >/dev/null 2>&1 || [ "$COMPOSE" = "docker compose" ] || fail "no Compose tool (docker compose or docker-compose)"
export COMPOSE_PROJECT_NAME=dtrcache-ha-ci DOCKER_CONFIG=$WORK/docker
down() { $COMPOSE --profile ha down -v --remove-orphans >/dev/null 2>&1 || true; }
trap 'rc=$?; down; (exit $rc); cleanup' EXIT
down

make -s image >"$WORK/image.log" 2>&1 || { cat "$WORK/image.log"; fail "make image"; }
$COMPOSE --profile ha up -d >"$WORK/up.log" 2>&1 || { cat "$WORK/up.log"; $COMPOSE --profile ha logs --no-color | tail -n 80; fail "compose --profile ha up"; }
services="etcd-1 etcd-2 etcd-3 origin-1 origin-2 cache-1 cache-2 cache-3"
unhealthy=$services
for i in $(seq 1 150); do
	unhealthy=""
	for s in $services; do
		id=$($COMPOSE ps -q "$s" 2>/dev/null || true)
		st=$([ -n "$id" ] && docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' "$id" 2>/dev/null || echo missing)
		[ "$st" = healthy ] || unhealthy+=" $s($st)"
	done
	[ -z "$unhealthy" ] && break
	sleep 1
done
if [ -n "$unhealthy" ]; then
	$COMPOSE --profile ha ps
	$COMPOSE --profile ha logs --no-color | tail -n 80
	fail "not healthy within 150 s:$unhealthy"
fi
pass "compose --profile ha up: etcd ×3, origin ×2, cache ×3 healthy (FROM scratch images: $(docker image inspect -f '{{.Size}}' "${DTRCACHE_ETCD_IMAGE:-dtrcache-etcd:dev}" | awk '{printf "etcd %.1f MB", $1 / 1e6}'))"

# The fleet, registered through origin-1, as origin-2 sees it; alice's
# blobs go to the fleet from either replica.
api() { curl -sS -m 10 -u "admin:dtrcache" -H 'Content-Type: application/json' "$@"; }
code=$(api -o "$WORK/reg.out" -w '%{http_code}' -X POST http://127.0.0.1:6443/api/v0/content_caches \
	-d '{"name": "office", "hosts": ["http://127.0.0.1:6001", "http://127.0.0.1:6002", "http://127.0.0.1:6003"],
	     "probeHosts": ["http://cache-1:5001", "http://cache-2:5001", "http://cache-3:5001"], "account": "cache-asia"}')
[ "$code" = 201 ] || [ "$code" = 409 ] || fail "registering the fleet through origin-1: $code $(cat "$WORK/reg.out")"
code=$(api -o "$WORK/set.out" -w '%{http_code}' -X PATCH http://127.0.0.1:6444/api/v0/accounts/alice/settings -d '{"contentCache": "office"}')
[ "$code" = 200 ] || fail "alice's settings through origin-2: $code $(cat "$WORK/set.out")"
for i in $(seq 1 50); do
	api http://127.0.0.1:6444/api/v0/content_caches/office | grep -q '127.0.0.1:6003' && break
	sleep 0.2
done
api http://127.0.0.1:6444/api/v0/content_caches/office | grep -q '127.0.0.1:6003' || fail "origin-2 does not see the fleet registered through origin-1"
pass "the fleet registered through origin-1 is seen by origin-2; alice's settings written through origin-2"
