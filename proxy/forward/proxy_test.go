package forward

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// TestPullColdAndWarm: a go-containerregistry client with the proxy as
// HTTPS_PROXY pulls from https://registry.test. The cold pull fetches each
// blob once from the registry, the warm one none, and both verify every
// digest. Within the TTL the warm pull needs no authorization HEAD either.
// Manifest vouching is off here: this is the per-blob HEAD path
// (TestManifestVouching has both).
func TestPullColdAndWarm(t *testing.T) {
	e := newEnv(t, envConfig{options: func(o *Options) { o.NoManifestVouching = true }})
	img := e.push("website/ui:3-stable", 1, 3, 300<<10)
	want, _ := img.Digest()
	ctx := context.Background()

	got, err := pull(ctx, "registry.test/website/ui:3-stable", "alice", e.client())
	if err != nil || got != want {
		t.Fatalf("cold pull: %v %v, want %v", got, err, want)
	}
	for _, d := range blobs(t, img) {
		if n := e.reg.Counter.BlobGets(d); n != 1 {
			t.Errorf("cold: %s fetched %d times from the registry, want 1", d, n)
		}
	}
	heads := e.reg.Counter.Requests("HEAD blob")
	got, err = pull(ctx, "registry.test/website/ui:3-stable", "alice", e.client())
	if err != nil || got != want {
		t.Fatalf("warm pull: %v %v, want %v", got, err, want)
	}
	for _, d := range blobs(t, img) {
		if n := e.reg.Counter.BlobGets(d); n != 1 {
			t.Errorf("warm: %s fetched %d times from the registry, want 1", d, n)
		}
	}
	if n := e.reg.Counter.Requests("HEAD blob") - heads; n != 0 {
		t.Errorf("warm pull within the TTL sent %d authorization HEADs, want 0", n)
	}
	// A blob's commit may still be running when its last byte went out, so
	// a warm read may join the (verified) fill instead of hitting.
	// The count follows the response's last byte: give it a moment.
	warmReads := func() float64 {
		return counterValue(e.metrics.requests.WithLabelValues("hit")) + counterValue(e.metrics.requests.WithLabelValues("joined"))
	}
	for deadline := time.Now().Add(5 * time.Second); warmReads() < 4 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if warm := warmReads(); warm != 4 {
		t.Errorf("%v warm reads served from the store, want 4", warm)
	}
	if cached := counterValue(e.metrics.auth.WithLabelValues("cached")); cached != 4 {
		t.Errorf("%v cached authorizations, want 4", cached)
	}
	if n := counterValue(e.metrics.leaves); n != 1 {
		t.Errorf("%v leaf certificates issued, want 1 (cached)", n)
	}

	// After the TTL the registry is asked again (and still no blob GET).
	e.advance(MaxAuthTTL)
	if _, err := pull(ctx, "registry.test/website/ui:3-stable", "bob", e.client()); err != nil {
		t.Fatal(err)
	}
	if n := e.reg.Counter.Requests("HEAD blob") - heads; n != 4 {
		t.Errorf("after the TTL: %d authorization HEADs, want 4", n)
	}
	if n := e.reg.Counter.TotalBlobGets(); n != 4 {
		t.Errorf("%d blob GETs in all, want 4", n)
	}
}

// TestConcurrentClientsFillOnce: 8 clients pulling the same cold image
// at once cause exactly one GET per blob at the registry.
func TestConcurrentClientsFillOnce(t *testing.T) {
	e := newEnv(t, envConfig{})
	img := e.push("website/api:1", 2, 4, 512<<10)
	want, _ := img.Digest()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Go(func() {
			user := []string{"alice", "bob"}[i%2]
			got, err := pull(context.Background(), "registry.test/website/api:1", user, e.client())
			if err == nil && got != want {
				err = fmt.Errorf("digest %v, want %v", got, want)
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range blobs(t, img) {
		if n := e.reg.Counter.BlobGets(d); n != 1 {
			t.Errorf("%s fetched %d times from the registry, want 1", d, n)
		}
	}
	served := 0.0
	for _, r := range []string{"hit", "miss", "joined"} {
		served += counterValue(e.metrics.requests.WithLabelValues(r))
	}
	if served != 8*5 {
		t.Errorf("%v blob reads served by the proxy, want 40", served)
	}
}

// TestNoCredentialsGet401EvenWhenCached: the store never answers without
// the registry's yes; the registry's 401 and challenge reach the client.
func TestNoCredentialsGet401EvenWhenCached(t *testing.T) {
	e := newEnv(t, envConfig{})
	img := e.push("website/ui:1", 3, 1, 64<<10)
	if _, err := pull(context.Background(), "registry.test/website/ui:1", "alice", e.client()); err != nil {
		t.Fatal(err)
	}
	layer := blobs(t, img)[1] // in the store now (or being committed)
	u := "https://registry.test/v2/website/ui/blobs/" + layer
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		resp, body := e.get(method, u, "", nil)
		if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic realm=") {
			t.Fatalf("%s without credentials: %s %q, want 401 with the registry's challenge", method, resp.Status, resp.Header.Get("WWW-Authenticate"))
		}
		if method == http.MethodGet && !strings.Contains(string(body), "UNAUTHORIZED") {
			t.Fatalf("401 body %q is not the registry's", body)
		}
	}
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.SetBasicAuth("alice", "wrong")
	resp, err := (&http.Client{Transport: e.client()}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong password: %s, want 401", resp.Status)
	}
	// Those were answered by the registry (the refused requests were
	// forwarded). Alice's own answer does not carry over to them; alice
	// herself is served from the store.
	gets := e.reg.Counter.BlobGets(layer)
	resp, body := e.get(http.MethodGet, u, "alice", nil)
	if resp.StatusCode != http.StatusOK || fmt.Sprintf("sha256:%x", sha256.Sum256(body)) != layer {
		t.Fatalf("alice: %s", resp.Status)
	}
	if n := e.reg.Counter.BlobGets(layer) - gets; n != 0 {
		t.Fatalf("%d registry blob GETs for alice; the cached blob should have served her", n)
	}
}

// TestBlobRangesHeadAndNotModified: Range (206 and 416), HEAD and
// If-None-Match answered from the store, and a range on a cold blob.
func TestBlobRangesHeadAndNotModified(t *testing.T) {
	e := newEnv(t, envConfig{})
	img := e.push("website/ui:2", 4, 2, 200<<10)
	ls := blobs(t, img)
	layers, _ := img.Layers()
	full := func(i int) []byte {
		rc, _ := layers[i].Compressed()
		defer rc.Close()
		b, _ := io.ReadAll(rc)
		return b
	}
	u := func(d string) string { return "https://registry.test/v2/website/ui/blobs/" + d }

	// Cold blob, range request: a fill starts, the range is answered.
	want0 := full(0)
	resp, body := e.get(http.MethodGet, u(ls[1]), "alice", http.Header{"Range": {"bytes=1000-1999"}})
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, want0[1000:2000]) {
		t.Fatalf("cold range: %s, %d bytes", resp.Status, len(body))
	}
	// HEAD of a blob not in the store: the registry answers.
	resp, body = e.get(http.MethodHead, u(ls[2]), "alice", nil)
	if resp.StatusCode != http.StatusOK || resp.ContentLength != int64(len(full(1))) || len(body) != 0 {
		t.Fatalf("HEAD miss: %s, length %d", resp.Status, resp.ContentLength)
	}
	if e.reg.Counter.BlobGets(ls[2]) != 0 {
		t.Fatal("a HEAD started a fill")
	}
	// Warm.
	resp, body = e.get(http.MethodGet, u(ls[1]), "alice", nil)
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, want0) || resp.Header.Get("Docker-Content-Digest") != ls[1] {
		t.Fatalf("GET: %s", resp.Status)
	}
	size := len(want0)
	tests := []struct {
		name   string
		method string
		header http.Header
		status int
		body   []byte
		crange string
	}{
		{"range", http.MethodGet, http.Header{"Range": {"bytes=10-19"}}, 206, want0[10:20], fmt.Sprintf("bytes 10-19/%d", size)},
		{"suffix range", http.MethodGet, http.Header{"Range": {"bytes=-5"}}, 206, want0[size-5:], fmt.Sprintf("bytes %d-%d/%d", size-5, size-1, size)},
		{"unsatisfiable", http.MethodGet, http.Header{"Range": {fmt.Sprintf("bytes=%d-", size)}}, 416, nil, fmt.Sprintf("bytes */%d", size)},
		{"head", http.MethodHead, nil, 200, nil, ""},
		{"if-none-match", http.MethodGet, http.Header{"If-None-Match": {`"` + ls[1] + `"`}}, 304, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := e.get(tt.method, u(ls[1]), "alice", tt.header)
			if resp.StatusCode != tt.status || resp.Header.Get("Content-Range") != tt.crange {
				t.Fatalf("%s, Content-Range %q; want %d %q", resp.Status, resp.Header.Get("Content-Range"), tt.status, tt.crange)
			}
			if tt.status == 206 && !bytes.Equal(body, tt.body) {
				t.Fatalf("body %q, want %q", body, tt.body)
			}
			if tt.method == http.MethodHead && resp.ContentLength != int64(size) {
				t.Fatalf("HEAD Content-Length %d, want %d", resp.ContentLength, size)
			}
		})
	}
	if n := e.reg.Counter.BlobGets(ls[1]); n != 1 {
		t.Fatalf("%d registry GETs of the blob, want 1", n)
	}
}

// TestConnectRefused: the proxy is not an open relay.
func TestConnectRefused(t *testing.T) {
	e := newEnv(t, envConfig{})
	tests := []struct {
		target string
		want   int
	}{
		{"evil.test:443", http.StatusForbidden},                 // in neither list
		{"169.254.169.254:80", http.StatusForbidden},            // the metadata service, unlisted
		{"169.254.169.254:443", http.StatusForbidden},           // …on any port
		{"metadata.test:80", http.StatusForbidden},              // listed as a tunnel, but maps to 169.254.169.254
		{"registry.test:22", http.StatusForbidden},              // port not allowed
		{"127.0.0.1:" + port(e.reg.Host), http.StatusForbidden}, // the registry itself, by address
		{"registry.test", http.StatusForbidden},                 // no port
	}
	for _, tt := range tests {
		t.Run(tt.target, func(t *testing.T) {
			if got := e.rawConnect(tt.target); got != tt.want {
				t.Fatalf("CONNECT %s: %d, want %d", tt.target, got, tt.want)
			}
		})
	}
	// Plain-HTTP proxying is for intercepted registries only.
	for _, u := range []string{"http://evil.test/", "http://169.254.169.254/latest/meta-data/", "http://tunnel.test/"} {
		if resp, _ := e.get(http.MethodGet, u, "", nil); resp.StatusCode != http.StatusForbidden {
			t.Errorf("GET %s: %s, want 403", u, resp.Status)
		}
	}
	// A CONNECT is counted as its handler returns, which may be just after
	// the client read the 403: wait for the count (CI once saw 6 of 7).
	denied := func() float64 { return counterValue(e.metrics.connects.WithLabelValues("denied")) }
	for deadline := time.Now().Add(5 * time.Second); denied() < float64(len(tests)) && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond) // polling a condition
	}
	if n := denied(); n != float64(len(tests)) {
		t.Errorf("%v denied CONNECTs counted, want %d", n, len(tests))
	}
}

func port(hostport string) string { return hostport[strings.LastIndexByte(hostport, ':')+1:] }

// TestClientAllowList: a client outside the allow list gets 403 for
// everything.
func TestClientAllowList(t *testing.T) {
	e := newEnv(t, envConfig{rules: func(_ *env, c *RulesConfig) { c.Clients = []string{"10.0.0.0/8"} }})
	if got := e.rawConnect("registry.test:443"); got != http.StatusForbidden {
		t.Fatalf("CONNECT from 127.0.0.1 with clients [10.0.0.0/8]: %d, want 403", got)
	}
}

// TestTunnelIsUntouched: a tunnelled host presents its own certificate
// (not one from the office CA) and its bytes arrive as they are sent, and
// the store is not involved.
func TestTunnelIsUntouched(t *testing.T) {
	e := newEnv(t, envConfig{})
	img := e.push("website/ui:4", 5, 1, 100<<10)
	layer := blobs(t, img)[1]
	u := "/v2/website/ui/blobs/" + layer

	tunnelResp, tunnelBody := e.get(http.MethodGet, "https://tunnel.test"+u, "alice", nil)
	req, _ := http.NewRequest(http.MethodGet, e.reg.URL+u, nil)
	req.SetBasicAuth("alice", password)
	direct, err := (&http.Client{Transport: e.direct()}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	directBody, _ := io.ReadAll(direct.Body)
	direct.Body.Close()
	if tunnelResp.StatusCode != 200 || !bytes.Equal(tunnelBody, directBody) {
		t.Fatalf("through the tunnel: %s, %d bytes; direct %d bytes", tunnelResp.Status, len(tunnelBody), len(directBody))
	}
	got, want := tunnelResp.TLS.PeerCertificates[0], direct.TLS.PeerCertificates[0]
	if sha256.Sum256(got.Raw) != sha256.Sum256(want.Raw) {
		t.Fatalf("tunnel presented %q issued by %q, not the registry's own certificate", got.Subject, got.Issuer)
	}
	if _, err := e.store.Stat(mustDigest(t, layer)); err == nil {
		t.Fatal("a tunnelled blob was stored")
	}
	if n := e.reg.Counter.BlobGets(layer); n != 2 {
		t.Fatalf("%d registry GETs, want 2 (the tunnel caches nothing)", n)
	}

	// The same bytes at the raw TLS level: the certificate chain the
	// tunnel presents is byte-identical to a direct handshake.
	chain := func(c *tls.Conn) [32]byte {
		var all []byte
		for _, cert := range c.ConnectionState().PeerCertificates {
			all = append(all, cert.Raw...)
		}
		return sha256.Sum256(all)
	}
	dc, err := tls.Dial("tcp", e.reg.Host, &tls.Config{RootCAs: e.pki.pool, ServerName: "tunnel.test"})
	if err != nil {
		t.Fatal(err)
	}
	defer dc.Close()
	tc := e.connectTLS(t, "tunnel.test:443", &tls.Config{RootCAs: e.pki.pool, ServerName: "tunnel.test"})
	defer tc.Close()
	if chain(tc) != chain(dc) {
		t.Fatal("certificate chain through the tunnel differs from the direct one")
	}
}

// TestInterceptedHostUsesOfficeCA: registry.test is answered with a leaf
// of the office CA; its Host must be the CONNECT target.
func TestInterceptedHostUsesOfficeCA(t *testing.T) {
	e := newEnv(t, envConfig{})
	tc := e.connectTLS(t, "registry.test:443", &tls.Config{RootCAs: e.officeCA, ServerName: "registry.test"})
	tc.Close()
	leaf := tc.ConnectionState().PeerCertificates[0]
	if leaf.Issuer.String() != e.office.Certificate().Subject.String() {
		t.Fatalf("intercepted leaf issued by %q", leaf.Issuer)
	}
	req, _ := http.NewRequest(http.MethodGet, "https://registry.test/v2/", nil)
	req.Host = "tunnel.test"
	resp, err := (&http.Client{Transport: e.client()}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMisdirectedRequest {
		t.Fatalf("Host tunnel.test inside a CONNECT to registry.test: %s, want 421", resp.Status)
	}
}

// connectTLS opens a CONNECT tunnel through the proxy and starts TLS in it.
func (e *env) connectTLS(t *testing.T, target string, conf *tls.Config) *tls.Conn {
	t.Helper()
	c, resp := e.connect(target)
	if resp.StatusCode != http.StatusOK {
		c.Close()
		t.Fatalf("CONNECT %s: %s", target, resp.Status)
	}
	tc := tls.Client(c, conf)
	if err := tc.Handshake(); err != nil {
		c.Close()
		t.Fatalf("TLS through CONNECT %s: %v", target, err)
	}
	return tc
}

// counterValue reads a counter.
func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}

// TestCorruptBlobIsCutNotStored: when the registry sends bytes that do not
// match the digest, the client's download is cut (never a clean end) and
// nothing is stored. (The registry is real; a wrapper flips one byte on
// the way, the only way to produce this fault.)
func TestCorruptBlobIsCutNotStored(t *testing.T) {
	var target string
	var mu sync.Mutex
	flip := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			bad := target != "" && r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+target)
			mu.Unlock()
			if bad {
				w = &flipWriter{ResponseWriter: w, at: 1000}
			}
			next.ServeHTTP(w, r)
		})
	}
	e := newEnv(t, envConfig{wrap: flip})
	img := e.push("website/ui:5", 6, 1, 64<<10)
	layer := blobs(t, img)[1]
	mu.Lock()
	target = layer
	mu.Unlock()
	req, _ := http.NewRequest(http.MethodGet, "https://registry.test/v2/website/ui/blobs/"+layer, nil)
	req.SetBasicAuth("alice", password)
	resp, err := (&http.Client{Transport: e.client()}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil {
		t.Fatalf("corrupt blob delivered with a clean end (%d of %d bytes)", len(body), resp.ContentLength)
	}
	if int64(len(body)) >= resp.ContentLength {
		t.Fatalf("all %d bytes delivered", len(body))
	}
	if _, err := e.store.Stat(mustDigest(t, layer)); err == nil {
		t.Fatal("a corrupt blob was stored")
	}
}

// flipWriter inverts the byte at offset at of a response body.
type flipWriter struct {
	http.ResponseWriter
	at, off int64
}

func (f *flipWriter) Write(p []byte) (int, error) {
	if f.at >= f.off && f.at < f.off+int64(len(p)) {
		p = bytes.Clone(p)
		p[f.at-f.off] ^= 0xff
	}
	f.off += int64(len(p))
	return f.ResponseWriter.Write(p)
}
