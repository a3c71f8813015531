package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dtrcache/dtrcache/cmd/dtrcache/config"
	"github.com/dtrcache/dtrcache/policy"
	"github.com/dtrcache/dtrcache/testenv"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
)

func TestCACommand(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"ca", "init", "--dir", dir}, &stdout, &stderr); code != 0 {
		t.Fatalf("ca init: exit %d: %s", code, stderr.String())
	}
	for _, f := range []string{"ca.crt", "ca.key"} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v, mode %v; want 0600", f, err, fi.Mode().Perm())
		}
	}
	key, _ := os.ReadFile(filepath.Join(dir, "ca.key"))
	stderr.Reset()
	if code := run(context.Background(), []string{"ca", "init", "--dir", dir}, io.Discard, &stderr); code != 1 || !strings.Contains(stderr.String(), "refusing to overwrite") {
		t.Fatalf("second ca init: exit %d, %q", code, stderr.String())
	}
	if code := run(context.Background(), []string{"ca", "init", "--if-missing", "--dir", dir}, io.Discard, io.Discard); code != 0 {
		t.Fatalf("ca init --if-missing on an existing CA: exit %d", code)
	}
	if again, _ := os.ReadFile(filepath.Join(dir, "ca.key")); !bytes.Equal(key, again) {
		t.Fatal("ca init overwrote the key")
	}
	stdout.Reset()
	if code := run(context.Background(), []string{"ca", "cert", "--dir", dir}, &stdout, io.Discard); code != 0 {
		t.Fatalf("ca cert: exit %d", code)
	}
	file, _ := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if !bytes.Equal(stdout.Bytes(), file) {
		t.Fatal("ca cert did not print the certificate")
	}
	block, _ := pem.Decode(stdout.Bytes())
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil || !cert.IsCA {
		t.Fatalf("printed certificate: %v", err)
	}
	if _, ok := cert.PublicKey.(*ecdsa.PublicKey); !ok || cert.PublicKey.(*ecdsa.PublicKey).Curve != elliptic.P256() {
		t.Fatalf("CA key %T, want ECDSA P-256", cert.PublicKey)
	}
	for _, args := range [][]string{{"ca"}, {"ca", "sign"}, {"ca", "init"}, {"ca", "init", "--dir", dir, "--validity", "soon"}} {
		if code := run(context.Background(), args, io.Discard, io.Discard); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
	if code := run(context.Background(), []string{"ca", "cert", "--dir", t.TempDir()}, io.Discard, io.Discard); code != 1 {
		t.Errorf("ca cert of an empty directory: exit %d, want 1", code)
	}
}

// TestCacheServesForwardProxy: `dtrcache cache` with a forward_proxy
// section serves HTTPS_PROXY clients from its store and exports the
// proxy's metrics on the cache's /metrics.
func TestCacheServesForwardProxy(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	// The registry's own certificate, from a throwaway test CA.
	caPEM, serverTLS := testServerTLS(t, "registry.test", "127.0.0.1")
	casFile := filepath.Join(dir, "registry-ca.pem")
	os.WriteFile(casFile, caPEM, 0o600)
	h, _ := policy.HashPassword("pw", 4)
	htpasswd := filepath.Join(dir, "htpasswd")
	os.WriteFile(htpasswd, []byte("alice:"+h+"\n"), 0o600)
	reg, err := testenv.StartRegistry(ctx, testenv.RegistryOptions{TLS: serverTLS, Htpasswd: htpasswd})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	img, _ := testenv.GenerateImage(testenv.ImageSpec{Layers: 2, LayerSize: 200 << 10, Seed: 61})
	if err := testenv.Push(ctx, reg.Host+"/website/ui:1", img, testenv.RemoteOptions{Username: "alice", Password: "pw",
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}); err != nil {
		t.Fatal(err)
	}

	caDir := filepath.Join(dir, "ca")
	if code := run(ctx, []string{"ca", "init", "--dir", caDir}, io.Discard, io.Discard); code != 0 {
		t.Fatal("ca init failed")
	}
	var officePEM bytes.Buffer
	run(ctx, []string{"ca", "cert", "--dir", caDir}, &officePEM, io.Discard)
	office := x509.NewCertPool()
	office.AppendCertsFromPEM(officePEM.Bytes())

	// All three modes at once: three stores side by side.
	cfg, err := config.ParseCache([]byte(fmt.Sprintf(`
name: asia
storage: {root: %s}
shutdown_grace: 5s
redirect: {upstreams: ["http://127.0.0.1:9"], keys: {refresh: 1h}}
mirror: {upstreams: [{name: reg, url: "https://%[3]s", cas: [%[4]s]}]}
forward_proxy:
  addr: 127.0.0.1:0
  ca_dir: %[2]s
  intercept: [registry.test]
  allow_private: [127.0.0.0/8]
  hosts: {registry.test: "%[3]s"}
  cas: [%[4]s]
`, filepath.Join(dir, "store"), caDir, reg.Host, casFile)), "t.yml")
	if err != nil {
		t.Fatal(err)
	}
	setup, err := prepareCache(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := config.CheckFiles(cfg.Files()); err != nil {
		t.Fatal(err)
	}
	apiLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addrs := make(chan string, 1)
	log := zap.New(servingCatcher{Core: zaptest.NewLogger(t).Core(), server: "forward", addr: addrs})
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- serveCache(sctx, setup, log, &cacheListeners{api: apiLn}) }()
	var proxyAddr string
	select {
	case proxyAddr = <-addrs:
	case err := <-done:
		t.Fatalf("serveCache: %v", err)
	}

	client := &http.Transport{
		Proxy:           http.ProxyURL(&url.URL{Scheme: "http", Host: proxyAddr}),
		TLSClientConfig: &tls.Config{RootCAs: office},
	}
	ref, _ := name.ParseReference("registry.test/website/ui:1")
	want, _ := img.Digest()
	for i := range 2 {
		pulled, err := remote.Image(ref, remote.WithTransport(client), remote.WithAuth(&authn.Basic{Username: "alice", Password: "pw"}))
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := pulled.Digest(); got != want {
			t.Fatalf("pull %d: digest %v, want %v", i, got, want)
		}
		layers, _ := pulled.Layers()
		for _, l := range layers {
			rc, err := l.Compressed()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(io.Discard, rc); err != nil {
				t.Fatal(err)
			}
			rc.Close()
		}
	}
	if n := reg.Counter.TotalBlobGets(); n != 2 {
		t.Fatalf("%d blob GETs at the registry for two pulls of 2 layers, want 2", n)
	}
	// The client has every byte before the fill's commit (verify, fsync,
	// rename) counts the blob: wait for the count.
	var metrics []byte
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		resp, err := http.Get("http://" + apiLn.Addr().String() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		metrics, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(metrics), `dtrcache_store_blobs{store="proxy"} 2`) {
			break
		}
	}
	for _, m := range []string{`dtrcache_forward_requests_total{result="miss"} 2`, `dtrcache_forward_connects_total{action="mitm"}`,
		`dtrcache_forward_auth_checks_total{result="vouched"} 4`, `dtrcache_store_blobs{store="proxy"} 2`, `dtrcache_forward_leaf_certs_issued_total 1`,
		`dtrcache_store_blobs{store="redirect"} 0`, `dtrcache_store_blobs{store="mirror"} 0`} {
		if !strings.Contains(string(metrics), m) {
			t.Errorf("/metrics lacks %s", m)
		}
	}
	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serveCache: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("serveCache did not return")
	}
}

// servingCatcher passes log entries on and sends the address of the
// "serving" line of one server, so a test learns a port chosen by the
// kernel.
type servingCatcher struct {
	zapcore.Core
	server string
	addr   chan<- string
}

func (c servingCatcher) With(fs []zapcore.Field) zapcore.Core {
	return servingCatcher{Core: c.Core.With(fs), server: c.server, addr: c.addr}
}

func (c servingCatcher) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c servingCatcher) Write(e zapcore.Entry, fs []zapcore.Field) error {
	if e.Message == "serving" {
		var server, addr string
		for _, f := range fs {
			switch f.Key {
			case "server":
				server = f.String
			case "addr":
				addr = f.String
			}
		}
		if server == c.server {
			select {
			case c.addr <- addr:
			default:
			}
		}
	}
	return c.Core.Write(e, fs)
}

// testServerTLS makes a throwaway CA and a server certificate for hosts;
// it returns the CA in PEM and the server's TLS configuration.
func testServerTLS(t *testing.T, hosts ...string) ([]byte, *tls.Config) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: hosts[0]},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		&tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}
