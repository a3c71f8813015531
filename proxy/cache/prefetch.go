package cache

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dtrcache/dtrcache/casstore"
	"github.com/dtrcache/dtrcache/proxy/regapi"
	"github.com/dtrcache/dtrcache/proxy/serve"
	"github.com/dtrcache/dtrcache/proxy/upstream"
	"go.uber.org/zap"
)

// Prefetching starts the fills of an image's blobs as soon as its manifest
// is known, instead of when the client asks for each blob: in mirror mode
// when the cache serves a manifest, in redirect mode when the origin sends
// a hint with one token per blob. A client pulling a cold image then joins
// fills that are already running, which hides a round trip per blob and
// the client's own limit on parallel downloads.

// Order: clients ask for an image's blobs in manifest order (skopeo one at
// a time, Docker three at a time), so prefetch fills start in that order
// and give the link to the blobs someone waits for. A fill is wanted when
// a client reads it (it joined or started it) or when it is the lead of
// its manifest: the earliest of its blobs not yet filled, which the
// client asks for next. A blob of at most holdMinSize (by its manifest's
// descriptor: an image's config) holds nothing back, so layer 0 starts
// beside the config. While a wanted fill is below awaitedNearDone of
// its bytes, at most Server.PrefetchWhileAwaited other prefetch fills run
// (at least one across an upstream judged per-connection capped, see Link
// kinds in linkjudge.go); otherwise up to Server.Prefetch. Fills already
// running are never stopped: the rule holds back the next start.

// prefetchJob is one blob to fetch in the background.
type prefetchJob struct {
	store  *casstore.Store
	client *upstream.Client
	repo   string
	d      casstore.Digest
	header http.Header
	size   int64 // from the manifest's descriptor; -1 when unknown

	batch *prefetchBatch // the manifest (or single blob) it came from
	idx   int            // its position in batch
}

// prefetchBatch tracks the blobs of one manifest, to find its lead: the
// earliest blob neither done nor near done.
type prefetchBatch struct {
	jobs []*prefetchJob // nil for a job the full queue dropped
	done []bool
	head int // first index not done
}

// fillKey names a fill: a digest in a store.
type fillKey struct {
	store *casstore.Store
	d     casstore.Digest
}

// awaitedFill is a fill at least one client is reading: the readers'
// blobs, for its progress.
type awaitedFill map[*casstore.Blob]struct{}

// nearDone reports whether the fill (any reader's view of it) has most of
// its bytes.
func (a awaitedFill) nearDone() bool {
	for b := range a {
		return nearDone(b)
	}
	return true
}

// awaitedNearDone is the share of a wanted fill's bytes past which it no
// longer holds back prefetch fills.
const awaitedNearDone = 0.75

// prefetchPoll is how often a prefetch held back by a wanted fill looks at
// that fill's progress again (other changes wake it at once).
const prefetchPoll = 20 * time.Millisecond

// prefetcher runs prefetch fills in manifest order, a bounded number at a
// time. It owns its goroutines (bg): Server.Close stops and waits for them.
type prefetcher struct {
	// mu guards the fields up to wake.
	mu      sync.Mutex
	queue   []*prefetchJob
	active  map[*prefetchJob]*casstore.Blob // running prefetch fills; nil blob until the fill answers
	awaited map[fillKey]awaitedFill
	started bool          // workers are running
	closed  bool          // Close was called
	wake    chan struct{} // closed and replaced on every change

	bg serve.Background

	links      map[*upstream.Client]*linkVerdict // what fan-outs across each upstream showed (linkjudge.go)
	judging    int                               // fan-outs being measured
	judgements int64                             // fan-outs whose measuring started

	queued  atomic.Int64 // jobs accepted into the queue
	judged  atomic.Int64 // fan-outs measured
	filled  atomic.Int64 // prefetch fills that were not hits
	dropped atomic.Int64 // jobs refused by a full queue
}

// PrefetchStats count the server's background fills since it started.
type PrefetchStats struct {
	// Queued are blobs accepted into the prefetch queue; a manifest's
	// blobs are queued before the manifest is answered.
	Queued int64
	// Started are prefetch fills that found the blob missing.
	Started int64
	// Dropped are blobs refused because the queue was full.
	Dropped int64
	// Running are prefetch fills running now, Waiting the queued ones not
	// started yet, Awaited the fills clients are reading now.
	Running, Waiting, Awaited int
	// Judgements are fill fan-outs whose measuring started (with
	// PrefetchHoldAuto), Judging those being measured now, Judged those
	// that gave a verdict (a gain in rate, or none); Capped the upstreams
	// judged per-connection capped now, across which prefetch is not held
	// back.
	Judgements int64
	Judging    int
	Judged     int64
	Capped     int
}

// PrefetchStats returns the prefetch counters.
func (s *Server) PrefetchStats() PrefetchStats {
	p := &s.prefetch
	p.mu.Lock()
	running, waiting, awaited := len(p.active), len(p.queue), len(p.awaited)
	judgements, judging := p.judgements, p.judging
	capped := 0
	now := time.Now()
	for c := range p.links {
		if s.cappedLocked(c, now) {
			capped++
		}
	}
	p.mu.Unlock()
	return PrefetchStats{Queued: p.queued.Load(), Started: p.filled.Load(), Dropped: p.dropped.Load(),
		Running: running, Waiting: waiting, Awaited: awaited,
		Judgements: judgements, Judging: judging, Judged: p.judged.Load(), Capped: capped}
}

// prefetchTimeout bounds how long a background fill is waited for.
const prefetchTimeout = time.Hour

// maxQueuedPrefetches bounds the blobs waiting to be prefetched; beyond it
// hints are dropped (the client's own requests still fill).
const maxQueuedPrefetches = 1024

func (s *Server) prefetchEnabled() bool { return s.Prefetch > 0 }

// prefetchWhileAwaited is how many prefetch fills may run besides the
// wanted ones while one of those is below awaitedNearDone.
func (s *Server) prefetchWhileAwaited() int {
	switch {
	case s.PrefetchWhileAwaited == 0:
		return DefaultPrefetchWhileAwaited
	case s.PrefetchWhileAwaited < 0:
		return 0
	}
	return s.PrefetchWhileAwaited
}

// notifyLocked wakes the workers waiting for a change.
func (p *prefetcher) notifyLocked() {
	if p.wake != nil {
		close(p.wake)
	}
	p.wake = make(chan struct{})
}

// enqueue schedules background fills, in the order given (a manifest's);
// it never blocks.
func (s *Server) enqueue(jobs []prefetchJob) {
	if !s.prefetchEnabled() || len(jobs) == 0 {
		return
	}
	p := &s.prefetch
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	if !p.started {
		p.started = true
		p.active = make(map[*prefetchJob]*casstore.Blob)
		for i := 0; i < s.Prefetch; i++ {
			p.bg.Go(func(ctx context.Context) { s.prefetchWorker(ctx) })
		}
	}
	batch := &prefetchBatch{jobs: make([]*prefetchJob, len(jobs)), done: make([]bool, len(jobs))}
	for i := range jobs {
		if len(p.queue) >= maxQueuedPrefetches {
			p.dropped.Add(1)
			batch.done[i] = true // never lead: nobody fills it here
			continue
		}
		j := jobs[i]
		j.batch, j.idx = batch, i
		batch.jobs[i] = &j
		p.queue = append(p.queue, &j)
		p.queued.Add(1)
	}
	batch.advance()
	p.notifyLocked()
}

// advance moves head past the blobs that are done.
func (b *prefetchBatch) advance() {
	for b.head < len(b.done) && b.done[b.head] {
		b.head++
	}
}

// await records that a client reads the fill of d in store while the
// fill runs; the returned func ends that (call it once). It holds back
// prefetch fills of other blobs (see Order above).
func (s *Server) await(store *casstore.Store, d casstore.Digest, b *casstore.Blob) func() {
	if !s.prefetchEnabled() || b.File() != nil {
		return func() {}
	}
	p := &s.prefetch
	k := fillKey{store, d}
	p.mu.Lock()
	if p.awaited == nil {
		p.awaited = make(map[fillKey]awaitedFill)
	}
	a := p.awaited[k]
	if a == nil {
		a = awaitedFill{}
		p.awaited[k] = a
	}
	a[b] = struct{}{}
	p.notifyLocked()
	p.mu.Unlock()
	return func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if delete(a, b); len(a) == 0 {
			delete(p.awaited, k)
		}
		p.notifyLocked()
	}
}

// wantedLocked reports whether the prefetch job j is wanted: a client
// reads its blob, or it is its manifest's lead or before it.
func (p *prefetcher) wantedLocked(j *prefetchJob) bool {
	return j.idx <= p.leadLocked(j.batch) || p.awaited[fillKey{j.store, j.d}] != nil
}

// leadLocked returns the index of b's lead: its first blob that is
// neither done nor running near done (len(b.jobs) when none is left).
func (p *prefetcher) leadLocked(b *prefetchBatch) int {
	i := b.head
	for ; i < len(b.jobs); i++ {
		if b.done[i] {
			continue
		}
		j := b.jobs[i]
		if blob, running := p.active[j]; !running || !(j.small() || nearDone(blob)) {
			break
		}
	}
	return i
}

// nearDone reports whether b (nil: not answered yet) has most of its
// bytes, or is small enough not to hold the link (holdMinSize).
func nearDone(b *casstore.Blob) bool {
	if b == nil {
		return false
	}
	landed, size := b.Progress()
	return size >= 0 && (size <= holdMinSize || float64(landed) >= awaitedNearDone*float64(size))
}

// holdMinSize is the largest blob that never holds back prefetch fills:
// its bytes come with its first round trip on any link worth a cache
// (256 KiB take 10 ms at 25 MB/s), so holding the link for it gains
// nothing and costs the next blob a round trip. An image's config is such
// a blob: it used to hold layer 0 back until it was done (cold 8 × 64 MiB
// on a per-connection-capped link, 90 ms each way: layer 0 started 183 ms
// after the config).
const holdMinSize = 256 << 10

// small reports whether j's blob, by its manifest's descriptor, never
// holds back prefetch fills (holdMinSize).
func (j *prefetchJob) small() bool { return j.size >= 0 && j.size <= holdMinSize }

// limitLocked returns how many prefetch fills that are not wanted may run
// now, when the queued job next is the one to start, and whether a wanted
// fill holds them back.
func (s *Server) limitLocked(next *prefetchJob) (int, bool) {
	p := &s.prefetch
	held := s.prefetchWhileAwaited()
	if s.cappedLocked(next.client, time.Now()) {
		held = s.liftedLimit()
	}
	for _, a := range p.awaited {
		if !a.nearDone() {
			return held, true
		}
	}
	for j, b := range p.active {
		if p.wantedLocked(j) && !j.small() && !nearDone(b) {
			return held, true
		}
	}
	return s.Prefetch, false
}

// liftedLimit is how many prefetch fills that are not wanted may run
// across an upstream judged per-connection capped while a wanted fill is
// below awaitedNearDone: at least one. (Up to Server.Prefetch pulled no
// faster: cold 8 × 64 MiB, 80 Mbit/s per connection, 5.53 s against 5.55 s.)
func (s *Server) liftedLimit() int {
	return max(s.prefetchWhileAwaited(), 1)
}

// next waits until the first queued job may start and returns it, or
// false once the server closes.
func (s *Server) next(ctx context.Context) (*prefetchJob, bool) {
	p := &s.prefetch
	p.mu.Lock()
	for {
		if p.closed {
			p.mu.Unlock()
			return nil, false
		}
		held := false
		if len(p.queue) > 0 {
			j := p.queue[0]
			limit, byWanted := s.limitLocked(j)
			others := 0
			for a := range p.active {
				if !p.wantedLocked(a) {
					others++
				}
			}
			if p.wantedLocked(j) || others < limit {
				p.queue[0] = nil
				p.queue = p.queue[1:]
				p.active[j] = nil
				p.notifyLocked()
				p.mu.Unlock()
				return j, true
			}
			held = byWanted
		}
		wake := p.wake
		p.mu.Unlock()
		var poll <-chan time.Time
		var t *time.Timer
		if held {
			// A wanted fill's progress changes without a wake.
			t = time.NewTimer(prefetchPoll)
			poll = t.C
		}
		select {
		case <-wake:
		case <-poll:
		case <-ctx.Done():
		}
		if t != nil {
			t.Stop()
		}
		if ctx.Err() != nil {
			return nil, false
		}
		p.mu.Lock()
	}
}

// running records the blob of a started prefetch fill (for its progress).
func (p *prefetcher) running(j *prefetchJob, b *casstore.Blob) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.active[j]; ok {
		p.active[j] = b
		p.notifyLocked()
	}
}

// finish records that a prefetch fill ended.
func (p *prefetcher) finish(j *prefetchJob) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.active, j)
	j.batch.done[j.idx] = true
	j.batch.advance()
	p.notifyLocked()
}

// Close stops the server's background work and waits for it: queued
// prefetches are dropped, and running ones stop waiting for their fills
// (the store finishes those, or abandons them when it closes). Close
// before closing the stores; the server serves on without background
// work.
func (s *Server) Close() {
	p := &s.prefetch
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		p.queue = nil
		p.notifyLocked()
	}
	p.mu.Unlock()
	p.bg.Close()
}

// fillInBackground starts one fill without a client: through the prefetch
// queue when prefetching is on, else on its own goroutine.
func (s *Server) fillInBackground(j prefetchJob) {
	if s.prefetchEnabled() {
		s.enqueue([]prefetchJob{j})
		return
	}
	s.prefetch.bg.Go(func(ctx context.Context) { s.runPrefetch(ctx, &j, nil) })
}

func (s *Server) prefetchWorker(ctx context.Context) {
	p := &s.prefetch
	for {
		j, ok := s.next(ctx)
		if !ok {
			return
		}
		s.runPrefetch(ctx, j, p)
		p.finish(j)
	}
}

// runPrefetch fills one blob and waits until its bytes have arrived (or
// ctx ends); p, if set, learns the fill's blob.
func (s *Server) runPrefetch(ctx context.Context, j *prefetchJob, p *prefetcher) {
	ctx, cancel := context.WithTimeout(ctx, prefetchTimeout)
	defer cancel()
	t0 := time.Now()
	b, res, err := j.store.Fill(ctx, j.d, j.client.BlobSource(j.repo, j.d, j.header), s.Fill)
	if err == nil {
		if res == casstore.Miss {
			s.judgeLink(j.client, j.store, b, time.Since(t0))
		}
		if res != casstore.Hit {
			s.prefetch.filled.Add(1)
			s.Metrics.blob("prefetch", res.String())
			if p != nil {
				p.running(j, b)
			}
			err = b.Wait(ctx)
		}
		b.Close()
	}
	if err != nil && s.Logger != nil {
		s.Logger.Debug("background fill failed", zap.String("repo", j.repo), zap.String("digest", j.d.String()), zap.Error(err))
	}
}

// servePrefetch accepts a hint: every blob whose token verifies for this
// cache is filled in the background with the cache's own credentials.
func (s *Server) servePrefetch(w http.ResponseWriter, r *http.Request) {
	f := serve.FieldsFrom(r.Context())
	f.Route = "prefetch"
	if r.Method != http.MethodPost {
		s.fail(w, r, regapi.NewError(http.StatusMethodNotAllowed, regapi.CodeUnsupported, "POST a prefetch hint"))
		return
	}
	var h regapi.PrefetchHint
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&h); err != nil || !regapi.ValidName(h.Repo) || len(h.Blobs) > 1000 {
		s.fail(w, r, regapi.NewError(http.StatusBadRequest, regapi.CodeUnsupported, "invalid prefetch hint"))
		return
	}
	f.Repo = h.Repo
	accepted := s.acceptHint(r.Context(), h)
	f.Result = "accepted"
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	json.NewEncoder(w).Encode(map[string]int{"accepted": accepted, "refused": len(h.Blobs) - accepted})
}

// acceptHint queues the background fills of a hint's blobs whose tokens
// verify for this cache (from a POST, or a heartbeat's answer) and
// returns how many.
func (s *Server) acceptHint(ctx context.Context, h regapi.PrefetchHint) int {
	if s.Redirect == nil || !regapi.ValidName(h.Repo) {
		return 0
	}
	var jobs []prefetchJob
	for _, b := range h.Blobs {
		d, err := casstore.ParseDigest(b.Digest)
		if err != nil {
			continue
		}
		if _, err := s.Redirect.verify(ctx, b.Token, h.Repo, d.String()); err != nil {
			s.Metrics.token(tokenResult(err))
			continue
		}
		hdr := http.Header{}
		hdr.Set(regapi.TokenHeader, b.Token)
		// The size orders the prefetches only (prefetchJob.small); the
		// fill learns the blob's size from the upstream.
		size := b.Size
		if size <= 0 {
			size = -1
		}
		jobs = append(jobs, prefetchJob{store: s.Redirect.Store, client: s.Redirect.Upstream, repo: h.Repo, d: d, header: hdr, size: size})
	}
	s.enqueue(jobs)
	return len(jobs)
}
