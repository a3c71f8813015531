package main

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dtrcache/dtrcache/casstore"
)

// steppedClock is a clock the test steps.
type steppedClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *steppedClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *steppedClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// TestStoreReadinessReusesAPass: /readyz runs the store's canary (a
// write and an fsync) at most once per storeReuse while it passes, with
// concurrent probes sharing one run; a disk that fails (here the canary's
// path is a directory, so its write fails as on a read-only or broken
// disk) is reported once the pass is storeReuse old and on every probe
// after, and a disk that recovers is ready at the next probe.
func TestStoreReadinessReusesAPass(t *testing.T) {
	st, err := casstore.Open(t.TempDir(), casstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	var checks atomic.Int64
	clock := &steppedClock{now: time.Unix(1_800_000_000, 0)}
	r := newStoreReadiness(st)
	r.now = clock.Now
	r.check = func(ctx context.Context) error {
		checks.Add(1)
		return st.Check(ctx)
	}
	ready := func() error { return r.ready(context.Background()) }

	if err := ready(); err != nil || checks.Load() != 1 {
		t.Fatalf("first probe: %v after %d checks", err, checks.Load())
	}
	clock.Add(storeReuse - time.Millisecond)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if err := ready(); err != nil {
				t.Errorf("probe within storeReuse: %v", err)
			}
		})
	}
	wg.Wait()
	if n := checks.Load(); n != 1 {
		t.Fatalf("%d checks for 9 probes within storeReuse, want 1", n)
	}
	clock.Add(time.Millisecond)
	for range 8 {
		wg.Go(func() {
			if err := ready(); err != nil {
				t.Errorf("probe after storeReuse: %v", err)
			}
		})
	}
	wg.Wait()
	if n := checks.Load(); n != 2 {
		t.Fatalf("%d checks after 8 concurrent probes once the pass was storeReuse old, want 2", n)
	}

	// The disk fails.
	canary := filepath.Join(st.Root(), "canary")
	if err := os.Remove(canary); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(canary, 0o755); err != nil {
		t.Fatal(err)
	}
	clock.Add(storeReuse / 2)
	if err := ready(); err != nil {
		t.Fatalf("within storeReuse of a pass: %v", err)
	}
	clock.Add(storeReuse / 2)
	for i := range 3 {
		if err := ready(); err == nil {
			t.Fatalf("probe %d of a failed disk: ready", i)
		}
	}
	if n := checks.Load(); n != 5 {
		t.Errorf("%d checks, want 5: a failure answers for no later probe", n)
	}
	// It recovers: ready at the next probe, at the same instant.
	if err := os.Remove(canary); err != nil {
		t.Fatal(err)
	}
	if err := ready(); err != nil {
		t.Fatalf("after the disk recovered: %v", err)
	}
	if err := ready(); err != nil || checks.Load() != 6 {
		t.Fatalf("the pass after the recovery is not reused: %v, %d checks", err, checks.Load())
	}
}
