package main

import (
	"context"
	"fmt"
	"net"
	"path/filepath"

	"github.com/dtrcache/dtrcache/cmd/dtrcache/config"
	"github.com/dtrcache/dtrcache/proxy/cache"
	"github.com/dtrcache/dtrcache/proxy/forward"
	"github.com/dtrcache/dtrcache/proxy/forward/ca"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// serveForward serves the forward proxy (forward_proxy) on ln until ctx
// ends. The proxy has a store of its own under <storage.root>/proxy,
// never the redirect or the mirror store.
func serveForward(ctx context.Context, cfg *cacheSetup, srv *cache.Server, log *zap.Logger, reg *prometheus.Registry, ln net.Listener) error {
	f := cfg.Forward
	authority, err := ca.Load(f.CADir)
	if err != nil {
		return fmt.Errorf("forward_proxy.ca_dir: %w", err)
	}
	// Checked with the configuration already (config.CheckFiles); again
	// here for a setup that did not come from a file.
	if err := config.CheckFiles([]config.File{{Key: "forward_proxy.ca_dir", Path: filepath.Join(f.CADir, ca.KeyFile), Private: config.Signing}}); err != nil {
		return err
	}
	tlsConf, err := tlsConfig(f.CAs)
	if err != nil {
		return fmt.Errorf("forward_proxy.cas: %w", err)
	}
	// The proxy keeps its own store: sharing the redirect store would let
	// a proxied pull that the origin redirects to this very cache join its
	// own fill and wait on itself.
	store, err := openModeStore(cfg, "proxy", log)
	if err != nil {
		return fmt.Errorf("forward_proxy store: %w", err)
	}
	defer func() {
		if err := store.Close(); err != nil {
			log.Error("closing store", zap.String("store", "proxy"), zap.Error(err))
		}
	}()
	reg.MustRegister(cache.NewStoreCollector(store, "proxy"))
	opts := forward.Options{
		Rules: cfg.rules, Leaves: &ca.Leaves{CA: authority, Max: f.MaxLeafCerts}, Store: store, Fill: srv.Fill,
		TLS: tlsConf, AuthTTL: f.AuthTTL.D(), NoManifestVouching: f.ManifestVouching != nil && !*f.ManifestVouching, IdleTimeout: f.IdleTimeout.D(), Grace: cfg.Shutdown.D(),
		Logger: log.Named("forward"), Metrics: forward.NewMetrics(reg),
	}
	if m := f.BlobMirror; m != nil {
		if opts.BlobMirror, err = forward.ParseBlobMirror(m.URL); err != nil {
			return fmt.Errorf("forward_proxy.blob_mirror.url: %w", err)
		}
		if opts.MirrorTLS, err = tlsConfig(m.CAs); err != nil {
			return fmt.Errorf("forward_proxy.blob_mirror.cas: %w", err)
		}
		log.Info("forward proxy fills blobs from the office mirror", zap.String("mirror", opts.BlobMirror.String()))
	}
	p, err := forward.New(opts)
	if err != nil {
		return fmt.Errorf("forward_proxy: %w", err)
	}
	log.Info("forward proxy", zap.Strings("intercept", f.Intercept), zap.Strings("tunnel", f.Tunnel), zap.Ints("ports", f.Ports),
		zap.String("ca", authority.Certificate().Subject.CommonName))
	return p.Serve(ctx, ln)
}
