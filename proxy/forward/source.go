package forward

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/dtrcache/dtrcache/casstore"
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
	if off > 0 || length >= 0 {
		end := ""
		if length >= 0 {
			end = strconv.FormatInt(off+length-1, 10)
		}
		req.Header.Set("Range", "bytes="+strconv.FormatInt(off, 10)+"-"+end)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		err = redactURL(err)
		var denied *DeniedError
		if errors.As(err, &denied) {
			return casstore.Stream{}, casstore.Permanent(err)
		}
		return casstore.Stream{}, fmt.Errorf("forward: fetch blob: %w", err)
	}
	return upstream.StreamOf(resp, off)
}

// dropCredentialsOnRedirect is an http.Client CheckRedirect: it follows
// up to 10 redirects and sends the client's credentials only to the
// registry itself (same scheme and host), never to object storage.
func dropCredentialsOnRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 10 {
		return errors.New("stopped after 10 redirects")
	}
	first := via[0].URL
	if req.URL.Host != first.Host || req.URL.Scheme != first.Scheme {
		req.Header.Del("Authorization")
		req.Header.Del("Cookie")
	}
	return nil
}

// redactURL removes the query string from the URL in an *url.Error:
// signed storage URLs and registry tokens must not reach the logs.
func redactURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		if u, perr := url.Parse(ue.URL); perr == nil && (u.RawQuery != "" || u.User != nil) {
			u.RawQuery, u.User = "", nil
			ue.URL = u.String() + "?…"
		}
	}
	return err
}
