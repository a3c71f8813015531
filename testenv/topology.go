package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/dtrcache/dtrcache/casstore"
	"github.com/dtrcache/dtrcache/policy"
	"github.com/dtrcache/dtrcache/proxy/cache"
	"github.com/dtrcache/dtrcache/proxy/origin"
	"github.com/dtrcache/dtrcache/proxy/serve"
	"github.com/dtrcache/dtrcache/proxy/upstream"
	"github.com/dtrcache/dtrcache/testenv/wan"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// TopologyOptions configure a US/Asia topology.
type TopologyOptions struct {
	// Dir holds every store and database; "" makes (and removes) a temp dir.
	Dir string
	// WAN shapes the link between Asia and the US origin.
	WAN wan.Config
	// Fill tunes the cache's fills.
	Fill casstore.FillOptions
	// Prefetch is the cache's prefetch concurrency (0: off); the origin
	// always sends hints.
	Prefetch int
	// Password of every demo account ("" means "dtrcache").
	Password string
	// Logger receives the servers' logs; nil discards them.
	Logger *zap.Logger
	// CacheName is the Asia cache's name ("" means "asia").
	CacheName string
	// Extend, if set, adds to the origin before it serves (the policy
	// engine, the web console: package testenv/stack). It gets the
	// origin's parts and returns what to add.
	Extend func(ctx context.Context, parts OriginParts) (OriginExtension, error)
}

// OriginParts are what the origin of a topology is built from.
type OriginParts struct {
	Users   *policy.Users
	Access  *policy.Access
	Keys    *origin.KeyRing
	DB      *origin.DB
	Prober  *origin.Prober
	Backend *Registry
	// Dir is a directory of the topology's own.
	Dir     string
	Logger  *zap.Logger
	Metrics *prometheus.Registry
}

// OriginExtension is what Extend adds to the origin.
type OriginExtension struct {
	// API and Pushed become the origin's Config.API and Config.Pushed.
	API    http.Handler
	Pushed []func(ctx context.Context, p origin.Push) error
	// Configure, if set, changes the origin's Config last (the events'
	// hooks: originevents.Wiring.Configure).
	Configure func(c *origin.Config)
	// Mount, if set, gets the origin's handler and returns handlers to
	// serve beside it, by path prefix (e.g. "/console/").
	Mount func(origin http.Handler) (map[string]http.Handler, error)
	// Run, if set, runs in the background until the topology closes.
	Run func(ctx context.Context)
	// Close, if set, is called when the topology closes, after Run
	// returned.
	Close func() error
}

// Topology is a whole dtrcache deployment on loopback: the backend
// registry and the origin in the "US", a WAN link, and the "asia" cache.
// Clients in Asia reach the origin at OriginHost (through the WAN) and the
// cache at CacheHost (local).
type Topology struct {
	// Registry is the backend registry (US, behind the origin).
	Registry *Registry
	// OriginHost is host:port of the origin as seen from Asia (the WAN
	// link's address); OriginURL the same with its scheme.
	OriginHost, OriginURL string
	// CacheHost and CacheURL are the Asia cache.
	CacheHost, CacheURL string
	// CacheName is the cache's name at the origin.
	CacheName string
	// Link is the WAN between Asia and the origin.
	Link *wan.Link
	// OriginCounter and CacheCounter count requests at each server.
	OriginCounter, CacheCounter *Counter
	// CacheStore is the cache's blob store.
	CacheStore *casstore.Store
	// Password is the password of the accounts admin, alice, bob and
	// cache-<name>.
	Password string
	// CacheMetrics and OriginMetrics are the servers' registries.
	CacheMetrics, OriginMetrics *prometheus.Registry

	dir     string
	tempDir bool
	closers []func() error
}

// StartTopology starts every part and registers the cache at the origin.
// Close stops them.
func StartTopology(ctx context.Context, opt TopologyOptions) (_ *Topology, err error) {
	t := &Topology{Password: opt.Password, CacheName: opt.CacheName}
	if t.Password == "" {
		t.Password = "dtrcache"
	}
	if t.CacheName == "" {
		t.CacheName = "asia"
	}
	log := opt.Logger
	if log == nil {
		log = zap.NewNop()
	}
	defer func() {
		if err != nil {
			t.Close()
		}
	}()
	t.dir = opt.Dir
	if t.dir == "" {
		if t.dir, err = os.MkdirTemp("", "dtrcache-topology-"); err != nil {
			return nil, err
		}
		t.tempDir = true
	}
	if t.Registry, err = StartRegistry(ctx, RegistryOptions{Dir: filepath.Join(t.dir, "registry")}); err != nil {
		return nil, err
	}
	t.closers = append(t.closers, t.Registry.Close)

	// The origin (US).
	account := "cache-" + t.CacheName
	users, err := demoUsers(t.Password, "admin", "alice", "bob", account)
	if err != nil {
		return nil, err
	}
	access, err := policy.NewAccess(policy.AccessConfig{
		Admins: []string{"admin"},
		Teams:  []policy.Team{{Name: "web", Members: []string{"alice", "bob"}}, {Name: "caches", Members: []string{account}}},
		Repositories: []policy.RepoRule{
			{Pattern: "**", Grants: []policy.Grant{{Team: "web", Actions: []policy.Action{policy.ActionPull}}, {Team: "caches", Actions: []policy.Action{policy.ActionPull}}}},
		},
	})
	if err != nil {
		return nil, err
	}
	keys := &origin.KeyRing{Dir: filepath.Join(t.dir, "keys"), Issuer: "dtrcache-demo-origin", TTL: 5 * time.Minute}
	k, err := policy.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	if _, _, err := policy.WriteKeyPair(keys.Dir, k, time.Now()); err != nil {
		return nil, err
	}
	if err := keys.Reload(); err != nil {
		return nil, err
	}
	db, err := origin.OpenDB(filepath.Join(t.dir, "origin-db"))
	if err != nil {
		return nil, err
	}
	t.closers = append(t.closers, db.Close)
	prober := &origin.Prober{Client: &http.Client{}, Interval: time.Second, List: db.Caches, Logger: log.Named("health")}
	backend, _ := url.Parse(t.Registry.URL)
	t.OriginMetrics = prometheus.NewRegistry()
	var ext OriginExtension
	if opt.Extend != nil {
		if ext, err = opt.Extend(ctx, OriginParts{Users: users, Access: access, Keys: keys, DB: db, Prober: prober, Backend: t.Registry,
			Dir: filepath.Join(t.dir, "origin-extension"), Logger: log, Metrics: t.OriginMetrics}); err != nil {
			return nil, err
		}
		if ext.Close != nil {
			t.closers = append(t.closers, ext.Close)
		}
	}
	oc := origin.Config{Backend: backend, Users: users, Access: access, Keys: keys, DB: db, Prober: prober,
		Logger: log.Named("origin"), Audit: log.Named("audit"), Metrics: origin.NewMetrics(t.OriginMetrics), PrefetchHints: true,
		API: ext.API, Pushed: ext.Pushed}
	if ext.Configure != nil {
		ext.Configure(&oc)
	}
	osrv, err := origin.New(oc)
	if err != nil {
		return nil, err
	}
	t.closers = append(t.closers, func() error { osrv.Close(); return nil })
	var root http.Handler = osrv
	if ext.Mount != nil {
		mounts, err := ext.Mount(osrv)
		if err != nil {
			return nil, err
		}
		mux := http.NewServeMux()
		for prefix, h := range mounts {
			mux.Handle(prefix, h)
		}
		mux.Handle("/", osrv)
		root = mux
	}
	t.OriginCounter = NewCounter(serve.Instrument(log.Named("origin"), serve.NewHTTPMetrics(t.OriginMetrics), serve.Mux(root, nil, t.OriginMetrics)))
	originAddr, stop, err := serveLoopback(ctx, t.OriginCounter)
	if err != nil {
		return nil, err
	}
	t.closers = append(t.closers, stop)
	pctx, cancelProbes := context.WithCancel(context.WithoutCancel(ctx))
	var bg sync.WaitGroup
	for _, run := range []func(context.Context){prober.Run, ext.Run} {
		if run == nil {
			continue
		}
		bg.Add(1)
		go func() {
			defer bg.Done()
			run(pctx)
		}()
	}
	t.closers = append(t.closers, func() error { cancelProbes(); bg.Wait(); return nil })

	// The WAN between Asia and the origin.
	if t.Link, err = wan.Listen(context.WithoutCancel(ctx), "127.0.0.1:0", originAddr, opt.WAN); err != nil {
		return nil, err
	}
	t.closers = append(t.closers, t.Link.Close)
	t.OriginHost = t.Link.Addr()
	t.OriginURL = "http://" + t.OriginHost

	// The Asia cache, filling from the origin across the WAN.
	if t.CacheStore, err = casstore.Open(filepath.Join(t.dir, "cache-"+t.CacheName), casstore.Options{Logger: log.Named("store")}); err != nil {
		return nil, err
	}
	t.closers = append(t.closers, t.CacheStore.Close)
	t.CacheMetrics = prometheus.NewRegistry()
	t.CacheMetrics.MustRegister(cache.NewStoreCollector(t.CacheStore, "redirect"))
	client, err := upstream.New(upstream.Config{URLs: []string{t.OriginURL}, Username: account, Password: t.Password,
		Observer: serve.NewUpstreamMetrics(t.CacheMetrics), Logger: log.Named("upstream")})
	if err != nil {
		return nil, err
	}
	jwks := &policy.RemoteKeys{Fetch: func(ctx context.Context) ([]byte, error) {
		resp, err := client.Do(ctx, upstream.Request{Method: http.MethodGet, Path: "/.well-known/jwks.json"})
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		return io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	}}
	csrv := &cache.Server{
		Redirect: &cache.Redirect{Store: t.CacheStore, Upstream: client, Audiences: []string{t.CacheName},
			Verifier: &policy.Verifier{Keys: jwks, Issuer: keys.Issuer}},
		Fill: opt.Fill, Prefetch: opt.Prefetch, Logger: log.Named("cache"), Metrics: cache.NewMetrics(t.CacheMetrics),
	}
	t.closers = append(t.closers, func() error { csrv.Close(); return nil })
	t.CacheCounter = NewCounter(serve.Instrument(log.Named("cache"), serve.NewHTTPMetrics(t.CacheMetrics), serve.Mux(csrv, nil, t.CacheMetrics)))
	if t.CacheHost, stop, err = serveLoopback(ctx, t.CacheCounter); err != nil {
		return nil, err
	}
	t.closers = append(t.closers, stop)
	t.CacheURL = "http://" + t.CacheHost

	// Register the cache, as an administrator would.
	if err := t.API(ctx, "admin", http.MethodPost, "/api/v0/content_caches",
		map[string]string{"name": t.CacheName, "host": t.CacheURL, "account": account}, nil); err != nil {
		return nil, fmt.Errorf("testenv: register the cache: %w", err)
	}
	return t, nil
}

// Close stops every part and removes a temporary directory.
func (t *Topology) Close() error {
	var errs []error
	for i := len(t.closers) - 1; i >= 0; i-- {
		if err := t.closers[i](); err != nil {
			errs = append(errs, err)
		}
	}
	t.closers = nil
	if t.tempDir {
		errs = append(errs, os.RemoveAll(t.dir))
	}
	return errors.Join(errs...)
}

// API calls the origin's JSON API (across the WAN) as user.
func (t *Topology) API(ctx context.Context, user, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, t.OriginURL+path, rd)
	if err != nil {
		return err
	}
	req.SetBasicAuth(user, t.Password)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(b)))
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

// SetUserCache points user's profile at a cache ("" for none).
func (t *Topology) SetUserCache(ctx context.Context, user, cacheName string) error {
	return t.API(ctx, user, http.MethodPatch, "/api/v0/accounts/"+user+"/settings", map[string]string{"contentCache": cacheName}, nil)
}

// Seed pushes a generated image straight to the backend registry (in the
// US, next to it) and returns it.
func (t *Topology) Seed(ctx context.Context, repoTag string, spec ImageSpec) (ImageInfo, error) {
	img, err := GenerateImage(spec)
	if err != nil {
		return ImageInfo{}, err
	}
	if err := Push(ctx, t.Registry.Host+"/"+repoTag, img, RemoteOptions{}); err != nil {
		return ImageInfo{}, err
	}
	return Describe(img)
}

// PullAs pulls repoTag through the origin (across the WAN) as user.
func (t *Topology) PullAs(ctx context.Context, user, repoTag string, progress func(int64)) (PullResult, error) {
	return Pull(ctx, t.OriginHost+"/"+repoTag, RemoteOptions{Username: user, Password: t.Password}, progress)
}

// serveLoopback serves h on 127.0.0.1:0.
func serveLoopback(ctx context.Context, h http.Handler) (string, func() error, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, 1)
	go func() {
		done <- (&serve.Server{Handler: h, Grace: 2 * time.Second}).Serve(sctx, ln)
	}()
	return ln.Addr().String(), func() error { cancel(); return <-done }, nil
}

// demoUsers builds accounts that all share one password (cost 4: demo only).
func demoUsers(password string, names ...string) (*policy.Users, error) {
	var b strings.Builder
	for _, n := range names {
		h, err := policy.HashPassword(password, 4)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(&b, "%s:%s\n", n, h)
	}
	return policy.ParseHtpasswd([]byte(b.String()))
}
