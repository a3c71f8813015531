package console

import (
	"context"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/dtrcache/dtrcache/proxy/origin"
)

// presence is whether a cache's store holds a blob.
type presence struct {
	// State is "yes", "no" or "unknown" (Err says why).
	State string
	Err   string
}

// Bounds of the look-ups at the caches.
const (
	maxPresenceBlobs = 128 // blobs of one tag looked up
	presenceAtOnce   = 8
	presenceTimeout  = 3 * time.Second
	presenceBudget   = 15 * time.Second // for the whole page
)

// presence asks every cache which of digests (blobs of repo) its store
// holds: a HEAD of each blob with "Cache-Control: only-if-cached", which a
// cache answers from its store alone (200 held, 504 not), with the token
// a redirect for that cache, user, repository and digest carries (the key
// ring reuses one while half its lifetime remains, so the cache verifies it
// once for the page and the pulls alike). The look-ups are bounded in
// number, concurrency and time.
func (con *Console) presence(ctx context.Context, user, repo string, digests []string, caches []origin.Cache) map[string]map[string]presence {
	out := make(map[string]map[string]presence, len(caches))
	var mu sync.Mutex
	ctx, cancel := context.WithTimeout(ctx, presenceBudget)
	defer cancel()
	sem := make(chan struct{}, presenceAtOnce)
	var wg sync.WaitGroup
	for _, c := range caches {
		out[c.Name] = make(map[string]presence, len(digests))
		base := c.Host
		if c.ProbeHost != "" {
			base = c.ProbeHost
		}
		for _, d := range digests {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				p := presence{State: "unknown"}
				if tok, err := con.c.Keys.Token(user, c.Name, repo, d); err != nil {
					p.Err = "signing a token: " + err.Error()
				} else {
					p = con.headAt(ctx, base+"/v2/"+repo+"/blobs/"+d+"?token="+url.QueryEscape(tok))
				}
				mu.Lock()
				out[c.Name][d] = p
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	return out
}

func (con *Console) headAt(ctx context.Context, u string) presence {
	ctx, cancel := context.WithTimeout(ctx, presenceTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, u, nil)
	if err != nil {
		return presence{State: "unknown", Err: err.Error()}
	}
	req.Header.Set("Cache-Control", "only-if-cached")
	resp, err := con.c.Prober.Client.Do(req)
	if err != nil {
		return presence{State: "unknown", Err: "unreachable"}
	}
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		return presence{State: "yes"}
	case http.StatusGatewayTimeout, http.StatusNotFound:
		return presence{State: "no"}
	}
	return presence{State: "unknown", Err: resp.Status}
}
