#!/usr/bin/env bash
# test-release.sh: `make release` builds static linux/amd64 and linux/arm64
# binaries stamped with the version, commit and date that `dtrcache version`
# prints, SHA256SUMS that verify, byte-identical binaries when built twice,
# and (where a Docker engine answers) the FROM scratch image per platform.
source "$(dirname "$0")/lib.sh"

VERSION=v9.8.7-test
COMMIT=$(git rev-parse HEAD)
export SOURCE_DATE_EPOCH=1767225600 # 2026-01-01T00:00:00Z
DATE=2026-01-01T00:00:00Z
out=$WORK/release
make -s release RELEASE_DIR="$out" VERSION="$VERSION" IMAGE_REPO=dtrcache-release-test >"$WORK/release.log" 2>&1 ||
	{ cat "$WORK/release.log"; fail "make release"; }

for arch in amd64 arm64; do
	bin=$out/dtrcache_${VERSION}_linux_${arch}
	[ -x "$bin" ] || fail "no $bin"
	desc=$(file -b "$bin")
	case $arch in amd64) want="x86-64" ;; arm64) want="ARM aarch64" ;; esac
	[[ $desc == *"$want"* && $desc == *"statically linked"* ]] || fail "$bin: $desc"
	info=$(go version -m "$bin")
	for kv in "GOARCH=$arch" "CGO_ENABLED=0" "-trimpath=true"; do
		grep -q -- "build	$kv\$" <<<"$info" || fail "$bin: no $kv in go version -m"
	done
	# The stamps are in the binary's data, whatever the platform.
	for s in "$VERSION" "$COMMIT" "$DATE"; do
		grep -qaF -- "$s" "$bin" || fail "$bin: stamp $s missing"
	done
	pass "$arch: $desc, $(stat -c %s "$bin") bytes"
done

got=$("$out/dtrcache_${VERSION}_linux_amd64" version)
want="dtrcache $VERSION (commit ${COMMIT:0:12}, built $DATE, $(go env GOVERSION), linux/amd64)"
[ "$got" = "$want" ] || fail "dtrcache version: got '$got', want '$want'"
pass "dtrcache version: $got"

(cd "$out" && sha256sum --quiet -c SHA256SUMS) || fail "SHA256SUMS does not verify"
grep -q "dtrcache_${VERSION}_linux_arm64\$" "$out/SHA256SUMS" || fail "SHA256SUMS lacks the arm64 binary"
pass "SHA256SUMS verifies ($(wc -l <"$out/SHA256SUMS") files)"

# A second build of the same commit gives the same binaries.
make -s release RELEASE_DIR="$WORK/again" VERSION="$VERSION" PLATFORMS="linux/amd64 linux/arm64" IMAGE_REPO=dtrcache-release-test >"$WORK/again.log" 2>&1 ||
	{ cat "$WORK/again.log"; fail "second make release"; }
diff <(grep '_linux_' "$out/SHA256SUMS" | grep -v _image_) <(grep '_linux_' "$WORK/again/SHA256SUMS" | grep -v _image_) ||
	fail "two builds of one commit differ"
pass "reproducible: two builds have the same sums"

if timeout 20 docker info >/dev/null 2>&1; then
	for arch in amd64 arm64; do
		tag=dtrcache-release-test:$VERSION-linux-$arch
		[ -s "$out/dtrcache_${VERSION}_image_linux_${arch}.tar" ] || fail "no image archive for $arch"
		got=$(docker image inspect --format '{{.Os}}/{{.Architecture}} {{.Config.User}} {{json .Config.Entrypoint}}' "$tag")
		[ "$got" = "linux/$arch 65532:65532 [\"/dtrcache\"]" ] || fail "$tag: $got"
		pass "image $tag: $got"
	done
	got=$(docker run --rm dtrcache-release-test:$VERSION-linux-amd64 version)
	[ "$got" = "$want" ] || fail "image: dtrcache version: got '$got'"
	pass "image runs: $got"
	docker rmi -f dtrcache-release-test:$VERSION-linux-amd64 dtrcache-release-test:$VERSION-linux-arm64 >/dev/null
else
	echo "SKIP: release images: no Docker engine answers (docker info failed)"
fi
