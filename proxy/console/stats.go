package console

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/dtrcache/dtrcache/proxy/origin"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.uber.org/zap"
)

// sample is one look at a cache: its health as the origin's prober saw
// it, and the metrics it exported (counters as read: rates are the
// differences of neighbours).
type sample struct {
	At      time.Time
	Healthy bool
	RTT     time.Duration
	// Scraped says the metrics were read; Err why not.
	Scraped bool
	Err     string

	// Blob requests (dtrcache_blob_requests_total) by result.
	Hits, Misses, Joins float64
	// Body bytes sent to clients from complete blobs and from fills in
	// progress (dtrcache_blob_bytes_served_total by source), and bytes
	// read from the upstreams (dtrcache_upstream_bytes_total, or the
	// store's dtrcache_store_bytes_filled_total where there is none).
	ServedStore, ServedFill, Upstream float64
	// Evictions counts blobs evicted by the budget or the TTL.
	Evictions float64
	// StoreBytes and StoreBlobs are what the store holds; StoreMax its
	// budget (0: unlimited).
	StoreBytes, StoreBlobs, StoreMax float64
}

// HitRatio returns the hits among the blob requests with a body, over
// the whole life of the cache's counters (-1 without requests).
func (s sample) HitRatio() float64 {
	if n := s.Hits + s.Misses + s.Joins; n > 0 {
		return s.Hits / n
	}
	return -1
}

// sampler reads each registered cache's /metrics every interval into a
// ring per cache that covers the history. Safe for concurrent use.
type sampler struct {
	db      *origin.DB
	prober  *origin.Prober
	every   time.Duration
	keep    int
	now     func() time.Time
	log     *zap.Logger
	pokes   chan struct{}
	timeout time.Duration

	// mu guards rings.
	mu    sync.Mutex
	rings map[string][]sample
}

// maxSamples bounds a ring whatever the interval.
const maxSamples = 2880

func newSampler(db *origin.DB, p *origin.Prober, every, history time.Duration, now func() time.Time, log *zap.Logger) *sampler {
	keep := min(int(history/every)+1, maxSamples)
	return &sampler{db: db, prober: p, every: every, keep: keep, now: now, log: log, pokes: make(chan struct{}, 1),
		timeout: min(every, 5*time.Second), rings: map[string][]sample{}}
}

// poke asks for a round now (a cache was registered).
func (s *sampler) poke() {
	select {
	case s.pokes <- struct{}{}:
	default:
	}
}

// discoverEvery is how soon a cache registered through the API (not the
// console, which pokes) gets its first sample.
const discoverEvery = 5 * time.Second

// run samples every cache every interval until ctx ends; a cache without
// samples is sampled within discoverEvery.
func (s *sampler) run(ctx context.Context) {
	t := time.NewTicker(min(s.every, discoverEvery))
	defer t.Stop()
	for {
		s.round(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.pokes:
		}
	}
}

// due reports whether a cache's last sample is an interval old (or it
// has none).
func (s *sampler) due(name string, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	ring := s.rings[name]
	// A little slack, so that a tick a hair early still samples.
	return len(ring) == 0 || now.Sub(ring[len(ring)-1].At) >= s.every-s.every/20
}

// sampleWorkers bounds the caches read at once.
const sampleWorkers = 8

// round samples every registered cache once.
func (s *sampler) round(ctx context.Context) {
	caches, err := s.db.Caches()
	if err != nil {
		return
	}
	sem := make(chan struct{}, sampleWorkers)
	var wg sync.WaitGroup
	now := s.now()
	for _, c := range caches {
		if !s.due(c.Name, now) {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			smp := s.scrape(ctx, c)
			s.add(c.Name, smp)
		}()
	}
	wg.Wait()
}

func (s *sampler) add(name string, smp sample) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ring := append(s.rings[name], smp)
	if len(ring) > s.keep {
		ring = append(ring[:0:0], ring[len(ring)-s.keep:]...)
	}
	s.rings[name] = ring
}

// forget drops a removed cache's samples.
func (s *sampler) forget(name string) {
	s.mu.Lock()
	delete(s.rings, name)
	s.mu.Unlock()
}

// history returns a copy of a cache's samples, oldest first.
func (s *sampler) history(name string) []sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sample(nil), s.rings[name]...)
}

// maxMetricsBody bounds a cache's /metrics answer.
const maxMetricsBody = 8 << 20

// scrape samples one cache.
func (s *sampler) scrape(ctx context.Context, c origin.Cache) sample {
	smp := sample{At: s.now().UTC()}
	if h, ok := s.prober.Health(c.Name); ok {
		smp.Healthy, smp.RTT = h.Healthy, h.RTT
	}
	base := c.Host
	if c.ProbeHost != "" {
		base = c.ProbeHost
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		smp.Err = err.Error()
		return smp
	}
	req.Header.Set("Accept", "text/plain; version=0.0.4")
	resp, err := s.prober.Client.Do(req)
	if err != nil {
		smp.Err = err.Error()
		return smp
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		smp.Err = "metrics: " + resp.Status
		return smp
	}
	if err := parseMetrics(io.LimitReader(resp.Body, maxMetricsBody), &smp); err != nil {
		smp.Err = err.Error()
		s.log.Debug("reading a cache's metrics", zap.String("cache", c.Name), zap.Error(err))
		return smp
	}
	smp.Scraped = true
	return smp
}

// parseMetrics reads the cache metrics of a Prometheus text exposition
// into smp.
func parseMetrics(r io.Reader, smp *sample) error {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	sum := func(name string, match func(labels map[string]string) bool) (float64, bool) {
		f, ok := fams[name]
		if !ok {
			return 0, false
		}
		total := 0.0
		for _, m := range f.GetMetric() {
			if match != nil && !match(labelMap(m)) {
				continue
			}
			total += value(m)
		}
		return total, true
	}
	label := func(k, v string) func(map[string]string) bool {
		return func(l map[string]string) bool { return l[k] == v }
	}
	smp.Hits, _ = sum("dtrcache_blob_requests_total", label("result", "hit"))
	smp.Misses, _ = sum("dtrcache_blob_requests_total", label("result", "miss"))
	smp.Joins, _ = sum("dtrcache_blob_requests_total", label("result", "joined"))
	smp.ServedStore, _ = sum("dtrcache_blob_bytes_served_total", label("source", "store"))
	smp.ServedFill, _ = sum("dtrcache_blob_bytes_served_total", label("source", "fill"))
	var ok bool
	if smp.Upstream, ok = sum("dtrcache_upstream_bytes_total", nil); !ok {
		smp.Upstream, _ = sum("dtrcache_store_bytes_filled_total", nil)
	}
	ev, _ := sum("dtrcache_store_evictions_total", nil)
	exp, _ := sum("dtrcache_store_expirations_total", nil)
	smp.Evictions = ev + exp
	smp.StoreBytes, _ = sum("dtrcache_store_bytes", nil)
	smp.StoreBlobs, _ = sum("dtrcache_store_blobs", nil)
	smp.StoreMax, _ = sum("dtrcache_store_max_bytes", nil)
	return nil
}

func labelMap(m *dto.Metric) map[string]string {
	out := make(map[string]string, len(m.GetLabel()))
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	case m.Untyped != nil:
		return m.GetUntyped().GetValue()
	}
	return 0
}
