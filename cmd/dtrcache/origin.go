package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/dtrcache/dtrcache/cmd/dtrcache/config"
	"github.com/dtrcache/dtrcache/policy"
	"github.com/dtrcache/dtrcache/proxy/health"
	"github.com/dtrcache/dtrcache/proxy/jobs"
	"github.com/dtrcache/dtrcache/proxy/origin"
	"github.com/dtrcache/dtrcache/proxy/policies"
	"github.com/dtrcache/dtrcache/proxy/serve"
	"github.com/dtrcache/dtrcache/proxy/upstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"
)

func runOrigin(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "migrate" {
		return runOriginMigrate(ctx, args[1:], stdout, stderr)
	}
	fs := newFlagSet("origin", "origin --config origin.yml [flags]\n       dtrcache origin migrate --from badger:DIR --to etcd:URL[,URL…] [flags]", stderr)
	path := fs.String("config", envOr("DTRCACHE_CONFIG", ""), "configuration file (env DTRCACHE_CONFIG)")
	addr := fs.String("addr", envOr("DTRCACHE_ADDR", ""), "listen address, overrides http.addr (env DTRCACHE_ADDR)")
	level := fs.String("log-level", envOr("DTRCACHE_LOG_LEVEL", ""), "debug, info, warn or error (env DTRCACHE_LOG_LEVEL)")
	format := fs.String("log-format", envOr("DTRCACHE_LOG_FORMAT", ""), "json or console (env DTRCACHE_LOG_FORMAT)")
	check := fs.Bool("check", false, "check the configuration, the files it names, the users, access rules and keys, then exit")
	if code, ok := parseFlags(fs, args, stdout); !ok {
		return code
	}
	if *path == "" {
		fmt.Fprintln(stderr, "dtrcache origin: --config is required")
		fs.Usage()
		return 2
	}
	cfg, err := loadOriginConfig(*path, *addr, *level, *format)
	if err == nil && *check {
		err = checkOriginFiles(cfg)
	}
	if err != nil {
		fmt.Fprintf(stderr, "dtrcache origin: %v\n", err)
		return 2
	}
	if *check {
		fmt.Fprintf(stdout, "dtrcache origin: %s: configuration OK\n", *path)
		return 0
	}
	log, err := newLogger(cfg.Log.Level, cfg.Log.Format, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "dtrcache origin: %v\n", err)
		return 2
	}
	defer log.Sync()
	for _, w := range config.Exposed(cfg.Files()) {
		log.Warn("secret file readable by others: " + w)
	}
	if err := serveOrigin(ctx, cfg, log, nil); err != nil {
		log.Error("origin stopped", zap.Error(err))
		return 1
	}
	return 0
}

func loadOriginConfig(path, addr, level, format string) (*config.Origin, error) {
	cfg, err := config.LoadOrigin(path)
	if err != nil && !config.IsProblems(err) {
		return nil, err
	}
	decodeErr := err // reported with the checks' problems below
	for _, o := range []struct {
		dst *string
		v   string
	}{{&cfg.HTTP.Addr, addr}, {&cfg.Log.Level, level}, {&cfg.Log.Format, format}} {
		if o.v != "" {
			*o.dst = o.v
		}
	}
	if err := config.Merge(decodeErr, checkOrigin(cfg), config.CheckFiles(cfg.Files())); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

// checkOriginFiles reads what the origin reads at start: the users, the
// access rules and (unless keys.generate) the signing keys.
func checkOriginFiles(cfg *config.Origin) error {
	var p config.Problems
	if b, err := os.ReadFile(cfg.Auth.Htpasswd); err != nil {
		p.Add("auth.htpasswd", "%v", err)
	} else if _, err := policy.ParseHtpasswd(b); err != nil {
		p.Add("auth.htpasswd", "%v", err)
	}
	if _, err := config.LoadAccess(cfg.Policy); err != nil {
		p.Add("policy", "%v", err)
	}
	if !cfg.Keys.Generate {
		if signing, _, err := policy.LoadKeyDir(cfg.Keys.Dir); err != nil {
			p.Add("keys.dir", "%v", err)
		} else if signing == nil {
			p.Add("keys.dir", "no private key: the origin cannot sign tokens")
		}
	}
	return p.Err()
}

// serveOrigin builds the origin from cfg and serves until ctx ends. ln, if
// set, is used instead of listening on cfg.HTTP.Addr.
func serveOrigin(ctx context.Context, cfg *config.Origin, log *zap.Logger, ln net.Listener) error {
	htpasswd, err := os.ReadFile(cfg.Auth.Htpasswd)
	if err != nil {
		return fmt.Errorf("auth.htpasswd: %w", err)
	}
	users, err := policy.ParseHtpasswd(htpasswd)
	if err != nil {
		return fmt.Errorf("auth.htpasswd: %w", err)
	}
	access, err := config.LoadAccess(cfg.Policy)
	if err != nil {
		return fmt.Errorf("policy: %w", err)
	}
	keys := &origin.KeyRing{Dir: cfg.Keys.Dir, Issuer: cfg.Keys.Issuer, TTL: cfg.Keys.TokenTTL.D()}
	if cfg.Keys.Generate {
		if signing, _, err := policy.LoadKeyDir(cfg.Keys.Dir); err != nil || signing == nil {
			k, err := policy.GenerateKey(rand.Reader)
			if err != nil {
				return err
			}
			if _, _, err := policy.WriteKeyPair(cfg.Keys.Dir, k, time.Now()); err != nil {
				return fmt.Errorf("keys.generate: %w", err)
			}
			log.Warn("generated a token signing key (keys.generate is for development stacks)", zap.String("kid", k.Kid), zap.String("dir", cfg.Keys.Dir))
		}
	}
	if err := keys.Reload(); err != nil {
		return fmt.Errorf("keys.dir: %w", err)
	}
	store, err := openState(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer store.Close()
	db := origin.NewDB(store, log.Named("state"))
	defer db.Close()
	backend, _ := url.Parse(cfg.Backend.URL)
	backendTLS, err := tlsConfig(cfg.Backend.CAs)
	if err != nil {
		return fmt.Errorf("backend.cas: %w", err)
	}
	probeTLS, err := tlsConfig(cfg.Caches.CAs)
	if err != nil {
		return fmt.Errorf("caches.cas: %w", err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	prober := &origin.Prober{
		Client:   &http.Client{Transport: upstream.NewTransport(probeTLS)},
		Interval: cfg.Caches.HealthInterval.D(), Timeout: cfg.Caches.HealthTimeout.D(),
		Rise: cfg.Caches.HealthRise, Fall: cfg.Caches.HealthFall,
		List: db.Caches, Logger: log.Named("health"), Store: store, Metrics: health.NewMetrics(reg),
	}
	transport := upstream.NewTransport(backendTLS)
	transport.ResponseHeaderTimeout = 5 * time.Minute // pushes of large blobs finish before the backend answers
	local, err := upstream.New(upstream.Config{URLs: []string{cfg.Backend.URL}, Username: cfg.Backend.Username, Password: cfg.Backend.Password,
		Transport: transport, UserAgent: "dtrcache/" + version})
	if err != nil {
		return fmt.Errorf("backend.url: %w", err)
	}
	wiring, err := newEvents(eventsSetup{cfg: cfg.Events, store: store, backend: backend, local: local, transport: transport,
		user: cfg.Backend.Username, password: cfg.Backend.Password, users: users, access: access, realm: cfg.Auth.Realm, reg: reg, log: log})
	if err != nil {
		return fmt.Errorf("events: %w", err)
	}
	var hooks engineHooks
	if wiring != nil {
		hooks.job = func(svc *policies.Service) jobs.Hook { return wiring.JobHook(svc.DescribeJob) }
		hooks.pushed = wiring.LocalPush
	}
	engine, err := newPolicyEngine(ctx, cfg, store, local, access, reg, hooks, log)
	if err != nil {
		return err
	}
	oc := origin.Config{
		Pushed: []func(context.Context, origin.Push) error{func(ctx context.Context, p origin.Push) error {
			_, err := engine.svc.OnPush(ctx, policies.Push{Repository: p.Repository, Tag: p.Tag, Digest: p.Digest, Subject: p.Subject})
			return err
		}},
		API:     engine.svc.Handler(origin.Authenticator{Users: users, Realm: cfg.Auth.Realm}, log.Named("audit")),
		Backend: backend, BackendUser: cfg.Backend.Username, BackendPassword: cfg.Backend.Password, Transport: transport,
		Users: users, Access: access, Keys: keys, DB: db, Prober: prober, Realm: cfg.Auth.Realm,
		Logger: log, Audit: log.Named("audit"), Metrics: origin.NewMetrics(reg), PrefetchHints: *cfg.Caches.PrefetchHints,
		UserAgent: "dtrcache/" + version,
	}
	if wiring != nil {
		wiring.Configure(&oc) // the events' hooks after the policies', the webhooks API in front
	}
	srv, err := origin.New(oc)
	if err != nil {
		return err
	}
	defer srv.Close() // after the server stopped serving, before the database closes

	loc, _ := time.LoadLocation(cfg.Policies.Timezone) // checked; "" is UTC
	con, err := newConsole(cfg.Console, srv, oc, store, loc, reg, log)
	if err != nil {
		return fmt.Errorf("console: %w", err)
	}
	tlsConf, err := serverTLS(cfg.HTTP.TLS.Certificate, cfg.HTTP.TLS.Key)
	if err != nil {
		return err
	}
	if ln == nil {
		if ln, err = net.Listen("tcp", cfg.HTTP.Addr); err != nil {
			return fmt.Errorf("http.addr: %w", err)
		}
	}
	// Ready: the views are loaded and the store answers (etcd: a quorum
	// read), promptly, so a load balancer's probe gets an answer.
	ready := func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, readyTimeout)
		defer cancel()
		if wiring != nil {
			if err := wiring.Ready(ctx); err != nil {
				return fmt.Errorf("events: %w", err)
			}
		}
		return db.Ready(ctx)
	}
	handler := serve.Instrument(log.Named("access"), serve.NewHTTPMetrics(reg), serve.Mux(withConsole(srv, con), ready, reg))
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		s := &serve.Server{Handler: handler, TLS: tlsConf, Grace: cfg.Shutdown.D(), Logger: log, Name: "origin"}
		return s.Serve(gctx, ln)
	})
	g.Go(func() error { prober.Run(gctx); return nil })
	g.Go(func() error { return engine.run(gctx) })
	if wiring != nil {
		g.Go(func() error { wiring.Run(gctx); return nil })
	}
	if con != nil {
		g.Go(func() error { return con.Run(gctx) })
	}
	g.Go(func() error {
		t := time.NewTicker(cfg.Keys.Reload.D())
		defer t.Stop()
		for {
			select {
			case <-gctx.Done():
				return nil
			case <-t.C:
				if err := keys.Reload(); err != nil {
					log.Error("reloading keys; keeping the previous ones", zap.Error(err))
				}
			}
		}
	})
	return g.Wait()
}
