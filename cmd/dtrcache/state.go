package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/dtrcache/dtrcache/cmd/dtrcache/config"
	"github.com/dtrcache/dtrcache/proxy/state"
	"github.com/dtrcache/dtrcache/proxy/state/badgerstate"
	"github.com/dtrcache/dtrcache/proxy/state/etcdstate"
	"go.uber.org/zap"
)

// Bounds of state.etcd.dial_timeout.
const (
	minDialTimeout = 100 * time.Millisecond
	maxDialTimeout = 5 * time.Minute
)

// readyTimeout bounds the state store's answer to /readyz.
const readyTimeout = 2 * time.Second

// checkState checks the origin's state section: with etcd its endpoints,
// credentials, TLS files and prefix; without it, data_dir holds Badger.
func checkState(p *config.Problems, cfg *config.Origin) {
	e := cfg.State.Etcd
	if e == nil {
		if cfg.DataDir == "" {
			p.Add("data_dir", "required (where caches, user settings and jobs are stored), or a state.etcd section")
		}
		return
	}
	const key = "state.etcd"
	if len(e.Endpoints) == 0 {
		p.Add(key+".endpoints", "at least one endpoint is required (http(s)://host:2379)")
	}
	tlsSet := e.TLS.CA != "" || e.TLS.Certificate != "" || e.TLS.Key != ""
	for i, ep := range e.Endpoints {
		k := fmt.Sprintf("%s.endpoints[%d]", key, i)
		if err := checkEndpoint(ep); err != nil {
			p.Add(k, "%v", err)
		} else if tlsSet && strings.HasPrefix(ep, "http://") {
			p.Add(k, "%q is plain http but state.etcd.tls is set: use https://", ep)
		}
	}
	if (e.TLS.Certificate == "") != (e.TLS.Key == "") {
		p.Add(key+".tls", "set both certificate and key")
	} else if _, err := etcdTLS(e); err != nil {
		p.Add(key+".tls", "%v", err)
	}
	if e.Password != "" && e.Username == "" {
		p.Add(key+".username", "required with a password")
	}
	if e.Username != "" && e.Password == "" {
		p.Add(key+".password", "required with a username (or password_file)")
	}
	if e.Prefix != "" && !strings.HasSuffix(e.Prefix, "/") {
		p.Add(key+".prefix", "must end with / (got %q), so no other prefix starts with it", e.Prefix)
	}
	if d := e.DialTimeout.D(); d != 0 && (d < minDialTimeout || d > maxDialTimeout) {
		p.Add(key+".dial_timeout", "between %s and %s, got %s", minDialTimeout, maxDialTimeout, d)
	}
}

// checkEndpoint checks an etcd client URL: http or https, a host and a
// port, nothing else.
func checkEndpoint(ep string) error {
	u, err := url.Parse(ep)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return fmt.Errorf("invalid endpoint %q (want http(s)://host:port)", ep)
	}
	if u.Port() == "" {
		return fmt.Errorf("endpoint %q has no port (etcd's client port is usually 2379)", ep)
	}
	return nil
}

// etcdTLS builds the client TLS configuration: nil for plain http
// endpoints without TLS files.
func etcdTLS(e *config.Etcd) (*tls.Config, error) {
	https := false
	for _, ep := range e.Endpoints {
		https = https || strings.HasPrefix(ep, "https://")
	}
	if !https && e.TLS == (config.EtcdTLS{}) {
		return nil, nil
	}
	return etcdstate.ClientTLS(e.TLS.CA, e.TLS.Certificate, e.TLS.Key)
}

// openState opens the origin's state store: etcd when the configuration
// has a state.etcd section, else Badger in data_dir/db.
func openState(ctx context.Context, cfg *config.Origin, log *zap.Logger) (state.Store, error) {
	e := cfg.State.Etcd
	if e == nil {
		if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
			return nil, fmt.Errorf("data_dir: %w", err)
		}
		s, err := badgerstate.Open(filepath.Join(cfg.DataDir, "db"))
		if err != nil {
			return nil, fmt.Errorf("data_dir: %w", err)
		}
		return s, nil
	}
	s, err := openEtcd(ctx, e, log)
	if err != nil {
		return nil, fmt.Errorf("state.etcd: %w", err)
	}
	log.Info("state in etcd", zap.Strings("endpoints", e.Endpoints), zap.String("prefix", s.Prefix()))
	return s, nil
}

// openEtcd connects to the cluster e describes.
func openEtcd(ctx context.Context, e *config.Etcd, log *zap.Logger) (*etcdstate.Store, error) {
	tlsCfg, err := etcdTLS(e)
	if err != nil {
		return nil, err
	}
	return etcdstate.Open(ctx, etcdstate.Config{
		Endpoints: e.Endpoints, TLS: tlsCfg, Username: e.Username, Password: e.Password,
		Prefix: e.Prefix, DialTimeout: e.DialTimeout.D(), Logger: log.Named("etcd"),
	})
}
