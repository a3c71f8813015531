package serve

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// HTTPMetrics count requests by route, method and status, and time them.
type HTTPMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	inflight prometheus.Gauge
	bytes    *prometheus.CounterVec
}

// NewHTTPMetrics registers the HTTP metrics of a server on reg.
func NewHTTPMetrics(reg prometheus.Registerer) *HTTPMetrics {
	m := &HTTPMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dtrcache_http_requests_total", Help: "HTTP requests by route, method and status code.",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "dtrcache_http_request_duration_seconds", Help: "HTTP request duration by route.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}, []string{"route"}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "dtrcache_http_requests_in_flight", Help: "HTTP requests being served.",
		}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dtrcache_http_response_bytes_total", Help: "Response body bytes by route.",
		}, []string{"route"}),
	}
	reg.MustRegister(m.requests, m.duration, m.inflight, m.bytes)
	return m
}

func (m *HTTPMetrics) observe(route, method string, code int, bytes int64, d time.Duration) {
	if m == nil {
		return
	}
	m.requests.WithLabelValues(route, method, strconv.Itoa(code)).Inc()
	m.duration.WithLabelValues(route).Observe(d.Seconds())
	m.bytes.WithLabelValues(route).Add(float64(bytes))
}

// UpstreamMetrics implements upstream.Observer with Prometheus metrics.
type UpstreamMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	bytes    *prometheus.CounterVec
}

// NewUpstreamMetrics registers upstream metrics on reg.
func NewUpstreamMetrics(reg prometheus.Registerer) *UpstreamMetrics {
	m := &UpstreamMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dtrcache_upstream_requests_total", Help: "Requests to upstream registries by upstream, method and status (0: no response).",
		}, []string{"upstream", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "dtrcache_upstream_response_seconds", Help: "Time to upstream response headers.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12),
		}, []string{"upstream"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dtrcache_upstream_bytes_total", Help: "Response body bytes read from upstream registries.",
		}, []string{"upstream"}),
	}
	reg.MustRegister(m.requests, m.duration, m.bytes)
	return m
}

// Request records one upstream request.
func (m *UpstreamMetrics) Request(upstream, method string, status int, d time.Duration) {
	m.requests.WithLabelValues(upstream, method, strconv.Itoa(status)).Inc()
	m.duration.WithLabelValues(upstream).Observe(d.Seconds())
}

// Bytes records body bytes read from an upstream.
func (m *UpstreamMetrics) Bytes(upstream string, n int64) {
	m.bytes.WithLabelValues(upstream).Add(float64(n))
}
