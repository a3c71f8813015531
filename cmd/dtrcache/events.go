package main

import (
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/dtrcache/dtrcache/cmd/dtrcache/config"
	"github.com/dtrcache/dtrcache/policy"
	"github.com/dtrcache/dtrcache/proxy/events"
	"github.com/dtrcache/dtrcache/proxy/netguard"
	"github.com/dtrcache/dtrcache/proxy/originevents"
	"github.com/dtrcache/dtrcache/proxy/state"
	"github.com/dtrcache/dtrcache/proxy/upstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// minNotificationsSecret is the shortest notifications secret accepted.
const minNotificationsSecret = 16

// checkEvents checks the events section (called by checkOrigin).
func checkEvents(p *config.Problems, e config.Events) {
	if e.Disabled {
		return
	}
	if e.Host != "" {
		if strings.Contains(e.Host, "/") || (&url.URL{Host: e.Host}).Hostname() == "" {
			p.Add("events.host", "want the registry host clients use (host or host:port), got %q", e.Host)
		}
	}
	if _, err := netguard.ParsePrefixes("events.allow_private", e.AllowPrivate); err != nil {
		p.AddEach(err, func(e error) string { return e.Error() })
	}
	if t := e.Timeout.D(); t < 0 || (t > 0 && (t < 100*time.Millisecond || t > 5*time.Minute)) {
		p.Add("events.timeout", "between 100ms and 5m, got %s", t)
	}
	if e.MaxAttempts < 0 || e.MaxAttempts > 10000 {
		p.Add("events.max_attempts", "must be between 0 (the default, 20) and 10000, got %d", e.MaxAttempts)
	}
	if d := e.MaxFailureTime.D(); d < 0 || (d > 0 && d < time.Second) {
		p.Add("events.max_failure_time", "at least 1s, got %s", d)
	}
	minB, maxB := e.BackoffMin.D(), e.BackoffMax.D()
	if minB < 0 || (minB > 0 && minB < 10*time.Millisecond) {
		p.Add("events.backoff_min", "at least 10ms, got %s", minB)
	}
	if maxB < 0 || (maxB > 0 && maxB < max(minB, 10*time.Millisecond)) {
		p.Add("events.backoff_max", "at least backoff_min (and 10ms), got %s", maxB)
	}
	ret, maxRet := e.Retention.D(), e.MaxRetention.D()
	if ret < 0 || (ret > 0 && ret < time.Minute) {
		p.Add("events.retention", "at least 1m, got %s", ret)
	}
	if maxRet < 0 || (maxRet > 0 && maxRet < max(ret, time.Hour)) {
		p.Add("events.max_retention", "at least retention (and 1h), got %s", maxRet)
	}
	if w := e.DedupeWindow.D(); w < 0 || (w > 0 && w < time.Minute) {
		p.Add("events.dedupe_window", "at least 1m, got %s", w)
	}
	if g := e.DedupeGrace.D(); g < 0 || (g > 0 && (g < 100*time.Millisecond || g > time.Minute)) {
		p.Add("events.dedupe_grace", "between 100ms and 1m, got %s", g)
	}
	if e.Notifications.SecretFile != "" && e.Notifications.Secret != "" && len(e.Notifications.Secret) < minNotificationsSecret {
		p.Add("events.notifications.secret_file", "the secret is %d characters: use at least %d (head -c 32 /dev/urandom | base64)",
			len(e.Notifications.Secret), minNotificationsSecret)
	}
}

// eventsSetup are the parts the origin's events are built from.
type eventsSetup struct {
	cfg       config.Events
	store     state.Store
	backend   *url.URL
	local     *upstream.Client
	transport http.RoundTripper
	// user and password of the backend, for the describer.
	user, password string
	users          *policy.Users
	access         *policy.Access
	realm          string
	reg            prometheus.Registerer
	log            *zap.Logger
}

// newEvents builds the events service and its wiring into the origin;
// nil when events are disabled.
func newEvents(s eventsSetup) (*originevents.Wiring, error) {
	e := s.cfg
	if e.Disabled {
		return nil, nil
	}
	guard, err := netguard.New(netguard.Config{AllowPrivate: e.AllowPrivate})
	if err != nil {
		return nil, err
	}
	log := s.log.Named("events")
	svc, err := events.NewService(events.Config{
		Store: s.store,
		Delivery: events.DeliveryConfig{
			Guard: guard, Timeout: e.Timeout.D(), MaxAttempts: e.MaxAttempts, MaxFailureTime: e.MaxFailureTime.D(),
			BackoffMin: e.BackoffMin.D(), BackoffMax: e.BackoffMax.D(), Retention: e.Retention.D(), MaxRetention: e.MaxRetention.D(),
			UserAgent: "dtrcache-webhook/" + version,
		},
		Window: e.DedupeWindow.D(), Grace: e.DedupeGrace.D(), Host: e.Host, Logger: log, Metrics: events.NewMetrics(s.reg),
	})
	if err != nil {
		return nil, err
	}
	own := "dtrcache/" + version
	return originevents.New(originevents.Config{
		Service: svc, Store: s.store, Backend: s.local, Host: e.Host,
		Describer: &events.RegistryDescriber{Base: s.backend, Client: &http.Client{Transport: s.transport, Timeout: 30 * time.Second},
			User: s.user, Password: s.password, UserAgent: own},
		Users: s.users, Access: s.access, Realm: s.realm,
		NotificationsSecret: e.Notifications.Secret, OwnUserAgent: own, Logger: log,
	})
}
