package origin

import (
	"context"
	"net/http"
	"sync"
	"time"
)

// linkCache remembers which (repository, digest) pairs the backend said
// exist, so the check before each redirect costs one backend round trip
// per blob and repository, not one per pull.
type linkCache struct {
	// mu guards m.
	mu sync.Mutex
	m  map[string]time.Time // "repo@digest" → until when it is trusted
}

const (
	linkTTL      = 10 * time.Minute
	maxLinkCache = 100_000
)

// linked reports whether the backend has digest in repo (a HEAD with the
// origin's credentials, same data centre). Errors count as no: the request
// is then proxied and the backend answers for itself.
func (s *Server) linked(ctx context.Context, repo, digest string) bool {
	key := repo + "@" + digest
	now := time.Now()
	s.links.mu.Lock()
	until, ok := s.links.m[key]
	s.links.mu.Unlock()
	if ok && now.Before(until) {
		return true
	}
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
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusTemporaryRedirect && resp.StatusCode != http.StatusFound {
		return false
	}
	s.links.mu.Lock()
	if s.links.m == nil || len(s.links.m) >= maxLinkCache {
		s.links.m = make(map[string]time.Time)
	}
	s.links.m[key] = now.Add(linkTTL)
	s.links.mu.Unlock()
	return true
}
