package casstore

import (
	"context"
	"testing"
	"time"
)

// TestJoinAfterCommitReadsTheStore: a reader that joined a fill (found it
// in the store's fills) but takes its hold only after the fill committed
// and closed its file is served from the committed blob, not by a request
// of its own to the source. CI saw the extra source request (TestOrigin-
// RedirectsToCache: the backend served a 256 KiB blob twice, the second a
// whole-blob range). The late hold is made by hand: the test keeps the
// fill it found and joins it once the fill has ended.
func TestJoinAfterCommitReadsTheStore(t *testing.T) {
	s := newTestStore(t, Options{})
	data, d := randomBlob(t, 256<<10)
	src := newTestSource(data)
	ctx := context.Background()

	b, res, err := s.Fill(ctx, d, src, FillOptions{})
	if err != nil || res != Miss {
		t.Fatalf("Fill: %v %v", res, err)
	}
	s.mu.Lock()
	f := s.fills[d]
	s.mu.Unlock()
	if f == nil {
		t.Fatal("no fill running for the first reader")
	}
	mustEqual(t, readAll(t, b), data)
	b.Close()
	// Wait until the fill has committed and let go of its file.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) { // polling a condition
		f.mu.Lock()
		done := f.phase == phaseCommitted && f.refs == 0
		f.mu.Unlock()
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the fill did not end")
		}
	}
	before := src.fetches.Load()

	late, err := s.joinFill(ctx, f, src)
	if err != nil {
		t.Fatal(err)
	}
	defer late.Close()
	mustEqual(t, readAll(t, late), data)
	if n := src.fetches.Load() - before; n != 0 {
		t.Fatalf("the late reader made %d source requests, want 0 (the blob is in the store)", n)
	}
	if late.File() == nil {
		t.Fatal("the late reader is not served from the committed file")
	}
}
