#!/usr/bin/env bash
# compose-up.sh: start docker-compose.yml and wait until every service is
# healthy and the seed job has pushed the demo image and registered the
# cache. Uses $COMPOSE ("docker compose" or "docker-compose").
set -euo pipefail
cd "$(dirname "$0")/../.."
COMPOSE=${COMPOSE:-docker-compose}
$COMPOSE up -d
for i in $(seq 1 120); do
	id=$($COMPOSE ps -q seed 2>/dev/null || true)
	if [ -n "$id" ]; then
		state=$(docker inspect -f '{{.State.Status}} {{.State.ExitCode}}' "$id")
		case "$state" in
		"exited 0")
			$COMPOSE logs --no-color seed | tail -n 5
			echo "compose stack is up: docker login 127.0.0.1:8443 -u alice (password dtrcache); docker image pull 127.0.0.1:8443/website/ui:3-stable"
			exit 0
			;;
		exited*)
			$COMPOSE logs --no-color
			echo "seed job failed ($state)" >&2
			exit 1
			;;
		esac
	fi
	sleep 1
done
$COMPOSE ps
$COMPOSE logs --no-color | tail -n 60
echo "compose stack did not come up within 120s" >&2
exit 1
