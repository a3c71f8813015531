package cache

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/dtrcache/dtrcache/casstore"
	"github.com/dtrcache/dtrcache/proxy/regapi"
	"github.com/dtrcache/dtrcache/proxy/ttlcache"
	"github.com/dtrcache/dtrcache/proxy/upstream"
	"golang.org/x/sync/singleflight"
)

// The mirror's store is keyed by digest, so without a check it would
// answer a blob it holds under any repository name. For an upstream the
// cache reaches with credentials (MirrorUpstream.CheckRepository) that is
// more than the upstream would give: the mirror serves a stored blob or
// manifest under a repository only after the upstream confirmed it is
// there, like the origin's check before a redirect. A confirmation is
// remembered for linkTTL; the manifests the mirror fetches from a
// repository confirm what they list (a registry accepts a manifest only
// with its blobs and child manifests in the repository), and a fill or
// range the upstream answered from the repository confirms itself, so a
// pull pays no extra round trip. Denials are not remembered: the content
// may be pushed there next.

const (
	linkTTL          = 10 * time.Minute
	maxLinks         = 100_000
	linkCheckTimeout = 30 * time.Second
)

// linkChecks remembers the (upstream, repository, digest) triples an
// upstream confirmed, and coalesces concurrent checks of one triple.
type linkChecks struct {
	once   sync.Once
	yes    *ttlcache.Cache[string, struct{}]
	checks singleflight.Group
}

func (l *linkChecks) cache() *ttlcache.Cache[string, struct{}] {
	l.once.Do(func() { l.yes = ttlcache.New[string, struct{}](maxLinks, nil) })
	return l.yes
}

func linkKey(up *MirrorUpstream, repo string, d casstore.Digest) string {
	return up.Name + "\x00" + repo + "@" + d.String()
}

// linked reports whether d may be served under repo of up without asking.
func (m *Mirror) linked(up *MirrorUpstream, repo string, d casstore.Digest) bool {
	if !up.CheckRepository {
		return true
	}
	_, ok := m.links.cache().Get(linkKey(up, repo, d))
	return ok
}

// markLinked records that up answered d from repo.
func (m *Mirror) markLinked(up *MirrorUpstream, repo string, ds ...casstore.Digest) {
	if up == nil || !up.CheckRepository {
		return
	}
	c := m.links.cache()
	for _, d := range ds {
		c.Set(linkKey(up, repo, d), struct{}{}, c.Now().Add(linkTTL))
	}
}

// markManifest records what a manifest up served from repo lists: an
// image's config and layers, an index's manifests.
func (m *Mirror) markManifest(up *MirrorUpstream, repo string, body []byte) {
	if up == nil || !up.CheckRepository {
		return
	}
	refs := regapi.ManifestRefs(body)
	m.markLinked(up, repo, refs...)
}

// confirm asks up, unless it confirmed recently, whether the blob or
// manifest (kind "blobs" or "manifests") d is in repo, and returns the
// registry error to answer if not. The check runs detached from the
// request (others may wait for it), bounded by linkCheckTimeout.
func (s *Server) confirm(ctx context.Context, up *MirrorUpstream, repo, kind string, d casstore.Digest) error {
	if s.Mirror.linked(up, repo, d) {
		return nil
	}
	notFound := regapi.CodeBlobUnknown
	h := http.Header{}
	if kind == "manifests" {
		notFound = regapi.CodeManifestUnknown
		h["Accept"] = manifestTypes
	}
	ch := s.Mirror.links.checks.DoChan(linkKey(up, repo, d)+"\x00"+kind, func() (any, error) {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), linkCheckTimeout)
		defer cancel()
		resp, err := up.Client.Do(cctx, upstream.Request{
			Method: http.MethodHead, Path: "/v2/" + repo + "/" + kind + "/" + d.String(), Header: h, Scope: upstream.Scope(repo),
		})
		if err != nil {
			return nil, err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, upstream.StatusErrorOf(resp)
		}
		s.Mirror.markLinked(up, repo, d)
		return nil, nil
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return upstreamError(res.Err, notFound)
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
