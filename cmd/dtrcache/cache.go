package main

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/dtrcache/dtrcache/casstore"
	"github.com/dtrcache/dtrcache/cmd/dtrcache/config"
	"github.com/dtrcache/dtrcache/policy"
	"github.com/dtrcache/dtrcache/proxy/cache"
	"github.com/dtrcache/dtrcache/proxy/serve"
	"github.com/dtrcache/dtrcache/proxy/upstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"
)

// cacheFlags are the command-line overrides of the cache configuration.
type cacheFlags struct {
	config, addr, root, name, logLevel, logFormat string
}

func runCache(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("cache", "cache --config cache.yml [flags]", stderr)
	var f cacheFlags
	fs.StringVar(&f.config, "config", envOr("DTRCACHE_CONFIG", ""), "configuration file (env DTRCACHE_CONFIG)")
	fs.StringVar(&f.addr, "addr", envOr("DTRCACHE_ADDR", ""), "listen address, overrides http.addr (env DTRCACHE_ADDR)")
	fs.StringVar(&f.root, "root", envOr("DTRCACHE_ROOT", ""), "store directory, overrides storage.root (env DTRCACHE_ROOT)")
	fs.StringVar(&f.name, "name", envOr("DTRCACHE_NAME", ""), "cache name at the origin, overrides name (env DTRCACHE_NAME)")
	fs.StringVar(&f.logLevel, "log-level", envOr("DTRCACHE_LOG_LEVEL", ""), "debug, info, warn or error (env DTRCACHE_LOG_LEVEL)")
	fs.StringVar(&f.logFormat, "log-format", envOr("DTRCACHE_LOG_FORMAT", ""), "json or console (env DTRCACHE_LOG_FORMAT)")
	check := fs.Bool("check", false, "check the configuration and the files it names, then exit")
	if code, ok := parseFlags(fs, args, stdout); !ok {
		return code
	}
	if f.config == "" {
		fmt.Fprintln(stderr, "dtrcache cache: --config is required")
		fs.Usage()
		return 2
	}
	cfg, err := loadCacheConfig(f)
	if err != nil {
		fmt.Fprintf(stderr, "dtrcache cache: %v\n", err)
		return 2
	}
	if *check {
		fmt.Fprintf(stdout, "dtrcache cache: %s: configuration OK\n", f.config)
		return 0
	}
	log, err := newLogger(cfg.Log.Level, cfg.Log.Format, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "dtrcache cache: %v\n", err)
		return 2
	}
	defer log.Sync()
	for _, k := range cfg.Unused {
		log.Warn("ignoring registry configuration key", zap.String("key", k))
	}
	for _, w := range config.Exposed(cfg.Files()) {
		log.Warn("secret file readable by others: " + w)
	}
	if err := serveCache(ctx, cfg, log, nil); err != nil {
		log.Error("cache stopped", zap.Error(err))
		return 1
	}
	return 0
}

// loadCacheConfig reads the configuration, applies the overrides, and
// checks it (prepareCache) and the files it names.
func loadCacheConfig(f cacheFlags) (*cacheSetup, error) {
	cfg, err := config.LoadCache(f.config)
	if err != nil && !config.IsProblems(err) {
		return nil, err
	}
	decodeErr := err // reported with the checks' problems below
	for _, o := range []struct {
		dst *string
		v   string
	}{{&cfg.HTTP.Addr, f.addr}, {&cfg.Storage.Root, f.root}, {&cfg.Name, f.name}, {&cfg.Log.Level, f.logLevel}, {&cfg.Log.Format, f.logFormat}} {
		if o.v != "" {
			*o.dst = o.v
		}
	}
	s, err := prepareCache(cfg)
	if err := config.Merge(decodeErr, err, config.CheckFiles(cfg.Files())); err != nil {
		return nil, fmt.Errorf("%s: %w", f.config, err)
	}
	return s, nil
}

// cacheListeners lets tests pass ready listeners.
type cacheListeners struct {
	api   net.Listener
	ready chan<- string // receives the API address once serving
}

// serveCache builds the cache from a checked configuration and serves
// until ctx ends.
func serveCache(ctx context.Context, cfg *cacheSetup, log *zap.Logger, ls *cacheListeners) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	upMetrics := serve.NewUpstreamMetrics(reg)
	var stores []*casstore.Store
	defer func() {
		for _, s := range stores {
			if err := s.Close(); err != nil {
				log.Error("closing store", zap.Error(err))
			}
		}
	}()
	openStore := func(mode string) (*casstore.Store, error) {
		s, err := openModeStore(cfg, mode, log)
		if err != nil {
			return nil, err
		}
		stores = append(stores, s)
		reg.MustRegister(cache.NewStoreCollector(s, mode))
		return s, nil
	}
	srv := &cache.Server{
		Fill:                 cfg.fill,
		Prefetch:             cfg.prefetch,
		PrefetchWhileAwaited: cfg.prefetchWhileAwaited,
		PrefetchHold:         cfg.prefetchHold,
		Logger:               log,
		Metrics:              cache.NewMetrics(reg),
	}
	var keys *policy.RemoteKeys
	if r := cfg.Redirect; r != nil {
		st, err := openStore("redirect")
		if err != nil {
			return err
		}
		client, tlsConf, err := newUpstream(r.Upstream, log, upMetrics)
		if err != nil {
			return fmt.Errorf("redirect: %w", err)
		}
		var ks policy.KeySet
		ks, keys, err = cacheKeys(r, tlsConf, func(msg string) { log.Warn(msg) })
		if err != nil {
			return err
		}
		srv.Redirect = &cache.Redirect{
			Store: st, Upstream: client, Audiences: r.Audiences,
			Verifier: &policy.Verifier{Keys: ks, Issuer: r.Issuer},
		}
		if r.Downstream != "" {
			b, err := os.ReadFile(r.Downstream)
			if err != nil {
				return fmt.Errorf("redirect.downstream_htpasswd: %w", err)
			}
			if srv.Redirect.Downstream, err = policy.ParseHtpasswd(b); err != nil {
				return fmt.Errorf("redirect.downstream_htpasswd: %w", err)
			}
		}
	}
	if m := cfg.Mirror; m != nil {
		st, err := openStore("mirror")
		if err != nil {
			return err
		}
		tags, err := cache.NewTagStore(filepath.Join(st.Root(), "tags"))
		if err != nil {
			return err
		}
		srv.Mirror = &cache.Mirror{Store: st, Default: m.Default, Tags: tags}
		for i, u := range m.Upstreams {
			client, _, err := newUpstream(u.Upstream, log, upMetrics)
			if err != nil {
				return fmt.Errorf("mirror.upstreams[%d]: %w", i, err)
			}
			srv.Mirror.Upstreams = append(srv.Mirror.Upstreams, cache.MirrorUpstream{Name: u.Name, Hosts: u.Hosts, Client: client, CheckRepository: u.ChecksRepository()})
		}
	}
	tlsConf, err := serverTLS(cfg.HTTP.TLS.Certificate, cfg.HTTP.TLS.Key)
	if err != nil {
		return err
	}
	if keys != nil {
		lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if err := keys.Load(lctx); err != nil {
			log.Warn("origin keys not loaded yet; retrying on first use", zap.Error(err))
		}
		cancel()
	}
	drain := newDrain()
	reg.MustRegister(drain.watchesCollector())
	readiness := make([]*storeReadiness, len(stores))
	for i, s := range stores {
		readiness[i] = newStoreReadiness(s)
	}
	ready := func(ctx context.Context) error {
		if err := drain.notReady(); err != nil {
			return err
		}
		for _, r := range readiness {
			if err := r.ready(ctx); err != nil {
				return err
			}
		}
		return nil
	}
	handler := serve.Instrument(log.Named("access"), serve.NewHTTPMetrics(reg), drain.watchReady(serve.Mux(srv, ready, reg)))
	// Every listener is open before anything serves, so a bad address
	// stops the start without leaving a server running.
	apiLn := (net.Listener)(nil)
	if ls != nil {
		apiLn = ls.api
	}
	if apiLn == nil {
		if apiLn, err = net.Listen("tcp", cfg.HTTP.Addr); err != nil {
			return fmt.Errorf("http.addr: %w", err)
		}
	}
	var dln, fln net.Listener
	if cfg.HTTP.Debug.Addr != "" {
		if dln, err = net.Listen("tcp", cfg.HTTP.Debug.Addr); err != nil {
			apiLn.Close()
			return fmt.Errorf("http.debug.addr: %w", err)
		}
	}
	if cfg.Forward != nil {
		if fln, err = net.Listen("tcp", cfg.Forward.Addr); err != nil {
			apiLn.Close()
			if dln != nil {
				dln.Close()
			}
			return fmt.Errorf("forward_proxy.addr: %w", err)
		}
	}
	if ls != nil && ls.ready != nil {
		ls.ready <- apiLn.Addr().String()
	}
	defer srv.Close()
	g, gctx := errgroup.WithContext(ctx)
	// The API keeps serving while the cache drains: serving ends when
	// the origins have stopped redirecting to it (drain.run).
	serving, stopServing := context.WithCancel(context.WithoutCancel(gctx))
	defer stopServing()
	var hb *cache.Heartbeat
	if r := cfg.Redirect; r != nil && r.Heartbeat != nil {
		if hb, err = newHeartbeat(cfg, srv, ready, log); err != nil {
			return err
		}
		g.Go(func() error { return hb.Run(serving) })
	}
	g.Go(func() error {
		s := &serve.Server{Handler: handler, TLS: tlsConf, Grace: cfg.Shutdown.D(), Logger: log, Name: "cache"}
		return s.Serve(serving, apiLn)
	})
	g.Go(func() error {
		<-gctx.Done()
		if cfg.Redirect != nil {
			drain.run(cfg, hb, log)
		} else {
			drain.begin() // nobody redirects here: answer held watches, stop
		}
		stopServing()
		return nil
	})
	if dln != nil {
		g.Go(func() error {
			s := &serve.Server{Handler: serve.Mux(http.NotFoundHandler(), ready, reg), Grace: time.Second, Logger: log, Name: "debug"}
			return s.Serve(gctx, dln)
		})
	}
	if fln != nil {
		g.Go(func() error {
			err := serveForward(gctx, cfg, srv, log, reg, fln)
			fln.Close() // closed already unless serveForward failed before serving
			return err
		})
	}
	return g.Wait()
}

// openModeStore opens the store of one mode in its own directory under
// storage.root (redirect/, mirror/, proxy/): each mode is a trust domain
// of its own, and switching a cache's modes never lets one read another's
// blobs. Each store has the whole byte budget.
func openModeStore(cfg *cacheSetup, mode string, log *zap.Logger) (*casstore.Store, error) {
	dir := filepath.Join(cfg.Storage.Root, mode)
	opt := cfg.store
	opt.Logger = log.Named("store").With(zap.String("store", mode))
	s, err := casstore.Open(dir, opt)
	if err != nil {
		return nil, err
	}
	log.Info("store open", zap.String("store", mode), zap.String("dir", dir), zap.Int64("blobs", s.Stats().Blobs), zap.Int64("bytes", s.Stats().Bytes))
	return s, nil
}

// newUpstream builds an upstream client from its configuration.
func newUpstream(u config.Upstream, log *zap.Logger, obs upstream.Observer) (*upstream.Client, *tls.Config, error) {
	tc, err := tlsConfig(u.CAs)
	if err != nil {
		return nil, nil, err
	}
	c, err := upstream.New(upstream.Config{
		URLs: u.URLs, Username: u.Username, Password: u.Password, TLS: tc,
		UserAgent: "dtrcache/" + version, Observer: obs, Logger: log.Named("upstream"),
	})
	return c, tc, err
}

// cacheKeys builds the key set that verifies the origin's tokens: PEM
// files, and the origin's JWKS (by default at the first upstream).
func cacheKeys(r *config.Redirect, tc *tls.Config, warn func(string)) (policy.KeySet, *policy.RemoteKeys, error) {
	var static []policy.PublicKey
	for i, f := range r.Keys.Files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, nil, fmt.Errorf("redirect.keys.files[%d]: %w", i, err)
		}
		ks, err := policy.ParsePublicKeysPEM(b)
		if err != nil {
			return nil, nil, fmt.Errorf("redirect.keys.files[%d]: %w", i, err)
		}
		static = append(static, ks...)
	}
	jwks := r.Keys.JWKSURL
	if jwks == "" && len(static) == 0 {
		jwks = r.URLs[0] + "/.well-known/jwks.json"
	}
	if u, err := url.Parse(jwks); jwks != "" && err == nil && u.Scheme == "http" && !isLoopback(u.Hostname()) {
		warn("the origin's keys come over plain HTTP (" + jwks + "): anyone on the path could forge tokens; use https or redirect.keys.files")
	}
	var remote *policy.RemoteKeys
	if jwks != "" {
		hc := &http.Client{Transport: upstream.NewTransport(tc), Timeout: 15 * time.Second}
		remote = &policy.RemoteKeys{Refresh: r.Keys.Refresh.D(), Fetch: func(ctx context.Context) ([]byte, error) {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, jwks, nil)
			if err != nil {
				return nil, err
			}
			resp, err := hc.Do(req)
			if err != nil {
				return nil, err
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return nil, fmt.Errorf("GET %s: %s", jwks, resp.Status)
			}
			return io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		}}
	}
	return keySets{static: policy.NewStaticKeys(static...), remote: remote}, remote, nil
}

// keySets looks a key up in the static keys, then the remote set.
type keySets struct {
	static *policy.StaticKeys
	remote *policy.RemoteKeys
}

func (k keySets) PublicKey(ctx context.Context, kid string) (ed25519.PublicKey, error) {
	key, err := k.static.PublicKey(ctx, kid)
	if err == nil || k.remote == nil {
		return key, err
	}
	if !errors.Is(err, policy.ErrUnknownKey) {
		return nil, err
	}
	return k.remote.PublicKey(ctx, kid)
}

// isLoopback reports whether host is a loopback name or address.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
