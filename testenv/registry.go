package testenv

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/handlers"
	"github.com/sirupsen/logrus"

	// The storage drivers and the auth method the in-process registry uses.
	_ "github.com/distribution/distribution/v3/registry/auth/htpasswd"
	_ "github.com/distribution/distribution/v3/registry/auth/token"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
)

// RegistryOptions configure an in-process registry.
type RegistryOptions struct {
	// Addr to listen on; "" means 127.0.0.1:0.
	Addr string
	// Dir stores the registry's data on disk; "" keeps it in memory.
	Dir string
	// Htpasswd, if set, is the path of an htpasswd (bcrypt) file: the
	// registry then requires Basic auth.
	Htpasswd string
	// Token, if set, puts Bearer-token auth in front of the registry: it
	// accepts the tokens this token server signs (Htpasswd is ignored).
	Token *TokenServer
	// TLS, if set, serves HTTPS.
	TLS *tls.Config
	// Wrap, if set, wraps the registry handler (after the Counter), e.g.
	// to inject a fault.
	Wrap func(http.Handler) http.Handler
	// Notify, if set, sends the registry's notifications (distribution's
	// notifications.endpoints) to an origin's receiver.
	Notify *NotifyOptions
}

// NotifyOptions point a registry's notifications at a receiver.
type NotifyOptions struct {
	// URL receives the envelopes; Secret is sent as a Bearer token.
	URL, Secret string
}

// Registry is a distribution v3 registry running in this process: the
// same code as the registry server users run, with in-memory or
// filesystem storage.
type Registry struct {
	// URL is the base URL (http://127.0.0.1:port or https://…).
	URL string
	// Host is host:port, for image references.
	Host string
	// Counter counts requests at the registry.
	Counter *Counter

	srv *http.Server
	ln  net.Listener

	// mu guards fresh.
	mu    sync.Mutex
	fresh map[net.Conn]bool // connections that have not sent a request yet
}

// track remembers connections that have not sent a request: Close ends
// them at once (http.Server.Shutdown would wait 5 s for each, and clients
// that race dials leave such connections in their pools).
func (r *Registry) track(c net.Conn, s http.ConnState) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s == http.StateNew {
		r.fresh[c] = true
	} else {
		delete(r.fresh, c)
	}
}

// StartRegistry starts a registry; Close stops it.
func StartRegistry(ctx context.Context, opt RegistryOptions) (*Registry, error) {
	// distribution logs through logrus' global logger; keep it to warnings.
	logrus.SetLevel(logrus.WarnLevel)
	logrus.SetOutput(io.Discard)
	cfg := &configuration.Configuration{}
	cfg.Log.AccessLog.Disabled = true
	cfg.Log.Level = "error"
	if opt.Dir != "" {
		cfg.Storage = configuration.Storage{"filesystem": configuration.Parameters{"rootdirectory": opt.Dir}}
	} else {
		cfg.Storage = configuration.Storage{"inmemory": configuration.Parameters{}}
	}
	cfg.Storage["delete"] = configuration.Parameters{"enabled": true}
	cfg.Storage["maintenance"] = configuration.Parameters{"uploadpurging": map[any]any{"enabled": false}}
	cfg.Catalog.MaxEntries = 1000 // the server's default from a config file; zero lists nothing
	if opt.Htpasswd != "" {
		cfg.Auth = configuration.Auth{"htpasswd": configuration.Parameters{"realm": "dtrcache-test", "path": opt.Htpasswd}}
	}
	if opt.Token != nil {
		cfg.Auth = configuration.Auth{"token": configuration.Parameters{
			"realm": opt.Token.Realm, "service": opt.Token.Service, "issuer": opt.Token.Issuer, "jwks": opt.Token.JWKS,
		}}
	}
	if n := opt.Notify; n != nil {
		cfg.Notifications.Endpoints = []configuration.Endpoint{{
			Name: "origin", URL: n.URL, Headers: http.Header{"Authorization": {"Bearer " + n.Secret}},
			Timeout: 5 * time.Second, Threshold: 3, Backoff: 200 * time.Millisecond,
		}}
	}
	cfg.HTTP.Secret = "dtrcache-test-secret"
	app := handlers.NewApp(ctx, cfg)
	counter := NewCounter(app)
	var h http.Handler = counter
	if opt.Wrap != nil {
		h = opt.Wrap(counter)
	}
	addr := opt.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("testenv: registry listen: %w", err)
	}
	scheme := "http"
	if opt.TLS != nil {
		ln = tls.NewListener(ln, opt.TLS)
		scheme = "https"
	}
	r := &Registry{
		URL:     scheme + "://" + ln.Addr().String(),
		Host:    ln.Addr().String(),
		Counter: counter,
		ln:      ln,
		fresh:   map[net.Conn]bool{},
	}
	r.srv = &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ConnState: r.track}
	go func() {
		if err := r.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logrus.Errorf("testenv registry: %v", err)
		}
	}()
	return r, nil
}

// Close stops the registry.
func (r *Registry) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r.mu.Lock()
	for c := range r.fresh {
		c.Close()
	}
	r.mu.Unlock()
	if err := r.srv.Shutdown(ctx); err != nil {
		return r.srv.Close()
	}
	return nil
}
