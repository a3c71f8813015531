package originevents

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/dtrcache/dtrcache/proxy/upstream"
	"go.uber.org/zap"
)

// maxCatalogPages bounds the catalog read (1000 names a page).
const maxCatalogPages = 10000

// seed records the repositories the backend has, once (the first time
// events run on this state), so that REPO_CREATED is about repositories
// made later. A failure is retried with backoff until ctx ends; until it
// succeeds no REPO_CREATED is made.
func (w *Wiring) seed(ctx context.Context) {
	d := w.svc.Deduper
	wait := time.Second
	var once sync.Once
	defer once.Do(func() { close(w.tried) })
	for {
		done, err := d.Seeded(ctx)
		if err == nil && done {
			return
		}
		if err == nil {
			var names []string
			if names, err = w.catalog(ctx); err == nil {
				if err = d.SeedRepositories(ctx, names, true); err == nil {
					w.log.Info("events: repositories of the backend recorded", zap.Int("repositories", len(names)))
					return
				}
			}
		}
		once.Do(func() { close(w.tried) })
		if ctx.Err() != nil {
			return
		}
		w.log.Warn("events: reading the backend's catalog; REPO_CREATED waits for it", zap.Error(err))
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Minute)
	}
}

// catalog lists every repository of the backend.
func (w *Wiring) catalog(ctx context.Context) ([]string, error) {
	var names []string
	path := "/v2/_catalog?n=1000"
	for range maxCatalogPages {
		resp, err := w.c.Backend.Do(ctx, upstream.Request{Method: http.MethodGet, Path: path})
		if err != nil {
			return nil, fmt.Errorf("catalog: %w", err)
		}
		var page struct {
			Repositories []string `json:"repositories"`
		}
		err = json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&page)
		link := resp.Header.Get("Link")
		resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("catalog: %w", err)
		}
		names = append(names, page.Repositories...)
		next := nextLink(link)
		if next == "" || len(page.Repositories) == 0 {
			return names, nil
		}
		path = next
	}
	return nil, fmt.Errorf("catalog: more than %d pages", maxCatalogPages)
}

// nextLink returns the path and query of a Link: <…>; rel="next" header.
func nextLink(h string) string {
	if len(h) < 2 || h[0] != '<' {
		return ""
	}
	end := 1
	for end < len(h) && h[end] != '>' {
		end++
	}
	u, err := url.Parse(h[1:end])
	if err != nil || u.Path == "" {
		return ""
	}
	return u.RequestURI()
}
