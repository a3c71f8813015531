package serve

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
)

// Mux routes GET /healthz, /readyz and /metrics, and everything else to
// api. (No http.ServeMux: it would redirect unclean paths such as
// "/v2/../x" instead of letting the API refuse them.) ready reports
// whether the server can serve (nil: ready). gatherer may be nil.
func Mux(api http.Handler, ready func(context.Context) error, gatherer prometheus.Gatherer) http.Handler {
	var metrics http.Handler
	if gatherer != nil {
		metrics = promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{})
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			switch r.URL.Path {
			case "/healthz":
				FieldsFrom(r.Context()).Route = "healthz"
				writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
				return
			case "/readyz":
				FieldsFrom(r.Context()).Route = "readyz"
				if ready != nil {
					ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
					defer cancel()
					if err := ready(ctx); err != nil {
						writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready", "reason": err.Error()})
						return
					}
				}
				writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
				return
			case "/metrics":
				if metrics != nil {
					FieldsFrom(r.Context()).Route = "metrics"
					metrics.ServeHTTP(w, r)
					return
				}
			}
		}
		api.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// Server is an HTTP(S) server with graceful shutdown.
type Server struct {
	// Handler serves requests.
	Handler http.Handler
	// TLS, when set, serves HTTPS.
	TLS *tls.Config
	// Grace is how long shutdown waits for requests in flight (running
	// downloads) before closing connections. 0 means 30s.
	Grace time.Duration
	// Logger receives server errors. nil means none.
	Logger *zap.Logger
	// Name labels log lines ("cache", "origin", "proxy").
	Name string
}

// Serve serves on ln until ctx is cancelled, then stops accepting and waits
// up to Grace for requests in flight. It returns nil after a clean shutdown.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	log := s.Logger
	if log == nil {
		log = zap.NewNop()
	}
	grace := s.Grace
	if grace <= 0 {
		grace = 30 * time.Second
	}
	hs := &http.Server{
		Handler:           s.Handler,
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          zap.NewStdLog(log.Named("http")),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	if s.TLS != nil {
		hs.TLSConfig = s.TLS.Clone()
		ln = tls.NewListener(ln, hs.TLSConfig)
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	log.Info("serving", zap.String("server", s.Name), zap.String("addr", ln.Addr().String()), zap.Bool("tls", s.TLS != nil))
	select {
	case err := <-errc:
		return fmt.Errorf("serve %s: %w", s.Name, err)
	case <-ctx.Done():
	}
	log.Info("shutting down; waiting for requests in flight", zap.String("server", s.Name), zap.Duration("grace", grace))
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		hs.Close()
		log.Warn("grace period over; closed remaining connections", zap.String("server", s.Name), zap.Error(err))
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
