package cache_test

import (
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/dtrcache/dtrcache/testenv"
	"go.uber.org/goleak"
)

// TestCloseLeavesNoGoroutines: the prefetch workers and the background
// fills a manifest starts are owned by the server. Close returns only once
// they have ended, even while the upstream holds every blob back; once the
// stores and the registry are closed too, no goroutine of theirs is left
// (goleak waits for them to end, then names any that did not).
func TestCloseLeavesNoGoroutines(t *testing.T) {
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, before, ignoreRegistry) }) // runs last: after every cleanup newEnv registers
	var hold atomic.Bool
	held := make(chan struct{}, 16)
	e := newEnv(t, envOptions{regOpts: testenv.RegistryOptions{Wrap: func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if hold.Load() && strings.Contains(r.URL.Path, "/blobs/") {
				held <- struct{}{}
				<-r.Context().Done() // until the client gives up or the registry closes
				return
			}
			h.ServeHTTP(w, r)
		})
	}}})
	e.server.Prefetch = 2
	e.push(t, "leak/check:1", testenv.ImageSpec{Layers: 4, LayerSize: 256 << 10, Seed: 31})
	hold.Store(true)
	resp, _, _ := e.get(t, "/v2/leak/check/manifests/1", map[string]string{"Accept": "application/vnd.oci.image.manifest.v1+json"})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("manifest: %d", resp.StatusCode)
	}
	if n := e.server.PrefetchStats().Queued; n != 5 {
		t.Fatalf("%d prefetches queued, want 5 (config and 4 layers)", n)
	}
	<-held // a prefetch fill is waiting on the upstream
	<-held
	e.server.Close()
	buf := make([]byte, 1<<20)
	// A running frame reads "pkg.(*Server).runPrefetch(args…)"; "created
	// by" lines name their creator without the parenthesis.
	if stacks := string(buf[:runtime.Stack(buf, true)]); strings.Contains(stacks, "cache.(*Server).prefetchWorker(") || strings.Contains(stacks, "cache.(*Server).runPrefetch(") {
		t.Fatalf("Close returned while prefetch goroutines run:\n%s", stacks)
	}
}

// ignoreRegistry ignores the notification broadcaster of the in-process
// distribution registry (the tests' upstream), which distribution starts
// per registry and never stops.
var ignoreRegistry = goleak.IgnoreTopFunction("github.com/docker/go-events.(*Broadcaster).run")
