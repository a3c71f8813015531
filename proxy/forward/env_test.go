package forward

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dtrcache/dtrcache/casstore"
	"github.com/dtrcache/dtrcache/policy"
	"github.com/dtrcache/dtrcache/proxy/forward/ca"
	"github.com/dtrcache/dtrcache/testenv"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zaptest"
)

const password = "correct horse"

// testPKI is a throwaway CA for the registries' own TLS certificates (the
// "real" certificates the proxy verifies and tunnels pass through).
type testPKI struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "registry test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testPKI{cert: cert, key: key, pool: pool}
}

// server returns a TLS server configuration with a certificate for hosts.
func (p *testPKI) server(t *testing.T, hosts ...string) *tls.Config {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: hosts[0]},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip, err := netip.ParseAddr(h); err == nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip.AsSlice())
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.cert, &key.PublicKey, p.key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12}
}

// htpasswdFile writes a bcrypt htpasswd file for users (all with
// password) and returns its path.
func htpasswdFile(t *testing.T, users ...string) string {
	t.Helper()
	var b strings.Builder
	for _, u := range users {
		h, err := policy.HashPassword(password, 4)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s:%s\n", u, h)
	}
	p := filepath.Join(t.TempDir(), "htpasswd")
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// env is a forward proxy in front of a TLS registry with htpasswd auth,
// reached by clients as https://registry.test through HTTPS_PROXY.
type env struct {
	t        *testing.T
	pki      *testPKI
	reg      *testenv.Registry
	office   *ca.Authority
	officeCA *x509.CertPool
	store    *casstore.Store
	proxy    *Proxy
	addr     string // the proxy's host:port
	metrics  *Metrics

	// shutdown stops the proxy and returns what Serve returned.
	shutdown func() error
	once     sync.Once
	served   error

	// mu guards now, the clock of the authorization cache.
	mu  sync.Mutex
	now time.Time
}

// envConfig adjusts newEnv.
type envConfig struct {
	rules   func(*env, *RulesConfig)        // changes to the rules (may start more servers)
	options func(*Options)                  // changes to the proxy's options
	wrap    func(http.Handler) http.Handler // wraps the registry
	front   func(e *env) string             // starts a TLS server in front of the registry and returns its address
}

func newEnv(t *testing.T, c envConfig) *env {
	t.Helper()
	ctx := context.Background()
	e := &env{t: t, pki: newTestPKI(t), now: time.Now()}
	var err error
	e.reg, err = testenv.StartRegistry(ctx, testenv.RegistryOptions{
		Htpasswd: htpasswdFile(t, "alice", "bob", "office-mirror"), Wrap: c.wrap,
		TLS: e.pki.server(t, "registry.test", "tunnel.test", "127.0.0.1"),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.reg.Close() })
	upstreamAddr := e.reg.Host
	if c.front != nil {
		upstreamAddr = c.front(e)
	}
	rc := RulesConfig{
		Intercept:    []string{"registry.test"},
		Tunnel:       []string{"tunnel.test", "metadata.test:80"},
		AllowPrivate: []string{"127.0.0.0/8"},
		Hosts: map[string]string{
			"registry.test": upstreamAddr, "tunnel.test": e.reg.Host,
			"metadata.test": "169.254.169.254", // listed, and still refused
		},
		Resolver: &fakeResolver{}, // nothing resolves: every name must be mapped
	}
	if c.rules != nil {
		c.rules(e, &rc)
	}
	rules, err := NewRules(rc)
	if err != nil {
		t.Fatal(err)
	}
	if e.office, err = ca.Init(t.TempDir(), ca.Options{}); err != nil {
		t.Fatal(err)
	}
	e.officeCA = x509.NewCertPool()
	e.officeCA.AddCert(e.office.Certificate())
	log := zaptest.NewLogger(t)
	if e.store, err = casstore.Open(t.TempDir(), casstore.Options{Logger: log.Named("store")}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.store.Close() })
	e.metrics = NewMetrics(prometheus.NewRegistry())
	opts := Options{
		Rules: rules, Leaves: &ca.Leaves{CA: e.office}, Store: e.store,
		Fill: casstore.FillOptions{Parallel: 1},
		TLS:  &tls.Config{RootCAs: e.pki.pool}, Logger: log.Named("forward"), Metrics: e.metrics,
		Now: e.clock, Grace: 5 * time.Second,
	}
	if c.options != nil {
		c.options(&opts)
	}
	e.proxy, err = New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr = ln.Addr().String()
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- e.proxy.Serve(sctx, ln) }()
	e.shutdown = func() error {
		e.once.Do(func() {
			stop()
			e.served = <-done
		})
		return e.served
	}
	t.Cleanup(func() {
		if err := e.shutdown(); err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return e
}

func (e *env) clock() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.now
}

func (e *env) advance(d time.Duration) {
	e.mu.Lock()
	e.now = e.now.Add(d)
	e.mu.Unlock()
}

// client returns a transport that uses the proxy (like HTTPS_PROXY) and
// trusts the office CA (and, for tunnels, the registry's real CA).
func (e *env) client() *http.Transport {
	roots := e.officeCA.Clone()
	roots.AddCert(e.pki.cert)
	return &http.Transport{
		Proxy:           http.ProxyURL(&url.URL{Scheme: "http", Host: e.addr}),
		TLSClientConfig: &tls.Config{RootCAs: roots},
	}
}

// direct returns a transport to the registry itself (127.0.0.1).
func (e *env) direct() *http.Transport {
	return &http.Transport{TLSClientConfig: &tls.Config{RootCAs: e.pki.pool}}
}

// push writes a generated image to the registry directly.
func (e *env) push(ref string, seed uint64, layers int, size int64) v1.Image {
	e.t.Helper()
	img, err := testenv.GenerateImage(testenv.ImageSpec{Layers: layers, LayerSize: size, Seed: seed})
	if err != nil {
		e.t.Fatal(err)
	}
	if err := testenv.Push(context.Background(), e.reg.Host+"/"+ref, img, testenv.RemoteOptions{Username: "alice", Password: password, Transport: e.direct()}); err != nil {
		e.t.Fatal(err)
	}
	return img
}

// pull reads an image and all its blobs through the proxy as user
// (anonymous if ""), verifying every digest, and returns the manifest
// digest.
func pull(ctx context.Context, ref, user string, rt http.RoundTripper) (v1.Hash, error) {
	r, err := name.ParseReference(ref) // https only: registry.test is not a loopback name
	if err != nil {
		return v1.Hash{}, err
	}
	opts := []remote.Option{remote.WithContext(ctx), remote.WithTransport(rt)}
	if user != "" {
		opts = append(opts, remote.WithAuth(&authn.Basic{Username: user, Password: password}))
	}
	img, err := remote.Image(r, opts...)
	if err != nil {
		return v1.Hash{}, err
	}
	if _, err := img.RawConfigFile(); err != nil {
		return v1.Hash{}, err
	}
	layers, err := img.Layers()
	if err != nil {
		return v1.Hash{}, err
	}
	for _, l := range layers {
		rc, err := l.Compressed() // verifies the digest at EOF
		if err != nil {
			return v1.Hash{}, err
		}
		_, err = io.Copy(io.Discard, rc)
		rc.Close()
		if err != nil {
			return v1.Hash{}, err
		}
	}
	return img.Digest()
}

// blobs lists an image's config and layer digests.
func blobs(t *testing.T, img v1.Image) []string {
	t.Helper()
	info, err := testenv.Describe(img)
	if err != nil {
		t.Fatal(err)
	}
	out := []string{info.Config.String()}
	for _, l := range info.Layers {
		out = append(out, l.String())
	}
	return out
}

// get sends one request through the proxy and returns the response with
// its body read.
func (e *env) get(method, rawURL, user string, header http.Header) (*http.Response, []byte) {
	e.t.Helper()
	req, err := http.NewRequest(method, rawURL, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	if user != "" {
		req.SetBasicAuth(user, password)
	}
	resp, err := (&http.Client{Transport: e.client()}).Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp, body
}

// connect sends "CONNECT target" on a new connection to the proxy and
// returns the connection and the answer.
func (e *env) connect(target string) (net.Conn, *http.Response) {
	e.t.Helper()
	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		e.t.Fatal(err)
	}
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		c.Close()
		e.t.Fatal(err)
	}
	if resp.StatusCode == http.StatusOK && br.Buffered() > 0 {
		c.Close()
		e.t.Fatalf("CONNECT %s: %d unexpected bytes after the 200", target, br.Buffered())
	}
	return c, resp
}

// rawConnect sends "CONNECT target" and returns the status of the answer.
func (e *env) rawConnect(target string) int {
	e.t.Helper()
	c, resp := e.connect(target)
	defer c.Close()
	resp.Body.Close()
	return resp.StatusCode
}

func mustDigest(t *testing.T, s string) casstore.Digest {
	t.Helper()
	d, err := casstore.ParseDigest(s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// serveTLS serves h over TLS on loopback with a certificate for hosts and
// returns its address.
func (e *env) serveTLS(h http.Handler, hosts ...string) string {
	e.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		e.t.Fatal(err)
	}
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(tls.NewListener(ln, e.pki.server(e.t, hosts...)))
	e.t.Cleanup(func() { hs.Close() })
	return ln.Addr().String()
}
