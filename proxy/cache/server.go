package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"

	"github.com/dtrcache/dtrcache/casstore"
	"github.com/dtrcache/dtrcache/policy"
	"github.com/dtrcache/dtrcache/proxy/regapi"
	"github.com/dtrcache/dtrcache/proxy/serve"
	"github.com/dtrcache/dtrcache/proxy/upstream"
	"go.uber.org/zap"
)

// TokenHeader carries a redirect token when it is not in the query (a
// cache forwards its user's token upstream in it).
const TokenHeader = regapi.TokenHeader

// PrefetchPath is where the cache receives the origin's prefetch hints.
const PrefetchPath = regapi.PrefetchPath

// The tuning a cache is configured with unless told otherwise: the zero
// Server fills over one stream and does not prefetch; the dtrcache command
// and the demo start from these.
const (
	// DefaultParallel is the number of range streams of a fill
	// (casstore.FillOptions.Parallel).
	DefaultParallel = 4
	// DefaultPrefetch is the number of blobs prefetched at once.
	DefaultPrefetch = 4
	// DefaultPrefetchWhileAwaited is how many prefetch fills run besides
	// the ones clients wait for while one of those is not near done
	// (Server.PrefetchWhileAwaited): none, so a wanted fill has the link
	// to itself until it is near done. On a shared link that puts the
	// first layer within 1.15 × its limit (1.81 × with one other fill).
	// Where each upstream connection is capped well below the link, 1
	// pulls faster: PrefetchHoldAuto allows it there
	// (benchmarks/results/latest/prefetch-order).
	DefaultPrefetchWhileAwaited = 0
)

// PrefetchHold says when a wanted fill below 75 % of its bytes holds back
// prefetch fills (Server.PrefetchHold).
type PrefetchHold int

const (
	// PrefetchHoldAuto holds prefetch back unless the cache's own fills
	// showed that each connection to the upstream is capped below the
	// link (a fill's fan-out over its range streams raised the total fill
	// rate by 1.25 × or more); across such an upstream, at least one
	// prefetch fill runs beside the wanted ones.
	PrefetchHoldAuto PrefetchHold = iota
	// PrefetchHoldAlways always holds prefetch back to
	// Server.PrefetchWhileAwaited other fills.
	PrefetchHoldAlways
)

// Server is the cache's registry API. Configure it through its fields;
// it is safe for concurrent use once serving.
type Server struct {
	// Redirect enables redirect mode (blobs with an origin token). nil
	// disables it.
	Redirect *Redirect
	// Mirror enables pull-through mirror mode. nil disables it.
	Mirror *Mirror
	// Fill tunes fills: parallel range streams and their chunk size.
	Fill casstore.FillOptions
	// Logger receives warnings. nil means none (the access log is written
	// by serve.Instrument).
	Logger *zap.Logger
	// Metrics, if set, counts blob results and bytes.
	Metrics *Metrics
	// Prefetch is how many blobs are fetched at once in the background
	// when a manifest is known (mirror mode: the manifest served; redirect
	// mode: a hint from the origin). 0 disables prefetching.
	Prefetch int
	// PrefetchWhileAwaited is how many prefetch fills may run, besides the
	// wanted ones, while a wanted fill has less than 75 % of its bytes: a
	// fill a client is reading, or the earliest blob of a manifest not yet
	// filled (clients ask in manifest order). Up to Prefetch run
	// otherwise. 0 means DefaultPrefetchWhileAwaited (none); a negative
	// value means none.
	PrefetchWhileAwaited int
	// PrefetchHold says when a wanted fill holds prefetch back (to
	// PrefetchWhileAwaited other fills). The zero value is
	// PrefetchHoldAuto.
	PrefetchHold PrefetchHold

	prefetch prefetcher
}

// Redirect is the configuration of redirect mode.
type Redirect struct {
	// Store holds the blobs of authorized pulls.
	Store *casstore.Store
	// Verifier checks redirect tokens (keys, issuer, skew). Its Audience
	// should be empty: Audiences is checked here.
	Verifier *policy.Verifier
	// Audiences are the cache names a token may be addressed to: this
	// cache's name, plus the names of chained child caches whose users'
	// tokens it accepts. Empty means any audience.
	Audiences []string
	// Upstream is the origin (or a parent cache), reached with the cache's
	// own credentials.
	Upstream *upstream.Client
	// Downstream, if set, authenticates chained child caches: a request
	// with their Basic credentials is served without a token.
	Downstream *policy.Users

	verified verifiedTokens
}

// verify checks a token for one blob — signature, times, repo, digest and
// audience — remembering good tokens until they expire.
func (rd *Redirect) verify(ctx context.Context, tok, repo, digest string) (policy.Claims, error) {
	c, ok := rd.verified.get(tok)
	if !ok {
		vc, err := rd.Verifier.Verify(ctx, tok, repo, digest)
		if err != nil {
			return policy.Claims{}, err
		}
		c = *vc
		rd.verified.put(tok, c)
	}
	if c.Repo != repo || c.Digest != digest {
		return c, fmt.Errorf("%w: token is for %s@%s", policy.ErrClaimMismatch, c.Repo, c.Digest)
	}
	if len(rd.Audiences) > 0 && !slices.Contains(rd.Audiences, c.Audience) {
		return c, fmt.Errorf("%w: token is for cache %q", policy.ErrClaimMismatch, c.Audience)
	}
	return c, nil
}

// Mirror is the configuration of mirror mode.
type Mirror struct {
	// Store holds mirrored blobs and manifests. It must not be the
	// redirect store.
	Store *casstore.Store
	// Upstreams are the mirrored registries.
	Upstreams []MirrorUpstream
	// Default names the upstream for requests without ?ns=. Empty means
	// ?ns= is required.
	Default string
	// Tags remembers tag → digest for serving while an upstream is down.
	Tags *TagStore

	unknown nsWarnings // the ?ns= values already warned about
	links   linkChecks // repositories upstreams confirmed
}

// MirrorUpstream is one mirrored registry.
type MirrorUpstream struct {
	// Name identifies the upstream in logs and in the tag store.
	Name string
	// Hosts are the ?ns= values (registry host names, as containerd
	// sends them) routed to this upstream, besides the host of each of
	// the Client's URLs (and docker.io for Docker Hub's
	// registry-1.docker.io), which always are.
	Hosts []string
	// Client reaches the upstream with its configured credentials.
	Client *upstream.Client
	// CheckRepository makes the mirror confirm with the upstream that a
	// blob or manifest it holds is in the requested repository before
	// serving it under that name (a HEAD with the Client's credentials,
	// remembered for 10 minutes), so it answers as the upstream would.
	// Set it for an upstream reached with credentials, whose repositories
	// are not all public; without it the store answers by digest alone.
	CheckRepository bool
}

// ServeHTTP serves the read-only registry API.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f := serve.FieldsFrom(r.Context())
	if r.URL.Path == PrefetchPath && s.Redirect != nil {
		s.servePrefetch(w, r)
		return
	}
	if r.URL.Path == "/.well-known/jwks.json" && s.Redirect != nil && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		f.Route = "jwks"
		s.serveJWKS(w, r)
		return
	}
	route, err := regapi.ParseRoute(r.URL.EscapedPath())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	f.Route, f.Repo = route.Kind.String(), route.Name
	if !route.Digest.IsZero() {
		f.Digest = route.Digest.String()
	}
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		s.fail(w, r, regapi.NewError(http.StatusMethodNotAllowed, regapi.CodeUnsupported, "this cache is read-only"))
		return
	}
	switch route.Kind {
	case regapi.KindBase:
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", "2")
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodGet {
			io.WriteString(w, "{}")
		}
	case regapi.KindBlob:
		err = s.serveBlob(w, r, route)
	case regapi.KindManifest:
		err = s.serveManifest(w, r, route)
	case regapi.KindTags, regapi.KindCatalog:
		err = s.passThrough(w, r, route)
	default:
		err = regapi.NewError(http.StatusNotFound, regapi.CodeUnsupported, "not served by this cache")
	}
	if err != nil {
		s.fail(w, r, err)
	}
}

// fail writes err, or aborts the connection if the headers are gone.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	f := serve.FieldsFrom(r.Context())
	f.Err = err
	if errors.Is(err, regapi.ErrAborted) {
		panic(http.ErrAbortHandler) // a cut body, never a clean end
	}
	regapi.WriteError(w, r, err)
}

// access is how a blob request was authorized.
type access struct {
	mode   string // "redirect" or "mirror"
	store  *casstore.Store
	client *upstream.Client
	header http.Header     // sent upstream with every fill request
	up     *MirrorUpstream // mirror mode: the upstream
}

// authorize decides the mode of a blob request and checks its credential.
func (s *Server) authorize(r *http.Request, route regapi.Route) (access, error) {
	f := serve.FieldsFrom(r.Context())
	tok := r.URL.Query().Get("token")
	if tok == "" {
		tok = r.Header.Get(TokenHeader)
	}
	user, pass, basic := r.BasicAuth()
	if s.Redirect != nil && (tok != "" || basic && s.Redirect.Downstream != nil) {
		a := access{mode: "redirect", store: s.Redirect.Store, client: s.Redirect.Upstream, header: http.Header{}}
		if basic && s.Redirect.Downstream != nil {
			err := s.Redirect.Downstream.Authenticate(user, pass)
			if err == nil {
				f.User = "cache:" + user
				if tok != "" {
					a.header.Set(TokenHeader, tok)
				}
				return a, nil
			}
			if tok == "" {
				return a, regapi.Errorf(http.StatusUnauthorized, regapi.CodeUnauthorized, "invalid credentials", err).
					WithHeader("WWW-Authenticate", `Basic realm="dtrcache"`)
			}
			// A client kept unrelated credentials across the redirect (same
			// host name); its token decides.
		}
		claims, err := s.Redirect.verify(r.Context(), tok, route.Name, route.Digest.String())
		if err != nil {
			s.Metrics.token(tokenResult(err))
			return a, tokenError(err)
		}
		s.Metrics.token("ok")
		f.User = claims.Subject
		a.header.Set(TokenHeader, tok)
		return a, nil
	}
	if s.Mirror != nil && (tok == "" || s.Redirect == nil) {
		up, err := s.pickMirror(r)
		if err != nil {
			return access{}, err
		}
		f.Upstream = up.Name
		return access{mode: "mirror", store: s.Mirror.Store, client: up.Client, up: up}, nil
	}
	if s.Redirect != nil {
		return access{}, regapi.NewError(http.StatusUnauthorized, regapi.CodeUnauthorized, "a redirect token is required")
	}
	return access{}, regapi.NewError(http.StatusUnauthorized, regapi.CodeUnauthorized, "this cache serves redirect tokens only")
}

func tokenResult(err error) string {
	switch {
	case errors.Is(err, policy.ErrExpired), errors.Is(err, policy.ErrNotYetValid):
		return "expired"
	case errors.Is(err, policy.ErrClaimMismatch):
		return "mismatch"
	case errors.Is(err, policy.ErrUnknownKey), errors.Is(err, policy.ErrBadSignature):
		return "bad_signature"
	}
	return "invalid"
}

// tokenError maps a verification failure: a token for something else is
// 403; an expired, forged or malformed one is 401.
func tokenError(err error) *regapi.Error {
	if errors.Is(err, policy.ErrClaimMismatch) {
		return regapi.Errorf(http.StatusForbidden, regapi.CodeDenied, "token does not grant this blob", err)
	}
	msg := "invalid redirect token"
	if errors.Is(err, policy.ErrExpired) {
		msg = "redirect token expired"
	}
	return regapi.Errorf(http.StatusUnauthorized, regapi.CodeUnauthorized, msg, err)
}

// pick returns the mirror upstream for an ?ns= value: the default for
// none, else the first whose hosts or URL hosts name it (case-insensitive).
func (m *Mirror) pick(ns string) (*MirrorUpstream, error) {
	for i := range m.Upstreams {
		up := &m.Upstreams[i]
		if ns != "" && up.serves(ns) || ns == "" && up.Name == m.Default {
			return up, nil
		}
	}
	if ns == "" {
		return nil, regapi.NewError(http.StatusNotFound, regapi.CodeNameUnknown, "no default upstream: add ?ns=<registry host>")
	}
	return nil, regapi.NewError(http.StatusNotFound, regapi.CodeNameUnknown, "this cache does not mirror "+ns)
}

// upstreamError maps an upstream or store failure to a registry error.
func upstreamError(err error, notFound string) error {
	var re *regapi.Error
	if errors.As(err, &re) {
		return re
	}
	var se *upstream.StatusError
	switch {
	case errors.As(err, &se):
		switch se.Status {
		case http.StatusNotFound:
			return regapi.Errorf(http.StatusNotFound, notFound, "not found upstream", err)
		case http.StatusUnauthorized:
			return regapi.Errorf(http.StatusUnauthorized, regapi.CodeUnauthorized, "the upstream requires authentication", err)
		case http.StatusForbidden:
			return regapi.Errorf(http.StatusForbidden, regapi.CodeDenied, "the upstream denied access", err)
		case http.StatusTooManyRequests:
			return regapi.Errorf(http.StatusTooManyRequests, regapi.CodeTooManyRequests, "the upstream is rate limiting", err)
		}
		return regapi.Errorf(http.StatusBadGateway, regapi.CodeUnavailable, "upstream error", err)
	case errors.Is(err, casstore.ErrDigestMismatch), errors.Is(err, casstore.ErrSizeMismatch):
		return regapi.Errorf(http.StatusBadGateway, regapi.CodeUnavailable, "the upstream sent content that does not match the digest", err)
	case errors.Is(err, casstore.ErrTooLarge):
		return regapi.Errorf(http.StatusForbidden, regapi.CodeSizeInvalid, "blob larger than this cache allows", err)
	case errors.Is(err, casstore.ErrInvalidDigest):
		return regapi.Errorf(http.StatusBadRequest, regapi.CodeDigestInvalid, "invalid digest", err)
	case errors.Is(err, casstore.ErrClosed):
		return regapi.Errorf(http.StatusServiceUnavailable, regapi.CodeUnavailable, "shutting down", err)
	case errors.Is(err, context.DeadlineExceeded):
		return regapi.Errorf(http.StatusGatewayTimeout, regapi.CodeUnavailable, "upstream timed out", err)
	}
	return regapi.Errorf(http.StatusBadGateway, regapi.CodeUnavailable, "upstream unavailable", err)
}

// serveJWKS passes the upstream's key set through, so chained caches can
// fetch the origin's keys from their parent.
func (s *Server) serveJWKS(w http.ResponseWriter, r *http.Request) {
	resp, err := s.Redirect.Upstream.Do(r.Context(), upstream.Request{Method: http.MethodGet, Path: "/.well-known/jwks.json"})
	if err != nil {
		s.fail(w, r, upstreamError(err, regapi.CodeUnsupported))
		return
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20+1))
	if err != nil || len(body) > 1<<20 {
		s.fail(w, r, regapi.Errorf(http.StatusBadGateway, regapi.CodeUnavailable, "upstream key set unreadable or too large", err))
		return
	}
	copyHeaders(w.Header(), resp.Header, "Content-Type", "Cache-Control")
	w.WriteHeader(resp.StatusCode)
	if r.Method == http.MethodGet {
		w.Write(body)
	}
}

func copyHeaders(dst, src http.Header, keys ...string) {
	for _, k := range keys {
		if v := src.Values(k); len(v) > 0 {
			dst[http.CanonicalHeaderKey(k)] = append([]string(nil), v...)
		}
	}
}
