package replicate

import (
	"context"
	"testing"
	"time"
)

func TestBlobIndex(t *testing.T) {
	x := NewBlobIndex(2)
	ctx := context.Background()
	for _, k := range []string{"a", "b", "c"} {
		if repo, err := x.acquire(ctx, k); err != nil || repo != "" {
			t.Fatalf("acquire(%s) = %q, %v", k, repo, err)
		}
		x.release(k, "repo-"+k)
	}
	// a was least recently used: forgotten.
	for k, want := range map[string]string{"a": "", "b": "repo-b", "c": "repo-c"} {
		repo, _ := x.acquire(ctx, k)
		x.release(k, "")
		if repo != want {
			t.Errorf("after eviction, %s → %q, want %q", k, repo, want)
		}
	}
	// A second acquire of a key in flight waits for the release.
	if _, err := x.acquire(ctx, "d"); err != nil {
		t.Fatal(err)
	}
	got := make(chan string)
	go func() {
		repo, _ := x.acquire(ctx, "d")
		got <- repo
	}()
	select {
	case r := <-got:
		t.Fatalf("second acquire returned %q while the first held d", r)
	case <-time.After(50 * time.Millisecond): // it must still be waiting
	}
	x.release("d", "repo-d")
	if r := <-got; r != "repo-d" {
		t.Fatalf("waiter saw %q, want repo-d", r)
	}
	x.release("d", "")
	// A waiter gives up with its context.
	x.acquire(ctx, "e")
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := x.acquire(cctx, "e"); err == nil {
		t.Fatal("acquire with a cancelled context waited for nothing")
	}
	x.forget("c")
	if repo, _ := x.acquire(ctx, "c"); repo != "" {
		t.Fatalf("forgotten c → %q", repo)
	}
}
