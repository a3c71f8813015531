package jobs

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics counts job transitions and run durations. A nil *Metrics counts
// nothing.
type Metrics struct {
	transitions *prometheus.CounterVec
	duration    *prometheus.HistogramVec
}

// NewMetrics registers the job metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dtrcache_jobs_transitions_total",
			Help: "Job state changes made by this replica, by action and new state.",
		}, []string{"action", "state"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "dtrcache_jobs_run_duration_seconds",
			Help:    "Time one attempt of a job ran, by action.",
			Buckets: prometheus.ExponentialBuckets(0.01, 4, 10),
		}, []string{"action"}),
	}
	reg.MustRegister(m.transitions, m.duration)
	return m
}

func (m *Metrics) transition(action string, s State) {
	if m != nil {
		m.transitions.WithLabelValues(action, string(s)).Inc()
	}
}

func (m *Metrics) observe(action string, d time.Duration) {
	if m != nil {
		m.duration.WithLabelValues(action).Observe(d.Seconds())
	}
}
