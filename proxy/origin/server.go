package origin

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/dtrcache/dtrcache/policy"
	"github.com/dtrcache/dtrcache/proxy/regapi"
	"github.com/dtrcache/dtrcache/proxy/serve"
	"go.uber.org/zap"
)

// TokenHeader carries a redirect token a cache forwards with its fill
// requests.
const TokenHeader = regapi.TokenHeader

// Config configures the origin gateway.
type Config struct {
	// Backend is the registry behind the origin.
	Backend *url.URL
	// BackendUser and BackendPassword, if set, authenticate the origin to
	// the backend (Basic).
	BackendUser, BackendPassword string
	// Transport reaches the backend (TLS trust); nil means the default.
	Transport http.RoundTripper
	// Users are the accounts (htpasswd); Access the repository rules.
	Users  *policy.Users
	Access *policy.Access
	// Keys sign redirect tokens and verify forwarded ones.
	Keys *KeyRing
	// DB holds caches and user settings; Prober their health.
	DB     *DB
	Prober *Prober
	// Realm is the Basic auth realm. "" means "dtrcache".
	Realm string
	// Logger receives errors; Audit one line per authorization decision.
	Logger, Audit *zap.Logger
	// Metrics, if set, counts redirects, direct serves and decisions.
	Metrics *Metrics
	// PrefetchHints, when set, tells a user's cache the blobs of every
	// image manifest the user GETs (with one token per blob), so the cache
	// starts filling them before the client asks.
	PrefetchHints bool
	// Pushed are called, in order, for every manifest PUT the backend
	// accepted (201), before the client gets the answer: the policy engine
	// queues its jobs there, the event log records the push. A callback
	// that fails is retried on its own (it must be safe to call again for
	// the same push) until it succeeds or RecordTimeout passes; one that
	// succeeded is not called again for that push, so a failing event log
	// does not queue the policy jobs twice nor the other way round. If one
	// never succeeds, the client gets a 503 instead of the 201, so that it
	// pushes again and the push is recorded then.
	Pushed []func(ctx context.Context, p Push) error
	// Deleted, if set, is called for every manifest or blob DELETE the
	// backend accepted (202), before the client gets the answer; an error
	// is treated as a Pushed callback's is.
	Deleted func(ctx context.Context, op Operation) error
	// Pulled, if set, is called for every manifest GET or HEAD the backend
	// answered 200 while WantPulls (required with it) reports true, before
	// the client gets the answer: pulls are many, and recorded only while
	// someone wants them.
	Pulled    func(ctx context.Context, op Operation)
	WantPulls func() bool
	// UserAgent is sent with the origin's own requests to the backend
	// (the checks that a blob is in a repository); "" leaves Go's default.
	UserAgent string
	// RecordTimeout bounds Pushed and Deleted with their retries, for one
	// operation. 0 means 20 s: long enough to outlast an etcd leader
	// election, short enough for a client's timeout.
	RecordTimeout time.Duration
	// API, if set, serves the /api/v0 paths the origin's own API does not
	// know (policies, jobs, webhooks); they authenticate with
	// Authenticator.
	API http.Handler
}

// Server is the origin's HTTP handler. It owns the goroutines that
// deliver prefetch hints to caches: Close stops and waits for them.
type Server struct {
	c     Config
	proxy *httputil.ReverseProxy
	api   http.Handler
	links *linkCache
	bg    serve.Background
	mail  mailbox // prefetch hints for nodes in heartbeat mode
	// hintSeq orders the hints stored for other replicas.
	hintSeq atomic.Int64
}

// New returns an origin server.
func New(c Config) (*Server, error) {
	if c.Backend == nil || c.Users == nil || c.Access == nil || c.Keys == nil || c.DB == nil || c.Prober == nil {
		return nil, errors.New("origin: backend, users, access, keys, db and prober are required")
	}
	if c.Realm == "" {
		c.Realm = "dtrcache"
	}
	if c.Prober.Store == nil {
		c.Prober.Store = c.DB.Store() // verdicts shared with the other replicas
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.Audit == nil {
		c.Audit = c.Logger
	}
	s := &Server{c: c, links: newLinkCache()}
	s.proxy = &httputil.ReverseProxy{
		Rewrite:        s.rewrite,
		Transport:      c.Transport,
		ModifyResponse: s.modifyResponse,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if r.Context().Err() != nil {
				return
			}
			serve.FieldsFrom(r.Context()).Err = err
			if errors.Is(err, errNotRecorded) {
				regapi.WriteError(w, r, regapi.Errorf(http.StatusServiceUnavailable, regapi.CodeUnavailable,
					"the registry took the change but the origin could not record its policy jobs and events; send it again", err))
				return
			}
			regapi.WriteError(w, r, regapi.Errorf(http.StatusBadGateway, regapi.CodeUnavailable, "backend registry unavailable", err))
		},
	}
	s.api = s.apiHandler()
	return s, nil
}

// Close stops the server's background work (prefetch hints in flight)
// and waits for it. Requests served after Close send no hints.
func (s *Server) Close() { s.bg.Close() }

// ServeHTTP routes the registry API, the caches API and the key set.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/.well-known/jwks.json":
		serve.FieldsFrom(r.Context()).Route = "jwks"
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "max-age=60")
		w.Write(s.c.Keys.JWKS())
	case strings.HasPrefix(r.URL.Path, "/api/v0/"):
		serve.FieldsFrom(r.Context()).Route = "api"
		s.api.ServeHTTP(w, r)
	default:
		s.serveRegistry(w, r)
	}
}

// identity is who sent a request.
type identity struct {
	user  string // "" when anonymous
	cache string // the cache whose account this is, if any
	// inProcess: the request comes from this process (OnBehalfOf).
	inProcess bool
}

// identify checks Basic credentials, or takes the user of an in-process
// request (OnBehalfOf). Anonymous requests are not an error.
func (s *Server) identify(r *http.Request) (identity, error) {
	user, inProcess := onBehalf(r.Context())
	if !inProcess {
		var pass string
		var ok bool
		if user, pass, ok = r.BasicAuth(); !ok {
			return identity{}, nil
		}
		if err := s.c.Users.Authenticate(user, pass); err != nil {
			return identity{}, s.challenge(regapi.Errorf(http.StatusUnauthorized, regapi.CodeUnauthorized, "invalid username or password", err))
		}
	}
	id := identity{user: user, inProcess: inProcess}
	if c, ok := s.c.DB.CacheByAccount(user); ok {
		id.cache = c.Name
	}
	serve.FieldsFrom(r.Context()).User = user
	return id, nil
}

// challenge adds the Basic challenge to a 401.
func (s *Server) challenge(e *regapi.Error) *regapi.Error {
	return e.WithHeader("WWW-Authenticate", `Basic realm="`+s.c.Realm+`"`)
}

// action is what a registry request needs.
func action(r *http.Request, route regapi.Route) policy.Action {
	if route.Kind == regapi.KindUpload {
		return policy.ActionPush
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		return policy.ActionPull
	}
	return policy.ActionPush
}

func (s *Server) serveRegistry(w http.ResponseWriter, r *http.Request) {
	f := serve.FieldsFrom(r.Context())
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
	id, err := s.identify(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	switch route.Kind {
	case regapi.KindBase:
		if id.user == "" {
			s.fail(w, r, s.challenge(regapi.NewError(http.StatusUnauthorized, regapi.CodeUnauthorized, "authentication required")))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, "{}")
		return
	case regapi.KindCatalog:
		s.serveCatalog(w, r, id)
		return
	}
	act := action(r, route)
	if route.Kind == regapi.KindBlob && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		// A cache's own account is its credential (a fill outlives the
		// user's token); a token alone authorizes exactly one blob.
		if tok := blobToken(r); tok != "" && (id.cache == "" || s.authorize(r, id, route.Name, act, "cache fill") != nil) {
			s.serveTokenBlob(w, r, route, id, tok)
			return
		}
	}
	if err := s.authorize(r, id, route.Name, act, ""); err != nil {
		s.fail(w, r, err)
		return
	}
	if route.Kind == regapi.KindUpload && r.Method == http.MethodPost {
		if err := s.checkMount(r, id); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	if route.Kind == regapi.KindBlob && r.Method == http.MethodGet {
		if s.redirect(w, r, route, id) {
			return
		}
	}
	if route.Kind == regapi.KindManifest && r.Method == http.MethodGet && s.c.PrefetchHints && id.cache == "" && id.user != "" {
		if c, why := s.userCache(id.user); why == "" {
			r = r.WithContext(context.WithValue(r.Context(), hintKey{}, hintTarget{cache: c, user: id.user, repo: route.Name}))
		}
	}
	r = s.watchPush(r, route, id.user)
	r = s.watchOp(r, route, id.user)
	s.proxy.ServeHTTP(w, r)
}

// checkMount makes the query of an upload POST exactly what the origin
// checked. A cross-repository mount also reads its source repository: a
// source the user may not pull turns the mount into a plain upload. A
// repeated mount or from (a backend may take the last, which was not
// checked) or a query that does not parse is refused; the backend gets
// the query re-encoded from the parsed values.
func (s *Server) checkMount(r *http.Request, id identity) error {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return regapi.Errorf(http.StatusBadRequest, regapi.CodeUploadInvalid, "malformed query", err)
	}
	if len(q["mount"]) > 1 || len(q["from"]) > 1 {
		return regapi.NewError(http.StatusBadRequest, regapi.CodeUploadInvalid, "a mount names one blob (mount) and one source repository (from)")
	}
	if from := q.Get("from"); from != "" {
		if !regapi.ValidName(from) || s.authorize(r, id, from, policy.ActionPull, "mount source") != nil {
			q.Del("mount")
			q.Del("from") // the backend starts a plain upload instead
		}
	}
	r.URL.RawQuery = q.Encode()
	return nil
}

// userCache returns the user's cache if it is registered and healthy
// (reading the user's settings once); otherwise why says what is missing:
// "no_cache" (none set) or "cache_unhealthy" (not registered, or down).
func (s *Server) userCache(user string) (c Cache, why string) {
	st, err := s.c.DB.Settings(user)
	if err != nil || st.ContentCache == "" {
		return Cache{}, "no_cache"
	}
	c, err = s.c.DB.Cache(st.ContentCache)
	if err != nil || !s.c.Prober.Up(c) {
		return Cache{}, "cache_unhealthy"
	}
	return c, ""
}

// blobToken returns a redirect token presented with a blob request.
func blobToken(r *http.Request) string {
	if t := r.URL.Query().Get("token"); t != "" {
		return t
	}
	return r.Header.Get(TokenHeader)
}

// authorize decides, logs the decision for audit, and maps a denial.
func (s *Server) authorize(r *http.Request, id identity, repo string, act policy.Action, why string) error {
	d := s.c.Access.Decide(id.user, repo, act)
	result := "allowed"
	if !d.Allowed {
		result = "denied"
		if id.user == "" {
			result = "unauthenticated"
		}
	}
	s.c.Metrics.decision(string(act), result)
	fields := []zap.Field{zap.String("user", id.user), zap.String("repo", repo), zap.String("action", string(act)),
		zap.Bool("allowed", d.Allowed), zap.String("reason", d.Reason), zap.String("remote", r.RemoteAddr)}
	if id.cache != "" {
		fields = append(fields, zap.String("cache", id.cache))
	}
	if why != "" {
		fields = append(fields, zap.String("for", why))
	}
	s.c.Audit.Info("authorization", fields...)
	switch result {
	case "unauthenticated":
		return s.challenge(regapi.NewError(http.StatusUnauthorized, regapi.CodeUnauthorized, "authentication required"))
	case "denied":
		return regapi.NewError(http.StatusForbidden, regapi.CodeDenied, "requested access to the resource is denied")
	}
	return nil
}

// serveTokenBlob serves a blob to a request authorized by a redirect token
// (a cache filling, forwarding its user's token): served here, never
// redirected again.
func (s *Server) serveTokenBlob(w http.ResponseWriter, r *http.Request, route regapi.Route, id identity, tok string) {
	f := serve.FieldsFrom(r.Context())
	v := policy.Verifier{Keys: s.c.Keys, Issuer: s.c.Keys.Issuer}
	claims, err := v.Verify(r.Context(), tok, route.Name, route.Digest.String())
	if err != nil {
		s.c.Audit.Info("authorization", zap.String("user", id.user), zap.String("repo", route.Name), zap.String("action", "pull"),
			zap.Bool("allowed", false), zap.String("reason", "invalid redirect token: "+err.Error()), zap.String("remote", r.RemoteAddr))
		s.c.Metrics.decision("pull", "denied")
		status, code := http.StatusUnauthorized, regapi.CodeUnauthorized
		if errors.Is(err, policy.ErrClaimMismatch) {
			status, code = http.StatusForbidden, regapi.CodeDenied
		}
		s.fail(w, r, regapi.Errorf(status, code, "invalid redirect token", err))
		return
	}
	f.User = claims.Subject
	f.Result = "token"
	s.c.Audit.Info("authorization", zap.String("user", claims.Subject), zap.String("repo", route.Name), zap.String("action", "pull"),
		zap.Bool("allowed", true), zap.String("reason", "redirect token for cache "+claims.Audience), zap.String("cache", id.cache),
		zap.String("remote", r.RemoteAddr))
	s.c.Metrics.decision("pull", "allowed")
	s.c.Metrics.directBlob("token")
	s.proxy.ServeHTTP(w, r)
}

// redirect sends an authorized blob GET to the user's cache if it is
// registered and healthy — for a fleet, to the node the digest belongs to
// among the healthy ones (Cache.NodeFor) — and reports whether it did.
func (s *Server) redirect(w http.ResponseWriter, r *http.Request, route regapi.Route, id identity) bool {
	f := serve.FieldsFrom(r.Context())
	if id.inProcess {
		return false // the origin asked itself: serve it
	}
	if id.cache != "" {
		f.Result = "cache_request"
		s.c.Metrics.directBlob("cache_request")
		return false
	}
	if id.user == "" {
		s.c.Metrics.directBlob("no_cache")
		return false
	}
	c, why := s.userCache(id.user)
	switch why {
	case "no_cache":
		f.Result = "direct"
		s.c.Metrics.directBlob(why)
		return false
	case "cache_unhealthy":
		f.Result = "direct_cache_down"
		s.c.Metrics.directBlob(why)
		return false
	}
	// The token lets the cache serve the digest from its store, whatever
	// repository put it there: only sign for a blob that is in this
	// repository, as the registry itself would answer.
	if !s.linked(r.Context(), route.Name, route.Digest.String()) {
		f.Result = "direct_not_linked"
		s.c.Metrics.directBlob("not_in_repository")
		return false
	}
	node, ok := c.NodeFor(route.Digest.String(), s.nodeUp(c))
	if !ok {
		f.Result = "direct_cache_down"
		s.c.Metrics.directBlob("cache_unhealthy")
		return false
	}
	tok, err := s.c.Keys.Token(id.user, c.Name, route.Name, route.Digest.String())
	if err != nil {
		s.c.Logger.Error("signing a redirect token", zap.Error(err))
		return false
	}
	s.c.Prober.Redirected(c, node)
	loc := node.URL + "/v2/" + route.Name + "/blobs/" + route.Digest.String() + "?token=" + url.QueryEscape(tok)
	f.Result = "redirect:" + c.Name
	fleetNode := ""
	if len(c.Hosts) > 1 {
		fleetNode = node.URL
		f.Upstream = node.URL // the fleet's node, in the access log
	}
	s.c.Metrics.redirect(c.Name, fleetNode)
	w.Header().Set("Location", loc)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusTemporaryRedirect)
	return true
}

// rewrite prepares a request for the backend: its URL, the origin's own
// credentials instead of the user's, and forwarding headers so the backend
// builds URLs (upload locations) for the origin's host.
func (s *Server) rewrite(pr *httputil.ProxyRequest) {
	pr.SetURL(s.c.Backend)
	pr.SetXForwarded()
	pr.Out.Host = pr.In.Host
	pr.Out.Header.Del("Authorization")
	pr.Out.Header.Del(TokenHeader)
	if q := pr.Out.URL.Query(); q.Has("token") {
		q.Del("token")
		pr.Out.URL.RawQuery = q.Encode()
	}
	if s.c.BackendUser != "" {
		pr.Out.SetBasicAuth(s.c.BackendUser, s.c.BackendPassword)
	}
}

// modifyResponse hides the backend's own authentication from clients: a
// 401 from the backend means the origin's credentials are wrong. It also
// reads image manifests going to a user with a cache, to hint the cache.
func (s *Server) modifyResponse(resp *http.Response) error {
	if resp.StatusCode == http.StatusUnauthorized {
		resp.Body.Close()
		return errors.New("backend refused the origin's credentials")
	}
	resp.Header.Del("WWW-Authenticate")
	if resp.StatusCode == http.StatusRequestedRangeNotSatisfiable && resp.Header.Get("Content-Range") == "" {
		s.unsatisfiedRange(resp)
	}
	if err := s.notePush(resp); err != nil {
		resp.Body.Close()
		return err
	}
	if err := s.noteOp(resp); err != nil {
		resp.Body.Close()
		return err
	}
	if t, ok := resp.Request.Context().Value(hintKey{}).(hintTarget); ok && resp.StatusCode == http.StatusOK &&
		resp.ContentLength >= 0 && resp.ContentLength <= regapi.MaxManifestSize {
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		resp.Body = io.NopCloser(bytes.NewReader(body))
		if blobs := regapi.ManifestBlobSizes(body); len(blobs) > 0 {
			s.bg.Go(func(ctx context.Context) { s.hint(ctx, t, blobs) })
		}
	}
	return nil
}

func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	serve.FieldsFrom(r.Context()).Err = err
	regapi.WriteError(w, r, err)
}
