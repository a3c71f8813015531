package events

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/dtrcache/dtrcache/proxy/netguard"
	"github.com/dtrcache/dtrcache/proxy/regapi"
	"github.com/dtrcache/dtrcache/proxy/state"
	"github.com/dtrcache/dtrcache/proxy/state/badgerstate"
	"go.uber.org/zap/zaptest"
)

func newStore(t testing.TB) state.Store {
	t.Helper()
	s, err := badgerstate.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// loopbackGuard is the guarded dialer with loopback allowed (every test
// receiver is on 127.0.0.1).
func loopbackGuard(t testing.TB) Guard {
	t.Helper()
	g, err := netguard.New(netguard.Config{AllowPrivate: []string{"127.0.0.0/8", "::1/128"}})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// strictGuard allows nothing special: loopback is refused.
func strictGuard(t testing.TB) Guard {
	t.Helper()
	g, err := netguard.New(netguard.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// fastDelivery are delivery settings for tests: quick retries and scans.
func fastDelivery(t testing.TB) DeliveryConfig {
	return DeliveryConfig{Guard: loopbackGuard(t), Timeout: 2 * time.Second, BackoffMin: 5 * time.Millisecond,
		BackoffMax: 50 * time.Millisecond, ScanInterval: 50 * time.Millisecond, ClaimTTL: time.Second}
}

// startService runs a service on store until the test ends.
func startService(t testing.TB, store state.Store, c Config) *Service {
	t.Helper()
	c.Store = store
	if c.Delivery.Guard == nil {
		c.Delivery = fastDelivery(t)
	}
	if c.Logger == nil {
		c.Logger = zaptest.NewLogger(t)
	}
	s, err := NewService(c)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	if err := s.Subscriptions.WaitReady(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	return s
}

// delivery is one request a receiver got.
type delivery struct {
	header http.Header
	body   []byte
	event  Event
	status int
	at     time.Time
}

// receiver is a real HTTP webhook receiver that records every request.
// answer decides the status of each (nil: 200); hangUp, when it returns
// true, cuts the connection without an answer.
type receiver struct {
	srv *httptest.Server

	// mu guards got, answer and hangUp.
	mu     sync.Mutex
	got    []delivery
	answer func(n int, ev Event) int
	hangUp func(n int) bool
	header http.Header
	// changed is closed and replaced on every request.
	changed chan struct{}
}

func newReceiver(t testing.TB) *receiver {
	t.Helper()
	rc := &receiver{changed: make(chan struct{})}
	rc.srv = httptest.NewServer(http.HandlerFunc(rc.serve))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) url() string { return rc.srv.URL + "/hook" }

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var ev Event
	json.Unmarshal(body, &ev)
	rc.mu.Lock()
	n := len(rc.got)
	if rc.hangUp != nil && rc.hangUp(n) {
		rc.got = append(rc.got, delivery{header: r.Header.Clone(), body: body, event: ev, status: 0, at: time.Now()})
		rc.notifyLocked()
		rc.mu.Unlock()
		if hj, ok := w.(http.Hijacker); ok {
			if c, _, err := hj.Hijack(); err == nil {
				c.(*net.TCPConn).SetLinger(0)
				c.Close()
				return
			}
		}
		panic(http.ErrAbortHandler)
	}
	status := http.StatusOK
	if rc.answer != nil {
		status = rc.answer(n, ev)
	}
	rc.got = append(rc.got, delivery{header: r.Header.Clone(), body: body, event: ev, status: status, at: time.Now()})
	for k, v := range rc.header {
		w.Header()[k] = v
	}
	rc.notifyLocked()
	rc.mu.Unlock()
	w.WriteHeader(status)
}

func (rc *receiver) notifyLocked() {
	close(rc.changed)
	rc.changed = make(chan struct{})
}

func (rc *receiver) set(answer func(n int, ev Event) int, hangUp func(n int) bool) {
	rc.mu.Lock()
	rc.answer, rc.hangUp = answer, hangUp
	rc.mu.Unlock()
}

// all returns the requests so far.
func (rc *receiver) all() []delivery {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]delivery(nil), rc.got...)
}

// accepted returns the requests answered 2xx, in arrival order.
func (rc *receiver) accepted() []delivery {
	var out []delivery
	for _, d := range rc.all() {
		if d.status >= 200 && d.status < 300 {
			out = append(out, d)
		}
	}
	return out
}

// waitFor waits (never longer than the timeout) until cond holds on the
// requests received so far.
func (rc *receiver) waitFor(t testing.TB, what string, cond func([]delivery) bool) []delivery {
	t.Helper()
	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	for {
		rc.mu.Lock()
		got := append([]delivery(nil), rc.got...)
		ch := rc.changed
		rc.mu.Unlock()
		if cond(got) {
			return got
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s; got %d requests", what, len(got))
		}
	}
}

// waitUntil polls cond (for state that has no notification) until it
// holds or the timeout passes.
func waitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// subscribe makes a webhook directly in the subscriptions.
func subscribe(t testing.TB, s *Service, typ Type, key, endpoint string) Webhook {
	t.Helper()
	w, err := s.Subscriptions.Create(ctxT(t), Webhook{Type: typ, Key: key, Endpoint: endpoint, AuthorID: "admin"})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// tagPush returns a TAG_PUSH event of repo:tag.
func tagPush(t testing.TB, repo, tag string) Event {
	t.Helper()
	ev, err := NewImageEvent(TagPush, Image{Repository: repo, Tag: tag, Digest: sampleDigest, Host: "dtr.example.org"}, "alice", time.Now(), SourceOrigin)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func ids(ds []delivery) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.event.ID
	}
	return out
}

func validRepo(name string) bool { return regapi.ValidName(name) }

func errorsAs(err error, target any) bool { return errors.As(err, target) }
