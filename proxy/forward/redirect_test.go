package forward

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// TestFillFollowsRedirectWithoutCredentials: a registry that redirects
// blob GETs to object storage (as S3-backed registries do). The proxy's
// fill follows the redirect itself — storage.test is in no list, the
// client never sees it — without sending the client's Authorization
// there, with the Range of a resumed or parallel fill intact.
func TestFillFollowsRedirectWithoutCredentials(t *testing.T) {
	storage := &objectStore{blobs: map[string][]byte{}}
	var storageURL string
	redirect := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			i := strings.LastIndex(r.URL.Path, "/blobs/sha256:")
			if r.Method != http.MethodGet || i < 0 || r.Header.Get("Authorization") == "" {
				next.ServeHTTP(w, r) // HEADs, uploads and anonymous requests: the registry answers
				return
			}
			to := storageURL + "/bucket/" + r.URL.Path[i+len("/blobs/"):] + "?X-Amz-Signature=abc"
			if strings.HasPrefix(r.URL.Path, "/v2/metadata/") {
				to = "http://169.254.169.254/latest/meta-data/"
			}
			http.Redirect(w, r, to, http.StatusTemporaryRedirect)
		})
	}
	e := newEnv(t, envConfig{
		wrap: redirect,
		rules: func(e *env, c *RulesConfig) {
			c.Hosts["storage.test"] = e.serveTLS(storage, "storage.test")
			storageURL = "https://storage.test"
		},
		options: func(o *Options) { o.Fill.Parallel, o.Fill.ChunkSize = 4, 64<<10 }, // range requests through the redirect
	})
	img := e.push("redirected/app:1", 51, 2, 300<<10)
	storage.add(t, img)

	got, err := pull(context.Background(), "registry.test/redirected/app:1", "alice", e.client())
	if want, _ := img.Digest(); err != nil || got != want {
		t.Fatalf("pull: %v %v", got, err)
	}
	storage.mu.Lock()
	defer storage.mu.Unlock()
	if storage.withAuth != 0 {
		t.Fatalf("%d requests reached the storage with the client's Authorization", storage.withAuth)
	}
	if storage.ranges == 0 {
		t.Fatal("no range request reached the storage (parallel fill)")
	}
	for _, d := range blobs(t, img) {
		if storage.gets[d] == 0 {
			t.Errorf("%s not fetched from the storage", d)
		}
	}

	// A redirect into the metadata service is refused by the dialer.
	meta := e.push("metadata/app:1", 52, 1, 10<<10)
	resp, _ := e.get(http.MethodGet, "https://registry.test/v2/metadata/app/blobs/"+blobs(t, meta)[1], "alice", nil)
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("blob redirected to 169.254.169.254: %s, want 502", resp.Status)
	}
}

// objectStore serves blobs by digest like a bucket behind signed URLs.
type objectStore struct {
	// mu guards the fields below.
	mu       sync.Mutex
	blobs    map[string][]byte
	gets     map[string]int
	withAuth int
	ranges   int
}

func (s *objectStore) add(t *testing.T, img v1.Image) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	cfg, _ := img.RawConfigFile()
	name, _ := img.ConfigName()
	s.blobs[name.String()] = cfg
	layers, _ := img.Layers()
	for _, l := range layers {
		d, _ := l.Digest()
		rc, _ := l.Compressed()
		b, _ := io.ReadAll(rc)
		rc.Close()
		s.blobs[d.String()] = b
	}
}

func (s *objectStore) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	d := strings.TrimPrefix(r.URL.Path, "/bucket/")
	s.mu.Lock()
	b, ok := s.blobs[d]
	if s.gets == nil {
		s.gets = map[string]int{}
	}
	s.gets[d]++
	if r.Header.Get("Authorization") != "" {
		s.withAuth++
	}
	if r.Header.Get("Range") != "" {
		s.ranges++
	}
	s.mu.Unlock()
	if !ok || r.URL.Query().Get("X-Amz-Signature") == "" {
		http.Error(w, "no such key", http.StatusNotFound)
		return
	}
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(b))
}

// TestProbeRedirectBackToTheRegistryIsNo: a registry (or an SSO front)
// that answers an unauthenticated HEAD with a redirect to its own login
// page must not make the proxy serve a cached blob to that client.
func TestProbeRedirectBackToTheRegistryIsNo(t *testing.T) {
	login := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodHead && strings.Contains(r.URL.Path, "/blobs/") && r.Header.Get("Authorization") == "" {
				http.Redirect(w, r, "https://registry.test/login?next="+r.URL.Path, http.StatusFound)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
	e := newEnv(t, envConfig{wrap: login})
	img := e.push("sso/app:1", 53, 1, 50<<10)
	if _, err := pull(context.Background(), "registry.test/sso/app:1", "alice", e.client()); err != nil {
		t.Fatal(err) // the blob is now in the store
	}
	d := blobs(t, img)[1]
	resp, body := e.get(http.MethodGet, "https://registry.test/v2/sso/app/blobs/"+d, "", nil)
	if resp.StatusCode == http.StatusOK || bytes.Contains(body, []byte("sso")) && resp.StatusCode < 300 {
		t.Fatalf("an anonymous client got the cached blob after a redirect to the login page: %s", resp.Status)
	}
}
