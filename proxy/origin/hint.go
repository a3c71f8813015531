package origin

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/dtrcache/dtrcache/casstore"
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
// fills. Best effort: failures only cost the head start. It runs on the
// server's background context (Server.Close ends it).
func (s *Server) hint(ctx context.Context, t hintTarget, blobs []casstore.Digest) {
	h := regapi.PrefetchHint{Repo: t.repo}
	signer := s.c.Keys.Signer()
	for _, d := range blobs {
		tok, _, err := signer.Sign(t.user, t.cache.Name, t.repo, d.String())
		if err != nil {
			s.c.Logger.Error("signing a prefetch token", zap.Error(err))
			return
		}
		h.Blobs = append(h.Blobs, regapi.PrefetchBlob{Digest: d.String(), Token: tok})
	}
	body, err := json.Marshal(h)
	if err != nil {
		return
	}
	base := t.cache.Host
	if t.cache.ProbeHost != "" {
		base = t.cache.ProbeHost // the address the origin reaches the cache at
	}
	ctx, cancel := context.WithTimeout(ctx, hintTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+regapi.PrefetchPath, bytes.NewReader(body))
	if err != nil {
		return
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.c.Prober.Client.Do(req)
	if err != nil {
		s.c.Logger.Debug("prefetch hint not delivered", zap.String("cache", t.cache.Name), zap.Error(err))
		return
	}
	resp.Body.Close()
	s.c.Metrics.hinted(t.cache.Name, len(blobs))
}
