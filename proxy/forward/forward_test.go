package forward

import (
	"context"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dtrcache/dtrcache/testenv"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// TestForwardUnchanged: every request that is not a blob read reaches the
// registry as the client sent it — method, target, headers (plus the
// proxy's Via entry), body — and the answer comes back as the registry
// sent it — status, headers, Content-Length, bytes — and streams.
func TestForwardUnchanged(t *testing.T) {
	type seen struct {
		method, uri, host string
		length            int64
		header            http.Header
		body              string
	}
	got := make(chan seen, 1)
	release := make(chan struct{})
	echo := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/stream":
			io.WriteString(w, "first|")
			w.(http.Flusher).Flush()
			select {
			case <-release:
			case <-r.Context().Done():
				return
			}
			io.WriteString(w, "second")
		case "/head":
			w.Header().Set("Content-Length", "1234")
			w.Header().Set("Docker-Content-Digest", "sha256:abc")
		default:
			body, _ := io.ReadAll(r.Body)
			got <- seen{r.Method, r.RequestURI, r.Host, r.ContentLength, r.Header.Clone(), string(body)}
			w.Header().Set("X-Echo", "yes")
			w.Header().Set("Content-Encoding", "gzip") // not decoded by anybody on the way
			w.Header().Set("Content-Length", "11")
			w.Header().Set("Location", "/v2/x/blobs/uploads/123?_state=abc")
			w.WriteHeader(http.StatusTeapot)
			io.WriteString(w, "hello world")
		}
	})
	e := newEnv(t, envConfig{rules: func(e *env, c *RulesConfig) {
		c.Intercept = append(c.Intercept, "echo.test")
		c.Hosts["echo.test"] = e.serveTLS(echo, "echo.test")
	}})
	tr := e.client()
	tr.DisableCompression = true
	hc := &http.Client{Transport: tr}

	for _, chunked := range []bool{false, true} {
		var body io.Reader = strings.NewReader("payload")
		if chunked {
			body = io.MultiReader(strings.NewReader("pay"), strings.NewReader("load")) // no length: sent chunked
		}
		req, _ := http.NewRequest(http.MethodPatch, "https://echo.test/v2/x/blobs/uploads/123?_state=a%2Fb&x=1", body)
		req.Header.Set("Content-Type", "application/octet-stream")
		req.Header.Set("Accept-Encoding", "gzip, zstd")
		req.Header["X-Custom"] = []string{"1", "2"}
		req.SetBasicAuth("alice", password)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		rbody, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		s := <-got
		if s.method != http.MethodPatch || s.uri != "/v2/x/blobs/uploads/123?_state=a%2Fb&x=1" || s.host != "echo.test" || s.body != "payload" {
			t.Fatalf("registry saw %s %s Host %s body %q", s.method, s.uri, s.host, s.body)
		}
		if want := int64(7); !chunked && s.length != want {
			t.Fatalf("registry saw Content-Length %d, want %d", s.length, want)
		}
		for k, want := range map[string][]string{
			"X-Custom": {"1", "2"}, "Accept-Encoding": {"gzip, zstd"}, "Content-Type": {"application/octet-stream"},
			"Authorization": req.Header.Values("Authorization"), "Via": {"1.1 dtrcache"},
		} {
			if !slices.Equal(s.header.Values(k), want) {
				t.Errorf("registry saw %s %q, want %q", k, s.header.Values(k), want)
			}
		}
		if resp.StatusCode != http.StatusTeapot || resp.ContentLength != 11 || string(rbody) != "hello world" ||
			resp.Header.Get("X-Echo") != "yes" || resp.Header.Get("Content-Encoding") != "gzip" ||
			resp.Header.Get("Location") != "/v2/x/blobs/uploads/123?_state=abc" {
			t.Fatalf("client got %s, length %d, %q, headers %v", resp.Status, resp.ContentLength, rbody, resp.Header)
		}
	}

	// HEAD: the length of what a GET would send, no body.
	req, _ := http.NewRequest(http.MethodHead, "https://echo.test/head", nil)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ContentLength != 1234 || resp.Header.Get("Docker-Content-Digest") != "sha256:abc" {
		t.Fatalf("HEAD: length %d, headers %v", resp.ContentLength, resp.Header)
	}

	// Streaming: the first part arrives while the registry still holds the
	// second back.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ = http.NewRequestWithContext(ctx, http.MethodGet, "https://echo.test/stream", nil)
	resp, err = hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	first := make([]byte, len("first|"))
	if _, err := io.ReadFull(resp.Body, first); err != nil {
		t.Fatalf("first part not streamed: %v", err)
	}
	close(release)
	rest, err := io.ReadAll(resp.Body)
	if err != nil || string(first)+string(rest) != "first|second" {
		t.Fatalf("stream: %q %q %v", first, rest, err)
	}
}

// TestPushThroughAndDelete: pushes pass through to the registry; a blob
// deleted through the proxy is not served from the store afterwards,
// although it is still there and its positive answer was remembered.
func TestPushThroughAndDelete(t *testing.T) {
	e := newEnv(t, envConfig{})
	img, err := testenv.GenerateImage(testenv.ImageSpec{Layers: 2, LayerSize: 100 << 10, Seed: 31})
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := name.ParseReference("registry.test/pushed/app:1")
	auth := remote.WithAuth(&authn.Basic{Username: "alice", Password: password})
	if err := remote.Write(ref, img, auth, remote.WithTransport(e.client())); err != nil {
		t.Fatal(err)
	}
	if e.reg.Counter.Requests("PUT manifest") != 1 || e.reg.Counter.Requests("PUT upload") < 2 {
		t.Fatalf("the registry did not see the push: %d manifest PUTs, %d upload PUTs", e.reg.Counter.Requests("PUT manifest"), e.reg.Counter.Requests("PUT upload"))
	}
	want, _ := img.Digest()
	direct, err := testenv.Pull(context.Background(), e.reg.Host+"/pushed/app:1", testenv.RemoteOptions{Username: "alice", Password: password, Transport: e.direct()}, nil)
	if err != nil || direct.Digest != want {
		t.Fatalf("direct pull after a push through the proxy: %v %v", direct.Digest, err)
	}

	layer := blobs(t, img)[1]
	u := "https://registry.test/v2/pushed/app/blobs/" + layer
	if resp, _ := e.get(http.MethodGet, u, "alice", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("GET: %s", resp.Status)
	}
	if resp, _ := e.get(http.MethodDelete, u, "alice", nil); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("DELETE: %s", resp.Status)
	}
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		if resp, _ := e.get(method, u, "alice", nil); resp.StatusCode != http.StatusNotFound {
			t.Fatalf("%s after DELETE: %s, want 404", method, resp.Status)
		}
	}
}

// TestPlainHTTPRegistry: a plain-HTTP registry in the intercept list
// (host:80) is served through plain proxy requests, blobs from the store.
func TestPlainHTTPRegistry(t *testing.T) {
	plain, err := testenv.StartRegistry(context.Background(), testenv.RegistryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { plain.Close() })
	e := newEnv(t, envConfig{rules: func(_ *env, c *RulesConfig) {
		c.Intercept = append(c.Intercept, "plain.test:80")
		c.Hosts["plain.test"] = plain.Host
	}})
	img, err := testenv.GenerateImage(testenv.ImageSpec{Layers: 2, LayerSize: 64 << 10, Seed: 41})
	if err != nil {
		t.Fatal(err)
	}
	if err := testenv.Push(context.Background(), plain.Host+"/lib/tool:1", img, testenv.RemoteOptions{}); err != nil {
		t.Fatal(err)
	}
	// go-containerregistry: plain.test is "insecure", so it tries https
	// (CONNECT plain.test:443 is refused) and http (proxied).
	ref, _ := name.ParseReference("plain.test/lib/tool:1", name.Insecure)
	pulled, err := remote.Image(ref, remote.WithTransport(e.client()))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := img.Digest()
	if got, _ := pulled.Digest(); got != want {
		t.Fatalf("digest %v, want %v", got, want)
	}
	layer := blobs(t, img)[1]
	for range 3 {
		resp, body := e.get(http.MethodGet, "http://plain.test/v2/lib/tool/blobs/"+layer, "", nil)
		if resp.StatusCode != http.StatusOK || int64(len(body)) != resp.ContentLength || resp.Header.Get("Docker-Content-Digest") != layer {
			t.Fatalf("GET: %s, %d bytes", resp.Status, len(body))
		}
	}
	if n := plain.Counter.BlobGets(layer); n != 1 {
		t.Fatalf("%d registry GETs, want 1", n)
	}
	for _, u := range []string{"http://plain.test:8080/v2/", "http://registry.test/v2/"} {
		if resp, _ := e.get(http.MethodGet, u, "", nil); resp.StatusCode != http.StatusForbidden {
			t.Errorf("GET %s: %s, want 403", u, resp.Status)
		}
	}
}

// TestUpstreamRequestsNameTheProxy: every request the proxy sends to the
// registry on a client's behalf — forwarded ones (the /v2/ check, the
// manifest), the authorization HEAD and the fill's GET of a blob — carries
// the client's own User-Agent and a Via naming the proxy (RFC 9110 7.6.3),
// appended to any Via the client sent, so the registry's log tells a
// proxied request from a direct one.
func TestUpstreamRequestsNameTheProxy(t *testing.T) {
	type seen struct{ method, path, ua, via string }
	var (
		mu  sync.Mutex
		log []seen
		on  bool
	)
	record := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			if on {
				log = append(log, seen{r.Method, r.URL.Path, r.UserAgent(), strings.Join(r.Header.Values("Via"), ", ")})
			}
			mu.Unlock()
			next.ServeHTTP(w, r)
		})
	}
	e := newEnv(t, envConfig{wrap: record, options: func(o *Options) { o.NoManifestVouching = true }})
	img := e.push("website/ui:7", 9, 1, 64<<10)
	layer := blobs(t, img)[1]
	mu.Lock()
	on = true
	mu.Unlock()
	for _, c := range []struct {
		method, path, via, want string
	}{
		{http.MethodGet, "/v2/", "", "1.1 dtrcache"},
		{http.MethodGet, "/v2/website/ui/manifests/7", "1.0 corp-gw", "1.0 corp-gw, 1.1 dtrcache"},
		{http.MethodGet, "/v2/website/ui/blobs/" + layer, "", "1.1 dtrcache"}, // a HEAD to authorize, then the fill's GET
	} {
		mu.Lock()
		log = nil
		mu.Unlock()
		h := http.Header{"User-Agent": {"test-client/1.0"}, "Accept": {"application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json"}}
		if c.via != "" {
			h.Set("Via", c.via)
		}
		resp, _ := e.get(c.method, "https://registry.test"+c.path, "alice", h)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s %s: %s", c.method, c.path, resp.Status)
		}
		mu.Lock()
		got := slices.Clone(log)
		mu.Unlock()
		if len(got) == 0 {
			t.Fatalf("%s %s: the registry saw no request", c.method, c.path)
		}
		for _, s := range got {
			if s.ua != "test-client/1.0" || s.via != c.want {
				t.Errorf("%s %s: the registry saw %s %s with User-Agent %q, Via %q; want %q, %q", c.method, c.path, s.method, s.path, s.ua, s.via, "test-client/1.0", c.want)
			}
		}
	}
}
