package forward

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/dtrcache/dtrcache/casstore"
	"github.com/dtrcache/dtrcache/proxy/regapi"
	"github.com/dtrcache/dtrcache/proxy/upstream"
	"go.uber.org/zap"
)

// blobMirror is the office's mirror fleet, where the proxy fills its
// misses from instead of the registry (Options.BlobMirror).
type blobMirror struct {
	base   *url.URL
	client *http.Client // redirects not followed, no credentials sent
}

// ParseBlobMirror parses and checks a blob mirror's base URL
// (Options.BlobMirror): http or https, a host, no credentials (the mirror
// has its own for the registry), no query.
func ParseBlobMirror(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("forward: blob mirror: %w", err)
	}
	if err := checkMirrorURL(u); err != nil {
		return nil, err
	}
	return u, nil
}

func checkMirrorURL(u *url.URL) error {
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("forward: blob mirror %q: want http(s)://host[:port] without credentials or query", u.Redacted())
	}
	return nil
}

func newBlobMirror(u *url.URL, tlsConf *tls.Config) (*blobMirror, error) {
	if err := checkMirrorURL(u); err != nil {
		return nil, err
	}
	base := *u
	base.Path = strings.TrimRight(base.Path, "/")
	return &blobMirror{base: &base, client: &http.Client{
		Transport:     upstream.NewTransport(tlsConf),
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}, nil
}

// blobURL is the mirror's URL of a blob of registry t: the pull-through
// mirror's path with ?ns= naming the registry, as containerd sends it.
func (m *blobMirror) blobURL(t target, route regapi.Route) string {
	u := *m.base
	u.Path = m.base.Path + "/v2/" + route.Name + "/blobs/" + route.Digest.String()
	u.RawQuery = url.Values{"ns": {namespace(t)}}.Encode()
	return u.String()
}

// namespace is how containerd names a registry in ?ns=: its host, with
// the port unless it is 443.
func namespace(t target) string {
	if t.port == 443 {
		return t.host
	}
	return JoinHostPort(t.host, t.port)
}

// mirrorSource fills a blob from the mirror fleet, and from the registry
// (with the credentials of the client that started the fill) whenever the
// mirror cannot answer: it is down, does not mirror this registry, or may
// not read this repository. casstore verifies the digest of whatever
// arrives, so a wrong mirror cannot poison the store; the client was
// authorized by the registry before the fill started, as without a mirror.
type mirrorSource struct {
	p        *Proxy
	url      string
	fallback casstore.Source
	digest   string
}

// Fetch implements casstore.Source: each call (the first, and each resume
// after a broken stream) tries the mirror first.
func (s *mirrorSource) Fetch(ctx context.Context, off, length int64) (casstore.Stream, error) {
	st, err := s.fetchMirror(ctx, off, length)
	if err == nil {
		s.p.metrics.upstreamFetch("mirror", "ok")
		return st, nil
	}
	if ctx.Err() != nil {
		return casstore.Stream{}, err
	}
	s.p.metrics.upstreamFetch("mirror", "error")
	s.p.log.Warn("blob mirror failed; filling from the registry", zap.String("digest", s.digest), zap.Int64("offset", off), zap.Error(err))
	st, err = s.fallback.Fetch(ctx, off, length)
	result := "ok"
	if err != nil {
		result = "error"
	}
	s.p.metrics.upstreamFetch("registry", result)
	return st, err
}

func (s *mirrorSource) fetchMirror(ctx context.Context, off, length int64) (casstore.Stream, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return casstore.Stream{}, err
	}
	req.Header.Set("User-Agent", "dtrcache-forward")
	if rng := regapi.RangeHeader(off, length); rng != "" {
		req.Header.Set("Range", rng)
	}
	resp, err := s.p.mirror.client.Do(req)
	if err != nil {
		return casstore.Stream{}, fmt.Errorf("forward: blob mirror: %w", upstream.RedactURL(err))
	}
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		resp.Body.Close()
		return casstore.Stream{}, errors.New("forward: blob mirror answered " + strconv.Itoa(resp.StatusCode) + ": redirects are not followed")
	}
	st, err := upstream.StreamOf(resp, off)
	if err != nil {
		return casstore.Stream{}, fmt.Errorf("forward: blob mirror: %w", err)
	}
	return st, nil
}
