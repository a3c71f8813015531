package cache_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/dtrcache/dtrcache/proxy/cache"
	"github.com/dtrcache/dtrcache/testenv"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// TestMirrorNamespaces is the regression test of a mirror that containerd
// silently bypassed: ?ns= is matched against the upstream URL's host as
// well as its hosts list (and docker.io against Docker Hub's registry
// host); an unknown ns is refused with NAME_UNKNOWN, logged once per value
// (not per request) and counted. (Docker Hub's docker.io alias is
// TestMirrorPickDockerHub.)
func TestMirrorNamespaces(t *testing.T) {
	e := newEnv(t, envOptions{noRedirect: true})
	core, logs := observer.New(zapcore.WarnLevel)
	e.server.Logger = zap.New(core)
	reg := newRegistry()
	e.server.Metrics = cache.NewMetrics(reg)
	// The backend is listed under an alias only: its URL's host must still
	// match.
	e.server.Mirror.Upstreams[0].Hosts = []string{"registry.internal.example"}
	img := e.push(t, "lib/x:1", testenv.ImageSpec{Layers: 1, LayerSize: 100, Seed: 4})
	d, _ := img.Digest()
	path := "/v2/lib/x/manifests/" + d.String()

	for _, ns := range []string{e.reg.Host, "registry.internal.example", ""} {
		if resp, body, _ := e.get(t, path+"?ns="+ns, nil); resp.StatusCode != http.StatusOK {
			t.Fatalf("?ns=%s: %d %s", ns, resp.StatusCode, body)
		}
	}
	for _, ns := range []string{"ghcr.io", "ghcr.io", "ghcr.io", "quay.io"} {
		resp, body, _ := e.get(t, path+"?ns="+ns, nil)
		if resp.StatusCode != http.StatusNotFound || !strings.Contains(string(body), "NAME_UNKNOWN") {
			t.Fatalf("?ns=%s: %d %s", ns, resp.StatusCode, body)
		}
	}
	warned := map[string]int{}
	for _, l := range logs.All() {
		warned[l.ContextMap()["ns"].(string)]++
	}
	if len(warned) != 2 || warned["ghcr.io"] != 1 || warned["quay.io"] != 1 {
		t.Fatalf("warnings per ns %v, want one for ghcr.io and one for quay.io", warned)
	}
	want := `
# HELP dtrcache_mirror_unknown_ns_requests_total Mirror requests refused because their ?ns= names a registry no upstream mirrors (containerd then pulls from that registry directly, past the cache).
# TYPE dtrcache_mirror_unknown_ns_requests_total counter
dtrcache_mirror_unknown_ns_requests_total 4
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "dtrcache_mirror_unknown_ns_requests_total"); err != nil {
		t.Fatal(err)
	}
}
