package main

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dtrcache/dtrcache/casstore"
	"github.com/dtrcache/dtrcache/cmd/dtrcache/config"
	"github.com/dtrcache/dtrcache/proxy/cache"
	"github.com/dtrcache/dtrcache/proxy/upstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"golang.org/x/sync/singleflight"
)

// storeHang is how long a store check may run before /readyz says the
// store hangs: a slow fsync on a busy disk is not yet a dead disk.
const storeHang = 2 * time.Second

// storeReuse is how long a store check that passed answers for the
// store: the origins probe /readyz every second each (more often with a
// short caches.health_interval), and a canary written and fsynced per
// probe cost the cache ~5 % of its CPU in a warm pull.
const storeReuse = time.Second

// storeReadiness checks a store for /readyz (and the heartbeats): the
// store's own canary (casstore.Store.Check), answered at once; a check
// still running is fine until it has run for storeHang. A check that
// passed answers for storeReuse; one that failed answers for nobody, so a
// disk that fails is reported within storeReuse, and one that recovers at
// the next probe. Concurrent probes share one check.
type storeReadiness struct {
	check func(context.Context) error // the canary (casstore.Store.Check)
	now   func() time.Time
	runs  singleflight.Group

	// mu guards passed.
	mu     sync.Mutex
	passed time.Time // when the last check that passed started
}

func newStoreReadiness(s *casstore.Store) *storeReadiness {
	return &storeReadiness{check: s.Check, now: time.Now}
}

// fresh reports whether a check that passed started less than storeReuse
// before now.
func (r *storeReadiness) fresh(now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	d := now.Sub(r.passed)
	return !r.passed.IsZero() && d >= 0 && d < storeReuse
}

// ready says whether the store is ready.
func (r *storeReadiness) ready(ctx context.Context) error {
	if r.fresh(r.now()) {
		return nil
	}
	v, _, _ := r.runs.Do("check", func() (any, error) {
		now := r.now()
		if r.fresh(now) { // a check that passed ended since the look above
			return nil, nil
		}
		ctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		err := r.check(ctx)
		if err == nil {
			r.mu.Lock()
			if now.After(r.passed) {
				r.passed = now
			}
			r.mu.Unlock()
			return nil, nil
		}
		var hang *casstore.HangError
		if errors.As(err, &hang) && hang.For < storeHang {
			return nil, nil // not yet a hang, and no pass either
		}
		return err, nil
	})
	if err, ok := v.(error); ok {
		return err
	}
	return nil
}

// drainLinger is how long a draining cache still waits once an origin
// saw it not ready: clients redirected just before arrive meanwhile.
const drainLinger = 500 * time.Millisecond

// drainState is a stopping cache's readiness: not ready from the stop
// on, with a signal once the origins have seen that.
type drainState struct {
	// mu guards draining and seen.
	mu       sync.Mutex
	draining bool
	seen     chan struct{} // closed when a /readyz answered 503 while draining
	begun    chan struct{} // closed when draining starts
	// watches counts the watches of /readyz held now (one per origin
	// replica probing this cache): dtrcache_readyz_watches.
	watches atomic.Int64
}

// watchesCollector exports drainState.watches.
func (d *drainState) watchesCollector() prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "dtrcache_readyz_watches",
		Help: "Watches of /readyz held now: origin replicas waiting to hear at once that this cache stops.",
	}, func() float64 { return float64(d.watches.Load()) })
}

func newDrain() *drainState {
	return &drainState{seen: make(chan struct{}), begun: make(chan struct{})}
}

// maxWatch bounds how long a watch of /readyz is held.
const maxWatch = 30 * time.Second

// watchReady serves watches of the cache's readiness in front of h:
// GET /readyz?wait=<duration> (at most maxWatch) from an origin's prober
// is held until the cache starts draining or the wait ends, then answered
// by h like any /readyz. The held connection is the origin's news of a
// crash too: the kernel closes it when the process dies.
func (d *drainState) watchReady(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/readyz" && r.Method == http.MethodGet && r.URL.Query().Has("wait") {
			if wait, err := time.ParseDuration(r.URL.Query().Get("wait")); err == nil && wait > 0 {
				t := time.NewTimer(min(wait, maxWatch))
				d.watches.Add(1)
				select {
				case <-d.begun:
				case <-t.C:
				case <-r.Context().Done():
				}
				d.watches.Add(-1)
				t.Stop()
			}
		}
		h.ServeHTTP(w, r)
	})
}

var errDraining = errors.New("draining: the cache is stopping")

// notReady returns errDraining while draining (and notes that a prober
// saw it), nil before.
func (d *drainState) notReady() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.draining {
		return nil
	}
	select {
	case <-d.seen:
	default:
		close(d.seen)
	}
	return errDraining
}

// begin marks the cache draining: /readyz says so, held watches are
// answered.
func (d *drainState) begin() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.draining {
		d.draining = true
		close(d.begun)
	}
}

// run drains a stopping cache: it reports not ready at once (/readyz 503,
// a not-ready heartbeat sent now), keeps serving, and returns once the
// origins have seen it — a probe answered or the heartbeat acknowledged,
// then drainLinger for the clients they redirected just before — or
// after shutdown_drain at most (a cache nobody probes).
func (d *drainState) run(cfg *cacheSetup, hb *cache.Heartbeat, log *zap.Logger) {
	d.begin()
	wait := cfg.Drain.D()
	if wait <= 0 {
		wait = config.DefaultDrain
	}
	var acked <-chan struct{}
	if hb != nil {
		hb.Notify()
		acked = hb.NotReadyAcked()
	}
	log.Info("draining: /readyz says not ready; serving until the origins stop redirecting here", zap.Duration("at_most", wait))
	start := time.Now()
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-d.seen:
	case <-acked:
	case <-t.C:
		log.Info("drain: no origin asked within shutdown_drain; stopping")
		return
	}
	time.Sleep(drainLinger)
	log.Info("drained: the origins saw the cache not ready", zap.Duration("after", time.Since(start)))
}

// newHeartbeat builds the heartbeats of redirect.heartbeat.
func newHeartbeat(cfg *cacheSetup, srv *cache.Server, ready func(context.Context) error, log *zap.Logger) (*cache.Heartbeat, error) {
	r := cfg.Redirect
	hb := r.Heartbeat
	tc, err := tlsConfig(r.CAs)
	if err != nil {
		return nil, err
	}
	origin := hb.Origin
	if origin == "" {
		origin = r.URLs[0]
	}
	node := hb.Node
	if node == "" {
		node = cfg.HTTP.Host
	}
	interval := hb.Interval.D()
	if interval <= 0 {
		interval = config.DefaultHeartbeatInterval
	}
	st := srv.Redirect.Store
	return &cache.Heartbeat{
		URL: origin, Cache: cfg.Name, Node: node, Username: r.Username, Password: r.Password,
		Client: &http.Client{Transport: upstream.NewTransport(tc)}, Interval: interval, Ready: ready,
		Stats: func() (int64, int64, int64) {
			s := st.Stats()
			return s.Bytes, st.Budget().Max, s.Blobs
		},
		Version: version, Server: srv, Logger: log.Named("heartbeat"),
	}, nil
}
