package forward

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/dtrcache/dtrcache/casstore"
	"github.com/dtrcache/dtrcache/proxy/cache"
	"github.com/dtrcache/dtrcache/proxy/regapi"
	"github.com/dtrcache/dtrcache/proxy/serve"
	"github.com/dtrcache/dtrcache/proxy/upstream"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap/zaptest"
)

// blobLog records the blob requests a server saw, by user and method.
type blobLog struct {
	mu   sync.Mutex
	seen map[string]int // "user METHOD digest" → count
	auth int            // requests that carried an Authorization header
}

func (l *blobLog) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if i := strings.Index(r.URL.Path, "/blobs/sha256:"); i > 0 {
			user, _, _ := r.BasicAuth()
			l.mu.Lock()
			if l.seen == nil {
				l.seen = map[string]int{}
			}
			l.seen[user+" "+r.Method+" "+r.URL.Path[i+len("/blobs/"):]]++
			if r.Header.Get("Authorization") != "" {
				l.auth++
			}
			l.mu.Unlock()
		}
		h.ServeHTTP(w, r)
	})
}

func (l *blobLog) reset() {
	l.mu.Lock()
	l.seen, l.auth = nil, 0
	l.mu.Unlock()
}

func (l *blobLog) count(user, method, digest string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.seen[user+" "+method+" "+digest]
}

func (l *blobLog) total(method string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for k, v := range l.seen {
		if strings.Contains(k, " "+method+" ") {
			n += v
		}
	}
	return n
}

// mirrorEnv is a forward proxy whose misses are filled from an office
// mirror (a dtrcache cache in mirror mode with its own account at the
// registry), as on an office's HTTPS_PROXY nodes.
type mirrorEnv struct {
	*env
	registry, mirrorLog blobLog
	mirror              *httptest.Server
	handler             http.Handler // the mirror, set once the registry runs
}

func newMirrorEnv(t *testing.T, hosts []string) *mirrorEnv {
	m := &mirrorEnv{}
	m.mirror = httptest.NewServer(m.mirrorLog.wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { m.handler.ServeHTTP(w, r) })))
	t.Cleanup(m.mirror.Close)
	mu, _ := url.Parse(m.mirror.URL)
	m.env = newEnv(t, envConfig{
		wrap:    m.registry.wrap,
		options: func(o *Options) { o.BlobMirror = mu },
	})
	log := zaptest.NewLogger(t).Named("mirror")
	client, err := upstream.New(upstream.Config{
		URLs: []string{"https://" + m.reg.Host}, Username: "office-mirror", Password: password,
		TLS: &tls.Config{RootCAs: m.pki.pool},
	})
	if err != nil {
		t.Fatal(err)
	}
	store, err := casstore.Open(t.TempDir(), casstore.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	tags, err := cache.NewTagStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	srv := &cache.Server{Logger: log, Mirror: &cache.Mirror{
		Store: store, Tags: tags,
		Upstreams: []cache.MirrorUpstream{{Name: "registry", Hosts: hosts, Client: client}},
	}}
	t.Cleanup(srv.Close)
	m.handler = serve.Instrument(log, nil, serve.Mux(srv, nil, nil))
	return m
}

// TestBlobMirror: with a blob mirror, the proxy fills its misses from the
// office's mirror (one registry GET per blob, by the mirror's account,
// never with the client's credentials), while the registry still
// authorizes every client; a mirror that is down or does not mirror the
// registry makes the proxy fill from the registry itself.
func TestBlobMirror(t *testing.T) {
	m := newMirrorEnv(t, []string{"registry.test"})
	img := m.push("team/app:1", 1, 3, 64<<10)
	digests := blobs(t, img)
	want, _ := img.Digest()
	m.registry.reset() // the push's own requests

	got, err := pull(t.Context(), "registry.test/team/app:1", "alice", m.client())
	if err != nil || got != want {
		t.Fatalf("alice's pull through the proxy: %v, %v; want %v", got, err, want)
	}
	for _, d := range digests {
		if n := m.registry.count("office-mirror", "GET", d); n != 1 {
			t.Errorf("registry: %d GETs of %s by the mirror, want 1", n, d)
		}
		if n := m.registry.count("alice", "GET", d); n != 0 {
			t.Errorf("registry: %d GETs of %s with alice's credentials, want 0 (filled from the mirror)", n, d)
		}
		// alice's manifest GET, answered by the registry to her
		// credentials, vouched for every blob: no HEAD each.
		if n := m.registry.count("alice", "HEAD", d); n != 0 {
			t.Errorf("registry: %d authorization HEADs of %s by alice, want 0 (vouched by her manifest)", n, d)
		}
	}
	if m.mirrorLog.auth != 0 {
		t.Errorf("the mirror received %d requests with an Authorization header: the client's credentials must stay with the registry", m.mirrorLog.auth)
	}
	if n := testutil.ToFloat64(m.metrics.fetches.WithLabelValues("mirror", "ok")); n != float64(len(digests)) {
		t.Errorf("mirror fetches %v, want %d", n, len(digests))
	}

	// Another user: authorized by the registry, served from the store.
	gets := m.registry.total("GET")
	if got, err := pull(t.Context(), "registry.test/team/app:1", "bob", m.client()); err != nil || got != want {
		t.Fatalf("bob's pull: %v, %v", got, err)
	}
	for _, d := range digests {
		if n := m.registry.count("bob", "HEAD", d); n != 0 {
			t.Errorf("registry: %d authorization HEADs of %s by bob, want 0 (vouched by his manifest)", n, d)
		}
	}
	if g := m.registry.total("GET") - gets; g != 0 {
		t.Errorf("bob's pull caused %d blob GETs at the registry, want 0 (all in the proxy's store)", g)
	}

	// No credentials: the registry's 401, and the mirror is not asked.
	mirrored := m.mirrorLog.total("GET")
	resp, _ := m.get(http.MethodGet, "https://registry.test/v2/team/app/blobs/"+digests[1], "", nil)
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") == "" {
		t.Errorf("anonymous blob GET: %d (WWW-Authenticate %q), want the registry's 401 challenge", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	if m.mirrorLog.total("GET") != mirrored {
		t.Errorf("an unauthorized request reached the mirror")
	}
}

func TestBlobMirrorFallback(t *testing.T) {
	for _, tc := range []struct {
		name  string
		hosts []string
		down  bool
	}{
		{name: "mirror down", hosts: []string{"registry.test"}, down: true},
		{name: "registry not mirrored", hosts: []string{"other.test"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newMirrorEnv(t, tc.hosts)
			if tc.down {
				m.mirror.Close()
			}
			img := m.push("team/app:2", 2, 2, 32<<10)
			want, _ := img.Digest()
			m.registry.reset()
			if got, err := pull(t.Context(), "registry.test/team/app:2", "alice", m.client()); err != nil || got != want {
				t.Fatalf("pull with the mirror failing: %v, %v; want %v", got, err, want)
			}
			for _, d := range blobs(t, img) {
				if n := m.registry.count("alice", "GET", d); n != 1 {
					t.Errorf("registry: %d GETs of %s with alice's credentials, want 1 (the fallback)", n, d)
				}
			}
			if n := testutil.ToFloat64(m.metrics.fetches.WithLabelValues("mirror", "error")); n < 1 {
				t.Errorf("mirror errors %v, want ≥ 1", n)
			}
			if n := testutil.ToFloat64(m.metrics.fetches.WithLabelValues("registry", "ok")); n < 1 {
				t.Errorf("registry fetches %v, want ≥ 1", n)
			}
		})
	}
}

func TestBlobMirrorURL(t *testing.T) {
	for _, tc := range []struct {
		url string
		ok  bool
	}{
		{"http://mirror.office:5000", true},
		{"https://mirror.office/prefix/", true},
		{"ftp://mirror.office", false},
		{"http://user:pw@mirror.office", false},
		{"http://mirror.office/?ns=x", false},
		{"http:///v2", false},
	} {
		t.Run(tc.url, func(t *testing.T) {
			u, err := url.Parse(tc.url)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := newBlobMirror(u, nil); (err == nil) != tc.ok {
				t.Errorf("newBlobMirror(%s): %v, want ok=%v", tc.url, err, tc.ok)
			}
		})
	}
	mm, _ := newBlobMirror(&url.URL{Scheme: "http", Host: "m:5000", Path: "/p/"}, nil)
	route, err := regapi.ParseRoute("/v2/a/b/blobs/sha256:abababababababababababababababababababababababababababababababab")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		t    target
		want string
	}{
		{target{"registry.example.org", 443}, "http://m:5000/p/v2/a/b/blobs/sha256:abababababababababababababababababababababababababababababababab?ns=registry.example.org"},
		{target{"registry.example.org", 5000}, "http://m:5000/p/v2/a/b/blobs/sha256:abababababababababababababababababababababababababababababababab?ns=registry.example.org%3A5000"},
	} {
		if got := mm.blobURL(tc.t, route); got != tc.want {
			t.Errorf("blobURL(%v) = %s, want %s", tc.t, got, tc.want)
		}
	}
}
