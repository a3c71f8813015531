package forward

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/dtrcache/dtrcache/casstore"
	"github.com/dtrcache/dtrcache/proxy/regapi"
	"github.com/dtrcache/dtrcache/proxy/upstream"
)

// credentialHeaders are the request headers a probe and a fill carry from
// the client to the registry.
var credentialHeaders = []string{"Authorization", "Cookie", "User-Agent"}

// credentialsOf copies the headers of r that authorize it.
func credentialsOf(r *http.Request) http.Header {
	h := http.Header{}
	for _, k := range credentialHeaders {
		if vs := r.Header.Values(k); len(vs) > 0 {
			h[k] = append([]string(nil), vs...)
		}
	}
	return h
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
