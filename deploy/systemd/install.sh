#!/usr/bin/env bash
# install.sh [--root DIR] BINARY installs dtrcache for systemd: the binary
# as /usr/local/bin/dtrcache, the units dtrcache-cache.service and
# dtrcache-origin.service, the service users (sysusers.d) and the
# configuration directories (tmpfiles.d). It enables nothing: write
# /etc/dtrcache/cache.yml or origin.yml, then `systemctl enable --now
# dtrcache-cache` (or dtrcache-origin). With --root it installs into
# another file system tree (an image being built; the tests) and does not
# talk to the running systemd.
set -euo pipefail
root=/
if [ "${1:-}" = "--root" ]; then root=${2:?--root needs a directory}; shift 2; fi
bin=${1:?usage: install.sh [--root DIR] BINARY}
here=$(cd "$(dirname "$0")" && pwd)
r=${root%/}

install -D -m 0755 "$bin" "$r/usr/local/bin/dtrcache"
for u in dtrcache-cache.service dtrcache-origin.service; do
	install -D -m 0644 "$here/$u" "$r/etc/systemd/system/$u"
done
install -D -m 0644 "$here/dtrcache.sysusers" "$r/usr/lib/sysusers.d/dtrcache.conf"
install -D -m 0644 "$here/dtrcache.tmpfiles" "$r/usr/lib/tmpfiles.d/dtrcache.conf"
if [ "$root" = / ]; then
	systemd-sysusers dtrcache.conf
	systemd-tmpfiles --create dtrcache.conf
	systemctl daemon-reload
else
	systemd-sysusers --root="$root" dtrcache.conf
	systemd-tmpfiles --root="$root" --create dtrcache.conf
fi
echo "installed dtrcache $("$r/usr/local/bin/dtrcache" version 2>/dev/null || echo "(for another platform)") under $root"
