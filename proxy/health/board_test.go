package health_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dtrcache/dtrcache/proxy/health"
	"github.com/dtrcache/dtrcache/proxy/state"
	"github.com/dtrcache/dtrcache/proxy/state/badgerstate"
	"github.com/dtrcache/dtrcache/proxy/state/etcdstate"
	"github.com/dtrcache/dtrcache/testenv/etcdtest"
	"go.uber.org/zap/zaptest"
)

// TestBoardSharesOneChange: two replicas on one store (Badger, and a real
// etcd) decide the same change at the same time; it is written once, and
// both replicas' boards then show it.
func TestBoardSharesOneChange(t *testing.T) {
	stores := map[string]func(t *testing.T) state.Store{
		"badger": func(t *testing.T) state.Store {
			s, err := badgerstate.Open(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		},
		"etcd": func(t *testing.T) state.Store {
			c := etcdtest.Start(t, 1, etcdtest.Options{NoFsync: true})
			s, err := etcdstate.Open(t.Context(), etcdstate.Config{Endpoints: c.Endpoints(), Prefix: "/dtrcache/", DialTimeout: 5 * time.Second, Logger: zaptest.NewLogger(t)})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		},
	}
	for name, open := range stores {
		t.Run(name, func(t *testing.T) {
			st := open(t)
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			boards := []*health.Board{{Store: st}, {Store: st}}
			for _, b := range boards {
				wg.Add(1)
				go func() { defer wg.Done(); b.Run(ctx) }()
			}
			defer func() { cancel(); wg.Wait() }()
			k := health.Key{Cache: "asia", Node: "https://cache-asia.example.org:5000"}
			var writes atomic.Int64
			var start sync.WaitGroup
			start.Add(1)
			var all sync.WaitGroup
			for _, b := range boards {
				all.Add(1)
				go func() {
					defer all.Done()
					start.Wait()
					_, wrote, err := b.Update(ctx, k, func(cur health.Verdict, ok bool) (health.Verdict, bool) {
						if ok && !cur.Up {
							return cur, false
						}
						return health.Verdict{Up: false, Class: health.ClassRefused, Reason: "connection refused", Mode: health.ModeProbe}, true
					})
					if err != nil {
						t.Error(err)
					}
					if wrote {
						writes.Add(1)
					}
				}()
			}
			start.Done()
			all.Wait()
			if n := writes.Load(); n != 1 {
				t.Fatalf("the change was written %d times, want once", n)
			}
			for i, b := range boards {
				deadline := time.Now().Add(5 * time.Second)
				for {
					v, ok := b.Get(k)
					if ok && !v.Up && v.Class == health.ClassRefused {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("replica %d never saw the verdict: %+v %v", i, v, ok)
					}
					time.Sleep(10 * time.Millisecond)
				}
				if nodes := b.Nodes("asia"); len(nodes) != 1 || nodes[k.Node].Up {
					t.Fatalf("replica %d nodes: %+v", i, nodes)
				}
			}
			if err := boards[0].Forget(ctx, "asia"); err != nil {
				t.Fatal(err)
			}
			if _, ok := boards[0].Get(k); ok {
				t.Fatal("a forgotten cache still has a verdict")
			}
		})
	}
}

func TestProbeClassifies(t *testing.T) {
	ready := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != health.ReadyPath {
			t.Errorf("probed %s", r.URL.Path)
		}
	}))
	defer ready.Close()
	draining := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte(`{"status":"not ready","reason":"draining: shutting down"}`))
	}))
	defer draining.Close()
	release := make(chan struct{})
	hanging := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer hanging.Close()
	defer close(release)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := "http://" + ln.Addr().String()
	ln.Close()
	for _, tt := range []struct {
		name, base, class, reason string
	}{
		{"ready", ready.URL, health.ClassOK, ""},
		{"draining", draining.URL, health.ClassNotReady, "not ready: draining: shutting down"},
		{"hanging", hanging.URL, health.ClassTimeout, ""},
		{"refused", closed, health.ClassRefused, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := health.Probe(context.Background(), http.DefaultClient, tt.base, 200*time.Millisecond)
			if r.Class != tt.class || (tt.reason != "" && r.Reason != tt.reason) || r.OK != (tt.class == health.ClassOK) {
				t.Fatalf("%+v, want class %s reason %q", r, tt.class, tt.reason)
			}
		})
	}
}
