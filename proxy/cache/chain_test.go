package cache_test

import (
	"bytes"
	"crypto/rand"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/dtrcache/dtrcache/casstore"
	"github.com/dtrcache/dtrcache/policy"
	"github.com/dtrcache/dtrcache/proxy/cache"
	"github.com/dtrcache/dtrcache/proxy/serve"
	"github.com/dtrcache/dtrcache/proxy/upstream"
	"github.com/dtrcache/dtrcache/testenv"
	"go.uber.org/zap/zaptest"
)

// TestChainedCaches: client → cache B (Asia) → cache A (regional parent) →
// registry. B authenticates to A with its own credentials and forwards the
// user's token; each level fetches a blob once.
func TestChainedCaches(t *testing.T) {
	reg, err := testenv.StartRegistry(t.Context(), testenv.RegistryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	img, _ := testenv.GenerateImage(testenv.ImageSpec{Layers: 2, LayerSize: 300 << 10, Seed: 10})
	if err := testenv.Push(t.Context(), reg.Host+"/chain/app:1", img, testenv.RemoteOptions{}); err != nil {
		t.Fatal(err)
	}
	reg.Counter.Reset()
	key, _ := policy.GenerateKey(rand.Reader)
	verifier := &policy.Verifier{Keys: policy.NewStaticKeys(key.Public()), Issuer: "origin"}
	hash, _ := policy.HashPassword("b-secret", 4)
	children, err := policy.ParseHtpasswd([]byte("cache-b:" + hash + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	log := zaptest.NewLogger(t)
	startCache := func(up string, user, pass string, downstream *policy.Users, audiences []string) (*httptest.Server, *testenv.Counter) {
		st, err := casstore.Open(t.TempDir(), casstore.Options{Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		client, err := upstream.New(upstream.Config{URLs: []string{up}, Username: user, Password: pass})
		if err != nil {
			t.Fatal(err)
		}
		srv := &cache.Server{Redirect: &cache.Redirect{Store: st, Verifier: verifier, Upstream: client, Downstream: downstream, Audiences: audiences}}
		counter := testenv.NewCounter(serve.Instrument(log, nil, serve.Mux(srv, nil, nil)))
		hs := httptest.NewServer(counter)
		t.Cleanup(hs.Close)
		return hs, counter
	}
	a, aCount := startCache(reg.URL, "", "", children, []string{"cache-a"})
	b, _ := startCache(a.URL, "cache-b", "b-secret", nil, []string{"cache-b"})

	signer := policy.NewSigner(key, "origin", time.Minute)
	layers, _ := img.Layers()
	for _, l := range layers {
		d, _ := l.Digest()
		rc, _ := l.Compressed()
		want := new(bytes.Buffer)
		want.ReadFrom(rc)
		rc.Close()
		for i := 0; i < 3; i++ { // three users pull through B
			tok, _, _ := signer.Sign("user", "cache-b", "chain/app", d.String())
			resp, err := http.Get(b.URL + "/v2/chain/app/blobs/" + d.String() + "?token=" + tok)
			if err != nil {
				t.Fatal(err)
			}
			got := new(bytes.Buffer)
			got.ReadFrom(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || !bytes.Equal(got.Bytes(), want.Bytes()) {
				t.Fatalf("pull %d through B: status %d, %d bytes", i, resp.StatusCode, got.Len())
			}
		}
		if n := aCount.BlobGets(d.String()); n != 1 {
			t.Errorf("parent cache A saw %d GETs of %s, want 1", n, d)
		}
		if n := reg.Counter.BlobGets(d.String()); n != 1 {
			t.Errorf("registry saw %d GETs of %s, want 1", n, d)
		}
	}
	// B's credentials are required at A: an anonymous request without a
	// token is refused there.
	d, _ := layers[0].Digest()
	resp, err := http.Get(a.URL + "/v2/chain/app/blobs/" + d.String())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("anonymous request at the parent: %d", resp.StatusCode)
	}
	// Wrong child credentials are refused too.
	req, _ := http.NewRequest(http.MethodGet, a.URL+"/v2/chain/app/blobs/"+d.String(), nil)
	req.SetBasicAuth("cache-b", "wrong")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong credentials at the parent: %d", resp.StatusCode)
	}
	// Unrelated Basic credentials kept across a redirect do not hide a
	// valid token.
	tok, _, _ := signer.Sign("user", "cache-a", "chain/app", d.String())
	req, _ = http.NewRequest(http.MethodGet, a.URL+"/v2/chain/app/blobs/"+d.String()+"?token="+tok, nil)
	req.SetBasicAuth("someone", "else")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("valid token with unrelated Basic credentials: %d", resp.StatusCode)
	}
}
