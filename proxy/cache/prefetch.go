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

// prefetcher runs prefetch fills, a bounded number at a time.
type prefetcher struct {
	// mu guards jobs and closed.
	mu     sync.Mutex
	jobs   chan prefetchJob
	closed bool

	started atomic.Int64
	dropped atomic.Int64
}

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
			go s.prefetchWorker(p.jobs)
		}
	}
	for _, j := range jobs {
		select {
		case p.jobs <- j:
		default:
			p.dropped.Add(1)
		}
	}
}

// Close stops the background fill workers once their current fills are
// done; queued prefetches are dropped. The server serves on without them.
func (s *Server) Close() {
	p := &s.prefetch
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.closed {
		p.closed = true
		if p.jobs != nil {
			close(p.jobs)
		}
	}
}

// fillInBackground starts one fill without a client: through the prefetch
// queue when prefetching is on, else on its own goroutine.
func (s *Server) fillInBackground(j prefetchJob) {
	if s.prefetchEnabled() {
		s.enqueue([]prefetchJob{j})
		return
	}
	go s.runPrefetch(j)
}

func (s *Server) prefetchWorker(jobs <-chan prefetchJob) {
	for j := range jobs {
		s.runPrefetch(j)
	}
}

// runPrefetch fills one blob and waits until its bytes have arrived.
func (s *Server) runPrefetch(j prefetchJob) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
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
	var jobs []prefetchJob
	for _, b := range h.Blobs {
		d, err := casstore.ParseDigest(b.Digest)
		if err != nil {
			continue
		}
		if _, err := s.Redirect.verify(r.Context(), b.Token, h.Repo, d.String()); err != nil {
			s.Metrics.token(tokenResult(err))
			continue
		}
		hdr := http.Header{}
		hdr.Set(regapi.TokenHeader, b.Token)
		jobs = append(jobs, prefetchJob{store: s.Redirect.Store, client: s.Redirect.Upstream, repo: h.Repo, d: d, header: hdr})
	}
	s.enqueue(jobs)
	f.Result = "accepted"
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	json.NewEncoder(w).Encode(map[string]int{"accepted": len(jobs), "refused": len(h.Blobs) - len(jobs)})
}
