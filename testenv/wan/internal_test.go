package wan

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestDelayLineBackPressure checks that push waits while the queue holds
// more than its limit, resumes after a pop, and gives up when ctx is done.
func TestDelayLineBackPressure(t *testing.T) {
	d := newDelayLine()
	ctx := t.Context()
	big := chunk{data: make([]byte, 300)}
	if err := d.push(ctx, big, 100); err != nil {
		t.Fatalf("push into an empty queue: %v", err) // accepted whatever its size
	}

	pushed := make(chan error, 1)
	go func() { pushed <- d.push(ctx, chunk{data: make([]byte, 10)}, 100) }()
	select {
	case err := <-pushed:
		t.Fatalf("push over the limit returned %v without waiting", err)
	case <-time.After(50 * time.Millisecond):
	}
	if c, ok, err := d.pop(ctx); !ok || err != nil || len(c.data) != 300 {
		t.Fatalf("pop = %d bytes, %v, %v", len(c.data), ok, err)
	}
	if err := <-pushed; err != nil {
		t.Fatalf("push after pop: %v", err)
	}

	d.close()
	if c, ok, _ := d.pop(ctx); !ok || len(c.data) != 10 {
		t.Fatalf("pop after close = %d bytes, %v; want the queued chunk", len(c.data), ok)
	}
	if _, ok, err := d.pop(ctx); ok || err != nil {
		t.Fatalf("pop of a closed, empty queue = %v, %v; want end of stream", ok, err)
	}

	full := newDelayLine()
	_ = full.push(ctx, big, 100)
	cctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := full.push(cctx, big, 100); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("push with an expired context = %v", err)
	}
}

// TestBucketReservations checks the token arithmetic on a fixed clock.
func TestBucketReservations(t *testing.T) {
	const rate = 1_000_000 // burst 10 000 bytes
	var b bucket
	t0 := time.Unix(1000, 0)
	at := func(d time.Duration) time.Time { return t0.Add(d) }

	steps := []struct {
		now  time.Duration
		n    int
		rate int64
		want time.Duration // the reserved send time, from t0
	}{
		{0, 10_000, rate, 0},                                                    // the burst
		{0, 5_000, rate, 5 * time.Millisecond},                                  // queued behind it
		{0, 5_000, rate, 10 * time.Millisecond},                                 // and behind that
		{time.Second, 20_000, rate, time.Second + 10*time.Millisecond},          // refilled to burst only
		{time.Second, 1 << 20, 0, time.Second},                                  // unlimited
		{2 * time.Second, 30_000, 2 * rate, 2*time.Second + 5*time.Millisecond}, // limited again: full burst of 20 000
	}
	for i, s := range steps {
		if got := b.reserve(at(s.now), s.n, s.rate); !got.Equal(at(s.want)) {
			t.Errorf("step %d: reserve(%d @ %d B/s) at +%v = +%v, want +%v", i, s.n, s.rate, s.now, got.Sub(t0), s.want)
		}
	}
}
