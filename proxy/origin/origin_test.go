package origin_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dtrcache/dtrcache/casstore"
	"github.com/dtrcache/dtrcache/policy"
	"github.com/dtrcache/dtrcache/proxy/cache"
	"github.com/dtrcache/dtrcache/proxy/origin"
	"github.com/dtrcache/dtrcache/proxy/regapi"
	"github.com/dtrcache/dtrcache/proxy/serve"
	"github.com/dtrcache/dtrcache/proxy/upstream"
	"github.com/dtrcache/dtrcache/testenv"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"go.uber.org/zap/zaptest"
)

const password = "correct horse"

// topology is backend registry + origin + one cache ("asia"), all real
// servers on loopback.
type topology struct {
	reg         *testenv.Registry
	origin      *httptest.Server
	originHost  string
	db          *origin.DB
	dataDir     string
	keys        *origin.KeyRing
	prober      *origin.Prober
	cacheServer *cache.Server
	cache       *httptest.Server
	cacheCount  *testenv.Counter
	originCount *testenv.Counter
	users       *policy.Users
	cacheStore  *casstore.Store
	access      *policy.Access
	srv         *origin.Server

	// uploadQueries are the raw queries of the upload POSTs the backend
	// received.
	uploadQueries chan string

	// keyLookups counts the caches' key lookups: one per token a cache
	// verifies.
	keyLookups atomic.Int64

	// mu guards blobHeads.
	mu sync.Mutex
	// blobHeads are the User-Agents of the blob HEADs the backend received.
	blobHeads []string
}

func htpasswd(t testing.TB, users ...string) *policy.Users {
	t.Helper()
	var b strings.Builder
	for _, u := range users {
		h, err := policy.HashPassword(password, 4)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s:%s\n", u, h)
	}
	us, err := policy.ParseHtpasswd([]byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	return us
}

func newTopology(t testing.TB, opts ...func(*origin.Config)) *topology {
	t.Helper()
	ctx := context.Background()
	log := zaptest.NewLogger(t)
	tp := &topology{uploadQueries: make(chan string, 100)}
	var err error
	tp.reg, err = testenv.StartRegistry(ctx, testenv.RegistryOptions{Wrap: func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodHead && strings.Contains(r.URL.Path, "/blobs/") {
				tp.mu.Lock()
				tp.blobHeads = append(tp.blobHeads, r.UserAgent())
				tp.mu.Unlock()
			}
			if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/blobs/uploads/") {
				select {
				case tp.uploadQueries <- r.URL.RawQuery:
				default:
				}
			}
			next.ServeHTTP(w, r)
		})
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tp.reg.Close() })
	tp.users = htpasswd(t, "admin", "alice", "bob", "carol", "cache-asia")
	tp.access, err = policy.NewAccess(policy.AccessConfig{
		Admins: []string{"admin"},
		Teams:  []policy.Team{{Name: "web", Members: []string{"alice", "bob"}}, {Name: "caches", Members: []string{"cache-asia"}}},
		Repositories: []policy.RepoRule{
			{Pattern: "website/**", Grants: []policy.Grant{{Team: "web", Actions: []policy.Action{policy.ActionPull}}, {User: "admin", Actions: []policy.Action{policy.ActionPush}}}},
			{Pattern: "secret/**", Grants: []policy.Grant{{User: "carol", Actions: []policy.Action{policy.ActionPull}}, {User: "admin", Actions: []policy.Action{policy.ActionPush}}}},
			{Pattern: "scratch/**", Grants: []policy.Grant{{Team: "web", Actions: []policy.Action{policy.ActionPush}}}},
			{Pattern: "**", Grants: []policy.Grant{{Team: "caches", Actions: []policy.Action{policy.ActionPull}}}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	keyDir := t.TempDir()
	k, _ := policy.GenerateKey(rand.Reader)
	if _, _, err := policy.WriteKeyPair(keyDir, k, time.Now()); err != nil {
		t.Fatal(err)
	}
	tp.keys = &origin.KeyRing{Dir: keyDir, Issuer: "origin-test", TTL: time.Minute}
	if err := tp.keys.Reload(); err != nil {
		t.Fatal(err)
	}
	tp.dataDir = t.TempDir()
	tp.openDB(t)
	tp.prober = &origin.Prober{Client: http.DefaultClient, List: tp.db.Caches, Logger: log}
	backend, _ := url.Parse(tp.reg.URL)
	oc := origin.Config{
		Backend: backend, Users: tp.users, Access: tp.access, Keys: tp.keys, DB: tp.db, Prober: tp.prober, Logger: log,
		PrefetchHints: true,
	}
	for _, o := range opts {
		o(&oc)
	}
	srv, err := origin.New(oc)
	if err != nil {
		t.Fatal(err)
	}
	tp.srv = srv
	t.Cleanup(srv.Close)
	tp.originCount = testenv.NewCounter(serve.Instrument(log.Named("origin"), nil, serve.Mux(srv, nil, nil)))
	tp.origin = httptest.NewServer(tp.originCount)
	t.Cleanup(tp.origin.Close)
	tp.originHost = tp.origin.Listener.Addr().String()

	n := tp.startCache(t, "asia")
	tp.cache, tp.cacheCount, tp.cacheStore, tp.cacheServer = n.srv, n.count, n.store, n.cs
	return tp
}

// cacheNode is one cache server of the topology.
type cacheNode struct {
	srv   *httptest.Server
	count *testenv.Counter
	store *casstore.Store
	cs    *cache.Server
}

// startCache starts a cache named name: redirect mode, the origin
// upstream with the cache's own account, the origin's keys from its JWKS.
func (tp *topology) startCache(t testing.TB, name string) cacheNode {
	t.Helper()
	log := zaptest.NewLogger(t).Named("cache")
	st, err := casstore.Open(t.TempDir(), casstore.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	client, _ := upstream.New(upstream.Config{URLs: []string{tp.origin.URL}, Username: "cache-asia", Password: password})
	jwks := &policy.RemoteKeys{Fetch: func(ctx context.Context) ([]byte, error) {
		resp, err := http.Get(tp.origin.URL + "/.well-known/jwks.json")
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		return io.ReadAll(resp.Body)
	}}
	cs := &cache.Server{Redirect: &cache.Redirect{Store: st, Upstream: client, Audiences: []string{name},
		Verifier: &policy.Verifier{Keys: countingKeys{jwks, &tp.keyLookups}, Issuer: "origin-test"}}, Prefetch: 2}
	t.Cleanup(cs.Close)
	count := testenv.NewCounter(serve.Instrument(log, nil, serve.Mux(cs, nil, nil)))
	srv := httptest.NewServer(count)
	t.Cleanup(srv.Close)
	return cacheNode{srv: srv, count: count, store: st, cs: cs}
}

func (tp *topology) openDB(t testing.TB) {
	t.Helper()
	db, err := origin.OpenDB(filepath.Join(tp.dataDir, "db"))
	if err != nil {
		t.Fatal(err)
	}
	tp.db = db
	t.Cleanup(func() { db.Close() })
}

// api calls the JSON API as user.
func (tp *topology) api(t testing.TB, user, method, path string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, tp.origin.URL+path, rd)
	if user != "" {
		req.SetBasicAuth(user, password)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

// getManifest GETs an image manifest through the origin as user (which
// sends the user's cache a prefetch hint).
func (tp *topology) getManifest(t testing.TB, user, repo, ref string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, tp.origin.URL+"/v2/"+repo+"/manifests/"+ref, nil)
	req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json")
	req.SetBasicAuth(user, password)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET manifest %s:%s as %s: %d", repo, ref, user, resp.StatusCode)
	}
}

func (tp *topology) push(t testing.TB, ref string, seed uint64) v1.Image {
	t.Helper()
	img, err := testenv.GenerateImage(testenv.ImageSpec{Layers: 3, LayerSize: 256 << 10, Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	// Pushed through the origin, as an admin would.
	if err := testenv.Push(context.Background(), tp.originHost+"/"+ref, img, testenv.RemoteOptions{Username: "admin", Password: password}); err != nil {
		t.Fatal(err)
	}
	return img
}

func (tp *topology) pull(user, ref string) (testenv.PullResult, error) {
	return testenv.Pull(context.Background(), tp.originHost+"/"+ref, testenv.RemoteOptions{Username: user, Password: password}, nil)
}

func blobDigests(img v1.Image) []string {
	var out []string
	ls, _ := img.Layers()
	for _, l := range ls {
		d, _ := l.Digest()
		out = append(out, d.String())
	}
	cfg, _ := img.ConfigName()
	return append(out, cfg.String())
}

func TestOriginRedirectsToCache(t *testing.T) {
	tp := newTopology(t)
	img := tp.push(t, "website/ui:3-stable", 1)
	want, _ := img.Digest()

	// Admin registers the cache; a non-admin cannot.
	if code, body := tp.api(t, "alice", "POST", "/api/v0/content_caches", map[string]string{"name": "evil", "host": "http://x"}); code != http.StatusForbidden {
		t.Fatalf("non-admin registering a cache: %d %s", code, body)
	}
	if code, body := tp.api(t, "admin", "POST", "/api/v0/content_caches", map[string]string{"name": "asia", "host": tp.cache.URL, "account": "cache-asia"}); code != http.StatusCreated {
		t.Fatalf("register asia: %d %s", code, body)
	}
	// alice points her profile at asia; she may not change bob's.
	if code, body := tp.api(t, "alice", "PATCH", "/api/v0/accounts/alice/settings", map[string]string{"contentCache": "asia"}); code != http.StatusOK {
		t.Fatalf("alice settings: %d %s", code, body)
	}
	if code, _ := tp.api(t, "alice", "PATCH", "/api/v0/accounts/bob/settings", map[string]string{"contentCache": "asia"}); code != http.StatusForbidden {
		t.Fatalf("alice changing bob's settings: %d", code)
	}
	if code, _ := tp.api(t, "alice", "PATCH", "/api/v0/accounts/alice/settings", map[string]string{"contentCache": "nope"}); code != http.StatusBadRequest {
		t.Fatalf("unknown cache accepted: %d", code)
	}

	// alice: every blob from the cache, the manifest from the origin.
	res, err := tp.pull("alice", "website/ui:3-stable")
	if err != nil || res.Digest != want {
		t.Fatalf("alice pull: %v %v", res.Digest, err)
	}
	for _, d := range blobDigests(img) {
		if n := tp.cacheCount.BlobGets(d); n != 1 {
			t.Errorf("alice: cache served blob %s %d times, want 1", d, n)
		}
		if n := tp.reg.Counter.BlobGets(d); n != 1 {
			t.Errorf("alice: backend saw %d GETs of %s, want 1 (the cache's fill)", n, d)
		}
	}
	if n := tp.cacheCount.Requests("GET manifest"); n != 0 {
		t.Errorf("a manifest came from the cache (%d)", n)
	}

	// bob: no cache in his profile, blobs from the origin.
	tp.cacheCount.Reset()
	if res, err := tp.pull("bob", "website/ui:3-stable"); err != nil || res.Digest != want {
		t.Fatalf("bob pull: %v %v", res.Digest, err)
	}
	if n := tp.cacheCount.TotalBlobGets(); n != 0 {
		t.Errorf("bob's blobs went to the cache (%d)", n)
	}

	// carol: no permission, 403 on manifest and blob.
	for _, p := range []string{"/v2/website/ui/manifests/3-stable", "/v2/website/ui/blobs/" + blobDigests(img)[0]} {
		req, _ := http.NewRequest(http.MethodGet, tp.origin.URL+p, nil)
		req.SetBasicAuth("carol", password)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden || !bytes.Contains(body, []byte("DENIED")) {
			t.Fatalf("carol %s: %d %s", p, resp.StatusCode, body)
		}
	}
	// Anonymous: 401 with a challenge; wrong password: 401.
	resp, _ := http.Get(tp.origin.URL + "/v2/website/ui/manifests/3-stable")
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic") {
		t.Fatalf("anonymous: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	if _, err := testenv.Pull(context.Background(), tp.originHost+"/website/ui:3-stable", testenv.RemoteOptions{Username: "alice", Password: "wrong"}, nil); err == nil {
		t.Fatal("pull with a wrong password succeeded")
	}

	// The asia cache goes down: alice still pulls, from the origin.
	tp.cache.Close()
	c, _ := tp.db.Cache("asia")
	if tp.prober.Probe(context.Background(), c) {
		t.Fatal("a stopped cache probed healthy")
	}
	tp.reg.Counter.Reset()
	if res, err := tp.pull("alice", "website/ui:3-stable"); err != nil || res.Digest != want {
		t.Fatalf("alice pull with the cache down: %v %v", res.Digest, err)
	}
	if n := tp.reg.Counter.BlobGets(blobDigests(img)[0]); n != 1 {
		t.Fatalf("with the cache down the origin served the blob %d times, want 1", n)
	}

	// Settings survive an origin restart (the database is reopened).
	tp.db.Close()
	tp.openDB(t)
	st, err := tp.db.Settings("alice")
	if err != nil || st.ContentCache != "asia" {
		t.Fatalf("alice's settings after restart: %+v %v", st, err)
	}
	if cs, _ := tp.db.Caches(); len(cs) != 1 || cs[0].Host != tp.cache.URL {
		t.Fatalf("caches after restart: %+v", cs)
	}
}

func TestRedirectTokensAreBoundToOneBlob(t *testing.T) {
	tp := newTopology(t)
	img := tp.push(t, "website/ui:1", 2)
	tp.api(t, "admin", "POST", "/api/v0/content_caches", map[string]string{"name": "asia", "host": tp.cache.URL, "account": "cache-asia"})
	tp.api(t, "alice", "PATCH", "/api/v0/accounts/alice/settings", map[string]string{"contentCache": "asia"})
	ds := blobDigests(img)
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, _ := http.NewRequest(http.MethodGet, tp.origin.URL+"/v2/website/ui/blobs/"+ds[0], nil)
	req.SetBasicAuth("alice", password)
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTemporaryRedirect {
		t.Fatalf("status %d, want 307", resp.StatusCode)
	}
	loc, _ := url.Parse(resp.Header.Get("Location"))
	tok := loc.Query().Get("token")
	if !strings.HasPrefix(loc.String(), tp.cache.URL+"/v2/website/ui/blobs/"+ds[0]) || tok == "" {
		t.Fatalf("Location %s", loc)
	}
	tests := []struct {
		path string
		want int
	}{
		{"/v2/website/ui/blobs/" + ds[0], 200},
		{"/v2/website/ui/blobs/" + ds[1], 403},    // another digest
		{"/v2/website/other/blobs/" + ds[0], 403}, // another repo
	}
	for _, base := range []string{tp.cache.URL, tp.origin.URL} {
		for _, tt := range tests {
			resp, err := http.Get(base + tt.path + "?token=" + url.QueryEscape(tok))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Errorf("%s%s with the token for %s: %d, want %d", base, tt.path, ds[0], resp.StatusCode, tt.want)
			}
		}
	}
}

func TestKeyRotation(t *testing.T) {
	tp := newTopology(t)
	img := tp.push(t, "website/ui:1", 3)
	tp.api(t, "admin", "POST", "/api/v0/content_caches", map[string]string{"name": "asia", "host": tp.cache.URL, "account": "cache-asia"})
	tp.api(t, "alice", "PATCH", "/api/v0/accounts/alice/settings", map[string]string{"contentCache": "asia"})
	d := blobDigests(img)[0]
	oldTok, _, _ := tp.keys.Signer().Sign("alice", "asia", "website/ui", d)

	// Add a new key: it signs from now on, both are published.
	k2, _ := policy.GenerateKey(rand.Reader)
	if _, _, err := policy.WriteKeyPair(tp.keys.Dir, k2, time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := tp.keys.Reload(); err != nil {
		t.Fatal(err)
	}
	var jwks struct{ Keys []struct{ Kid string } }
	resp, _ := http.Get(tp.origin.URL + "/.well-known/jwks.json")
	json.NewDecoder(resp.Body).Decode(&jwks)
	resp.Body.Close()
	if len(jwks.Keys) != 2 {
		t.Fatalf("JWKS has %d keys, want 2", len(jwks.Keys))
	}
	newTok, _, _ := tp.keys.Signer().Sign("alice", "asia", "website/ui", d)
	// The cache learns the new key on first sight of its kid; the token
	// issued before the rotation still works.
	for name, tok := range map[string]string{"new key": newTok, "in-flight old key": oldTok} {
		resp, err := http.Get(tp.cache.URL + "/v2/website/ui/blobs/" + d + "?token=" + url.QueryEscape(tok))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s token at the cache: %d", name, resp.StatusCode)
		}
	}
	// And a whole pull works across the rotation.
	if _, err := tp.pull("alice", "website/ui:1"); err != nil {
		t.Fatal(err)
	}
}

// TestPrefetchHints: when alice GETs a manifest, the origin hints her cache,
// which fills every blob before her client asks; forged hints are refused.
func TestPrefetchHints(t *testing.T) {
	tp := newTopology(t)
	img := tp.push(t, "website/ui:7", 7)
	tp.api(t, "admin", "POST", "/api/v0/content_caches", map[string]string{"name": "asia", "host": tp.cache.URL, "account": "cache-asia"})
	tp.api(t, "alice", "PATCH", "/api/v0/accounts/alice/settings", map[string]string{"contentCache": "asia"})
	tp.reg.Counter.Reset()
	tp.getManifest(t, "alice", "website/ui", "7")
	deadline := time.Now().Add(10 * time.Second)
	for _, d := range blobDigests(img) {
		for {
			if _, err := tp.cacheStore.Stat(casstore.MustParseDigest(d)); err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("blob %s was not prefetched", d)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	if n := tp.cacheCount.TotalBlobGets(); n != 0 {
		t.Fatalf("the client asked the cache for %d blobs already", n)
	}
	if _, err := tp.pull("alice", "website/ui:7"); err != nil {
		t.Fatal(err)
	}
	for _, d := range blobDigests(img) {
		if n := tp.reg.Counter.BlobGets(d); n != 1 {
			t.Fatalf("backend saw %d GETs of %s, want 1", n, d)
		}
	}
	// A hint with a forged token starts nothing.
	other, _ := policy.GenerateKey(rand.Reader)
	forged, _, _ := policy.NewSigner(&policy.PrivateKey{Kid: other.Kid, Key: other.Key}, "origin-test", time.Minute).Sign("mallory", "asia", "website/ui", "sha256:"+strings.Repeat("a", 64))
	body, _ := json.Marshal(regapi.PrefetchHint{Repo: "website/ui", Blobs: []regapi.PrefetchBlob{{Digest: "sha256:" + strings.Repeat("a", 64), Token: forged}}})
	resp, err := http.Post(tp.cache.URL+cache.PrefetchPath, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]int
	json.NewDecoder(resp.Body).Decode(&got)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted || got["accepted"] != 0 || got["refused"] != 1 {
		t.Fatalf("forged hint: %d %v", resp.StatusCode, got)
	}
}

// TestNoRedirectForBlobsOfOtherRepositories: a blob cached for one
// repository must not reach a user through another repository's path.
func TestNoRedirectForBlobsOfOtherRepositories(t *testing.T) {
	tp := newTopology(t)
	secret := tp.push(t, "secret/app:1", 9)
	tp.push(t, "website/ui:9", 10)
	tp.api(t, "admin", "POST", "/api/v0/content_caches", map[string]string{"name": "asia", "host": tp.cache.URL, "account": "cache-asia"})
	for _, u := range []string{"alice", "carol"} {
		tp.api(t, "admin", "PATCH", "/api/v0/accounts/"+u+"/settings", map[string]string{"contentCache": "asia"})
	}
	if _, err := tp.pull("carol", "secret/app:1"); err != nil { // the secret layers are now in the asia store
		t.Fatal(err)
	}
	d := blobDigests(secret)[0]
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, _ := http.NewRequest(http.MethodGet, tp.origin.URL+"/v2/website/ui/blobs/"+d, nil)
	req.SetBasicAuth("alice", password)
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("alice asking for a secret/app layer under website/ui: %d, want 404 from the backend (no redirect)", resp.StatusCode)
	}
}

// TestCacheAccountOutlivesTheToken: a cache's fill request carries its own
// account and the user's (here expired) token; the account is enough.
func TestCacheAccountOutlivesTheToken(t *testing.T) {
	tp := newTopology(t)
	img := tp.push(t, "website/ui:11", 11)
	tp.api(t, "admin", "POST", "/api/v0/content_caches", map[string]string{"name": "asia", "host": tp.cache.URL, "account": "cache-asia"})
	d := blobDigests(img)[0]
	old := policy.NewSigner(mustSigning(t, tp), "origin-test", time.Minute)
	old.Now = func() time.Time { return time.Now().Add(-10 * time.Minute) }
	expired, _, _ := old.Sign("alice", "asia", "website/ui", d)
	for _, tt := range []struct {
		user string
		want int
	}{{"cache-asia", http.StatusOK}, {"", http.StatusUnauthorized}} {
		req, _ := http.NewRequest(http.MethodGet, tp.origin.URL+"/v2/website/ui/blobs/"+d, nil)
		req.Header.Set(origin.TokenHeader, expired)
		if tt.user != "" {
			req.SetBasicAuth(tt.user, password)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Fatalf("expired token, account %q: %d, want %d", tt.user, resp.StatusCode, tt.want)
		}
	}
}

// mustSigning returns the origin's signing key.
func mustSigning(t *testing.T, tp *topology) *policy.PrivateKey {
	t.Helper()
	k, _, err := policy.LoadKeyDir(tp.keys.Dir)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
