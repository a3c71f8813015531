package policies

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics counts what policies copy. A nil *Metrics counts nothing.
type Metrics struct {
	images   *prometheus.CounterVec
	failures *prometheus.CounterVec
	bytes    *prometheus.CounterVec
	duration *prometheus.HistogramVec
	lag      *prometheus.HistogramVec
}

// NewMetrics registers the policy metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		images: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dtrcache_policy_images_copied_total", Help: "Images copied by policies, by kind.",
		}, []string{"kind"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dtrcache_policy_copy_failures_total", Help: "Copy attempts of policies that failed, by kind.",
		}, []string{"kind"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dtrcache_policy_bytes_copied_total", Help: "Blob bytes sent to targets by policies, by kind.",
		}, []string{"kind"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "dtrcache_policy_copy_duration_seconds", Help: "Time one image copy took, by kind.",
			Buckets: prometheus.ExponentialBuckets(0.01, 4, 10),
		}, []string{"kind"}),
		lag: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "dtrcache_policy_replication_lag_seconds", Help: "Time from the push (or poll) to the target having the manifest, by kind.",
			Buckets: prometheus.ExponentialBuckets(0.05, 3, 12),
		}, []string{"kind"}),
	}
	reg.MustRegister(m.images, m.failures, m.bytes, m.duration, m.lag)
	return m
}

func (m *Metrics) copied(k Kind, bytes int64, took, lag time.Duration) {
	if m == nil {
		return
	}
	m.images.WithLabelValues(string(k)).Inc()
	m.bytes.WithLabelValues(string(k)).Add(float64(bytes))
	m.duration.WithLabelValues(string(k)).Observe(took.Seconds())
	m.lag.WithLabelValues(string(k)).Observe(lag.Seconds())
}

func (m *Metrics) copyFailed(k Kind) {
	if m != nil {
		m.failures.WithLabelValues(string(k)).Inc()
	}
}
