#!/usr/bin/env bash
# release.sh OUT builds a dtrcache release into OUT (run it as `make release`,
# which passes the build stamps):
#   dtrcache_<version>_<os>_<arch>            static binaries (CGO_ENABLED=0,
#                                             -trimpath, stripped, stamped)
#   dtrcache_<version>_image_<os>_<arch>.tar  the FROM scratch image per
#                                             platform (`docker load -i`),
#                                             where a Docker engine answers
#   SHA256SUMS                                sha256sum -c checks them all
# The images are also left tagged dtrcache:<version>-<os>-<arch>. Binaries of
# one commit are byte-identical between builds (no build ID, the commit's
# time as the build date), so anyone can rebuild and compare the sums.
set -euo pipefail
out=${1:?usage: release.sh OUT}
: "${VERSION:?}" "${STAMP:?}"
GO=${GO:-go}
PLATFORMS=${PLATFORMS:-linux/amd64 linux/arm64}
IMAGE_REPO=${IMAGE_REPO:-dtrcache}
here=$(cd "$(dirname "$0")/.." && pwd)

rm -rf "$out" && mkdir -p "$out"
for p in $PLATFORMS; do
	os=${p%/*} arch=${p#*/}
	bin="$out/dtrcache_${VERSION}_${os}_${arch}"
	echo "release: $bin"
	(cd "$here" && CGO_ENABLED=0 GOOS=$os GOARCH=$arch "$GO" build -trimpath -buildvcs=false \
		-ldflags "-s -w -buildid= $STAMP" -o "$bin" ./cmd/dtrcache)
done

if timeout 20 docker info >/dev/null 2>&1; then
	for p in $PLATFORMS; do
		os=${p%/*} arch=${p#*/}
		ctx=$(mktemp -d)
		trap 'rm -rf "$ctx"' EXIT
		# The same context as `make image`: the binary, CA certificates and a
		# non-root user, so the image builds FROM scratch without pulling. No
		# cache: the classic builder would reuse a layer of another platform.
		mkdir -p "$ctx/var/lib/dtrcache"
		cp "$out/dtrcache_${VERSION}_${os}_${arch}" "$ctx/dtrcache"
		cp /etc/ssl/certs/ca-certificates.crt "$ctx/"
		printf 'root:x:0:0:root:/:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/var/lib/dtrcache:/sbin/nologin\n' >"$ctx/passwd"
		printf 'root:x:0:\nnonroot:x:65532:\n' >"$ctx/group"
		tag="$IMAGE_REPO:$VERSION-$os-$arch"
		echo "release: image $tag"
		docker build -q --no-cache --platform "$p" \
			--label org.opencontainers.image.version="$VERSION" \
			-t "$tag" -f "$here/Dockerfile" "$ctx" >"$ctx.log" 2>&1 || { cat "$ctx.log"; exit 1; }
		rm -f "$ctx.log"
		docker save -o "$out/dtrcache_${VERSION}_image_${os}_${arch}.tar" "$tag"
		chmod 0644 "$out/dtrcache_${VERSION}_image_${os}_${arch}.tar"
		rm -rf "$ctx"
		trap - EXIT
	done
else
	echo "release: SKIP the images: no Docker engine answers (docker info failed)"
fi

(cd "$out" && sha256sum dtrcache_* >SHA256SUMS)
ls -l "$out"
