package origin_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/dtrcache/dtrcache/proxy/origin"
	"go.uber.org/zap"
)

// BenchmarkRedirect is the origin's cost per redirected blob: alice, whose
// profile names a healthy cache, GETs the blobs of one image again and
// again, as her warm pulls do, and every answer is a 307 to the cache with
// a token. It covers what the origin does per blob (Basic auth, the
// authorization and its audit line, the cache's health, the link check,
// the token, the Location); the network is not in it.
func BenchmarkRedirect(b *testing.B) {
	tp := newTopology(b, func(c *origin.Config) { c.Logger, c.Audit = zap.NewNop(), zap.NewNop() })
	img := tp.push(b, "website/ui:1", 1)
	if code, body := tp.api(b, "admin", "POST", "/api/v0/content_caches", map[string]string{"name": "asia", "host": tp.cache.URL, "account": "cache-asia"}); code != http.StatusCreated {
		b.Fatalf("register asia: %d %s", code, body)
	}
	if code, body := tp.api(b, "alice", "PATCH", "/api/v0/accounts/alice/settings", map[string]string{"contentCache": "asia"}); code != http.StatusOK {
		b.Fatalf("alice settings: %d %s", code, body)
	}
	ds := blobDigests(img)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		req := httptest.NewRequest(http.MethodGet, "/v2/website/ui/blobs/"+ds[i%len(ds)], nil)
		req.SetBasicAuth("alice", password)
		rec := httptest.NewRecorder()
		tp.srv.ServeHTTP(rec, req)
		if rec.Code != http.StatusTemporaryRedirect || !strings.Contains(rec.Header().Get("Location"), "token=") {
			b.Fatalf("GET blob: %d %q, want a 307 with a token", rec.Code, rec.Header().Get("Location"))
		}
	}
}
