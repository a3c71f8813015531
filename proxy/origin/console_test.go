package origin_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/dtrcache/dtrcache/proxy/origin"
)

// TestChangeCache: PATCH /api/v0/content_caches/{name} changes the
// addresses and account of a registered cache, for administrators only,
// with the checks of a registration.
func TestChangeCache(t *testing.T) {
	tp := newTopology(t)
	if code, body := tp.api(t, "admin", "POST", "/api/v0/content_caches", map[string]string{"name": "asia", "host": tp.cache.URL}); code != http.StatusCreated {
		t.Fatalf("register: %d %s", code, body)
	}
	for _, c := range []struct {
		name, user string
		body       map[string]string
		want       int
	}{
		{"not an admin", "alice", map[string]string{"account": "cache-asia"}, http.StatusForbidden},
		{"bad host", "admin", map[string]string{"host": "ftp://x"}, http.StatusBadRequest},
		{"bad probe host", "admin", map[string]string{"probeHost": "x"}, http.StatusBadRequest},
		{"no such account", "admin", map[string]string{"account": "nobody"}, http.StatusBadRequest},
		{"unknown field", "admin", map[string]string{"name": "eu"}, http.StatusBadRequest},
		{"ok", "admin", map[string]string{"account": "cache-asia", "probeHost": tp.cache.URL + "/"}, http.StatusOK},
	} {
		t.Run(c.name, func(t *testing.T) {
			if code, body := tp.api(t, c.user, "PATCH", "/api/v0/content_caches/asia", c.body); code != c.want {
				t.Fatalf("%d %s, want %d", code, body, c.want)
			}
		})
	}
	if code, _ := tp.api(t, "admin", "PATCH", "/api/v0/content_caches/nope", map[string]string{"account": ""}); code != http.StatusNotFound {
		t.Errorf("an unknown cache: %d, want 404", code)
	}
	code, body := tp.api(t, "alice", "GET", "/api/v0/content_caches/asia", nil)
	var c struct {
		Host, ProbeHost, Account string
		Healthy                  bool
		RTT                      float64 `json:"rttMs"`
	}
	if err := json.Unmarshal(body, &c); err != nil || code != http.StatusOK {
		t.Fatalf("%d %s", code, body)
	}
	// The change kept the host, took the new fields, and probed the cache
	// at once: healthy, with its round trip.
	if c.Host != tp.cache.URL || c.ProbeHost != tp.cache.URL || c.Account != "cache-asia" || !c.Healthy || c.RTT <= 0 {
		t.Fatalf("after the change: %+v", c)
	}
	if h, ok := tp.prober.Health("asia"); !ok || !h.Healthy || h.RTT <= 0 {
		t.Fatalf("prober health: %+v %v", h, ok)
	}
}

// TestOnBehalfOf: a request made in process for a user is that user's,
// with the same access decisions, and is served, never redirected.
func TestOnBehalfOf(t *testing.T) {
	tp := newTopology(t)
	img := tp.push(t, "website/ui:1", 7)
	tp.api(t, "admin", "POST", "/api/v0/content_caches", map[string]string{"name": "asia", "host": tp.cache.URL, "account": "cache-asia"})
	tp.api(t, "alice", "PATCH", "/api/v0/accounts/alice/settings", map[string]string{"contentCache": "asia"})
	srv := tp.srv
	do := func(user, path string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, path, nil)
		req = req.WithContext(origin.OnBehalfOf(req.Context(), user))
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, req)
		return rec
	}
	blob := blobDigests(img)[0]
	if rec := do("alice", "/v2/website/ui/blobs/"+blob); rec.Code != http.StatusOK {
		t.Errorf("alice's blob in process: %d, want 200 (served, not redirected)", rec.Code)
	}
	if rec := do("alice", "/api/v0/accounts/alice/settings"); rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "asia") {
		t.Errorf("alice's settings in process: %d %s", rec.Code, rec.Body)
	}
	if rec := do("alice", "/api/v0/accounts/bob/settings"); rec.Code != http.StatusForbidden {
		t.Errorf("bob's settings for alice in process: %d, want 403", rec.Code)
	}
	if rec := do("carol", "/v2/website/ui/manifests/1"); rec.Code != http.StatusForbidden {
		t.Errorf("carol's manifest in process: %d, want 403", rec.Code)
	}
	// From the network the same blob GET is still a redirect.
	req, _ := http.NewRequest(http.MethodGet, tp.origin.URL+"/v2/website/ui/blobs/"+blob, nil)
	req.SetBasicAuth("alice", password)
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTemporaryRedirect {
		t.Errorf("alice's blob over the network: %d, want 307", resp.StatusCode)
	}
}

// TestCacheOnlyIfCached: a HEAD with Cache-Control: only-if-cached is
// answered from the cache's store alone: 504 for a blob it does not hold
// (nothing asked upstream), 200 once it does.
func TestCacheOnlyIfCached(t *testing.T) {
	tp := newTopology(t)
	img := tp.push(t, "website/ui:1", 8)
	tp.api(t, "admin", "POST", "/api/v0/content_caches", map[string]string{"name": "asia", "host": tp.cache.URL, "account": "cache-asia"})
	blob := blobDigests(img)[0]
	tok, _, err := tp.keys.Signer().Sign("alice", "asia", "website/ui", blob)
	if err != nil {
		t.Fatal(err)
	}
	head := func(cc string) int {
		req, _ := http.NewRequest(http.MethodHead, tp.cache.URL+"/v2/website/ui/blobs/"+blob+"?token="+url.QueryEscape(tok), nil)
		if cc != "" {
			req.Header.Set("Cache-Control", cc)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	tp.originCount.Reset()
	if got := head("no-cache, only-if-cached"); got != http.StatusGatewayTimeout {
		t.Fatalf("only-if-cached HEAD of a blob not held: %d, want 504", got)
	}
	if n := tp.originCount.Requests("HEAD blob"); n != 0 {
		t.Fatalf("only-if-cached asked the upstream %d times", n)
	}
	if got := head(""); got != http.StatusOK {
		t.Fatalf("a plain HEAD (asks upstream): %d", got)
	}
	if _, err := tp.pull("alice", "website/ui:1"); err != nil {
		t.Fatal(err)
	}
	tp.api(t, "alice", "PATCH", "/api/v0/accounts/alice/settings", map[string]string{"contentCache": "asia"})
	if _, err := tp.pull("alice", "website/ui:1"); err != nil {
		t.Fatal(err)
	}
	// A fill commits just after its last byte went out: wait for it.
	for deadline := time.Now().Add(10 * time.Second); head("only-if-cached") != http.StatusOK; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("only-if-cached HEAD of a cached blob never answered 200")
		}
	}
}
