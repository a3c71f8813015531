package upstream

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dtrcache/dtrcache/casstore"
	"github.com/dtrcache/dtrcache/proxy/regapi"
	"github.com/dtrcache/dtrcache/proxy/ttlcache"
	"go.uber.org/zap"
	"golang.org/x/sync/singleflight"
)

// Config configures a Client.
type Config struct {
	// URLs are the upstream base URLs ("https://dtr.example.org"), tried
	// round-robin. At least one is required.
	URLs []string
	// Username and Password are the cache's own credentials for the
	// upstream, used for Basic auth or to obtain bearer tokens. Empty
	// means anonymous.
	Username, Password string
	// TLS verifies upstream certificates. nil means the system roots.
	TLS *tls.Config
	// Transport replaces the HTTP transport (nil: one built from TLS).
	Transport http.RoundTripper
	// UserAgent is sent with every request.
	UserAgent string
	// Observer, if set, is told about every upstream request and the body
	// bytes read.
	Observer Observer
	// Logger receives debug logs. nil means none.
	Logger *zap.Logger
}

// Observer receives upstream request events (for metrics).
type Observer interface {
	Request(upstream, method string, status int, d time.Duration)
	Bytes(upstream string, n int64)
}

// Client talks to one logical upstream registry.
type Client struct {
	urls []*url.URL
	user string
	pass string
	hc   *http.Client
	ua   string
	obs  Observer
	log  *zap.Logger
	next atomic.Uint64

	// tokens are the bearer tokens fetched, until shortly before they
	// expire; fetches coalesces concurrent fetches of one token.
	tokens  *ttlcache.Cache[tokenKey, string]
	fetches singleflight.Group

	// mu guards challenges.
	mu sync.Mutex
	// challenges are the last authentication challenge of each base URL
	// ("basic", or "bearer" with its realm and service), so that the next
	// request sends the right credentials up front.
	challenges map[string]Challenge
}

// tokenKey identifies a bearer token: the token service (realm and
// service of the challenge) and the canonical scope it grants.
type tokenKey struct{ realm, service, scope string }

// maxTokens bounds the tokens a client remembers.
const maxTokens = 1000

// tokenFetchTimeout bounds a token fetch, which runs detached from the
// request that started it (others may be waiting for it).
const tokenFetchTimeout = 30 * time.Second

// New returns a Client for cfg.
func New(cfg Config) (*Client, error) {
	if len(cfg.URLs) == 0 {
		return nil, errors.New("upstream: no URLs")
	}
	c := &Client{
		user: cfg.Username, pass: cfg.Password,
		ua: cfg.UserAgent, obs: cfg.Observer, log: cfg.Logger,
		tokens:     ttlcache.New[tokenKey, string](maxTokens, nil),
		challenges: make(map[string]Challenge),
	}
	if c.log == nil {
		c.log = zap.NewNop()
	}
	for _, raw := range cfg.URLs {
		u, err := ParseURL(raw)
		if err != nil {
			return nil, fmt.Errorf("upstream: %w", err)
		}
		c.urls = append(c.urls, u)
	}
	rt := cfg.Transport
	if rt == nil {
		rt = NewTransport(cfg.TLS)
	}
	c.hc = &http.Client{Transport: rt, CheckRedirect: CheckRedirect}
	return c, nil
}

// ParseURL parses the base URL of a registry: http or https, a host, and
// an optional path prefix (a trailing slash is dropped). It is the rule
// New applies to Config.URLs; a command checks configured URLs with it
// before anything starts.
func ParseURL(raw string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimRight(raw, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || strings.ContainsAny(u.Host, " \t") {
		return nil, fmt.Errorf("invalid URL %q (want http(s)://host[:port])", raw)
	}
	return u, nil
}

// credentialHeaders are the request headers that authorize a request at
// a registry: never sent to another host.
var credentialHeaders = []string{"Authorization", "Cookie", regapi.TokenHeader}

// CheckRedirect is dtrcache's redirect policy towards registries, for an
// http.Client: follow up to 10 redirects (to object storage), and send
// credentials (Authorization, Cookie, the forwarded redirect token) to the
// registry itself only (the first request's scheme and host), never to
// another host, port or scheme.
func CheckRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 10 {
		return errors.New("upstream: stopped after 10 redirects")
	}
	if first := via[0].URL; req.URL.Host != first.Host || req.URL.Scheme != first.Scheme {
		for _, h := range credentialHeaders {
			req.Header.Del(h)
		}
	}
	return nil
}

// NewTransport returns the HTTP transport dtrcache uses towards upstreams:
// timeouts on every phase before the body, keep-alive, and HTTP/1.1 only
// (see the package doc).
func NewTransport(tlsConf *tls.Config) *http.Transport {
	if tlsConf != nil {
		tlsConf = tlsConf.Clone()
	}
	return &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       tlsConf,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 60 * time.Second,
		ExpectContinueTimeout: time.Second,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   64,
		TLSNextProto:          map[string]func(string, *tls.Conn) http.RoundTripper{}, // no HTTP/2
		DisableCompression:    true,                                                   // blobs are stored as sent; their size must be known
	}
}

// URLs returns the configured base URLs.
func (c *Client) URLs() []string {
	out := make([]string, len(c.urls))
	for i, u := range c.urls {
		out[i] = u.String()
	}
	return out
}

// Request is one request to the upstream.
type Request struct {
	Method string
	// Path is the escaped path and optional query, e.g. "/v2/a/blobs/sha256:…".
	Path string
	// URL, if set, replaces Path: an absolute URL this upstream handed out
	// (an upload's Location, see Location). It is sent to that URL only,
	// without round-robin or failover; credentials go with it only when
	// its scheme and host are one of the configured URLs'.
	URL    string
	Header http.Header
	// Scope is the token scope to ask for if the upstream wants a bearer
	// token, e.g. "repository:a:pull" (see Scope, PushScope, MountScope).
	// Several scopes are separated by spaces.
	Scope string
	// Body, if set, returns the request body. It is called once per
	// attempt (an authentication challenge or a failover sends the request
	// again), so it must return a fresh reader each time; an error from it
	// ends the request. nil means no body.
	Body func() (io.ReadCloser, error)
	// ContentLength is the body's length: 0 with a nil Body, -1 for
	// unknown (chunked transfer encoding).
	ContentLength int64
}

// StatusError is an upstream HTTP error response.
type StatusError struct {
	Status   int
	Code     string // registry error code from the body, if any
	Message  string
	Upstream string
	// RetryAfter is the upstream's Retry-After (a 429 or 503), 0 if none.
	RetryAfter time.Duration
}

func (e *StatusError) Error() string {
	s := fmt.Sprintf("upstream %s: %d %s", e.Upstream, e.Status, http.StatusText(e.Status))
	if e.Code != "" {
		s += " (" + e.Code + ": " + e.Message + ")"
	}
	return s
}

// Do sends req, authenticating and failing over as needed. A 5xx from the
// last URL tried is returned as a response, not an error; connection
// errors from every URL are returned as the last error.
func (c *Client) Do(ctx context.Context, req Request) (*http.Response, error) {
	if req.URL != "" {
		return c.doURL(ctx, req)
	}
	n := len(c.urls)
	start := int(c.next.Add(1) - 1)
	var lastErr error
	for i := 0; i < n; i++ {
		base := c.urls[(start+i)%n]
		resp, err := c.doAuth(ctx, base, req)
		if err != nil {
			lastErr = err
			if ctx.Err() != nil {
				return nil, err
			}
			c.log.Debug("upstream failed; trying the next", zap.String("upstream", base.Host), zap.Error(err))
			continue
		}
		if resp.StatusCode >= 500 && i < n-1 {
			lastErr = statusError(resp, base)
			c.log.Debug("upstream 5xx; trying the next", zap.String("upstream", base.Host), zap.Int("status", resp.StatusCode))
			continue
		}
		return resp, nil
	}
	return nil, lastErr
}

// doURL sends a request for an absolute URL: authenticated as for the
// configured URL with the same scheme and host, or without credentials.
func (c *Client) doURL(ctx context.Context, req Request) (*http.Response, error) {
	u, err := url.Parse(req.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, casstore.Permanent(fmt.Errorf("upstream: invalid URL %q", RedactedURL(req.URL)))
	}
	for _, base := range c.urls {
		if base.Scheme == u.Scheme && base.Host == u.Host {
			return c.doAuth(ctx, base, req)
		}
	}
	return c.sendURL(ctx, u.Host, u, req, "")
}

// Location returns the absolute URL of resp's Location header, resolved
// against the request's URL ("" if there is none).
func Location(resp *http.Response) (string, error) {
	loc := resp.Header.Get("Location")
	if loc == "" {
		return "", nil
	}
	u, err := resp.Request.URL.Parse(loc)
	if err != nil {
		return "", fmt.Errorf("upstream: invalid Location %q: %w", RedactedURL(loc), err)
	}
	return u.String(), nil
}

// doAuth sends req to base, answering one authentication challenge.
func (c *Client) doAuth(ctx context.Context, base *url.URL, req Request) (*http.Response, error) {
	resp, err := c.send(ctx, base, req, c.authFor(base, req.Scope))
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		return resp, err
	}
	chs := ParseChallenges(strings.Join(resp.Header.Values("WWW-Authenticate"), ", "))
	var auth string
	for _, ch := range chs {
		switch ch.Scheme {
		case "bearer":
			tok, terr := c.token(ctx, ch, req.Scope)
			if terr != nil {
				c.log.Debug("token fetch failed", zap.Error(terr))
				return resp, nil // the 401 stands
			}
			c.setChallenge(base, ch)
			auth = "Bearer " + tok
		case "basic":
			if c.user == "" {
				return resp, nil
			}
			c.setChallenge(base, ch)
			auth = basicAuth(c.user, c.pass)
		}
		if auth != "" {
			break
		}
	}
	if auth == "" {
		return resp, nil
	}
	drain(resp)
	return c.send(ctx, base, req, auth)
}

// authFor returns the Authorization to send up front: Basic when the
// cache has credentials and the upstream has not asked for a token (a
// parent cache or the origin wants them before it looks at a forwarded
// token), or a cached bearer token for the scope.
func (c *Client) authFor(base *url.URL, scope string) string {
	c.mu.Lock()
	ch := c.challenges[base.String()]
	c.mu.Unlock()
	switch ch.Scheme {
	case "basic", "":
		if c.user == "" {
			return ""
		}
		return basicAuth(c.user, c.pass)
	case "bearer":
		if tok, ok := c.tokens.Get(tokenKeyOf(ch, scope)); ok {
			return "Bearer " + tok
		}
	}
	return ""
}

// setChallenge remembers the last challenge of base.
func (c *Client) setChallenge(base *url.URL, ch Challenge) {
	c.mu.Lock()
	c.challenges[base.String()] = ch
	c.mu.Unlock()
}

// tokenKeyOf is the key of the token a bearer challenge asks for, for a
// request of scope (the challenge's own scope wins).
func tokenKeyOf(ch Challenge, scope string) tokenKey {
	if s := ch.Params["scope"]; s != "" {
		scope = s
	}
	return tokenKey{realm: ch.Params["realm"], service: ch.Params["service"], scope: canonicalScope(scope)}
}

func basicAuth(user, pass string) string {
	req := http.Request{Header: http.Header{}}
	req.SetBasicAuth(user, pass)
	return req.Header.Get("Authorization")
}

func (c *Client) send(ctx context.Context, base *url.URL, req Request, auth string) (*http.Response, error) {
	if req.URL != "" {
		u, err := url.Parse(req.URL)
		if err != nil {
			return nil, casstore.Permanent(fmt.Errorf("upstream: invalid URL %q", RedactedURL(req.URL)))
		}
		return c.sendURL(ctx, base.Host, u, req, auth)
	}
	u := *base
	path, query, _ := strings.Cut(req.Path, "?")
	u.RawPath = ""
	u.Path = base.Path + path
	u.RawQuery = query
	return c.sendURL(ctx, base.Host, &u, req, auth)
}

// sendURL sends one attempt of req to u; host names the upstream for the
// observer and errors.
func (c *Client) sendURL(ctx context.Context, host string, u *url.URL, req Request, auth string) (*http.Response, error) {
	hr, err := http.NewRequestWithContext(ctx, req.Method, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("upstream: build request: %w", err)
	}
	if req.Body != nil {
		body, err := req.Body()
		if err != nil {
			return nil, err
		}
		hr.Body, hr.ContentLength = body, req.ContentLength
		if req.ContentLength == 0 {
			body.Close()
			hr.Body = http.NoBody
		}
		hr.GetBody = req.Body // a 307/308 sends the body again
	}
	for k, vs := range req.Header {
		hr.Header[k] = append([]string(nil), vs...)
	}
	if auth != "" {
		hr.Header.Set("Authorization", auth)
	}
	if c.ua != "" {
		hr.Header.Set("User-Agent", c.ua)
	}
	start := time.Now()
	resp, err := c.hc.Do(hr)
	if c.obs != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		c.obs.Request(host, req.Method, status, time.Since(start))
	}
	if err != nil {
		return nil, fmt.Errorf("upstream %s: %w", host, RedactURL(err))
	}
	if c.obs != nil {
		resp.Body = &countingBody{ReadCloser: resp.Body, obs: c.obs, upstream: host}
	}
	return resp, nil
}

// token returns the bearer token a challenge asks for: from the cache
// while it is valid, or fetched once for all the requests that want it at
// the same time. The fetch runs detached from ctx (with its own timeout),
// so one caller giving up does not fail the others; each caller waits on
// its own ctx.
func (c *Client) token(ctx context.Context, ch Challenge, scope string) (string, error) {
	key := tokenKeyOf(ch, scope)
	if tok, ok := c.tokens.Get(key); ok {
		return tok, nil
	}
	res := c.fetches.DoChan(key.realm+"\x00"+key.service+"\x00"+key.scope, func() (any, error) {
		if tok, ok := c.tokens.Get(key); ok { // fetched while this call waited to start
			return tok, nil
		}
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), tokenFetchTimeout)
		defer cancel()
		return c.fetchToken(fctx, key)
	})
	select {
	case r := <-res:
		if r.Err != nil {
			return "", r.Err
		}
		return r.Val.(string), nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// fetchToken asks the token service for key's token and caches it until
// shortly before it expires.
func (c *Client) fetchToken(ctx context.Context, key tokenKey) (string, error) {
	realm, err := url.Parse(key.realm)
	if err != nil || (realm.Scheme != "https" && realm.Scheme != "http") {
		return "", fmt.Errorf("upstream: bad token realm %q", key.realm)
	}
	q := realm.Query()
	if key.service != "" {
		q.Set("service", key.service)
	}
	q.Del("scope")
	for _, s := range strings.Fields(key.scope) {
		q.Add("scope", s) // one parameter per scope, as the token protocol wants
	}
	realm.RawQuery = q.Encode()
	hr, err := http.NewRequestWithContext(ctx, http.MethodGet, realm.String(), nil)
	if err != nil {
		return "", err
	}
	if c.user != "" {
		hr.SetBasicAuth(c.user, c.pass)
	}
	resp, err := c.hc.Do(hr)
	if err != nil {
		return "", fmt.Errorf("upstream: token request: %w", RedactURL(err))
	}
	defer drain(resp)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("upstream: token request: %s", resp.Status)
	}
	var body struct {
		Token       string `json:"token"`
		AccessToken string `json:"access_token"`
		ExpiresIn   int    `json:"expires_in"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&body); err != nil {
		return "", fmt.Errorf("upstream: token response: %w", err)
	}
	tok := body.Token
	if tok == "" {
		tok = body.AccessToken
	}
	if tok == "" {
		return "", errors.New("upstream: token response without a token")
	}
	life := time.Duration(body.ExpiresIn) * time.Second
	if life <= 0 {
		life = 60 * time.Second
	}
	c.tokens.Set(key, tok, c.tokens.Now().Add(life-min(10*time.Second, life/4)))
	return tok, nil
}

// statusError reads an error response (and closes it).
func statusError(resp *http.Response, base *url.URL) *StatusError {
	defer drain(resp)
	e := &StatusError{Status: resp.StatusCode, Upstream: base.Host, RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())}
	var body struct {
		Errors []struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"errors"`
	}
	if json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&body) == nil && len(body.Errors) > 0 {
		e.Code, e.Message = body.Errors[0].Code, body.Errors[0].Message
	}
	return e
}

// StatusErrorOf converts a non-success response into a *StatusError,
// closing it.
func StatusErrorOf(resp *http.Response) *StatusError {
	return statusError(resp, resp.Request.URL)
}

// drain discards a little of a body so the connection can be reused, and
// closes it.
func drain(resp *http.Response) {
	io.CopyN(io.Discard, resp.Body, 64<<10)
	resp.Body.Close()
}

type countingBody struct {
	io.ReadCloser
	obs      Observer
	upstream string
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		b.obs.Bytes(b.upstream, int64(n))
	}
	return n, err
}

// RedactURL returns err with the URL of the *url.Error in it stripped of
// its query and user information (RedactedURL): after a redirect it may
// be a signed object-storage URL, and a registry URL may carry a token;
// neither may reach the logs or a client. err itself is not modified: a
// *url.Error is copied, and one wrapped deeper is hidden behind an error
// whose message is redacted (errors.Is and errors.As still see the
// chain).
func RedactURL(err error) error {
	var ue *url.Error
	if !errors.As(err, &ue) {
		return err
	}
	red := RedactedURL(ue.URL)
	if red == ue.URL {
		return err
	}
	if err == error(ue) {
		return &url.Error{Op: ue.Op, URL: red, Err: ue.Err}
	}
	return &redactedError{msg: strings.ReplaceAll(err.Error(), ue.URL, red), err: err}
}

// RedactedURL returns raw without user information, and with
// "?REDACTED" for any query: what may be logged of a URL.
func RedactedURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		if before, _, found := strings.Cut(raw, "?"); found {
			return before + "?REDACTED"
		}
		return raw
	}
	if u.User == nil && u.RawQuery == "" && !u.ForceQuery {
		return raw
	}
	u.User = nil
	if u.RawQuery != "" || u.ForceQuery {
		u.RawQuery, u.ForceQuery = "REDACTED", false
	}
	return u.String()
}

// redactedError is an error whose message had a URL redacted.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }
