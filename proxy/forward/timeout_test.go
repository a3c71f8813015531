package forward

import (
	"bufio"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dtrcache/dtrcache/casstore"
	"github.com/dtrcache/dtrcache/proxy/forward/ca"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// TestIdleConnectionsClosed: tunnels and intercepted connections that
// move nothing for IdleTimeout are closed by the proxy.
func TestIdleConnectionsClosed(t *testing.T) {
	const idle = 300 * time.Millisecond
	e := newEnv(t, envConfig{options: func(o *Options) { o.IdleTimeout = idle }})

	t.Run("tunnel", func(t *testing.T) {
		tc := e.connectTLS(t, "tunnel.test:443", &tls.Config{RootCAs: e.pki.pool, ServerName: "tunnel.test"})
		defer tc.Close()
		start := time.Now()
		if _, err := tc.Read(make([]byte, 1)); err == nil {
			t.Fatal("read data from an idle tunnel")
		}
		// The registry behind it would wait 10 s for a request.
		if d := time.Since(start); d < idle || d > 5*time.Second {
			t.Fatalf("idle tunnel closed after %v, want about %v", d, idle)
		}
	})
	t.Run("intercepted", func(t *testing.T) {
		tc := e.connectTLS(t, "registry.test:443", &tls.Config{RootCAs: e.officeCA, ServerName: "registry.test"})
		defer tc.Close()
		fmt.Fprintf(tc, "GET /v2/ HTTP/1.1\r\nHost: registry.test\r\n\r\n")
		br := bufio.NewReader(tc)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("GET /v2/: %s", resp.Status)
		}
		start := time.Now()
		if _, err := br.ReadByte(); err == nil {
			t.Fatal("read data from an idle connection")
		}
		if d := time.Since(start); d < idle || d > 5*time.Second {
			t.Fatalf("idle keep-alive connection closed after %v, want about %v", d, idle)
		}
	})
}

// TestShutdownLetsDownloadsFinish: when the proxy is stopped, a download
// in flight through an intercepted connection finishes, Serve returns
// nil, and the port is closed.
func TestShutdownLetsDownloadsFinish(t *testing.T) {
	release := make(chan struct{})
	var held sync.Once
	holding := make(chan struct{})
	// The registry sends half of every blob, then waits for release.
	slow := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/sha256:") {
				w = &holdWriter{ResponseWriter: w, after: 32 << 10, hold: func() {
					held.Do(func() { close(holding) })
					<-release
				}}
			}
			next.ServeHTTP(w, r)
		})
	}
	shuttingDown := make(chan struct{})
	var once sync.Once
	e := newEnv(t, envConfig{wrap: slow, options: func(o *Options) {
		o.Logger = o.Logger.WithOptions(zap.Hooks(func(en zapcore.Entry) error {
			if strings.HasPrefix(en.Message, "shutting down") {
				once.Do(func() { close(shuttingDown) })
			}
			return nil
		}))
	}})
	img := e.push("website/ui:6", 7, 1, 256<<10)
	layer := blobs(t, img)[1]
	req, _ := http.NewRequest(http.MethodGet, "https://registry.test/v2/website/ui/blobs/"+layer, nil)
	req.SetBasicAuth("alice", password)
	resp, err := (&http.Client{Transport: e.client()}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	<-holding
	served := make(chan error, 1)
	go func() { served <- e.shutdown() }()
	<-shuttingDown
	close(release)
	body, err := io.ReadAll(resp.Body)
	if err != nil || fmt.Sprintf("sha256:%x", sha256.Sum256(body)) != layer {
		t.Fatalf("download in flight during shutdown: %d bytes, %v", len(body), err)
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if c, err := net.Dial("tcp", e.addr); err == nil {
		c.Close()
		t.Fatal("the proxy still accepts connections after Serve returned")
	}
}

// holdWriter calls hold once after the first after bytes.
type holdWriter struct {
	http.ResponseWriter
	after, n int64
	hold     func()
	done     bool
}

func (h *holdWriter) Write(p []byte) (int, error) {
	if !h.done && h.n+int64(len(p)) > h.after {
		k := h.after - h.n
		n, err := h.ResponseWriter.Write(p[:k])
		h.n += int64(n)
		if err != nil {
			return n, err
		}
		h.ResponseWriter.(http.Flusher).Flush()
		h.done = true
		h.hold()
		m, err := h.ResponseWriter.Write(p[k:])
		h.n += int64(m)
		return n + m, err
	}
	n, err := h.ResponseWriter.Write(p)
	h.n += int64(n)
	return n, err
}

// TestNewDefaults: zero Options get the documented timings and the
// longest authorization memory; a longer one is refused.
func TestNewDefaults(t *testing.T) {
	store, err := casstore.Open(t.TempDir(), casstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	rules, err := NewRules(RulesConfig{Intercept: []string{"registry.test"}})
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(Options{Rules: rules, Leaves: &ca.Leaves{}, Store: store})
	if err != nil {
		t.Fatal(err)
	}
	if p.idle != DefaultIdleTimeout || p.grace != DefaultGrace || p.auth.ttl != MaxAuthTTL {
		t.Fatalf("idle %s, grace %s, auth ttl %s; want %s, %s, %s", p.idle, p.grace, p.auth.ttl, DefaultIdleTimeout, DefaultGrace, MaxAuthTTL)
	}
	if DefaultIdleTimeout != 2*time.Minute || DefaultGrace != 30*time.Second || MaxAuthTTL != 60*time.Second {
		t.Fatalf("defaults changed: %s %s %s (the README and DESIGN name them)", DefaultIdleTimeout, DefaultGrace, MaxAuthTTL)
	}
	if _, err := New(Options{Rules: rules, Leaves: &ca.Leaves{}, Store: store, AuthTTL: MaxAuthTTL + time.Second}); err == nil {
		t.Fatal("an AuthTTL above MaxAuthTTL was accepted")
	}
}
