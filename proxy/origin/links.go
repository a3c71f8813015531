package origin

import (
	"context"
	"net/http"
	"time"

	"github.com/dtrcache/dtrcache/proxy/ttlcache"
	"golang.org/x/sync/singleflight"
)

// linkCache remembers which (repository, digest) pairs the backend said
// exist, so the check before each redirect costs one backend round trip
// per blob and repository, not one per pull; concurrent checks of one
// pair share one round trip.
type linkCache struct {
	linked *ttlcache.Cache[string, struct{}] // "repo@digest"
	checks singleflight.Group
}

const (
	linkTTL      = 10 * time.Minute
	maxLinkCache = 100_000
	// linkCheckTimeout bounds one check, which runs detached from the
	// request that started it (others may be waiting for it).
	linkCheckTimeout = 30 * time.Second
)

func newLinkCache() *linkCache {
	return &linkCache{linked: ttlcache.New[string, struct{}](maxLinkCache, nil)}
}

// linked reports whether the backend has digest in repo (a HEAD with the
// origin's credentials, same data centre). Errors count as no: the request
// is then proxied and the backend answers for itself.
func (s *Server) linked(ctx context.Context, repo, digest string) bool {
	key := repo + "@" + digest
	if _, ok := s.links.linked.Get(key); ok {
		return true
	}
	res := s.links.checks.DoChan(key, func() (any, error) {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), linkCheckTimeout)
		defer cancel()
		ok := s.headBlob(cctx, repo, digest)
		if ok {
			s.links.linked.Set(key, struct{}{}, s.links.linked.Now().Add(linkTTL))
		}
		return ok, nil
	})
	select {
	case r := <-res:
		return r.Val.(bool)
	case <-ctx.Done():
		return false
	}
}

// headBlob asks the backend whether digest is in repo.
func (s *Server) headBlob(ctx context.Context, repo, digest string) bool {
	u := *s.c.Backend
	u.Path = s.c.Backend.Path + "/v2/" + repo + "/blobs/" + digest
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, u.String(), nil)
	if err != nil {
		return false
	}
	if s.c.BackendUser != "" {
		req.SetBasicAuth(s.c.BackendUser, s.c.BackendPassword)
	}
	rt := s.c.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusTemporaryRedirect || resp.StatusCode == http.StatusFound
}
