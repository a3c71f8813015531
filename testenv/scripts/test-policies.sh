#!/usr/bin/env bash
# Shell-level test of promotion and push-mirroring policies with real
# parts: two Debian docker-registry processes as the backends of two
# deployments (US and EU), a `dtrcache origin` in front of each with
# htpasswd users and access rules, policies created with curl as the
# README shows them (and one from the origin's policy file), skopeo (and
# docker, where an engine runs) pushing into the US origin. A push of
# dev/app:1.2.0 must be promoted to qa/app:1.2.0-<date> with every blob
# mounted, then mirrored digest-equal to the EU origin's prod/app, while
# dev/app:1.3.0-rc1 (a pre-release) goes nowhere.
source "$(dirname "$0")/lib.sh"

PW=dtrcache-demo-pw
MIRROR_PW=eu-mirror-pw
US_REG=127.0.0.1:$(free_port)
EU_REG=127.0.0.1:$(free_port)
SRC=127.0.0.1:$(free_port)
US=127.0.0.1:$(free_port)
EU=127.0.0.1:$(free_port)

start_docker_registry registry-us "$US_REG"
start_docker_registry registry-eu "$EU_REG"
registry=$(go_tool ./testenv/cmd/registry)
seed=$(go_tool ./testenv/cmd/seed)
bg source "$registry" --addr "$SRC" # where the pushed images are made
wait_http "http://$SRC/v2/"

# Users: admin (everywhere), alice (admin of dev/**, push on qa/**), bob
# (push on dev/** only), mirror (the US origin's account at the EU origin).
{
	for u in admin alice bob; do echo "$PW" | "$BIN" htpasswd --cost 4 "$u"; done
	echo "$MIRROR_PW" | "$BIN" htpasswd --cost 4 mirror
} >"$WORK/htpasswd"
cat >"$WORK/access.yml" <<YAML
admins: [admin]
repositories:
  - pattern: "dev/**"
    grants: [{user: alice, actions: [admin]}, {user: bob, actions: [push]}]
  - pattern: "qa/**"
    grants: [{user: alice, actions: [push]}]
  - pattern: "prod/**"
    grants: [{user: mirror, actions: [push]}]
  - pattern: "**"
    grants: [{user: bob, actions: [pull]}]
YAML
# The US origin's policy file: qa/app's tags also go to audit/app (a
# chain after the API's dev → qa promotion).
cat >"$WORK/policies.yml" <<YAML
promotion:
  - name: qa-to-audit
    sourceRepository: qa/app
    targetRepository: audit/app
YAML
for site in us eu; do
	addr=$US backend=$US_REG file="file: $WORK/policies.yml"
	[ "$site" = eu ] && addr=$EU backend=$EU_REG file=""
	cat >"$WORK/origin-$site.yml" <<YAML
log: {level: info, format: json}
http: {addr: $addr}
backend: {url: http://$backend}
auth: {htpasswd: $WORK/htpasswd}
policy: $WORK/access.yml
data_dir: $WORK/origin-$site
keys: {dir: $WORK/keys-$site, issuer: $site, generate: true}
policies:
  $file
  allow_private: [127.0.0.0/8]   # the EU origin is on loopback here
YAML
	bg "origin-$site" "$BIN" origin --config "$WORK/origin-$site.yml"
done
wait_http "http://$US/healthz"
wait_http "http://$EU/healthz"

api() { # user method path [body] → status; the body is in $WORK/api.out
	curl -sS -u "$1:$PW" -X "$2" -H 'Content-Type: application/json' ${4:+-d "$4"} -o "$WORK/api.out" -w '%{http_code}' "http://$US$3"
}
json() { python3 -c 'import json,sys; v=json.load(open(sys.argv[1])); exec("for k in sys.argv[2].split(\".\"):\n v=v[int(k) if isinstance(v,list) else k]"); print(v)' "$WORK/api.out" "$1"; }

# --- policies, as the README's walkthrough creates them.
code=$(api alice POST '/api/v0/repositories/dev/app/promotionPolicies?initialEvaluation=true' \
	'{"enabled": true, "targetRepository": "qa/app",
	  "rules": [{"field": "tag", "operator": "semver", "values": [">=1.0.0"]}],
	  "tagTemplate": "%n-%Y%m%d"}')
[ "$code" = 201 ] || fail "alice creating the promotion policy: $code $(cat "$WORK/api.out")"
promotion=$(json id)
code=$(api admin POST /api/v0/repositories/qa/app/pushMirroringPolicies \
	"{\"enabled\": true, \"remoteHost\": \"http://$EU\", \"remoteRepository\": \"prod/app\",
	  \"username\": \"mirror\", \"password\": \"$MIRROR_PW\"}")
[ "$code" = 201 ] || fail "admin creating the push-mirroring policy: $code $(cat "$WORK/api.out")"
mirror=$(json id)
! grep -q "$MIRROR_PW" "$WORK/api.out" || fail "the API answered with the remote password"
[ "$(json hasPassword)" = True ] || fail "the policy does not say it has a password: $(cat "$WORK/api.out")"
api admin GET "/api/v0/repositories/qa/app/pushMirroringPolicies/$mirror" >/dev/null
! grep -q "$MIRROR_PW" "$WORK/api.out" || fail "GET of the policy shows the remote password"
pass "promotion dev/app → qa/app (alice, repository admin) and push mirroring qa/app → EU prod/app (admin) created; the password is never returned"

code=$(api bob POST /api/v0/repositories/dev/app/promotionPolicies '{"enabled": true, "targetRepository": "qa/app"}')
[ "$code" = 403 ] || fail "bob (push, not admin, on dev/app) creating a policy: $code, want 403"
[ "$(json errors.0.code)" = DENIED ] || fail "403 body is not a registry error: $(cat "$WORK/api.out")"
pass "bob (push on dev/app, not admin) is refused: 403 $(json errors.0.code): $(json errors.0.message)"

code=$(api admin POST /api/v0/repositories/qa/app/pushMirroringPolicies \
	'{"enabled": true, "remoteHost": "http://169.254.169.254", "remoteRepository": "x/y"}')
[ "$code" = 400 ] || fail "a remote on 169.254.169.254: $code, want 400"
grep -q 169.254.169.254 "$WORK/api.out" || fail "the refusal does not name the address: $(cat "$WORK/api.out")"
pass "a remote on the metadata address is refused: 400 $(json errors.0.message)"

code=$(api admin PUT /api/v0/repositories/qa/app/promotionPolicies/file-qa-to-audit '{"enabled": false, "targetRepository": "audit/app"}')
[ "$code" = 409 ] || fail "changing a policy of the policy file through the API: $code, want 409"
pass "the policy file's qa-to-audit is listed and managed by the file (PUT: 409 $(json errors.0.code))"

# --- skopeo pushes two tags into the US origin as alice.
"$seed" --registry "$SRC" --image app:1.2.0 --layers 3 --size 1MiB --seed 12 >"$WORK/seed-1.2.0.out"
"$seed" --registry "$SRC" --image app:1.3.0-rc1 --layers 3 --size 1MiB --seed 13 >/dev/null
nlayers=$(sed -n 's/^layers //p' "$WORK/seed-1.2.0.out" | wc -w)
day0=$(date -u +%Y%m%d)
for tag in 1.2.0 1.3.0-rc1; do
	skopeo copy --quiet --src-tls-verify=false --dest-tls-verify=false --dest-creds "alice:$PW" \
		"docker://$SRC/app:$tag" "docker://$US/dev/app:$tag" || fail "skopeo copy to $US/dev/app:$tag"
done
want=$(skopeo inspect --raw --tls-verify=false --creds "admin:$PW" "docker://$US/dev/app:1.2.0" | sha256sum | cut -d' ' -f1)
pass "skopeo copy --dest-creds alice pushed dev/app:1.2.0 (sha256:$want) and dev/app:1.3.0-rc1"

# wait_tag HOST REPO PATTERN: waits up to 30 s for a tag matching PATTERN and prints it.
wait_tag() {
	local i tags
	for i in $(seq 1 300); do
		tags=$(curl -s -u "admin:$PW" "http://$1/v2/$2/tags/list" | python3 -c 'import json,sys
try: print("\n".join(json.load(sys.stdin).get("tags") or []))
except Exception: pass')
		if grep -E -x "$3" <<<"$tags"; then return 0; fi
		sleep 0.1
	done
	echo "FAIL: no tag matching $3 in $1/$2 (tags: $(echo $tags))" >&2
	return 1
}
digest_of() { skopeo inspect --raw --tls-verify=false --creds "admin:$PW" "docker://$1" | sha256sum | cut -d' ' -f1; }

qtag=$(wait_tag "$US" qa/app "1\.2\.0-[0-9]{8}") || exit 1
day1=$(date -u +%Y%m%d)
[ "$qtag" = "1.2.0-$day0" ] || [ "$qtag" = "1.2.0-$day1" ] || fail "promoted tag $qtag, want 1.2.0-$day0"
[ "$(digest_of "$US/qa/app:$qtag")" = "$want" ] || fail "qa/app:$qtag is not digest-equal to dev/app:1.2.0"
eutag=$(wait_tag "$EU" prod/app "$qtag") || exit 1
[ "$(digest_of "$EU/prod/app:$eutag")" = "$want" ] || fail "EU prod/app:$eutag is not digest-equal to dev/app:1.2.0"
wait_tag "$US" audit/app "$qtag" >/dev/null || exit 1
skopeo copy --quiet --src-tls-verify=false --src-creds "admin:$PW" "docker://$EU/prod/app:$eutag" "dir:$WORK/eu-copy"
skopeo copy --quiet --src-tls-verify=false --src-creds "admin:$PW" "docker://$US/dev/app:1.2.0" "dir:$WORK/us-copy"
diff -r "$WORK/us-copy" "$WORK/eu-copy" >/dev/null || fail "the image pulled from EU prod/app differs from US dev/app:1.2.0"
pass "promoted to qa/app:$qtag, chained to audit/app:$qtag (policy file), mirrored to EU prod/app:$eutag: sha256:$want everywhere, bytes equal"

# Only 1.2.0 went anywhere: the pre-release meets no semver >=1.0.0.
for repo in qa/app; do
	if curl -s -u "admin:$PW" "http://$US/v2/$repo/tags/list" | grep -q 'rc1'; then fail "1.3.0-rc1 was promoted"; fi
done
pass "dev/app:1.3.0-rc1 (a pre-release) was not promoted"

# --- the jobs, through the API and the CLI.
code=$(api admin GET "/api/v0/jobs?policy=$promotion&state=done")
[ "$code" = 200 ] || fail "listing the promotion's jobs: $code"
job=$(python3 -c 'import json,sys; js=[j for j in json.load(open(sys.argv[1]))["jobs"] if j["parameters"].get("tag")=="1.2.0"]; print(js[0]["id"] if js else "")' "$WORK/api.out")
[ -n "$job" ] || fail "no done promotion job for 1.2.0: $(cat "$WORK/api.out")"
code=$(api admin GET "/api/v0/jobs/$job")
[ "$code" = 200 ] || fail "GET /api/v0/jobs/$job: $code"
[ "$(json state)" = done ] || fail "job $job is $(json state)"
[ "$(json result.targetTag)" = "$qtag" ] || fail "job $job wrote $(json result.targetTag), want $qtag"
[ "$(json result.bytesCopied)" = 0 ] || fail "the promotion copied $(json result.bytesCopied) bytes, want 0 (mounted)"
[ "$(json result.blobsMounted)" -eq $((nlayers + 1)) ] || fail "the promotion mounted $(json result.blobsMounted) blobs, want $((nlayers + 1))"
python3 -c 'import json,sys; assert any("copied" in l["message"] for l in json.load(open(sys.argv[1]))["log"])' "$WORK/api.out" || fail "job $job has no log line of its copy"
code=$(api alice GET "/api/v0/jobs/$job")
[ "$code" = 200 ] || fail "alice (admin of dev/app) reading her policy's job: $code"
curl -s -o /dev/null -w '%{http_code}' -u "bob:$PW" "http://$US/api/v0/jobs/$job" | grep -q 404 || fail "bob sees a job of a policy he does not manage"
pass "GET /api/v0/jobs/$job: done, $((nlayers + 1)) blobs mounted, 0 bytes copied, with its log; hidden from bob"

# At the US backend: the promotion mounted each blob with one request and
# read none (the registry's access log; the origin's user agent is dtrcache).
mounts=$(grep -c '"POST /v2/qa/app/blobs/uploads/?from=dev%2Fapp&mount=sha256%3A[0-9a-f]* HTTP/1.1" 201 .*"dtrcache/' "$WORK/registry-us.log" || true)
reads=$(grep -c '"\(GET\|HEAD\) /v2/dev/app/blobs/.*"dtrcache/' "$WORK/registry-us.log" || true)
other=$(grep -c '"[A-Z]* /v2/qa/app/blobs/uploads/[^?].*"dtrcache/' "$WORK/registry-us.log" || true)
[ "$mounts" -eq $((nlayers + 1)) ] || fail "the backend saw $mounts mounts into qa/app, want $((nlayers + 1))"
[ "$reads" -eq 0 ] && [ "$other" -eq 0 ] || fail "the promotion read $reads dev/app blobs and made $other uploads into qa/app, want 0"
pass "at the US backend: $mounts mount requests for $((nlayers + 1)) blobs (1 round trip per blob), 0 blob reads from dev/app, 0 uploads"

export DTRCACHE_PASSWORD=$PW
"$BIN" policy plan --origin "http://$US" --user admin >"$WORK/plan.out" || fail "dtrcache policy plan: $(cat "$WORK/plan.out")"
grep -q "^promotion policy $promotion" "$WORK/plan.out" || fail "plan names no promotion policy: $(cat "$WORK/plan.out")"
grep -E -q "up to date +.*dev/app:1\.2\.0 += .*qa/app:$qtag +sha256:$want" "$WORK/plan.out" || fail "plan does not show dev/app:1.2.0 up to date: $(cat "$WORK/plan.out")"
grep -E -q "up to date +.*qa/app:$qtag += .*prod/app:$qtag" "$WORK/plan.out" || fail "plan does not show the EU mirror up to date: $(cat "$WORK/plan.out")"
! grep -q 'rc1' "$WORK/plan.out" || fail "plan lists the pre-release: $(cat "$WORK/plan.out")"
"$BIN" policy jobs --origin "http://$US" --user admin --state done >"$WORK/jobs.out" || fail "dtrcache policy jobs: $(cat "$WORK/jobs.out")"
head -n1 "$WORK/jobs.out" | grep -q '^ID  *ACTION  *POLICY  *STATE' || fail "policy jobs has no header: $(cat "$WORK/jobs.out")"
for p in "$promotion" "$mirror" file-qa-to-audit; do
	grep -E -q "[[:space:]]$p[[:space:]]+done[[:space:]]" "$WORK/jobs.out" || fail "policy jobs shows no done job of $p: $(cat "$WORK/jobs.out")"
done
"$BIN" policy list --origin "http://$US" --user alice >"$WORK/list.out"
grep -q "dev/app → qa/app" "$WORK/list.out" || fail "policy list (alice) lacks her promotion: $(cat "$WORK/list.out")"
! grep -q "prod/app" "$WORK/list.out" || fail "policy list shows alice the admin's mirror: $(cat "$WORK/list.out")"
pass "dtrcache policy plan: 1.2.0 up to date in qa/app and EU prod/app, nothing else; policy jobs: $(($(wc -l <"$WORK/jobs.out") - 1)) done jobs; policy list as alice: her policy only"

# --- docker push through the US origin, where a Docker engine answers.
if docker info >/dev/null 2>&1; then
	export DOCKER_CONFIG=$WORK/docker # keep the login out of the user's docker config
	mkdir -p "$WORK/ctx"
	echo "dtrcache policies test $RANDOM$RANDOM" >"$WORK/ctx/hello.txt"
	printf 'FROM scratch\nCOPY hello.txt /hello.txt\n' >"$WORK/ctx/Dockerfile"
	img=$US/dev/app:2.0.0
	docker build -q -t "$img" "$WORK/ctx" >"$WORK/docker-build.log" 2>&1 || fail "docker build: $(cat "$WORK/docker-build.log")"
	echo "$PW" | docker login "$US" -u alice --password-stdin >"$WORK/docker-login.log" 2>&1 || fail "docker login: $(cat "$WORK/docker-login.log")"
	docker push -q "$img" >"$WORK/docker-push.log" 2>&1 || { docker image rm "$img" >/dev/null 2>&1; fail "docker push: $(cat "$WORK/docker-push.log")"; }
	docker image rm "$img" >/dev/null 2>&1 || true
	dwant=$(digest_of "$US/dev/app:2.0.0")
	dq=$(wait_tag "$US" qa/app "2\.0\.0-[0-9]{8}") || exit 1
	deu=$(wait_tag "$EU" prod/app "$dq") || exit 1
	[ "$(digest_of "$EU/prod/app:$deu")" = "$dwant" ] || fail "docker push: EU prod/app:$deu is not digest-equal to dev/app:2.0.0"
	pass "docker login + docker push $img: promoted to qa/app:$dq and mirrored to EU prod/app:$deu (sha256:$dwant)"
else
	echo "SKIP: docker push through the US origin: no Docker engine answers 'docker info' on this machine"
fi
