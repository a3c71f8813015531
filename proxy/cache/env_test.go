package cache_test

import (
	"context"
	"crypto/rand"
	"io"
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
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

// env is a real registry (distribution v3, in process) behind a cache
// server on loopback.
type env struct {
	reg    *testenv.Registry
	server *cache.Server
	srv    *httptest.Server
	host   string // cache host:port
	key    *policy.PrivateKey
	signer *policy.Signer
	store  *casstore.Store // redirect store
	mirror *casstore.Store // mirror store
}

type envOptions struct {
	fill        casstore.FillOptions
	upstreamURL string // default: the registry
	noMirror    bool
	noRedirect  bool
	regOpts     testenv.RegistryOptions
	audiences   []string
	downstream  *policy.Users
	upstreamCfg func(*upstream.Config)
}

func newEnv(t testing.TB, o envOptions) *env {
	t.Helper()
	ctx := context.Background()
	reg, err := testenv.StartRegistry(ctx, o.regOpts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	e := &env{reg: reg}
	if o.upstreamURL == "" {
		o.upstreamURL = reg.URL
	}
	log := zap.NewNop()
	if tt, ok := t.(*testing.T); ok {
		log = zaptest.NewLogger(tt)
	}
	openStore := func() *casstore.Store {
		s, err := casstore.Open(t.TempDir(), casstore.Options{Logger: log, RetryBackoff: 10 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	ucfg := upstream.Config{URLs: []string{o.upstreamURL}}
	if o.upstreamCfg != nil {
		o.upstreamCfg(&ucfg)
	}
	client, err := upstream.New(ucfg)
	if err != nil {
		t.Fatal(err)
	}
	e.key, err = policy.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	e.signer = policy.NewSigner(e.key, "origin-test", time.Minute)
	e.server = &cache.Server{Fill: o.fill, Logger: log}
	t.Cleanup(e.server.Close)
	if !o.noRedirect {
		e.store = openStore()
		e.server.Redirect = &cache.Redirect{
			Store:      e.store,
			Verifier:   &policy.Verifier{Keys: policy.NewStaticKeys(e.key.Public()), Issuer: "origin-test"},
			Audiences:  o.audiences,
			Upstream:   client,
			Downstream: o.downstream,
		}
	}
	if !o.noMirror {
		e.mirror = openStore()
		tags, err := cache.NewTagStore(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		e.server.Mirror = &cache.Mirror{
			Store:     e.mirror,
			Upstreams: []cache.MirrorUpstream{{Name: "backend", Hosts: []string{reg.Host}, Client: client}},
			Default:   "backend",
			Tags:      tags,
		}
	}
	e.srv = httptest.NewServer(serve.Instrument(log, nil, serve.Mux(e.server, nil, nil)))
	t.Cleanup(e.srv.Close)
	e.host = e.srv.Listener.Addr().String()
	return e
}

// push generates and pushes an image to the registry.
func (e *env) push(t *testing.T, ref string, spec testenv.ImageSpec) v1.Image {
	t.Helper()
	img, err := testenv.GenerateImage(spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := testenv.Push(context.Background(), e.reg.Host+"/"+ref, img, testenv.RemoteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.reg.Counter.Reset()
	return img
}

// token signs a redirect token for a blob.
func (e *env) token(t *testing.T, repo string, d v1.Hash) string {
	t.Helper()
	tok, _, err := e.signer.Sign("alice", "asia", repo, d.String())
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// get sends a GET to the cache.
func (e *env) get(t *testing.T, path string, hdr map[string]string) (*http.Response, []byte, error) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+path, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, body, err
}

func layerBytes(t *testing.T, img v1.Image, i int) (v1.Hash, []byte) {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	d, _ := layers[i].Digest()
	rc, err := layers[i].Compressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return d, b
}

// newEnvB is newEnv for benchmarks: mirror mode only, no logs.
func newEnvB(b *testing.B) *env { return newEnv(b, envOptions{noRedirect: true}) }

func newRegistry() *prometheus.Registry { return prometheus.NewRegistry() }
