package origin

import (
	"context"
	"net/http"
	"sync"
	"time"

	"go.uber.org/zap"
)

// Prober tracks which registered caches answer at /healthz.
type Prober struct {
	// Client makes the probes (its transport trusts the caches' CAs).
	Client *http.Client
	// Interval between probe rounds; 0 means 10s.
	Interval time.Duration
	// Timeout of one probe; 0 means 2s.
	Timeout time.Duration
	// List returns the caches to probe.
	List func() ([]Cache, error)
	// Logger receives health changes.
	Logger *zap.Logger
	// OnChange, if set, is called after a probe whose verdict differs from
	// the cache's previous one, and after a cache's first probe (this
	// process knows no previous verdict), from the probing goroutine.
	OnChange func(ctx context.Context, c Cache, h CacheHealth)

	// mu guards state.
	mu    sync.Mutex
	state map[string]health
}

type health struct {
	ok      bool
	checked time.Time
	err     string
	rtt     time.Duration
}

// CacheHealth is the last probe of a cache.
type CacheHealth struct {
	// Healthy: the cache answered 200 at /healthz.
	Healthy bool
	// Checked is when the probe was made (zero: never probed).
	Checked time.Time
	// Reason says why an unhealthy cache is so.
	Reason string
	// RTT is how long the cache took to answer the probe (the origin's
	// distance to it, a hint for users choosing a cache); 0 when it did
	// not answer.
	RTT time.Duration
}

// Health returns the last probe of a cache, and whether it was probed.
func (p *Prober) Health(name string) (CacheHealth, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	h, ok := p.state[name]
	return CacheHealth{Healthy: h.ok, Checked: h.checked, Reason: h.err, RTT: h.rtt}, ok
}

// Healthy reports whether the cache answered its last probe.
func (p *Prober) Healthy(name string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state[name].ok
}

// Status returns the last probe result of a cache.
func (p *Prober) Status(name string) (ok bool, checked time.Time, reason string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	h := p.state[name]
	return h.ok, h.checked, h.err
}

// Probe checks one cache now and records the result.
func (p *Prober) Probe(ctx context.Context, c Cache) bool {
	timeout := p.Timeout
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	h := health{checked: time.Now()}
	base := c.Host
	if c.ProbeHost != "" {
		base = c.ProbeHost
	}
	req, err := http.NewRequestWithContext(pctx, http.MethodGet, base+"/healthz", nil)
	if err == nil {
		var resp *http.Response
		start := time.Now()
		if resp, err = p.Client.Do(req); err == nil {
			h.rtt = time.Since(start)
			resp.Body.Close()
			h.ok = resp.StatusCode == http.StatusOK
			if !h.ok {
				h.err = resp.Status
			}
		}
	}
	if err != nil {
		h.err = err.Error()
	}
	p.mu.Lock()
	if p.state == nil {
		p.state = map[string]health{}
	}
	prev, seen := p.state[c.Name]
	p.state[c.Name] = h
	p.mu.Unlock()
	if changed := !seen || prev.ok != h.ok; changed && p.OnChange != nil {
		defer p.OnChange(ctx, c, CacheHealth{Healthy: h.ok, Checked: h.checked, Reason: h.err, RTT: h.rtt})
	}
	if p.Logger != nil && (!seen || prev.ok != h.ok) {
		if h.ok {
			p.Logger.Info("cache healthy", zap.String("cache", c.Name), zap.String("host", c.Host))
		} else {
			p.Logger.Warn("cache unhealthy; its users pull from the origin", zap.String("cache", c.Name), zap.String("host", c.Host), zap.String("reason", h.err))
		}
	}
	return h.ok
}

// Forget drops a removed cache's state.
func (p *Prober) Forget(name string) {
	p.mu.Lock()
	delete(p.state, name)
	p.mu.Unlock()
}

// Run probes every cache each Interval until ctx ends.
func (p *Prober) Run(ctx context.Context) {
	interval := p.Interval
	if interval <= 0 {
		interval = 10 * time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		caches, err := p.List()
		if err == nil {
			var wg sync.WaitGroup
			for _, c := range caches {
				wg.Add(1)
				go func() {
					defer wg.Done()
					p.Probe(ctx, c)
				}()
			}
			wg.Wait()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
