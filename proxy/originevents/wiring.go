package originevents

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/dtrcache/dtrcache/policy"
	"github.com/dtrcache/dtrcache/proxy/events"
	"github.com/dtrcache/dtrcache/proxy/origin"
	"github.com/dtrcache/dtrcache/proxy/state"
	"github.com/dtrcache/dtrcache/proxy/upstream"
	"go.uber.org/zap"
)

// NotificationsPath is where the origin receives the backend registry's
// notifications (distribution's notifications.endpoints[].url).
const NotificationsPath = "/api/v0/events/notifications"

// Config configures a Wiring.
type Config struct {
	// Service is the events service (required); Store its state store.
	Service *events.Service
	Store   state.Store
	// Backend reads the backend registry as the origin: whether a
	// subscription's repository exists, the catalog (to know which
	// repositories exist when events are first turned on). Required.
	Backend *upstream.Client
	// Describer reads the platforms (os, architecture) of pushed
	// manifests from the backend; nil leaves them empty.
	Describer *events.RegistryDescriber
	// Host is the registry host of imageName; "" takes the host each
	// client named.
	Host string
	// Users and Access are the origin's accounts and rules (required);
	// Realm its Basic realm ("" means "dtrcache").
	Users  *policy.Users
	Access *policy.Access
	Realm  string
	// NotificationsSecret, if set, turns on the notifications receiver at
	// NotificationsPath: the registry must send it as a Bearer token.
	NotificationsSecret string
	// OwnUserAgent is the User-Agent of the origin's own requests to the
	// backend: their pull notifications are not events.
	OwnUserAgent string
	Logger       *zap.Logger
}

// Wiring turns what the origin sees into events. Its methods are the
// origin's hooks (Configure sets them); Run runs the service.
type Wiring struct {
	c        Config
	svc      *events.Service
	api      *events.API
	receiver *events.Receiver
	log      *zap.Logger
	// tried is closed once the first look at the backend's repositories
	// finished (Ready).
	tried chan struct{}
}

// New returns the wiring of c.
func New(c Config) (*Wiring, error) {
	if c.Service == nil || c.Store == nil || c.Backend == nil || c.Users == nil || c.Access == nil {
		return nil, errors.New("originevents: service, store, backend, users and access are required")
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.Realm == "" {
		c.Realm = "dtrcache"
	}
	w := &Wiring{c: c, svc: c.Service, log: c.Logger, tried: make(chan struct{})}
	w.api = c.Service.API(identifier{auth: origin.Authenticator{Users: c.Users, Realm: c.Realm}},
		authority{access: c.Access, backend: c.Backend})
	if c.NotificationsSecret != "" {
		var d events.Describer
		if c.Describer != nil {
			d = c.Describer
		}
		w.receiver = c.Service.Receiver(c.NotificationsSecret, d, c.OwnUserAgent)
		if c.Host != "" {
			w.receiver.Host = c.Host
		}
	}
	return w, nil
}

// Configure sets the origin's hooks: Pushed (the events' callback after
// those oc already has, the policy engine's; the origin retries each on
// its own, so a push is recorded once in each), Deleted, Pulled and WantPulls, API (the
// webhooks API and the receiver in front of oc.API), and the prober's
// OnChange.
func (w *Wiring) Configure(oc *origin.Config) {
	oc.Pushed = append(oc.Pushed, w.Pushed)
	oc.Deleted, oc.Pulled, oc.WantPulls = w.Deleted, w.Pulled, w.WantPulls
	oc.API = w.Handler(oc.API)
	if oc.Prober != nil {
		oc.Prober.OnChange = w.CacheChanged
	}
}

// Run runs the events service, and records the repositories the backend
// has when events are first turned on (so that REPO_CREATED means a new
// one), until ctx ends.
func (w *Wiring) Run(ctx context.Context) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.seed(ctx)
	}()
	w.svc.Run(ctx)
	<-done
}

// Ready returns nil once the webhooks are loaded and the first look at
// the backend's repositories finished (whether or not it succeeded), so
// that a ready origin reports a repository's creation exactly when it is
// new; or ctx's error.
func (w *Wiring) Ready(ctx context.Context) error {
	if err := w.svc.Subscriptions.WaitReady(ctx); err != nil {
		return err
	}
	select {
	case <-w.tried:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Handler returns the /api/v0 handler: the webhooks API, the
// notifications receiver (when configured), and rest (nil: 404) for every
// other path.
func (w *Wiring) Handler(rest http.Handler) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		switch {
		case p == NotificationsPath && w.receiver != nil:
			w.receiver.ServeHTTP(rw, r)
		case isWebhooksPath(p):
			w.api.ServeHTTP(rw, r)
		case rest != nil:
			rest.ServeHTTP(rw, r)
		default:
			http.NotFound(rw, r)
		}
	})
}

// isWebhooksPath reports whether p is one of the webhooks API's paths.
func isWebhooksPath(p string) bool {
	switch {
	case p == "/api/v0/webhooks" || strings.HasPrefix(p, "/api/v0/webhooks/"):
		return true
	case strings.HasPrefix(p, "/api/v0/namespaces/") || strings.HasPrefix(p, "/api/v0/repositories/"):
		return strings.HasSuffix(p, "/webhooks")
	}
	return false
}

// host is the registry host of an event's imageName.
func (w *Wiring) host(named string) string {
	if w.c.Host != "" {
		return w.c.Host
	}
	return named
}

// WantPulls reports whether a webhook subscribes to pulls.
func (w *Wiring) WantPulls() bool {
	return w.svc.Wants(events.TagPull) || w.svc.Wants(events.ManifestPull)
}

// Pushed records a manifest push through the origin: MANIFEST_PUSH, and
// TAG_PUSH for a push by tag (with REPO_CREATED for a repository's first).
func (w *Wiring) Pushed(ctx context.Context, p origin.Push) error {
	img := events.Image{Repository: p.Repository, Tag: p.Tag, Digest: p.Digest, Host: w.host(p.Host), MediaType: p.MediaType}
	if w.describing() && p.Manifest != nil && p.Digest != "" {
		if pl, err := w.c.Describer.DescribeManifest(ctx, p.Repository, p.Digest, p.Manifest, p.MediaType); err == nil {
			img.OS, img.Architecture, img.Platforms = pl.OS, pl.Architecture, pl.Platforms
		} else {
			w.log.Info("events: platform of a pushed manifest unknown", zap.String("repository", p.Repository), zap.Error(err))
		}
	}
	types := []events.Type{events.ManifestPush}
	if p.Tag != "" {
		types = append(types, events.TagPush)
	}
	occ := events.Occurrence{Action: events.ActionPush, Repository: p.Repository, Tag: p.Tag, Digest: p.Digest, Author: p.User}
	return w.record(ctx, occ, img, types, p.User, p.At)
}

// Deleted records a delete through the origin: TAG_DELETE by tag,
// MANIFEST_DELETE by digest; a blob delete makes no event but is counted,
// so the registry's report of it (which looks like a manifest delete) is
// not taken for one.
func (w *Wiring) Deleted(ctx context.Context, op origin.Operation) error {
	occ := events.Occurrence{Action: events.ActionDelete, Repository: op.Repository, Tag: op.Tag, Digest: op.Digest, Author: op.User}
	var types []events.Type
	switch {
	case op.Blob:
	case op.Tag != "":
		occ.Digest = "" // the registry's report of a tag delete names no digest
		types = []events.Type{events.TagDelete}
	default:
		types = []events.Type{events.ManifestDelete}
	}
	img := events.Image{Repository: op.Repository, Tag: op.Tag, Digest: op.Digest, Host: w.host(op.Host)}
	return w.record(ctx, occ, img, types, op.User, op.At)
}

// Pulled records a manifest pull through the origin: TAG_PULL by tag,
// MANIFEST_PULL by digest, each only while a webhook subscribes to it.
func (w *Wiring) Pulled(ctx context.Context, op origin.Operation) {
	t := events.ManifestPull
	if op.Tag != "" {
		t = events.TagPull
	}
	if !w.svc.Wants(t) || op.Digest == "" {
		return
	}
	occ := events.Occurrence{Action: events.ActionPull, Repository: op.Repository, Tag: op.Tag, Digest: op.Digest, Author: op.User}
	img := events.Image{Repository: op.Repository, Tag: op.Tag, Digest: op.Digest, Host: w.host(op.Host), MediaType: op.MediaType}
	if err := w.record(ctx, occ, img, []events.Type{t}, op.User, op.At); err != nil {
		w.log.Error("events: recording a pull through the origin", zap.String("repository", op.Repository),
			zap.String("tag", op.Tag), zap.String("digest", op.Digest), zap.Error(err))
	}
}

// LocalPush records a tag the policy engine wrote into the local registry
// (a promotion's target, a poll mirror's copy) as a TAG_PUSH by the
// engine: the backend's notification of the same push, if it sends one,
// is matched with it (policies.Config.Pushed).
func (w *Wiring) LocalPush(ctx context.Context, repo, tag, digest string) error {
	img := events.Image{Repository: repo, Tag: tag, Digest: digest, Host: w.c.Host}
	if w.describing() {
		if pl, err := w.c.Describer.Describe(ctx, repo, digest); err == nil {
			img.OS, img.Architecture, img.Platforms, img.MediaType = pl.OS, pl.Architecture, pl.Platforms, pl.MediaType
		}
	}
	occ := events.Occurrence{Action: events.ActionPush, Repository: repo, Tag: tag, Digest: digest, Author: PolicyAuthor}
	return w.record(ctx, occ, img, []events.Type{events.ManifestPush, events.TagPush}, PolicyAuthor, time.Now())
}

// describing reports whether a push's platforms are worth a read of its
// config from the backend: only while a webhook subscribes to push events
// (no event is delivered to a webhook made after it). A promotion then
// reads no blob at all when nobody listens.
func (w *Wiring) describing() bool {
	return w.c.Describer != nil && (w.svc.Subscribed(events.TagPush) || w.svc.Subscribed(events.ManifestPush))
}

// PolicyAuthor is the author of the pushes policies make.
const PolicyAuthor = "dtrcache-policies"

// record writes the events of occ through the Deduper. An error means
// none of them was stored: the caller reports it (the origin answers the
// client 503, a policy job's attempt fails), so the operation is sent, and
// recorded, again.
func (w *Wiring) record(ctx context.Context, occ events.Occurrence, img events.Image, types []events.Type, author string, at time.Time) error {
	evs := make([]events.Event, 0, len(types))
	for _, t := range types {
		ev, err := events.NewImageEvent(t, img, author, at, events.SourceOrigin)
		if err != nil {
			w.log.Error("events: making an event", zap.String("type", string(t)), zap.Error(err))
			return nil // a bad event never gets better: not worth a retry
		}
		evs = append(evs, ev)
	}
	if err := w.svc.Deduper.Origin(ctx, occ, evs...); err != nil {
		w.log.Error("events: recording an operation through the origin", zap.String("action", string(occ.Action)),
			zap.String("repository", occ.Repository), zap.String("tag", occ.Tag), zap.String("digest", occ.Digest), zap.Error(err))
		return err
	}
	return nil
}
