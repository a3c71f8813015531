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

// prefetchJob is one blob to fetch in the background.
type prefetchJob struct {
	store  *casstore.Store
	client *upstream.Client
	repo   string
	d      casstore.Digest
	header http.Header
}

// prefetcher runs prefetch fills, a bounded number at a time. It owns
// its goroutines (bg): Server.Close stops and waits for them.
type prefetcher struct {
	// mu guards jobs and closed.
	mu     sync.Mutex
	jobs   chan prefetchJob
	closed bool

	bg serve.Background

	queued  atomic.Int64 // jobs accepted into the queue
	started atomic.Int64 // prefetch fills that were not hits
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
}

// PrefetchStats returns the prefetch counters.
func (s *Server) PrefetchStats() PrefetchStats {
	p := &s.prefetch
	return PrefetchStats{Queued: p.queued.Load(), Started: p.started.Load(), Dropped: p.dropped.Load()}
}

// prefetchTimeout bounds how long a background fill is waited for.
const prefetchTimeout = time.Hour

// maxQueuedPrefetches bounds the blobs waiting to be prefetched; beyond it
// hints are dropped (the client's own requests still fill).
const maxQueuedPrefetches = 1024

func (s *Server) prefetchEnabled() bool { return s.Prefetch > 0 }

// enqueue schedules background fills; it never blocks.
func (s *Server) enqueue(jobs []prefetchJob) {
	if !s.prefetchEnabled() {
		return
	}
	p := &s.prefetch
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	if p.jobs == nil {
		p.jobs = make(chan prefetchJob, maxQueuedPrefetches)
		for i := 0; i < s.Prefetch; i++ {
			p.bg.Go(func(ctx context.Context) { s.prefetchWorker(ctx, p.jobs) })
		}
	}
	for _, j := range jobs {
		select {
		case p.jobs <- j:
			p.queued.Add(1)
		default:
			p.dropped.Add(1)
		}
	}
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
		if p.jobs != nil {
			close(p.jobs)
		}
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
	s.prefetch.bg.Go(func(ctx context.Context) { s.runPrefetch(ctx, j) })
}

func (s *Server) prefetchWorker(ctx context.Context, jobs <-chan prefetchJob) {
	for {
		select {
		case j, ok := <-jobs:
			if !ok {
				return
			}
			s.runPrefetch(ctx, j)
		case <-ctx.Done():
			return
		}
	}
}

// runPrefetch fills one blob and waits until its bytes have arrived (or
// ctx ends).
func (s *Server) runPrefetch(ctx context.Context, j prefetchJob) {
	ctx, cancel := context.WithTimeout(ctx, prefetchTimeout)
	defer cancel()
	b, res, err := j.store.Fill(ctx, j.d, j.client.BlobSource(j.repo, j.d, j.header), s.Fill)
	if err == nil {
		if res != casstore.Hit {
			s.prefetch.started.Add(1)
			s.Metrics.blob("prefetch", res.String())
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
		jobs = append(jobs, prefetchJob{store: s.Redirect.Store, client: s.Redirect.Upstream, repo: h.Repo, d: d, header: hdr})
	}
	s.enqueue(jobs)
	return len(jobs)
}
