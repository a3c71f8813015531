package console

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/dtrcache/dtrcache/policy"
	"github.com/dtrcache/dtrcache/proxy/origin"
	"github.com/dtrcache/dtrcache/proxy/serve"
	"github.com/dtrcache/dtrcache/proxy/state"
	"go.uber.org/zap"
)

// Prefix is the path the console is served under.
const Prefix = "/console/"

// Defaults of Config.
const (
	DefaultIdleTimeout    = 30 * time.Minute
	DefaultMaxLifetime    = 12 * time.Hour
	DefaultSampleInterval = time.Minute
	DefaultHistory        = 24 * time.Hour
	// DefaultSignInBurst failed sign-ins are allowed per user and per
	// client address before they are refused; one more is allowed every
	// DefaultSignInRefill.
	DefaultSignInBurst  = 5
	DefaultSignInRefill = time.Minute
)

// Config configures the console. Origin, Users, Access, DB, Prober, Keys
// and Store are required.
type Config struct {
	// Origin is the origin's handler (an *origin.Server): every page reads
	// and writes through it, in process, as the signed-in user.
	Origin http.Handler
	// Users are the origin's accounts (sign-in); Access its rules (the
	// administrators' pages).
	Users  *policy.Users
	Access *policy.Access
	// DB lists the registered caches and counts their users; Prober has
	// their health and the HTTP client that reaches them.
	DB     *origin.DB
	Prober *origin.Prober
	// Keys sign the tokens of the blob look-ups at the caches.
	Keys *origin.KeyRing
	// Store keeps the sessions (the origin's state store).
	Store state.Store
	// IdleTimeout ends a session not used for that long (0: 30m);
	// MaxLifetime ends any session that old (0: 12h).
	IdleTimeout, MaxLifetime time.Duration
	// SecureCookies marks the cookies Secure even on plain-HTTP requests
	// (the origin behind a TLS-terminating proxy). Requests over TLS get
	// Secure cookies anyway.
	SecureCookies bool
	// SignInBurst and SignInRefill rate-limit failed sign-ins per user and
	// per client address (0: 5, and one more a minute).
	SignInBurst  int
	SignInRefill time.Duration
	// SampleInterval is how often each cache's /metrics are sampled (0:
	// 1m); History how long samples are kept (0: 24h).
	SampleInterval, History time.Duration
	// Location is the time zone of tag template previews (nil: UTC), as
	// the policy engine's.
	Location *time.Location
	// Logger gets errors; Audit one line per sign-in and denied page.
	Logger, Audit *zap.Logger
	// Metrics, if set, counts sign-ins.
	Metrics *Metrics
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

// Console is the web console's handler. It is safe for concurrent use;
// Run owns its background work (session sweeping, cache sampling).
type Console struct {
	c        Config
	mux      *http.ServeMux
	sessions *sessions
	limiter  *limiter
	stats    *sampler
	pages    *renderer
}

// New returns a console.
func New(c Config) (*Console, error) {
	if c.Origin == nil || c.Users == nil || c.Access == nil || c.DB == nil || c.Prober == nil || c.Keys == nil || c.Store == nil {
		return nil, errors.New("console: origin, users, access, db, prober, keys and store are required")
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.MaxLifetime <= 0 {
		c.MaxLifetime = DefaultMaxLifetime
	}
	if c.IdleTimeout > c.MaxLifetime {
		return nil, errors.New("console: the idle timeout exceeds the session lifetime")
	}
	if c.SignInBurst <= 0 {
		c.SignInBurst = DefaultSignInBurst
	}
	if c.SignInRefill <= 0 {
		c.SignInRefill = DefaultSignInRefill
	}
	if c.SampleInterval <= 0 {
		c.SampleInterval = DefaultSampleInterval
	}
	if c.History <= 0 {
		c.History = DefaultHistory
	}
	if c.Location == nil {
		c.Location = time.UTC
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.Audit == nil {
		c.Audit = c.Logger
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	pages, err := newRenderer()
	if err != nil {
		return nil, err
	}
	con := &Console{c: c, pages: pages,
		sessions: &sessions{store: c.Store, idle: c.IdleTimeout, max: c.MaxLifetime, now: c.Now},
		limiter:  newLimiter(c.SignInBurst, c.SignInRefill, c.Now),
		stats:    newSampler(c.DB, c.Prober, c.SampleInterval, c.History, c.Now, c.Logger),
	}
	con.routes()
	return con, nil
}

// Run sweeps expired sessions and samples the caches' metrics until ctx
// ends.
func (con *Console) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		con.stats.run(ctx)
	}()
	go func() {
		defer wg.Done()
		con.sessions.sweepEvery(ctx, con.c.IdleTimeout/2, con.c.Logger)
	}()
	wg.Wait()
	return nil
}

// ServeHTTP serves the console's pages and assets under Prefix.
func (con *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	serve.FieldsFrom(r.Context()).Route = "console"
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "+
		"form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	con.mux.ServeHTTP(w, r)
}

func (con *Console) routes() {
	m := http.NewServeMux()
	m.Handle("GET /console/static/", staticHandler())
	m.HandleFunc("GET /console/{$}", con.home)
	m.HandleFunc("GET /console/signin", con.signInPage)
	m.HandleFunc("POST /console/signin", con.signIn)
	m.HandleFunc("POST /console/signout", con.user(con.signOut))

	m.HandleFunc("GET /console/profile", con.user(con.profile))
	m.HandleFunc("POST /console/profile", con.user(con.setProfile))

	m.HandleFunc("GET /console/caches", con.admin(con.caches))
	m.HandleFunc("POST /console/caches", con.admin(con.registerCache))
	m.HandleFunc("GET /console/caches/{name}", con.admin(con.cacheDetail))
	m.HandleFunc("POST /console/caches/{name}", con.admin(con.editCache))
	m.HandleFunc("POST /console/caches/{name}/delete", con.admin(con.removeCache))

	m.HandleFunc("GET /console/repositories", con.user(con.repositories))
	m.HandleFunc("GET /console/repositories/{path...}", con.user(con.repository))

	m.HandleFunc("GET /console/policies", con.user(con.policyList))
	m.HandleFunc("GET /console/policies/new", con.user(con.policyNew))
	m.HandleFunc("POST /console/policies/new", con.user(con.policySubmit))
	m.HandleFunc("GET /console/policies/preview", con.user(con.templatePreview))
	m.HandleFunc("GET /console/policies/{id}", con.user(con.policyEdit))
	m.HandleFunc("POST /console/policies/{id}", con.user(con.policySubmit))
	m.HandleFunc("POST /console/policies/{id}/delete", con.user(con.policyDelete))
	m.HandleFunc("POST /console/policies/{id}/run", con.user(con.policyRun))
	m.HandleFunc("GET /console/policies/{id}/plan", con.user(con.policyPlan))

	m.HandleFunc("GET /console/jobs", con.user(con.jobList))
	m.HandleFunc("POST /console/jobs/poll", con.user(con.pollNow))
	m.HandleFunc("GET /console/jobs/{id}", con.user(con.jobDetail))
	m.HandleFunc("POST /console/jobs/{id}/cancel", con.user(con.jobCancel))

	m.HandleFunc("GET /console/webhooks", con.user(con.webhookList))
	m.HandleFunc("POST /console/webhooks", con.user(con.webhookCreate))
	m.HandleFunc("POST /console/webhooks/test", con.user(con.webhookTest))
	m.HandleFunc("GET /console/webhooks/{id}", con.user(con.webhookDetail))
	m.HandleFunc("POST /console/webhooks/{id}/delete", con.user(con.webhookDelete))

	m.HandleFunc("/console/", func(w http.ResponseWriter, r *http.Request) {
		con.errorPage(w, r, nil, http.StatusNotFound, "No such page.")
	})
	con.mux = m
}

func (con *Console) home(w http.ResponseWriter, r *http.Request) {
	if _, ok := con.sessions.current(r); ok {
		http.Redirect(w, r, "/console/profile", http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, "/console/signin", http.StatusSeeOther)
}
