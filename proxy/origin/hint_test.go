package origin_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"testing"
	"time"

	"github.com/dtrcache/dtrcache/proxy/cache"
	"github.com/dtrcache/dtrcache/proxy/regapi"
)

// TestPrefetchHintCarriesSizes: the hint the origin posts for alice's
// manifest GET gives each blob the size its manifest descriptor does, so
// her cache orders its fills as a mirror would. The cache is the real one,
// behind a proxy that keeps a copy of each hint it passes on.
func TestPrefetchHintCarriesSizes(t *testing.T) {
	tp := newTopology(t)
	img := tp.push(t, "website/ui:sizes", 45)
	target, _ := url.Parse(tp.cache.URL)
	fwd := httputil.NewSingleHostReverseProxy(target)
	hints := make(chan regapi.PrefetchHint, 4)
	rec := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == cache.PrefetchPath {
			body, _ := io.ReadAll(r.Body)
			var h regapi.PrefetchHint
			if err := json.Unmarshal(body, &h); err == nil {
				select {
				case hints <- h:
				default: // the test reads the first
				}
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		fwd.ServeHTTP(w, r)
	}))
	t.Cleanup(rec.Close)
	tp.api(t, "admin", "POST", "/api/v0/content_caches", map[string]string{"name": "asia", "host": rec.URL, "account": "cache-asia"})
	tp.api(t, "alice", "PATCH", "/api/v0/accounts/alice/settings", map[string]string{"contentCache": "asia"})
	tp.getManifest(t, "alice", "website/ui", "sizes")
	var h regapi.PrefetchHint
	select {
	case h = <-hints:
	case <-time.After(10 * time.Second):
		t.Fatal("no prefetch hint reached the cache")
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{m.Config.Digest.String(): m.Config.Size}
	for _, l := range m.Layers {
		want[l.Digest.String()] = l.Size
	}
	if len(h.Blobs) != len(want) {
		t.Fatalf("hint of %d blobs, want %d", len(h.Blobs), len(want))
	}
	for _, b := range h.Blobs {
		if s, ok := want[b.Digest]; !ok || b.Size != s || s <= 0 {
			t.Errorf("hint blob %s: size %d, want %d (listed: %v)", b.Digest, b.Size, s, ok)
		}
	}
}
