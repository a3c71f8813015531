#!/usr/bin/env bash
# A mirror-mode fleet behind nginx, with real parts: Debian's docker-registry
# as the upstream, three `dtrcache cache` mirror nodes, Debian's nginx in
# front of them with deploy/nginx/mirror-fleet.conf (consistent hashing of
# the blob digest), skopeo as the clients.
#  1. Six clients pull three images at once: every blob is filled from the
#     registry exactly once across the fleet, by exactly one node, and the
#     images are byte-identical to direct copies; a second round fills nothing.
#  2. The node with the largest share is killed (SIGKILL). Pulls of the same
#     images by new clients, and of two new images, all complete: the dead
#     node's blobs are filled once more (each by one survivor), the survivors'
#     own blobs are not fetched again, and the new images' blobs once each.
# Also: the README's nginx block is deploy/nginx/mirror-fleet.conf.
source "$(dirname "$0")/lib.sh"
command -v nginx >/dev/null || fail "nginx not installed (testenv/scripts/install-deps.sh)"

conf=deploy/nginx/mirror-fleet.conf
# readme_code MARK: the code block that follows <!-- MARK --> in the README.
readme_code() { awk -v m="<!-- $1 -->" '$0 == m {f = 1; next} f && !g && /^```/ {g = 1; next} g && /^```$/ {exit} g' README.md; }
readme_block=$(readme_code nginx-mirror-fleet)
[ "$readme_block" = "$(cat "$conf")" ] || fail "README's nginx mirror-fleet block differs from $conf"
pass "README's mirror-fleet nginx configuration is $conf"

REG=127.0.0.1:$(free_port)
start_docker_registry registry "$REG"

seed=$(go_tool ./testenv/cmd/seed)
images=(team/a:1 team/b:1 team/c:1 team/d:1 team/e:1)
for i in "${!images[@]}"; do
	"$seed" --registry "$REG" --image "${images[$i]}" --layers 6 --size 256KiB --seed $((100 + i)) >"$WORK/seed-$i.out" ||
		fail "seed ${images[$i]}"
done
blobs_of() { # the config and layer digests of image i
	awk '/^config/ {print $2} /^layers/ {for (i = 2; i <= NF; i++) print $i}' "$WORK/seed-$1.out"
}
first=(0 1 2)
second=(3 4)
set_a=$(for i in "${first[@]}"; do blobs_of "$i"; done | sort -u)
set_b=$(for i in "${second[@]}"; do blobs_of "$i"; done | sort -u)
copy() { # copy HOST IMAGE DIR
	skopeo copy --quiet --retry-times 3 --src-tls-verify=false "docker://$1/$2" "dir:$WORK/$3" >"$WORK/$3.err" 2>&1 ||
		{ cat "$WORK/$3.err"; return 1; }
}
for i in "${!images[@]}"; do copy "$REG" "${images[$i]}" "direct-$i"; done

# gets DIGEST: the registry's blob GETs of a digest so far.
gets() { grep -c "\"GET /v2/[^ ]*/blobs/$1 " "$WORK/registry.log" || true; }
snapshot() { for d in $set_a $set_b; do echo "$d $(gets "$d")"; done >"$WORK/gets-$1"; }
delta() { # delta FROM TO DIGEST
	echo $(($(awk -v d="$3" '$1 == d {print $2}' "$WORK/gets-$2") - $(awk -v d="$3" '$1 == d {print $2}' "$WORK/gets-$1")))
}

NODES=()
for n in 1 2 3; do
	port=$(free_port)
	NODES+=("127.0.0.1:$port")
	cat >"$WORK/node$n.yml" <<YAML
log: {level: info, format: json}
http: {addr: 127.0.0.1:$port}
storage: {root: $WORK/node$n}
# Behind a hashing balancer a node must not prefetch an image's blobs: they
# belong to the nodes the balancer sends them to.
fill: {prefetch: 0}
mirror:
  upstreams:
    - name: backend
      url: http://$REG
YAML
	bg "node$n" "$BIN" cache --config "$WORK/node$n.yml"
	NODEPID[$n]=${PIDS[-1]}
done
for n in 1 2 3; do wait_http "http://${NODES[$((n - 1))]}/readyz"; done

LB=127.0.0.1:$(free_port)
mkdir -p "$WORK/nginx"
sed -e "s/cache-1.office.internal:5000/${NODES[0]}/; s/cache-2.office.internal:5000/${NODES[1]}/; s/cache-3.office.internal:5000/${NODES[2]}/" \
	-e "s/listen 5000;/listen $LB;/" "$conf" >"$WORK/nginx/fleet.conf"
start_nginx fleet.conf '$request_uri $status $upstream_addr'

# misses N: the digests node N filled (blob misses in its access log).
misses() {
	grep '"route":"blob"' "$WORK/node$1.log" | grep '"result":"miss"' | grep -o '"digest":"[^"]*"' | cut -d'"' -f4 | sort -u || true
}
verify() { # verify IMAGE-INDEX DIR
	diff -r "$WORK/direct-$1" "$WORK/$2" >/dev/null || fail "$2 differs from the direct copy of ${images[$1]}"
}

# 1. Six clients, three images, at once.
snapshot 0
pids=()
for c in 1 2; do
	for i in "${first[@]}"; do copy "$LB" "${images[$i]}" "r1-$c-$i" & pids+=($!); done
done
for p in "${pids[@]}"; do wait "$p" || fail "a pull through the fleet failed"; done
for c in 1 2; do for i in "${first[@]}"; do verify "$i" "r1-$c-$i"; done; done
snapshot 1
for d in $set_a; do
	[ "$(delta 0 1 "$d")" -eq 1 ] || fail "blob $d was fetched $(delta 0 1 "$d") times from the registry, want 1"
done
for n in 1 2 3; do misses "$n" >"$WORK/misses1-$n"; done
filled=$(cat "$WORK"/misses1-* | wc -l)
[ "$filled" -eq "$(wc -l <<<"$set_a")" ] || fail "the nodes filled $filled blobs, want $(wc -l <<<"$set_a")"
[ -z "$(cat "$WORK"/misses1-* | sort | uniq -d)" ] || fail "a blob was filled by two nodes: $(cat "$WORK"/misses1-* | sort | uniq -d)"
share="$(wc -l <"$WORK/misses1-1")/$(wc -l <"$WORK/misses1-2")/$(wc -l <"$WORK/misses1-3")"
pass "6 clients pulled 3 images through nginx: $(wc -l <<<"$set_a") blobs, each fetched once from the registry by one node (shares $share); images byte-identical"

for i in "${first[@]}"; do copy "$LB" "${images[$i]}" "warm-$i"; verify "$i" "warm-$i"; done
snapshot 2
for d in $set_a; do [ "$(delta 1 2 "$d")" -eq 0 ] || fail "warm pull fetched $d from the registry again"; done
pass "a second round is served by the fleet: no blob GET at the registry"

# 2. Kill the node with the largest share; pull the same images and two new ones.
victim=1
for n in 2 3; do [ "$(wc -l <"$WORK/misses1-$n")" -gt "$(wc -l <"$WORK/misses1-$victim")" ] && victim=$n; done
kill -9 "${NODEPID[$victim]}"
wait "${NODEPID[$victim]}" 2>/dev/null || true
pids=()
for i in "${first[@]}" "${second[@]}"; do copy "$LB" "${images[$i]}" "r2-$i" & pids+=($!); done
for i in "${second[@]}"; do copy "$LB" "${images[$i]}" "r2b-$i" & pids+=($!); done
for p in "${pids[@]}"; do wait "$p" || fail "a pull failed after node $victim was killed"; done
for i in "${first[@]}" "${second[@]}"; do verify "$i" "r2-$i"; done
for i in "${second[@]}"; do verify "$i" "r2b-$i"; done
snapshot 3
moved=0
for d in $set_a; do
	want=0
	grep -qx "$d" "$WORK/misses1-$victim" && want=1 && moved=$((moved + 1))
	[ "$(delta 2 3 "$d")" -eq "$want" ] || fail "after the kill, blob $d was fetched $(delta 2 3 "$d") times, want $want (node $victim had it: $want)"
done
for d in $set_b; do
	[ "$(delta 2 3 "$d")" -eq 1 ] || fail "new blob $d was fetched $(delta 2 3 "$d") times from the registry, want 1"
done
for n in 1 2 3; do [ "$n" -eq "$victim" ] || misses "$n"; done | sort | uniq -d >"$WORK/dup"
[ ! -s "$WORK/dup" ] || fail "two surviving nodes filled the same blob: $(cat "$WORK/dup")"
pass "node $victim killed: its $moved blobs moved to the survivors (one fill each), theirs were not fetched again, 2 new images filled once per blob; 7 pulls complete and byte-identical"

if command -v haproxy >/dev/null; then
	readme_code haproxy-mirror-fleet >"$WORK/haproxy.cfg"
	haproxy -c -f "$WORK/haproxy.cfg" >"$WORK/haproxy-c.log" 2>&1 || { cat "$WORK/haproxy-c.log"; fail "haproxy -c: README's HAProxy configuration"; }
	pass "README's HAProxy configuration passes haproxy -c"
fi
