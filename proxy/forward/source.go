package forward

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/dtrcache/dtrcache/casstore"
	"github.com/dtrcache/dtrcache/proxy/regapi"
	"github.com/dtrcache/dtrcache/proxy/upstream"
	"github.com/elazarl/goproxy"
)

// credentialHeaders are the request headers a probe and a fill carry from
// the client to the registry: what authorizes it, and what names the
// client (its User-Agent, the proxies it came through).
var credentialHeaders = []string{"Authorization", "Cookie", "User-Agent", "Via"}

// viaEntry is what the proxy adds to the Via header of every request it
// sends to a registry on a client's behalf (RFC 9110 7.6.3), so the
// registry's log tells a proxied request from a direct one while the
// User-Agent stays the client's.
const viaEntry = "1.1 dtrcache"

// credentialsOf copies r's credentialHeaders and appends the proxy's
// entry to Via.
func credentialsOf(r *http.Request) http.Header {
	h := http.Header{}
	for _, k := range credentialHeaders {
		if vs := r.Header.Values(k); len(vs) > 0 {
			h[k] = append([]string(nil), vs...)
		}
	}
	h.Add("Via", viaEntry)
	return h
}

// addVia appends the proxy's entry to the Via header of a request the
// proxy forwards (a goproxy request handler).
func addVia(r *http.Request, _ *goproxy.ProxyCtx) (*http.Request, *http.Response) {
	r.Header.Add("Via", viaEntry)
	return r, nil
}

// blobSource fetches a blob from the registry with the credentials of the
// client whose request started the fill. Redirects (to object storage) are
// followed without the credentials.
type blobSource struct {
	client *http.Client
	url    string
	header http.Header
}

// Fetch implements casstore.Source.
func (s *blobSource) Fetch(ctx context.Context, off, length int64) (casstore.Stream, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return casstore.Stream{}, casstore.Permanent(err)
	}
	req.Header = s.header.Clone()
	if rng := regapi.RangeHeader(off, length); rng != "" {
		req.Header.Set("Range", rng)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		err = upstream.RedactURL(err)
		var denied *DeniedError
		if errors.As(err, &denied) {
			return casstore.Stream{}, casstore.Permanent(err)
		}
		return casstore.Stream{}, fmt.Errorf("forward: fetch blob: %w", err)
	}
	return upstream.StreamOf(resp, off)
}
