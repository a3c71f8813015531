package origin

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/dtrcache/dtrcache/proxy/health"
	"github.com/dtrcache/dtrcache/proxy/regapi"
	"go.uber.org/zap"
)

// hintKey marks a manifest request whose blobs should be hinted to the
// user's cache.
type hintKey struct{}

type hintTarget struct {
	cache Cache
	user  string
	repo  string
}

// hintTimeout bounds the delivery of one hint.
const hintTimeout = 5 * time.Second

// hint tells the cache to start filling blobs now, with one token per
// blob for the user, so the user's redirected requests join running
// fills. The tokens are those the redirects will carry (KeyRing.Token),
// so the cache verifies each once. A fleet gets one hint per node, each with the blobs the node
// will be asked for (Cache.NodeFor over the nodes up now), so no blob is
// filled on a node that will not serve it. Each blob carries its
// manifest size, so the cache orders its fills as a mirror does (a small
// config holds no layer back). Best effort: failures only
// cost the head start. It runs on the server's background context
// (Server.Close ends it).
func (s *Server) hint(ctx context.Context, t hintTarget, blobs []regapi.BlobRef) {
	up := s.nodeUp(t.cache)
	var order []Node
	byNode := map[Node]*regapi.PrefetchHint{}
	for _, b := range blobs {
		d := b.Digest
		n, ok := t.cache.NodeFor(d.String(), up)
		if !ok {
			return // no node takes users: they pull from the origin
		}
		tok, err := s.c.Keys.Token(t.user, t.cache.Name, t.repo, d.String())
		if err != nil {
			s.c.Logger.Error("signing a prefetch token", zap.Error(err))
			return
		}
		h := byNode[n]
		if h == nil {
			h = &regapi.PrefetchHint{Repo: t.repo}
			byNode[n] = h
			order = append(order, n)
		}
		h.Blobs = append(h.Blobs, regapi.PrefetchBlob{Digest: d.String(), Token: tok, Size: max(b.Size, 0)})
	}
	for _, n := range order {
		s.post(ctx, t.cache, n, byNode[n])
	}
}

// post delivers one hint to one node: in the answer to its next
// heartbeat for a node in heartbeat mode (the origin may not reach it;
// leaveHint), else by a POST to the node.
func (s *Server) post(ctx context.Context, c Cache, n Node, h *regapi.PrefetchHint) {
	if v, ok := s.c.Prober.Heartbeating(c, n); ok {
		s.leaveHint(ctx, health.Key{Cache: c.Name, Node: n.URL}, v, h)
		s.c.Metrics.hinted(c.Name, len(h.Blobs))
		return
	}
	body, err := json.Marshal(h)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, hintTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.ProbeBase()+regapi.PrefetchPath, bytes.NewReader(body))
	if err != nil {
		return
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.c.Prober.Client.Do(req)
	if err != nil {
		s.c.Logger.Debug("prefetch hint not delivered", zap.String("cache", c.Name), zap.String("node", n.URL), zap.Error(err))
		return
	}
	resp.Body.Close()
	s.c.Metrics.hinted(c.Name, len(h.Blobs))
}
