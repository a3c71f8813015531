package cache_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/dtrcache/dtrcache/casstore"
	"github.com/dtrcache/dtrcache/policy"
	"github.com/dtrcache/dtrcache/proxy/upstream"
	"github.com/dtrcache/dtrcache/testenv"
)

// TestMirrorConfirmsTheRepositoryOfAProtectedUpstream is the regression
// test of a mirror that answered a cached blob under any repository name:
// for an upstream the cache reaches with credentials, a blob or manifest
// held in the store is served under a repository only once the upstream
// confirmed it is there (a HEAD, remembered; the manifests the mirror
// fetched confirm their blobs), and a repository the upstream answers 404
// for gets 404. An anonymous upstream stays digest-only.
func TestMirrorConfirmsTheRepositoryOfAProtectedUpstream(t *testing.T) {
	hash, err := policy.HashPassword("pw", 4)
	if err != nil {
		t.Fatal(err)
	}
	htpasswd := filepath.Join(t.TempDir(), "htpasswd")
	if err := os.WriteFile(htpasswd, []byte("bot:"+hash+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		protected bool
	}{{"credentials", true}, {"anonymous", false}} {
		t.Run(tc.name, func(t *testing.T) {
			o := envOptions{noRedirect: true}
			creds := testenv.RemoteOptions{}
			if tc.protected {
				o.regOpts = testenv.RegistryOptions{Htpasswd: htpasswd}
				o.upstreamCfg = func(c *upstream.Config) { c.Username, c.Password = "bot", "pw" }
				creds = testenv.RemoteOptions{Username: "bot", Password: "pw"}
			}
			e := newEnv(t, o)
			e.server.Mirror.Upstreams[0].CheckRepository = tc.protected
			img, err := testenv.GenerateImage(testenv.ImageSpec{Layers: 2, LayerSize: 4096, Seed: 81})
			if err != nil {
				t.Fatal(err)
			}
			if err := testenv.Push(context.Background(), e.reg.Host+"/team/app:1", img, creds); err != nil {
				t.Fatal(err)
			}
			md, _ := img.Digest()
			if _, err := testenv.Pull(context.Background(), e.host+"/team/app:1", testenv.RemoteOptions{}, nil); err != nil {
				t.Fatal(err)
			}
			// The pull ends when the last bytes are verified; the blobs are
			// in the store once committed.
			for i := 0; i < 2; i++ {
				d, _ := layerBytes(t, img, i)
				waitFor(t, func() bool { _, err := e.mirror.Stat(casstore.MustParseDigest(d.String())); return err == nil })
			}
			e.reg.Counter.Reset()
			d, _ := layerBytes(t, img, 0)

			// The repository the image is in: served from the store, with
			// no check (the manifest the mirror fetched listed the blob).
			for _, m := range []string{http.MethodGet, http.MethodHead} {
				if code := e.do(t, m, "/v2/team/app/blobs/"+d.String()); code != http.StatusOK {
					t.Fatalf("%s team/app blob: %d", m, code)
				}
			}
			if n := e.reg.Counter.Requests("HEAD blob") + e.reg.Counter.Requests("GET blob"); n != 0 {
				t.Fatalf("%d upstream blob requests for a blob of a repository the mirror pulled", n)
			}
			// Another repository, which the upstream does not have.
			want := http.StatusOK
			if tc.protected {
				want = http.StatusNotFound
			}
			for i := 0; i < 2; i++ {
				for _, p := range []string{"/v2/other/repo/blobs/" + d.String(), "/v2/other/repo/manifests/" + md.String()} {
					for _, m := range []string{http.MethodGet, http.MethodHead} {
						if code := e.do(t, m, p); code != want {
							t.Fatalf("%s %s: %d, want %d", m, p, code, want)
						}
					}
				}
			}
			if tc.protected {
				// A negative answer is asked again (the blob may be pushed
				// there); a positive one is remembered.
				if n := e.reg.Counter.Requests("HEAD blob"); n != 4 {
					t.Fatalf("%d blob HEADs upstream, want 4 (one per request under the other repository)", n)
				}
				e.reg.Counter.Reset()
				if err := testenv.Push(context.Background(), e.reg.Host+"/other/repo:1", img, creds); err != nil {
					t.Fatal(err)
				}
				e.reg.Counter.Reset()
				for i := 0; i < 3; i++ {
					if code := e.do(t, http.MethodGet, "/v2/other/repo/blobs/"+d.String()); code != http.StatusOK {
						t.Fatalf("after the push: %d", code)
					}
				}
				if n := e.reg.Counter.Requests("HEAD blob"); n != 1 {
					t.Fatalf("%d blob HEADs upstream, want 1 (remembered)", n)
				}
				if n := e.reg.Counter.Requests("GET blob"); n != 0 {
					t.Fatalf("%d blob GETs upstream, want 0 (the store has it)", n)
				}
			}
		})
	}
}

// do sends a bodiless request to the cache and returns the status.
func (e *env) do(t *testing.T, method, path string) int {
	t.Helper()
	req, _ := http.NewRequest(method, e.srv.URL+path, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
