package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/dtrcache/dtrcache/cmd/dtrcache/config"
	"go.uber.org/zap/zaptest"
)

// TestDrainOnStop: a cache in redirect mode that is stopped answers
// /readyz with 503 and a reason at once, keeps serving requests that
// still arrive, and stops once a probe has seen it not ready (plus the
// linger), well before shutdown_drain; nobody probing, it stops after
// shutdown_drain.
func TestDrainOnStop(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	origin := "http://" + ln.Addr().String() // nothing answers: the cache never fills here
	ln.Close()
	tests := []struct {
		name  string
		probe bool
		min   time.Duration
		max   time.Duration
	}{
		{"probed: stops after the origin saw it", true, drainLinger, 5 * time.Second},
		{"not probed: stops after shutdown_drain", false, 1500 * time.Millisecond, 10 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := config.ParseCache([]byte(fmt.Sprintf("name: asia\nstorage: {root: %s}\nshutdown_drain: %s\nredirect: {upstreams: ['%s'], keys: {jwks_url: '%s/jwks'}}\n",
				t.TempDir(), map[bool]string{true: "20s", false: "1500ms"}[tt.probe], origin, origin)), "t")
			if err != nil {
				t.Fatal(err)
			}
			setup, err := prepareCache(cfg)
			if err != nil {
				t.Fatal(err)
			}
			ln, _ := net.Listen("tcp", "127.0.0.1:0")
			base := "http://" + ln.Addr().String()
			ctx, stop := context.WithCancel(context.Background())
			defer stop()
			done := make(chan error, 1)
			go func() { done <- serveCache(ctx, setup, zaptest.NewLogger(t), &cacheListeners{api: ln}) }()
			get := func(path string) (int, string) {
				resp, err := http.Get(base + path)
				if err != nil {
					t.Fatalf("GET %s while draining: %v", path, err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				return resp.StatusCode, string(b)
			}
			if code, body := get("/readyz"); code != http.StatusOK {
				t.Fatalf("readyz before the stop: %d %s", code, body)
			}
			// An origin's watch, held until the stop.
			type answer struct {
				code int
				at   time.Time
			}
			held := make(chan answer, 1)
			go func() {
				if !tt.probe {
					return // nobody asks
				}
				resp, err := http.Get(base + "/readyz?wait=20s")
				if err != nil {
					held <- answer{}
					return
				}
				resp.Body.Close()
				held <- answer{resp.StatusCode, time.Now()}
			}()
			if tt.probe { // the watch is held: the cache counts it
				waitMetric(t, base, "dtrcache_readyz_watches 1")
			}
			stop() // SIGTERM
			start := time.Now()
			if tt.probe {
				a := <-held
				if a.code != http.StatusServiceUnavailable || a.at.Sub(start) > 2*time.Second {
					t.Fatalf("the held watch: %d %s after the stop, want 503 at once", a.code, a.at.Sub(start))
				}
			}
			if tt.probe {
				for {
					code, body := get("/readyz")
					if code == http.StatusServiceUnavailable {
						if !strings.Contains(body, "draining") {
							t.Fatalf("readyz while draining: %s", body)
						}
						break
					}
					if time.Since(start) > 5*time.Second {
						t.Fatalf("readyz still %d 5 s after the stop", code)
					}
					time.Sleep(5 * time.Millisecond)
				}
			}
			// A request that arrives now is still served.
			if code, _ := get("/healthz"); code != http.StatusOK {
				t.Fatalf("healthz while draining: %d", code)
			}
			select {
			case err := <-done:
				took := time.Since(start)
				if err != nil {
					t.Fatal(err)
				}
				if took < tt.min || took > tt.max {
					t.Fatalf("stopped %s after the stop signal, want between %s and %s", took, tt.min, tt.max)
				}
				t.Logf("stopped %s after the stop signal", took)
			case <-time.After(tt.max + 5*time.Second):
				t.Fatal("the cache did not stop")
			}
		})
	}
}

// waitMetric waits (5 s at most) until the server at base shows line in
// its /metrics.
func waitMetric(t *testing.T, base, line string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; {
		resp, err := http.Get(base + "/metrics")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			for _, l := range strings.Split(string(b), "\n") {
				if l == line {
					return
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s/metrics does not show %q within 5 s", base, line)
		}
		time.Sleep(5 * time.Millisecond) // polling a condition
	}
}
