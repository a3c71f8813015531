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
	once    sync.Once
	jobs    chan prefetchJob
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
	p.once.Do(func() {
		p.jobs = make(chan prefetchJob, maxQueuedPrefetches)
		for i := 0; i < s.Prefetch; i++ {
			go s.prefetchWorker()
		}
	})
	for _, j := range jobs {
		select {
		case p.jobs <- j:
		default:
			p.dropped.Add(1)
		}
	}
}

func (s *Server) prefetchWorker() {
	for j := range s.prefetch.jobs {
		ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
		b, res, err := j.store.Fill(ctx, j.d, j.client.BlobSource(j.repo, j.d, j.header), s.Fill)
		if err == nil {
			if res != casstore.Hit {
				s.prefetch.started.Add(1)
				s.Metrics.blob("prefetch", res.String())
				err = b.Wait(ctx)
			}
			b.Close()
		}
		cancel()
		if err != nil && s.Logger != nil {
			s.Logger.Debug("prefetch failed", zap.String("repo", j.repo), zap.String("digest", j.d.String()), zap.Error(err))
		}
	}
}

// ManifestBlobs returns the config and layer digests of an image manifest
// (nil for an index or anything else).
func ManifestBlobs(body []byte) []casstore.Digest {
	var m struct {
		Config *struct {
			Digest string `json:"digest"`
		} `json:"config"`
		Layers []struct {
			Digest string   `json:"digest"`
			URLs   []string `json:"urls"`
		} `json:"layers"`
	}
	if json.Unmarshal(body, &m) != nil || m.Config == nil {
		return nil
	}
	var out []casstore.Digest
	if d, err := casstore.ParseDigest(m.Config.Digest); err == nil {
		out = append(out, d)
	}
	for _, l := range m.Layers {
		if len(l.URLs) > 0 {
			continue // foreign layer: not in the registry
		}
		if d, err := casstore.ParseDigest(l.Digest); err == nil {
			out = append(out, d)
		}
	}
	return out
}

// PrefetchPath receives the origin's prefetch hints (redirect mode).
const PrefetchPath = "/dtrcache/v1/prefetch"

// PrefetchHint is the body of a prefetch request: blobs of one
// repository, each with a redirect token the origin signed for this cache.
type PrefetchHint struct {
	Repo  string         `json:"repo"`
	Blobs []PrefetchBlob `json:"blobs"`
}

// PrefetchBlob is one blob of a hint.
type PrefetchBlob struct {
	Digest string `json:"digest"`
	Token  string `json:"token"`
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
	var h PrefetchHint
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
		c, err := s.Redirect.verify(b.Token, h.Repo, d.String())
		if err != nil || len(s.Redirect.Audiences) > 0 && !contains(s.Redirect.Audiences, c.Audience) {
			s.Metrics.token(tokenResult(err))
			continue
		}
		hdr := http.Header{}
		hdr.Set(TokenHeader, b.Token)
		jobs = append(jobs, prefetchJob{store: s.Redirect.Store, client: s.Redirect.Upstream, repo: h.Repo, d: d, header: hdr})
	}
	s.enqueue(jobs)
	f.Result = "accepted"
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	json.NewEncoder(w).Encode(map[string]int{"accepted": len(jobs), "refused": len(h.Blobs) - len(jobs)})
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}
