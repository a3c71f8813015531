package cache

import (
	"context"
	"time"

	"github.com/dtrcache/dtrcache/casstore"
	"github.com/dtrcache/dtrcache/proxy/upstream"
	"go.uber.org/zap"
)

// Link kinds: the hold (see Order in prefetch.go) gives a wanted fill the
// link to itself, which is right where the fills share one bottleneck. Where
// each upstream connection is capped well below the link (a long fat
// network, a per-flow shaper), a single fill cannot use the link and the
// hold only leaves it idle. The cache tells the two apart from its own
// fills: a parallel fill opens its first range alone and fans out over
// FillOptions.Parallel streams once the size is known, so the store's
// total fill rate just before the extra streams deliver can be compared
// with the rate just after. A gain of cappedGain or more means each
// connection is capped: prefetch is then not held back (PrefetchHoldAuto).
// A flat rate means the connections share the link, or that the link is
// full; so a flat rate never overrides a gain measured in the last
// cappedFor, and an upstream counts as shared until a gain is measured.
// A stall of the process in the window before the fan-out lands its bytes
// late, in the windows after, which looks like a gain: such a judgement
// gives no verdict (beforeTicks). So does a busy process, which reads
// late all along and catches up unevenly (gains of 1.3–3.7 × on a shared
// link with 8 and 16 clients reading the fills): it answers late too, so
// a fill whose first range took more than lateOpen × the upstream's usual
// open time (≈ its round trip) is not judged.

// cappedGain is the gain in total fill rate from a fan-out that shows each
// upstream connection is capped (measured 4.3–4.7 × on such a link with 4
// streams, 0.87–0.95 × on a shared one).
const cappedGain = 1.25

// cappedFor is how long a measured gain keeps an upstream judged capped.
const cappedFor = 10 * time.Minute

// minJudgeOpen is the shortest first-range open time (≈ a round trip) a
// fan-out is measured with: below it the windows are too short to tell.
const minJudgeOpen = 20 * time.Millisecond

// minJudgeBytes is the least the fills must land before the fan-out for
// its rate to be trusted.
const minJudgeBytes = 64 << 10

// The windows of a judgement, in units of the first range's open time o
// after the fan-out at t0: before is [t0, t0+beforeEnd·o], where only the
// streams open before the fan-out deliver (the extra ones need a round
// trip); after is [t0+afterStart·o, t0+afterEnd·o], once they deliver (a
// new connection's handshake included).
const (
	beforeEnd  = 0.8
	afterStart = 1.5
	afterEnd   = 2.5
)

// lateOpen is how much longer than the upstream's usual open time a
// first range may take to answer for its fill's fan-out to be judged
// (the judged ones took 1.00–1.10 × on a per-connection-capped link, the
// false gains on a busy cache 1.21–2.2 ×).
const lateOpen = 1.15

// linkVerdict is what the fills across one upstream showed.
type linkVerdict struct {
	cappedUntil time.Time     // a gain was measured; zero: never
	usualOpen   time.Duration // the shortest first-range open time, drifting up (see opened)
}

// opened records that a fill's first range across the upstream took open
// to answer and reports whether that was late (lateOpen): the usual open
// time is the shortest seen, raised by a sixteenth of the difference by
// each longer one, so that it follows a round trip that grows for good.
func (v *linkVerdict) opened(open time.Duration) (late bool) {
	if v.usualOpen == 0 || open <= v.usualOpen {
		v.usualOpen = open
		return false
	}
	late = float64(open) > lateOpen*float64(v.usualOpen)
	v.usualOpen += (open - v.usualOpen) / 16
	return late
}

// verdictLocked returns c's verdict, made on first use.
func (p *prefetcher) verdictLocked(c *upstream.Client) *linkVerdict {
	if p.links == nil {
		p.links = make(map[*upstream.Client]*linkVerdict)
	}
	v := p.links[c]
	if v == nil {
		v = &linkVerdict{}
		p.links[c] = v
	}
	return v
}

// cappedLocked reports whether prefetch across c is not held back: the
// hold is auto and a fan-out across c showed a gain recently.
func (s *Server) cappedLocked(c *upstream.Client, now time.Time) bool {
	if !s.holdAuto() {
		return false
	}
	v := s.prefetch.links[c]
	return v != nil && now.Before(v.cappedUntil)
}

// holdAuto reports whether the hold depends on the link's kind.
func (s *Server) holdAuto() bool { return s.PrefetchHold == PrefetchHoldAuto }

// fansOut reports whether a fill of b's size uses more than one stream.
func (s *Server) fansOut(b *casstore.Blob) bool {
	chunk := s.Fill.ChunkSize
	if chunk <= 0 {
		chunk = casstore.DefaultChunkSize
	}
	return s.Fill.Parallel > 1 && b.Size() > chunk
}

// judgeLink measures the fan-out of a fill this server just started (b,
// across c, into store; its first range took open to answer) and records
// the verdict for c; a fill that does not fan out only teaches c's usual
// open time. It returns at once; one judgement runs at a time (several at
// once gave false gains on a shared link: the later ones' windows see the
// earlier fan-outs' streams start unevenly).
func (s *Server) judgeLink(c *upstream.Client, store *casstore.Store, b *casstore.Blob, open time.Duration) {
	if !s.prefetchEnabled() || !s.holdAuto() || c == nil {
		return
	}
	p := &s.prefetch
	p.mu.Lock()
	late := p.verdictLocked(c).opened(open)
	if p.closed || late || p.judging > 0 || open < minJudgeOpen || !s.fansOut(b) {
		p.mu.Unlock()
		return
	}
	p.judging++
	p.judgements++
	p.mu.Unlock()
	t0, s0 := time.Now(), store.Stats().BytesFilled
	started := p.bg.Go(func(ctx context.Context) {
		gain, ok := measureFanOut(ctx, store, t0, s0, open)
		capped, changed := p.record(c, gain, ok)
		if !ok || s.Logger == nil {
			return
		}
		log := s.Logger.Debug
		if changed {
			log = s.Logger.Info
		}
		log("fill fan-out measured", zap.Float64("gain", gain), zap.Bool("capped", capped),
			zap.Duration("open", open), zap.Strings("upstream", c.URLs()))
	})
	if !started {
		p.mu.Lock()
		p.judging--
		p.judgements--
		p.mu.Unlock()
	}
}

// record ends a judgement across c: with ok, a gain of cappedGain or more
// judges c capped for cappedFor. It returns whether the gain was one, and
// whether it made c capped.
func (p *prefetcher) record(c *upstream.Client, gain float64, ok bool) (capped, changed bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.judging--
	p.notifyLocked()
	if !ok {
		return false, false
	}
	p.judged.Add(1)
	v := p.verdictLocked(c)
	now := time.Now()
	was := now.Before(v.cappedUntil)
	if capped = gain >= cappedGain; capped {
		v.cappedUntil = now.Add(cappedFor)
	}
	return capped, capped && !was
}

// beforeTicks are the parts of the window before the fan-out sampled to
// tell a stall of the process (the bytes land late, after the window, and
// look like a gain) from a steady or rising rate (other fills starting): a
// judgement where one part landed next to nothing (less than an eighth of
// the mean), or where the sampler woke more than a part late, gives no
// verdict.
const beforeTicks = 4

// measureFanOut samples the store's filled bytes over the two windows of a
// fan-out at t0 (s0 filled then) and returns the after rate over the
// before rate; false when ctx ended, too little landed to tell, or the
// process stalled in the window before.
func measureFanOut(ctx context.Context, store *casstore.Store, t0 time.Time, s0 int64, open time.Duration) (float64, bool) {
	stalled := false
	at := func(k float64) (time.Time, int64, bool) {
		due := t0.Add(time.Duration(k * float64(open)))
		t := time.NewTimer(time.Until(due))
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return time.Time{}, 0, false
		}
		now := time.Now()
		if now.Sub(due) > time.Duration(beforeEnd/beforeTicks*float64(open)) {
			stalled = true
		}
		return now, store.Stats().BytesFilled, true
	}
	var parts [beforeTicks]int64
	t1, s1 := t0, s0
	for i := range parts {
		t, n, ok := at(beforeEnd * float64(i+1) / beforeTicks)
		if !ok {
			return 0, false
		}
		parts[i] = n - s1
		t1, s1 = t, n
	}
	beforeStalled := stalled
	t2, s2, ok := at(afterStart)
	if !ok {
		return 0, false
	}
	t3, s3, ok := at(afterEnd)
	if !ok || s1-s0 < minJudgeBytes || beforeStalled {
		return 0, false
	}
	for _, n := range parts {
		if 8*beforeTicks*n < s1-s0 {
			return 0, false
		}
	}
	before := float64(s1-s0) / t1.Sub(t0).Seconds()
	after := float64(s3-s2) / t3.Sub(t2).Seconds()
	return after / before, true
}
