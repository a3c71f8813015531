package main

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"time"

	"github.com/dtrcache/dtrcache/casstore"
	"github.com/dtrcache/dtrcache/cmd/dtrcache/config"
	"github.com/dtrcache/dtrcache/policy"
	"github.com/dtrcache/dtrcache/proxy/cache"
	"github.com/dtrcache/dtrcache/proxy/forward"
	"github.com/dtrcache/dtrcache/proxy/upstream"
)

// The command's own bounds on a cache's tuning: the packages accept more
// (tests fill in 16-byte chunks), an operator's file should not.
const (
	maxParallel  = 64
	minChunkSize = 64 << 10
	maxPrefetch  = 64
	minMaxSize   = 1 << 20
)

// cacheSetup is a checked cache configuration: the normalised file and
// the values it gives the packages that serve it, built before any store
// opens or any port listens.
type cacheSetup struct {
	*config.Cache
	// store are the options of every mode's store (the logger is set per
	// mode).
	store    casstore.Options
	fill     casstore.FillOptions
	prefetch int
	// prefetchWhileAwaited is cache.Server.PrefetchWhileAwaited.
	prefetchWhileAwaited int
	// prefetchHold is cache.Server.PrefetchHold.
	prefetchHold cache.PrefetchHold
	// rules are the forward proxy's rules; nil without forward_proxy.
	rules *forward.Rules
}

// prepareCache normalises cfg and checks every value with the rules of
// the command and of the packages it configures (casstore's options,
// forward's entries, upstream URLs, names). It reports every problem of
// the file at once, each naming its key (config.Problems).
func prepareCache(cfg *config.Cache) (*cacheSetup, error) {
	var p config.Problems
	p.Join(cfg.Normalize())
	s := &cacheSetup{Cache: cfg}
	checkListen(&p, "http.addr", cfg.HTTP.Addr)
	checkServerTLS(&p, cfg.HTTP.TLS)
	if cfg.Name != "" && !policy.ValidName(cfg.Name) {
		p.Add("name", "invalid cache name %q (%s)", cfg.Name, policy.NameSyntax)
	}
	checkLog(&p, cfg.Log)

	st := cfg.Storage
	if st.Root == "" {
		p.Add("storage.root", "required (or storage.filesystem.rootdirectory)")
	}
	if st.MaxSize != 0 && st.MaxSize < minMaxSize {
		p.Add("storage.max_size", "must be at least 1MiB, got %d bytes", st.MaxSize)
	}
	s.store = casstore.Options{
		MaxBytes: int64(st.MaxSize), HighWatermark: st.HighWatermark, LowWatermark: st.LowWatermark,
		TTL: st.BlobTTL.D(), MaxBlobSize: int64(st.MaxBlobSize), StallTimeout: cfg.Fill.StallTimeout.D(),
	}
	addOptionErrors(&p, s.store.Validate(), map[string]string{
		"MaxBytes": "storage.max_size", "HighWatermark": "storage.high_watermark", "LowWatermark": "storage.low_watermark",
		"TTL": "storage.blob_ttl", "MaxBlobSize": "storage.max_blob_size", "StallTimeout": "fill.stall_timeout",
	})

	if cfg.Redirect == nil && cfg.Mirror == nil && cfg.Forward == nil {
		p.Add("redirect", "configure at least one of redirect, mirror or forward_proxy (or a DTR downstream middleware)")
	}
	if r := cfg.Redirect; r != nil {
		checkUpstream(&p, "redirect", r.Upstream)
		if r.Keys.JWKSURL != "" {
			checkURL(&p, "redirect.keys.jwks_url", r.Keys.JWKSURL)
		}
		if hb := r.Heartbeat; hb != nil {
			if hb.Origin != "" {
				checkURL(&p, "redirect.heartbeat.origin", hb.Origin)
			}
			if hb.Node != "" {
				checkURL(&p, "redirect.heartbeat.node", hb.Node)
			}
			if hb.Interval.D() < 0 || (hb.Interval.D() > 0 && hb.Interval.D() < 100*time.Millisecond) {
				p.Add("redirect.heartbeat.interval", "must be at least 100ms, got %s", hb.Interval.D())
			}
			if cfg.Name == "" {
				p.Add("name", "required with redirect.heartbeat (the cache's name at the origin)")
			}
			if r.Username == "" {
				p.Add("redirect.username", "required with redirect.heartbeat (heartbeats come from the cache's own account)")
			}
		}
	}
	if m := cfg.Mirror; m != nil {
		checkMirror(&p, m)
	}
	s.fill, s.prefetch = checkFill(&p, cfg.Fill)
	s.prefetchWhileAwaited = checkPrefetchWhileAwaited(&p, cfg.Fill)
	s.prefetchHold = checkPrefetchHold(&p, cfg.Fill)
	if f := cfg.Forward; f != nil {
		s.rules = checkForward(&p, f)
	}
	if err := p.Err(); err != nil {
		return nil, err
	}
	return s, nil
}

func checkMirror(p *config.Problems, m *config.Mirror) {
	if len(m.Upstreams) == 0 {
		p.Add("mirror.upstreams", "at least one upstream is required")
	}
	names := map[string]bool{}
	for i, u := range m.Upstreams {
		key := fmt.Sprintf("mirror.upstreams[%d]", i)
		if !policy.ValidName(u.Name) {
			p.Add(key+".name", "invalid or missing name %q (%s)", u.Name, policy.NameSyntax)
		}
		if names[u.Name] {
			p.Add(key+".name", "duplicate name %q", u.Name)
		}
		names[u.Name] = true
		checkUpstream(p, key, u.Upstream)
	}
	if m.Default != "" && !names[m.Default] {
		p.Add("mirror.default", "no upstream named %q", m.Default)
	}
}

// checkFill checks the fill tuning and returns it with the cache's
// defaults for what the file leaves unset.
func checkFill(p *config.Problems, f config.Fill) (casstore.FillOptions, int) {
	fill := casstore.FillOptions{Parallel: f.Parallel, ChunkSize: int64(f.ChunkSize)}
	if fill.Parallel == 0 {
		fill.Parallel = cache.DefaultParallel
	}
	if fill.Parallel < 1 || fill.Parallel > maxParallel {
		p.Add("fill.parallel", "must be between 1 and %d, got %d", maxParallel, fill.Parallel)
	}
	if fill.ChunkSize != 0 && fill.ChunkSize < minChunkSize {
		p.Add("fill.chunk_size", "must be at least 64KiB, got %d bytes", fill.ChunkSize)
	}
	prefetch := cache.DefaultPrefetch
	if f.Prefetch != nil {
		prefetch = *f.Prefetch
	}
	if prefetch < 0 || prefetch > maxPrefetch {
		p.Add("fill.prefetch", "must be between 0 (off) and %d, got %d", maxPrefetch, prefetch)
	}
	return fill, prefetch
}

// checkPrefetchWhileAwaited checks fill.prefetch_while_awaited and returns
// it as cache.Server.PrefetchWhileAwaited takes it (-1 for none).
func checkPrefetchWhileAwaited(p *config.Problems, f config.Fill) int {
	if f.PrefetchWhileAwaited == nil {
		return cache.DefaultPrefetchWhileAwaited
	}
	n := *f.PrefetchWhileAwaited
	if n < 0 || n > maxPrefetch {
		p.Add("fill.prefetch_while_awaited", "must be between 0 and %d, got %d", maxPrefetch, n)
	}
	if n == 0 {
		return -1
	}
	return n
}

// checkPrefetchHold checks fill.prefetch_hold and returns it as
// cache.Server.PrefetchHold takes it.
func checkPrefetchHold(p *config.Problems, f config.Fill) cache.PrefetchHold {
	switch f.PrefetchHold {
	case "", "auto":
		return cache.PrefetchHoldAuto
	case "always":
		return cache.PrefetchHoldAlways
	}
	p.Add("fill.prefetch_hold", "must be auto or always, got %q", f.PrefetchHold)
	return cache.PrefetchHoldAuto
}

// checkForward checks the forward_proxy section and returns its rules,
// which forward.NewRules alone checks entry by entry.
func checkForward(p *config.Problems, f *config.ForwardProxy) *forward.Rules {
	const key = "forward_proxy"
	checkListen(p, key+".addr", f.Addr)
	if f.CADir == "" {
		p.Add(key+".ca_dir", "required (create the CA with `dtrcache ca init --dir DIR`)")
	}
	if len(f.Intercept) == 0 {
		p.Add(key+".intercept", "list the registry hosts to cache")
	}
	rules, err := forward.NewRules(forward.RulesConfig{
		Intercept: f.Intercept, Tunnel: f.Tunnel, Ports: f.Ports, Clients: f.Clients,
		AllowPrivate: f.AllowPriv, Hosts: f.Hosts,
	})
	p.AddEntries(key, err)
	if f.AuthTTL.D() > forward.MaxAuthTTL {
		p.Add(key+".auth_cache_ttl", "must be between 0 and %s, got %s", forward.MaxAuthTTL, f.AuthTTL.D())
	}
	if f.MaxLeafCerts < 0 {
		p.Add(key+".max_leaf_certs", "must be at least 1, got %d", f.MaxLeafCerts)
	}
	if f.IdleTimeout != 0 && f.IdleTimeout.D() < time.Second {
		p.Add(key+".idle_timeout", "must be at least 1s, got %s", f.IdleTimeout.D())
	}
	if m := f.BlobMirror; m != nil {
		if m.URL == "" {
			p.Add(key+".blob_mirror.url", "required: the office mirror's base URL, e.g. http://mirror.office.internal:5000")
		} else if _, err := forward.ParseBlobMirror(m.URL); err != nil {
			p.Add(key+".blob_mirror.url", "%v", err)
		}
	}
	if err != nil {
		return nil
	}
	return rules
}

// checkOrigin normalises cfg and checks every value, reporting every
// problem of the file at once, each naming its key (config.Problems).
func checkOrigin(cfg *config.Origin) error {
	var p config.Problems
	p.Join(cfg.Normalize())
	checkListen(&p, "http.addr", cfg.HTTP.Addr)
	checkServerTLS(&p, cfg.HTTP.TLS)
	checkLog(&p, cfg.Log)
	if cfg.Backend.URL == "" {
		p.Add("backend.url", "required")
	} else {
		checkURL(&p, "backend.url", cfg.Backend.URL)
	}
	if cfg.Backend.Password != "" && cfg.Backend.Username == "" {
		p.Add("backend.username", "required with a password")
	}
	for _, req := range []struct{ key, value, why string }{
		{"auth.htpasswd", cfg.Auth.Htpasswd, "an htpasswd file of bcrypt hashes"},
		{"policy", cfg.Policy, "the repository access rules file"},
		{"keys.dir", cfg.Keys.Dir, "create a key with `dtrcache keys generate --dir DIR`"},
	} {
		if req.value == "" {
			p.Add(req.key, "required (%s)", req.why)
		}
	}
	if ttl := cfg.Keys.TokenTTL.D(); ttl != 0 && (ttl < 10*time.Second || ttl > time.Hour) {
		p.Add("keys.token_ttl", "between 10s and 1h, got %s", ttl)
	}
	checkState(&p, cfg)
	checkPolicies(&p, cfg)
	checkConsole(&p, cfg.Console)
	checkEvents(&p, cfg.Events)
	return p.Err()
}

func checkUpstream(p *config.Problems, key string, u config.Upstream) {
	if len(u.URLs) == 0 {
		p.Add(key+".upstreams", "at least one upstream URL is required")
	}
	for i, raw := range u.URLs {
		checkURL(p, fmt.Sprintf("%s.upstreams[%d]", key, i), raw)
	}
	if u.Password != "" && u.Username == "" {
		p.Add(key+".username", "required with a password")
	}
}

// checkURL checks a registry URL with the upstream client's own rule.
func checkURL(p *config.Problems, key, raw string) {
	if _, err := upstream.ParseURL(raw); err != nil {
		p.Add(key, "%v", err)
	}
}

func checkListen(p *config.Problems, key, addr string) {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		p.Add(key, "invalid listen address %q (want host:port)", addr)
	}
}

func checkServerTLS(p *config.Problems, t config.TLS) {
	if (t.Certificate == "") != (t.Key == "") {
		p.Add("http.tls", "set both certificate and key")
	}
}

// checkLog checks the log level and format with newLogger's own lists.
func checkLog(p *config.Problems, l config.Log) {
	if !slices.Contains(logLevels, l.Level) {
		p.Add("log.level", "unknown level %q (debug, info, warn, error)", l.Level)
	}
	if l.Format != "" && !slices.Contains(logFormats, l.Format) { // "" after a bad log.formatter
		p.Add("log.format", "unknown format %q (json or console)", l.Format)
	}
}

// addOptionErrors records the *casstore.OptionError values joined in err
// under the configuration keys of their options.
func addOptionErrors(p *config.Problems, err error, keys map[string]string) {
	p.AddEach(err, func(e error) string {
		var oe *casstore.OptionError
		if errors.As(e, &oe) && keys[oe.Option] != "" {
			return keys[oe.Option] + ": " + oe.Reason
		}
		return "storage: " + e.Error()
	})
}
