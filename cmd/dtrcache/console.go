package main

import (
	"net/http"
	"time"

	"github.com/dtrcache/dtrcache/cmd/dtrcache/config"
	"github.com/dtrcache/dtrcache/proxy/console"
	"github.com/dtrcache/dtrcache/proxy/origin"
	"github.com/dtrcache/dtrcache/proxy/state"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// checkConsole checks the console section (called by checkOrigin).
func checkConsole(p *config.Problems, c config.Console) {
	idle, max := c.IdleTimeout.D(), c.MaxLifetime.D()
	if idle < 0 || (idle > 0 && idle < time.Minute) {
		p.Add("console.idle_timeout", "at least 1m, got %s", idle)
	}
	if max < 0 || (max > 0 && max < time.Minute) || max > 30*24*time.Hour {
		p.Add("console.max_lifetime", "between 1m and 720h, got %s", max)
	}
	if idle == 0 {
		idle = console.DefaultIdleTimeout
	}
	if max == 0 {
		max = console.DefaultMaxLifetime
	}
	if idle > max {
		p.Add("console.idle_timeout", "%s exceeds console.max_lifetime (%s)", idle, max)
	}
	if c.SignInBurst < 0 || c.SignInBurst > 1000 {
		p.Add("console.signin_burst", "between 0 (the default, %d) and 1000, got %d", console.DefaultSignInBurst, c.SignInBurst)
	}
	if r := c.SignInRefill.D(); r < 0 || (r > 0 && r < time.Second) {
		p.Add("console.signin_refill", "at least 1s, got %s", r)
	}
	if s := c.SampleInterval.D(); s < 0 || (s > 0 && (s < time.Second || s > time.Hour)) {
		p.Add("console.sample_interval", "between 1s and 1h, got %s", s)
	}
}

// newConsole builds the web console on the origin srv, unless it is
// disabled (nil then).
func newConsole(c config.Console, srv *origin.Server, oc origin.Config, store state.Store, loc *time.Location,
	reg prometheus.Registerer, log *zap.Logger) (*console.Console, error) {
	if c.Disabled {
		return nil, nil
	}
	return console.New(console.Config{
		Origin: srv, Users: oc.Users, Access: oc.Access, DB: oc.DB, Prober: oc.Prober, Keys: oc.Keys, Store: store,
		IdleTimeout: c.IdleTimeout.D(), MaxLifetime: c.MaxLifetime.D(), SecureCookies: c.SecureCookies,
		SignInBurst: c.SignInBurst, SignInRefill: c.SignInRefill.D(), SampleInterval: c.SampleInterval.D(), Location: loc,
		Logger: log.Named("console"), Audit: log.Named("audit"), Metrics: console.NewMetrics(reg),
	})
}

// withConsole serves the console at /console/ beside the origin, and
// sends a browser that asks for / there.
func withConsole(srv http.Handler, con *console.Console) http.Handler {
	if con == nil {
		return srv
	}
	mux := http.NewServeMux()
	mux.Handle(console.Prefix, con)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, console.Prefix, http.StatusFound)
	})
	mux.Handle("/", srv)
	return mux
}
