package origin

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the origin's own metrics.
type Metrics struct {
	redirects *prometheus.CounterVec
	nodes     *prometheus.CounterVec
	direct    *prometheus.CounterVec
	authz     *prometheus.CounterVec
	hints     *prometheus.CounterVec
}

// NewMetrics registers the origin metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		redirects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dtrcache_origin_redirects_total", Help: "Blob GETs redirected to a cache, by cache.",
		}, []string{"cache"}),
		nodes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dtrcache_origin_node_redirects_total", Help: "Blob GETs redirected to the nodes of cache fleets, by cache and node URL (caches with several hosts only).",
		}, []string{"cache", "node"}),
		direct: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dtrcache_origin_direct_blobs_total",
			Help: "Blob GETs the origin served itself, by reason (no_cache, cache_unhealthy, cache_request, token).",
		}, []string{"reason"}),
		authz: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dtrcache_origin_authz_total", Help: "Authorization decisions by action and result (allowed, denied, unauthenticated).",
		}, []string{"action", "result"}),
	}
	m.hints = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "dtrcache_origin_prefetch_hints_total", Help: "Blobs hinted to caches for prefetching, by cache.",
	}, []string{"cache"})
	reg.MustRegister(m.redirects, m.nodes, m.direct, m.authz, m.hints)
	return m
}

// redirect counts a redirect to cache; node is the fleet node it went to
// ("" for a single node).
func (m *Metrics) redirect(cache, node string) {
	if m != nil {
		m.redirects.WithLabelValues(cache).Inc()
		if node != "" {
			m.nodes.WithLabelValues(cache, node).Inc()
		}
	}
}

func (m *Metrics) directBlob(reason string) {
	if m != nil {
		m.direct.WithLabelValues(reason).Inc()
	}
}

func (m *Metrics) decision(action, result string) {
	if m != nil {
		m.authz.WithLabelValues(action, result).Inc()
	}
}

func (m *Metrics) hinted(cache string, n int) {
	if m != nil {
		m.hints.WithLabelValues(cache).Add(float64(n))
	}
}
