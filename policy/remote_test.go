package policy

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// jwksServer is a fake origin: Fetch serves the current JWK Set, or err,
// and counts calls.
type jwksServer struct {
	mu    sync.Mutex
	doc   []byte
	err   error
	calls int
	delay time.Duration
}

func (s *jwksServer) set(t *testing.T, keys ...*PrivateKey) {
	t.Helper()
	var pubs []PublicKey
	for _, k := range keys {
		pubs = append(pubs, k.Public())
	}
	doc, err := MarshalJWKS(pubs)
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.doc, s.err = doc, nil
}

func (s *jwksServer) setRaw(doc []byte, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.doc, s.err = doc, err
}

func (s *jwksServer) Fetch(ctx context.Context) ([]byte, error) {
	s.mu.Lock()
	s.calls++
	doc, err, delay := s.doc, s.err, s.delay
	s.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return doc, err
}

func (s *jwksServer) Calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

func newRemote(srv *jwksServer, c *clock) *RemoteKeys {
	return &RemoteKeys{Fetch: srv.Fetch, Now: c.Now}
}

// step is one PublicKey call in a RemoteKeys scenario.
type step struct {
	advance   time.Duration // clock advance before the call
	kid       *PrivateKey   // key to ask for
	wantFound bool
	wantCalls int // total fetches after the call
}

func runSteps(t *testing.T, r *RemoteKeys, srv *jwksServer, c *clock, steps []step) {
	t.Helper()
	for i, s := range steps {
		c.Advance(s.advance)
		got, err := r.PublicKey(context.Background(), s.kid.Kid)
		switch {
		case s.wantFound && (err != nil || !got.Equal(s.kid.Public().Key)):
			t.Fatalf("step %d: PublicKey = %x, %v; want the key", i, got, err)
		case !s.wantFound && !errors.Is(err, ErrUnknownKey):
			t.Fatalf("step %d: err = %v, want ErrUnknownKey", i, err)
		}
		if n := srv.Calls(); n != s.wantCalls {
			t.Fatalf("step %d: %d fetches, want %d", i, n, s.wantCalls)
		}
	}
}

func TestRemoteKeys(t *testing.T) {
	a, b := testKey(t, 1), testKey(t, 2)
	tests := []struct {
		name  string
		run   func(t *testing.T, r *RemoteKeys, srv *jwksServer, c *clock)
		steps []step
	}{
		{
			name: "first use fetches",
			run:  func(t *testing.T, r *RemoteKeys, srv *jwksServer, c *clock) { srv.set(t, a) },
			steps: []step{
				{kid: a, wantFound: true, wantCalls: 1},
				{advance: time.Minute, kid: a, wantFound: true, wantCalls: 1},
			},
		},
		{
			name: "unknown kid refetches, rate limited",
			run: func(t *testing.T, r *RemoteKeys, srv *jwksServer, c *clock) {
				srv.set(t, a)
				mustLoad(t, r)
			},
			steps: []step{
				{kid: b, wantCalls: 1}, // Load was just now: no refetch yet
				{advance: 5 * time.Second, kid: b, wantCalls: 1},
				{advance: 5 * time.Second, kid: b, wantCalls: 2},
				{kid: b, wantCalls: 2},
				{advance: 9 * time.Second, kid: b, wantCalls: 2},
				{advance: time.Second, kid: b, wantCalls: 3},
				{kid: a, wantFound: true, wantCalls: 3}, // known keys never wait
			},
		},
		{
			name: "rotation: a new kid appears later",
			run: func(t *testing.T, r *RemoteKeys, srv *jwksServer, c *clock) {
				srv.set(t, a)
				mustLoad(t, r)
				c.Advance(time.Minute)
				srv.set(t, a, b) // the origin rotates
			},
			steps: []step{
				{kid: b, wantFound: true, wantCalls: 2},
				{kid: a, wantFound: true, wantCalls: 2},
			},
		},
		{
			name: "retired key disappears on refresh",
			run: func(t *testing.T, r *RemoteKeys, srv *jwksServer, c *clock) {
				srv.set(t, a, b)
				mustLoad(t, r)
				srv.set(t, b)
			},
			steps: []step{
				{advance: time.Minute, kid: a, wantFound: true, wantCalls: 1},
				{advance: 5 * time.Minute, kid: a, wantCalls: 2}, // stale: refreshed, a is gone
				{kid: b, wantFound: true, wantCalls: 2},
			},
		},
		{
			name: "failed fetch keeps the last good set",
			run: func(t *testing.T, r *RemoteKeys, srv *jwksServer, c *clock) {
				srv.set(t, a)
				mustLoad(t, r)
				srv.setRaw(nil, errors.New("origin down"))
			},
			steps: []step{
				{advance: 6 * time.Minute, kid: a, wantFound: true, wantCalls: 2}, // stale, refresh fails
				{kid: a, wantFound: true, wantCalls: 2},                           // rate limited
				{advance: 10 * time.Second, kid: a, wantFound: true, wantCalls: 3},
				{advance: 10 * time.Second, kid: b, wantCalls: 4},
			},
		},
		{
			name: "empty or broken set keeps the last good set",
			run: func(t *testing.T, r *RemoteKeys, srv *jwksServer, c *clock) {
				srv.set(t, a)
				mustLoad(t, r)
				srv.setRaw([]byte(`{"keys":[]}`), nil)
				if err := r.Load(context.Background()); err == nil {
					t.Fatal("Load of an empty set succeeded")
				}
				srv.setRaw([]byte(`<html>`), nil)
				if err := r.Load(context.Background()); err == nil {
					t.Fatal("Load of HTML succeeded")
				}
			},
			steps: []step{
				{kid: a, wantFound: true, wantCalls: 3},
			},
		},
		{
			name: "custom intervals",
			run: func(t *testing.T, r *RemoteKeys, srv *jwksServer, c *clock) {
				r.Refresh = time.Hour
				r.MinRefetch = time.Minute
				srv.set(t, a)
				mustLoad(t, r)
			},
			steps: []step{
				{advance: 30 * time.Second, kid: b, wantCalls: 1},
				{advance: 30 * time.Second, kid: b, wantCalls: 2},
				{advance: 50 * time.Minute, kid: a, wantFound: true, wantCalls: 2},
				{advance: 10 * time.Minute, kid: a, wantFound: true, wantCalls: 3},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := &jwksServer{}
			c := newClock(t0)
			r := newRemote(srv, c)
			tt.run(t, r, srv, c)
			runSteps(t, r, srv, c, tt.steps)
		})
	}
}

func mustLoad(t *testing.T, r *RemoteKeys) {
	t.Helper()
	if err := r.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestRemoteKeysErrors(t *testing.T) {
	srv := &jwksServer{}
	srv.setRaw(nil, errors.New("connection refused"))
	r := newRemote(srv, newClock(t0))
	_, err := r.PublicKey(context.Background(), "k1")
	checkErr(t, err, ErrUnknownKey, "connection refused")

	if err := (&RemoteKeys{}).Load(context.Background()); err == nil || !strings.Contains(err.Error(), "Fetch is nil") {
		t.Fatalf("Load without Fetch: %v", err)
	}
}

func TestRemoteKeysVerifiesRotatedTokens(t *testing.T) {
	a, b := testKey(t, 1), testKey(t, 2)
	srv := &jwksServer{}
	srv.set(t, a)
	c := newClock(t0)
	r := newRemote(srv, c)
	mustLoad(t, r)
	v := testVerifier(r, t0)
	v.Now = c.Now

	c.Advance(time.Minute)
	srv.set(t, a, b)
	token, _, err := testSigner(b, c.Now()).Sign("alice", testAudience, testRepo, testDigest)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(context.Background(), token, testRepo, testDigest); err != nil {
		t.Fatalf("token signed with the new key: %v", err)
	}
}

func TestRemoteKeysConcurrentMissesFetchOnce(t *testing.T) {
	a := testKey(t, 1)
	srv := &jwksServer{delay: 50 * time.Millisecond}
	srv.set(t, a)
	r := newRemote(srv, newClock(t0))
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for range 50 {
		wg.Go(func() {
			if _, err := r.PublicKey(context.Background(), a.Kid); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := srv.Calls(); n != 1 {
		t.Fatalf("%d fetches, want 1", n)
	}
}

func TestRemoteKeysStaleServesWhileRefreshing(t *testing.T) {
	a := testKey(t, 1)
	srv := &jwksServer{}
	srv.set(t, a)
	c := newClock(t0)
	r := newRemote(srv, c)
	mustLoad(t, r)
	c.Advance(10 * time.Minute)

	// Hold the fetch lock as a slow refresh would: stale lookups must not
	// wait for it.
	r.fetchMu.Lock()
	defer r.fetchMu.Unlock()
	done := make(chan error, 1)
	go func() {
		_, err := r.PublicKey(context.Background(), a.Kid)
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("PublicKey of a stale but known key waited for a refresh")
	}
}
