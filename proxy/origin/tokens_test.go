package origin_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dtrcache/dtrcache/casstore"
	"github.com/dtrcache/dtrcache/policy"
	"github.com/dtrcache/dtrcache/proxy/origin"
	"github.com/prometheus/client_golang/prometheus"
)

// fakeClock is a clock tests step.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// newKeyRing returns a key ring over a new key directory with one key,
// tokens of ttl, on clock.
func newKeyRing(t *testing.T, ttl time.Duration, clock *fakeClock, maxTokens int) *origin.KeyRing {
	t.Helper()
	dir := t.TempDir()
	k, _ := policy.GenerateKey(rand.Reader)
	if _, _, err := policy.WriteKeyPair(dir, k, clock.Now()); err != nil {
		t.Fatal(err)
	}
	kr := &origin.KeyRing{Dir: dir, Issuer: "origin-test", TTL: ttl, Now: clock.Now, MaxTokens: maxTokens}
	if err := kr.Reload(); err != nil {
		t.Fatal(err)
	}
	return kr
}

// tokenKid is the kid of a token's header.
func tokenKid(t *testing.T, tok string) string {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(strings.SplitN(tok, ".", 2)[0])
	if err != nil {
		t.Fatal(err)
	}
	var h struct{ Kid string }
	if err := json.Unmarshal(b, &h); err != nil {
		t.Fatal(err)
	}
	return h.Kid
}

// TestTokenReuse: the key ring hands out the token it signed for the same
// key, user, cache, repository and blob while at least half its lifetime
// remains, a new one after; never another user's, cache's, repository's
// or blob's; and only tokens of the current key once a new key signs.
func TestTokenReuse(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1_800_000_000, 0)}
	kr := newKeyRing(t, 10*time.Minute, clock, 0)
	v := &policy.Verifier{Keys: kr, Issuer: "origin-test", Now: clock.Now}
	d1, d2 := "sha256:"+strings.Repeat("1", 64), "sha256:"+strings.Repeat("2", 64)
	token := func(user, cache, repo, digest string) string {
		t.Helper()
		tok, err := kr.Token(user, cache, repo, digest)
		if err != nil {
			t.Fatal(err)
		}
		c, err := v.Verify(context.Background(), tok, repo, digest)
		if err != nil {
			t.Fatalf("token for %s at %s of %s@%s: %v", user, cache, repo, digest, err)
		}
		if c.Subject != user || c.Audience != cache {
			t.Fatalf("token for %s at %s names %s at %s", user, cache, c.Subject, c.Audience)
		}
		return tok
	}

	first := token("alice", "asia", "website/ui", d1)
	clock.Add(5*time.Minute - time.Second) // half the lifetime and a second remain
	if got := token("alice", "asia", "website/ui", d1); got != first {
		t.Error("a new token with more than half the lifetime of the old one left")
	}
	// Nobody else gets alice's token: each differs in one claim.
	seen := map[string]string{first: "alice's"}
	for name, tok := range map[string]string{
		"bob's":             token("bob", "asia", "website/ui", d1),
		"another cache's":   token("alice", "europe", "website/ui", d1),
		"another repo's":    token("alice", "asia", "website/api", d1),
		"another blob's":    token("alice", "asia", "website/ui", d2),
		"alice's, d1 again": token("alice", "asia", "website/ui", d1),
	} {
		if prev, dup := seen[tok]; dup && name != "alice's, d1 again" {
			t.Errorf("%s token is %s", name, prev)
		}
		seen[tok] = name
	}

	clock.Add(time.Second) // half the lifetime left: signed again
	second := token("alice", "asia", "website/ui", d1)
	if second == first {
		t.Fatal("the token was reused with only half its lifetime left")
	}
	c, _ := v.Verify(context.Background(), second, "website/ui", d1)
	if !c.IssuedAt.Equal(clock.Now()) || c.Expiry.Sub(clock.Now()) != 10*time.Minute {
		t.Errorf("the new token: issued %v, expires %v; now %v", c.IssuedAt, c.Expiry, clock.Now())
	}
	if got := token("alice", "asia", "website/ui", d1); got != second {
		t.Error("the new token is not reused")
	}

	// A new key: its tokens from the next reload on, never the old key's.
	oldKid := tokenKid(t, second)
	k2, _ := policy.GenerateKey(rand.Reader)
	if _, _, err := policy.WriteKeyPair(kr.Dir, k2, clock.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := kr.Reload(); err != nil {
		t.Fatal(err)
	}
	rotated := token("alice", "asia", "website/ui", d1)
	if rotated == second || tokenKid(t, rotated) != k2.Kid || oldKid == k2.Kid {
		t.Errorf("after the rotation: kid %s (old %s, new %s), same token %v", tokenKid(t, rotated), oldKid, k2.Kid, rotated == second)
	}
}

// TestTokensAreBounded: a key ring keeps at most MaxTokens tokens, and one
// that dropped a token signs a new, valid one.
func TestTokensAreBounded(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1_800_000_000, 0)}
	kr := newKeyRing(t, 10*time.Minute, clock, 10)
	d := "sha256:" + strings.Repeat("3", 64)
	first, _ := kr.Token("user-0", "asia", "website/ui", d)
	for i := range 100 {
		if _, err := kr.Token("user-"+string(rune('a'+i%26))+strings.Repeat("x", i), "asia", "website/ui", d); err != nil {
			t.Fatal(err)
		}
		if n := kr.KeptTokens(); n > 10 {
			t.Fatalf("%d tokens kept after %d signed, want at most 10", n, i+2)
		}
	}
	again, err := kr.Token("user-0", "asia", "website/ui", d)
	if err != nil || again == first {
		t.Fatalf("user-0's token after 100 others: reused %v, %v", again == first, err)
	}
	v := &policy.Verifier{Keys: kr, Issuer: "origin-test", Now: clock.Now}
	if _, err := v.Verify(context.Background(), again, "website/ui", d); err != nil {
		t.Fatal(err)
	}
}

// blobLocation GETs a blob from h as user and returns the status and the
// redirect's Location.
func blobLocation(t *testing.T, h http.Handler, user, pass, repo, d string) (int, string) {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "/v2/"+repo+"/blobs/"+d, nil)
	req.SetBasicAuth(user, pass)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code, rec.Header().Get("Location")
}

// TestRedirectsReuseTokensButAuthorizeEachTime: alice's redirects to her
// cache carry the one token signed for the blob; bob's carry his own; and
// every request is still authorized: a wrong password is refused, and
// once alice may no longer pull the repository she gets a 403 and no
// redirect, although her token is kept.
func TestRedirectsReuseTokensButAuthorizeEachTime(t *testing.T) {
	tp := newTopology(t)
	img := tp.push(t, "website/ui:1", 21)
	tp.api(t, "admin", "POST", "/api/v0/content_caches", map[string]string{"name": "asia", "host": tp.cache.URL, "account": "cache-asia"})
	for _, u := range []string{"alice", "bob"} {
		tp.api(t, "admin", "PATCH", "/api/v0/accounts/"+u+"/settings", map[string]string{"contentCache": "asia"})
	}
	d := blobDigests(img)[0]
	code, first := blobLocation(t, tp.srv, "alice", password, "website/ui", d)
	if code != http.StatusTemporaryRedirect || !strings.Contains(first, "token=") {
		t.Fatalf("alice: %d %q, want a redirect with a token", code, first)
	}
	if _, again := blobLocation(t, tp.srv, "alice", password, "website/ui", d); again != first {
		t.Errorf("alice's second redirect carries another token:\n%s\n%s", first, again)
	}
	if _, bobs := blobLocation(t, tp.srv, "bob", password, "website/ui", d); bobs == first || bobs == "" {
		t.Errorf("bob's redirect %q, alice's %q", bobs, first)
	} else {
		u, _ := url.Parse(bobs)
		c, err := (&policy.Verifier{Keys: tp.keys, Issuer: "origin-test"}).Verify(context.Background(), u.Query().Get("token"), "website/ui", d)
		if err != nil || c.Subject != "bob" {
			t.Errorf("bob's token: %+v %v", c, err)
		}
	}
	if code, loc := blobLocation(t, tp.srv, "alice", "wrong", "website/ui", d); code != http.StatusUnauthorized || loc != "" {
		t.Errorf("alice with a wrong password: %d %q", code, loc)
	}

	// The same key ring (and the token it keeps for alice) behind an
	// origin whose rules no longer let alice pull website/ui.
	revoked, err := policy.NewAccess(policy.AccessConfig{
		Admins:       []string{"admin"},
		Repositories: []policy.RepoRule{{Pattern: "**", Grants: []policy.Grant{{User: "bob", Actions: []policy.Action{policy.ActionPull}}, {User: "cache-asia", Actions: []policy.Action{policy.ActionPull}}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	backend, _ := url.Parse(tp.reg.URL)
	srv2, err := origin.New(origin.Config{Backend: backend, Users: tp.users, Access: revoked, Keys: tp.keys, DB: tp.db, Prober: tp.prober})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv2.Close)
	if code, loc := blobLocation(t, srv2, "alice", password, "website/ui", d); code != http.StatusForbidden || loc != "" {
		t.Errorf("alice without the permission: %d %q, want 403 and no redirect", code, loc)
	}
	if code, loc := blobLocation(t, srv2, "bob", password, "website/ui", d); code != http.StatusTemporaryRedirect || loc == first {
		t.Errorf("bob after alice's revocation: %d %q", code, loc)
	}
}

// countingKeys counts the key lookups of a verifier: one per token it
// verifies (the cache's remembered tokens need none).
type countingKeys struct {
	policy.KeySet
	n *atomic.Int64
}

func (k countingKeys) PublicKey(ctx context.Context, kid string) (ed25519.PublicKey, error) {
	k.n.Add(1)
	return k.KeySet.PublicKey(ctx, kid)
}

// TestCacheVerifiesEachTokenOnce: the prefetch hint and the redirects of
// a pull carry the same token per blob, so the cache verifies each blob's
// token once (the hint's) and its remembered tokens answer the redirects,
// of this pull and of the next.
func TestCacheVerifiesEachTokenOnce(t *testing.T) {
	reg := prometheus.NewRegistry()
	tp := newTopology(t, func(c *origin.Config) { c.Metrics = origin.NewMetrics(reg) })
	img := tp.push(t, "website/ui:5", 22)
	tp.api(t, "admin", "POST", "/api/v0/content_caches", map[string]string{"name": "asia", "host": tp.cache.URL, "account": "cache-asia"})
	tp.api(t, "alice", "PATCH", "/api/v0/accounts/alice/settings", map[string]string{"contentCache": "asia"})
	ds := blobDigests(img)
	hinted := func() float64 {
		mfs, _ := reg.Gather()
		for _, mf := range mfs {
			if mf.GetName() == "dtrcache_origin_prefetch_hints_total" {
				return mf.GetMetric()[0].GetCounter().GetValue()
			}
		}
		return 0
	}
	waitHinted := func(want float64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for hinted() < want {
			if time.Now().After(deadline) {
				t.Fatalf("%v blobs hinted, want %v", hinted(), want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	pullBlobs := func() {
		t.Helper()
		for _, d := range ds {
			req, _ := http.NewRequest(http.MethodGet, tp.origin.URL+"/v2/website/ui/blobs/"+d, nil)
			req.SetBasicAuth("alice", password)
			resp, err := http.DefaultClient.Do(req) // follows the redirect to the cache
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || casstore.FromBytes(b).String() != d {
				t.Fatalf("blob %s: %d, %d bytes", d, resp.StatusCode, len(b))
			}
		}
	}
	before := tp.keyLookups.Load()
	tp.getManifest(t, "alice", "website/ui", "5") // the hint: one verification per blob
	waitHinted(float64(len(ds)))
	pullBlobs()
	if n := tp.keyLookups.Load() - before; n != int64(len(ds)) {
		t.Errorf("the cache verified %d tokens for a pull of %d blobs with a hint, want %d", n, len(ds), len(ds))
	}
	// The next pull (within half the tokens' lifetime): no verification.
	before = tp.keyLookups.Load()
	tp.getManifest(t, "alice", "website/ui", "5")
	waitHinted(float64(2 * len(ds)))
	pullBlobs()
	if n := tp.keyLookups.Load() - before; n != 0 {
		t.Errorf("the cache verified %d tokens in the next pull, want 0", n)
	}
}
