#!/usr/bin/env bash
# test-deploy.sh checks the deployment artefacts in deploy/:
#  - systemd: install.sh into a scratch root, `systemd-analyze verify` of
#    both units (any warning fails, as does a unit with a typo), the store
#    drop-in, the sandbox's exposure score, a stop timeout above the grace;
#  - Helm: `helm lint` and `helm template` of the chart for each value set
#    in deploy/helm/testdata (the Go test in deploy/helm decodes the
#    objects strictly), and the values the chart must refuse;
#  - Prometheus: `promtool check rules` and `promtool test rules`.
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/../.."

# ---- systemd
if command -v systemd-analyze >/dev/null 2>&1; then
	root=$WORK/root
	mkdir -p "$root/etc" "$root/usr/lib/systemd"
	# verify --root needs the standard targets the units refer to.
	cp -a /usr/lib/systemd/system "$root/usr/lib/systemd/"
	deploy/systemd/install.sh --root "$root" "$BIN" >"$WORK/install.log" 2>&1 || { cat "$WORK/install.log"; fail "install.sh"; }
	grep -q '^dtrcache:' "$root/etc/passwd" && grep -q '^dtrcache-origin:' "$root/etc/passwd" || fail "install.sh made no service users"
	[ "$(stat -c %a "$root/etc/dtrcache/keys")" = 700 ] || fail "/etc/dtrcache/keys is not 0700"
	verify() { # verify UNIT: no output at all, exit 0
		local out
		out=$(systemd-analyze verify --root="$root" "$1" 2>&1) || fail "systemd-analyze verify $1: $out"
		[ -z "$out" ] || fail "systemd-analyze verify $1: $out"
	}
	for u in dtrcache-cache.service dtrcache-origin.service; do
		verify "$u"
		exposure=$(systemd-analyze security --offline=yes --root="$root" "$u" 2>&1 | sed -n 's/.*Overall exposure level for .*: \([0-9.]*\).*/\1/p')
		awk -v e="$exposure" 'BEGIN { exit !(e != "" && e <= 2.0) }' || fail "$u: exposure level '$exposure' above 2.0"
		stop=$(sed -n 's/^TimeoutStopSec=\([0-9]*\)s$/\1/p' "deploy/systemd/$u")
		[ -n "$stop" ] && [ "$stop" -gt 30 ] || fail "$u: TimeoutStopSec does not cover the default shutdown_grace of 30s"
		pass "$u: verify clean, exposure $exposure, TimeoutStopSec ${stop}s"
	done
	mkdir -p "$root/etc/systemd/system/dtrcache-cache.service.d"
	cp deploy/systemd/dtrcache-cache.service.d/store.conf.example "$root/etc/systemd/system/dtrcache-cache.service.d/store.conf"
	verify dtrcache-cache.service
	pass "dtrcache-cache.service with the store drop-in: verify clean"
	# The check can fail: a misspelled directive is reported.
	sed 's/^ProtectSystem=strict/ProtectSytem=strict/' deploy/systemd/dtrcache-cache.service >"$root/etc/systemd/system/dtrcache-typo.service"
	out=$(systemd-analyze verify --root="$root" dtrcache-typo.service 2>&1 || true)
	[[ $out == *ProtectSytem* ]] || fail "verify did not report a misspelled directive: $out"
	pass "a misspelled directive fails the check"
else
	echo "SKIP: systemd units: no systemd-analyze on this machine"
fi

# ---- Helm chart
helm=$(command -v helm || echo "$(go env GOPATH)/bin/helm")
[ -x "$helm" ] || fail "helm not installed (make deps installs it)"
chart=deploy/helm/dtrcache
for f in dtrcache.rules.yml dtrcache.alerts.yml; do
	cmp -s "deploy/prometheus/$f" "$chart/files/$f" || fail "$chart/files/$f differs from deploy/prometheus/$f (copy it)"
done
for set in "" deploy/helm/testdata/*.yaml; do
	args=(--kube-version 1.31.0)
	[ -z "$set" ] || args+=(-f "$set")
	"$helm" lint --strict "$chart" "${args[@]}" >"$WORK/helm.log" 2>&1 || { cat "$WORK/helm.log"; fail "helm lint ${set:-(defaults)}"; }
	"$helm" template t "$chart" "${args[@]}" >"$WORK/rendered.yaml" 2>"$WORK/helm.log" || { cat "$WORK/helm.log"; fail "helm template ${set:-(defaults)}"; }
	pass "helm lint and template ${set:-(defaults)}: $(grep -c '^kind:' "$WORK/rendered.yaml") objects"
done
for set in deploy/helm/testdata/refused/*.yaml; do
	want=$(sed -n '1s/^# want: //p' "$set")
	if out=$("$helm" template t "$chart" --kube-version 1.31.0 -f "$set" 2>&1); then fail "helm template accepted $set"; fi
	[[ $out == *"$want"* ]] || fail "$set: $out (want: $want)"
done
pass "helm refuses $(ls deploy/helm/testdata/refused/*.yaml | wc -l) bad value sets"

# ---- Prometheus rules
command -v promtool >/dev/null 2>&1 || fail "promtool not installed (Debian package prometheus; make deps installs it)"
promtool check rules deploy/prometheus/dtrcache.rules.yml deploy/prometheus/dtrcache.alerts.yml >"$WORK/promtool.log" 2>&1 ||
	{ cat "$WORK/promtool.log"; fail "promtool check rules"; }
promtool check config deploy/prometheus/prometheus.yml >"$WORK/promtool.log" 2>&1 ||
	{ cat "$WORK/promtool.log"; fail "promtool check config"; }
(cd deploy/prometheus/tests && promtool test rules *.test.yml) >"$WORK/promtool.log" 2>&1 ||
	{ cat "$WORK/promtool.log"; fail "promtool test rules"; }
# Every alert has a firing case and a silent one.
for a in $(sed -n 's/^ *- alert: *//p' deploy/prometheus/dtrcache.alerts.yml); do
	silent=$(grep -h -A1 "alertname: $a\$" deploy/prometheus/tests/*.test.yml | grep -c 'exp_alerts: \[\]' || true)
	firing=$(grep -h -A2 "alertname: $a\$" deploy/prometheus/tests/*.test.yml | grep -c 'exp_labels' || true)
	[ "$silent" -ge 1 ] && [ "$firing" -ge 1 ] || fail "alert $a: $firing firing and $silent silent test cases"
done
pass "prometheus: rules check, $(grep -c '^ *- alert:' deploy/prometheus/dtrcache.alerts.yml) alerts each with a firing and a silent test"
