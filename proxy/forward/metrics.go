package forward

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the forward proxy's Prometheus metrics. A nil *Metrics
// records nothing.
type Metrics struct {
	requests *prometheus.CounterVec
	connects *prometheus.CounterVec
	auth     *prometheus.CounterVec
	bytes    *prometheus.CounterVec
	fetches  *prometheus.CounterVec
	vouches  prometheus.Counter
	leaves   prometheus.Counter
}

// NewMetrics registers the forward proxy metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dtrcache_forward_requests_total",
			Help: "Requests through the forward proxy (plain HTTP and inside intercepted connections) by result: hit, miss, joined, not_modified (blobs from the store), forward (to the registry unchanged), denied, error; health for the proxy's own /healthz.",
		}, []string{"result"}),
		connects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dtrcache_forward_connects_total",
			Help: "CONNECT requests by action: mitm, tunnel, denied, error.",
		}, []string{"action"}),
		auth: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dtrcache_forward_auth_checks_total",
			Help: "Authorization checks before a blob is served from the store, by result: cached (a HEAD's positive answer remembered), vouched (listed by a manifest the registry served to the same credential from the same repository), allowed, denied (by the registry; the request is forwarded), error.",
		}, []string{"result"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dtrcache_forward_bytes_total",
			Help: "Response body bytes sent to clients by source: store (complete blob), fill (a fill in progress), forward (relayed from the registry); tunnel counts both directions of tunnels.",
		}, []string{"source"}),
		fetches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dtrcache_forward_fill_fetches_total",
			Help: "Fetches of blob fills with a blob mirror configured, by upstream (mirror, or registry when the mirror failed) and result (ok, error).",
		}, []string{"upstream", "result"}),
		vouches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dtrcache_forward_manifest_vouches_total",
			Help: "Digests remembered as authorized because a manifest the registry served to a client listed them (config, layers, child manifests).",
		}),
		leaves: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dtrcache_forward_leaf_certs_issued_total",
			Help: "Leaf certificates signed by the office CA (the first handshake for a host, or a renewal).",
		}),
	}
	reg.MustRegister(m.requests, m.connects, m.auth, m.bytes, m.fetches, m.vouches, m.leaves)
	return m
}

func (m *Metrics) request(result string) {
	if m != nil {
		m.requests.WithLabelValues(result).Inc()
	}
}

func (m *Metrics) connect(action string) {
	if m != nil {
		m.connects.WithLabelValues(action).Inc()
	}
}

func (m *Metrics) authCheck(result string) {
	if m != nil {
		m.auth.WithLabelValues(result).Inc()
	}
}

func (m *Metrics) sent(source string, n int64) {
	if m != nil && n > 0 {
		m.bytes.WithLabelValues(source).Add(float64(n))
	}
}

func (m *Metrics) upstreamFetch(upstream, result string) {
	if m != nil {
		m.fetches.WithLabelValues(upstream, result).Inc()
	}
}

func (m *Metrics) leafIssued() {
	if m != nil {
		m.leaves.Inc()
	}
}

func (m *Metrics) vouched(n int) {
	if m != nil && n > 0 {
		m.vouches.Add(float64(n))
	}
}
