package serve

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestMuxRoutes(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewHTTPMetrics(reg)
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		FieldsFrom(r.Context()).Route = "api"
		io.WriteString(w, "api:"+r.URL.Path)
	})
	notReady := errors.New("store closed")
	var ready error
	h := Instrument(zap.NewNop(), m, Mux(api, func(context.Context) error { return ready }, reg))
	tests := []struct {
		path   string
		status int
		body   string
	}{
		{"/healthz", 200, `"ok"`},
		{"/readyz", 200, `"ready"`},
		{"/v2/a/../b", 200, "api:/v2/a/../b"}, // not cleaned or redirected: the API decides
		{"/metrics", 200, "dtrcache_http_requests_total"},
	}
	for _, tt := range tests {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, tt.path, nil))
		if w.Code != tt.status || !strings.Contains(w.Body.String(), tt.body) {
			t.Errorf("GET %s: %d %q", tt.path, w.Code, w.Body.String())
		}
	}
	ready = notReady
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	if w.Code != http.StatusServiceUnavailable || !strings.Contains(w.Body.String(), "store closed") {
		t.Fatalf("readyz when not ready: %d %s", w.Code, w.Body)
	}
}

func TestAccessLogLine(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	h := Instrument(zap.New(core), nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f := FieldsFrom(r.Context())
		f.Route, f.Repo, f.Result = "blob", "a/b", "hit"
		w.Write([]byte("12345"))
	}))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/v2/a/b/blobs/x?token=secret", nil))
	if logs.Len() != 1 {
		t.Fatalf("%d log lines", logs.Len())
	}
	e := logs.All()[0]
	fields := e.ContextMap()
	if fields["repo"] != "a/b" || fields["result"] != "hit" || fields["bytes"] != int64(5) || fields["status"] != int64(200) {
		t.Fatalf("fields %v", fields)
	}
	for _, v := range fields {
		if s, ok := v.(string); ok && strings.Contains(s, "secret") {
			t.Fatalf("the token leaked into the log: %v", fields)
		}
	}
}

// TestRecorderKeepsSendfile checks that a wrapped response still offers
// io.ReaderFrom to io.Copy (the path to sendfile).
func TestRecorderKeepsSendfile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	os.WriteFile(path, bytes.Repeat([]byte("x"), 1<<20), 0o600)
	srv := httptest.NewServer(Instrument(zap.NewNop(), nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := w.(io.ReaderFrom); !ok {
			t.Error("the recorder hides io.ReaderFrom")
		}
		f, _ := os.Open(path)
		defer f.Close()
		io.Copy(w, f)
	})))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if n != 1<<20 {
		t.Fatalf("%d bytes", n)
	}
}

func TestServerGracefulShutdown(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release
		io.WriteString(w, "done")
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- (&Server{Handler: h, Grace: 5 * time.Second}).Serve(ctx, ln) }()
	got := make(chan string, 1)
	go func() {
		resp, err := http.Get("http://" + ln.Addr().String())
		if err != nil {
			got <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- string(b)
	}()
	<-started
	cancel()
	// Shutdown has begun once the listener refuses connections; the
	// request in flight is then released and must still complete.
	waitRefused(t, ln.Addr().String())
	select {
	case err := <-errc:
		t.Fatalf("Serve returned %v with a request in flight", err)
	default:
	}
	close(release)
	if s := <-got; s != "done" {
		t.Fatalf("request in flight: %q", s)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// TestBackground: Close cancels the goroutines' context and returns only
// after each has returned; nothing starts after it.
func TestBackground(t *testing.T) {
	var b Background
	started := make(chan struct{}, 3)
	var ended atomic.Int32
	for range 3 {
		if !b.Go(func(ctx context.Context) {
			started <- struct{}{}
			<-ctx.Done()
			ended.Add(1)
		}) {
			t.Fatal("Go refused before Close")
		}
	}
	for range 3 {
		<-started
	}
	b.Close()
	if n := ended.Load(); n != 3 {
		t.Fatalf("Close returned with %d of 3 goroutines ended", n)
	}
	if b.Go(func(context.Context) { t.Error("ran after Close") }) {
		t.Fatal("Go accepted work after Close")
	}
	b.Close() // again: no-op
}

// waitRefused waits until addr refuses TCP connections (a server's
// shutdown closed its listener), failing the test after 5 s.
func waitRefused(t *testing.T, addr string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatalf("%s still accepts connections", addr)
		}
	}
}
