package wan

import (
	"context"
	"sync"
	"time"
)

// Token bucket tuning. A piece is the unit in which bytes are charged to a
// bucket; keeping it small lets many connections interleave on a shared
// bucket. The burst is the credit an idle bucket may accumulate; keeping it
// small keeps measured rates close to the configured ones.
const (
	maxPiece = 16 << 10
	minPiece = 1 << 10
	maxBurst = 64 << 10
	minBurst = 1 << 10
)

// bucket is a token bucket that hands out reservations: a caller charges n
// bytes and is told how long to wait before sending them. The balance may go
// negative, so callers queue up in the order they reserved, which shares the
// rate fairly between connections. The rate is passed on every call so a
// changed Config takes effect on the next piece. The zero value is an
// unlimited bucket; it is safe for concurrent use.
type bucket struct {
	// mu guards the fields below.
	mu     sync.Mutex
	rate   int64     // bytes per second; 0 = unlimited
	tokens float64   // current balance in bytes; negative when callers wait
	last   time.Time // when tokens was last brought up to date
}

// burstFor returns the burst size for rate: 10 ms worth of bytes, clamped.
func burstFor(rate int64) float64 {
	return float64(min(max(rate/100, minBurst), maxBurst))
}

// pieceFor returns the largest number of bytes charged in one reservation
// for a bucket running at rate (0 = unlimited): 20 ms worth, clamped.
func pieceFor(rate int64) int {
	if rate <= 0 {
		return maxPiece
	}
	return int(min(max(rate/50, minPiece), maxPiece))
}

// reserve charges n bytes at the given rate and returns the time from which
// they may be sent. With rate <= 0 it returns now.
func (b *bucket) reserve(now time.Time, n int, rate int64) time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	if rate <= 0 {
		b.rate = 0
		return now
	}
	burst := burstFor(rate)
	switch {
	case b.rate <= 0:
		// Newly limited: start with a full burst.
		b.tokens, b.last = burst, now
	case b.rate != rate:
		// Settle the time passed at the old rate before switching.
		b.refillLocked(now, burst)
	}
	b.rate = rate
	b.refillLocked(now, burst)
	b.tokens -= float64(n)
	if b.tokens >= 0 {
		return now
	}
	wait := time.Duration(-b.tokens / float64(rate) * float64(time.Second))
	return now.Add(wait)
}

// refillLocked adds the tokens earned since b.last, capped at burst.
// b.mu must be held.
func (b *bucket) refillLocked(now time.Time, burst float64) {
	if elapsed := now.Sub(b.last); elapsed > 0 {
		b.tokens += elapsed.Seconds() * float64(b.rate)
		b.last = now
	}
	b.tokens = min(b.tokens, burst)
}

// sleepUntil waits until t or until ctx is done, whichever comes first.
func sleepUntil(ctx context.Context, t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err()
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}
