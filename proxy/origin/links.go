package origin

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/dtrcache/dtrcache/proxy/regapi"
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
		_, ok := s.headBlob(cctx, repo, digest)
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

// headBlob asks the backend whether digest is in repo, and its size (-1
// when the backend did not say, as with a redirect).
func (s *Server) headBlob(ctx context.Context, repo, digest string) (int64, bool) {
	u := *s.c.Backend
	u.Path = s.c.Backend.Path + "/v2/" + repo + "/blobs/" + digest
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, u.String(), nil)
	if err != nil {
		return -1, false
	}
	if s.c.BackendUser != "" {
		req.SetBasicAuth(s.c.BackendUser, s.c.BackendPassword)
	}
	if s.c.UserAgent != "" {
		req.Header.Set("User-Agent", s.c.UserAgent)
	}
	rt := s.c.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return -1, false
	}
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		return resp.ContentLength, true
	case http.StatusTemporaryRedirect, http.StatusFound:
		return -1, true
	}
	return -1, false
}

// unsatisfiedRange completes a backend's 416 to a blob GET that names no
// size (Go's http.ServeContent, and so distribution, sends
// "Content-Range: bytes */<size>" only for a range past the end, not for
// an inverted one such as "bytes=500-0"): a client that resumes by the
// size learns it, as from the cache's 416.
func (s *Server) unsatisfiedRange(resp *http.Response) {
	req := resp.Request
	if req == nil || req.Method != http.MethodGet {
		return
	}
	route, err := regapi.ParseRoute(strings.TrimPrefix(req.URL.EscapedPath(), strings.TrimSuffix(s.c.Backend.EscapedPath(), "/")))
	if err != nil || route.Kind != regapi.KindBlob {
		return
	}
	if size, ok := s.headBlob(req.Context(), route.Name, route.Digest.String()); ok && size >= 0 {
		resp.Header.Set("Content-Range", "bytes */"+strconv.FormatInt(size, 10))
	}
}
