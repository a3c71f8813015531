package jobs

import (
	"context"
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

// openCollector reports the open jobs by action, policy and state when
// scraped, from the store (any replica's jobs: the figure is the
// deployment's).
type openCollector struct {
	q    *Queue
	desc *prometheus.Desc
}

// NewOpenJobsCollector returns a collector of dtrcache_jobs_open{action,
// policy,state}: the waiting and running jobs in the store, counted when
// scraped.
func NewOpenJobsCollector(q *Queue) prometheus.Collector {
	return &openCollector{q: q, desc: prometheus.NewDesc("dtrcache_jobs_open",
		"Jobs waiting or running, by action, policy and state (counted in the state store when scraped).",
		[]string{"action", "policy", "state"}, nil)}
}

// Describe implements prometheus.Collector.
func (c *openCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector.
func (c *openCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, ids, err := c.q.open(ctx)
	if err != nil {
		return
	}
	type key struct{ action, policy, state string }
	counts := map[key]int{}
	for _, id := range ids {
		j, err := c.q.Get(ctx, id)
		if err != nil || j.State.Terminal() {
			continue
		}
		counts[key{j.Action, j.PolicyID, string(j.State)}]++
	}
	for k, n := range counts {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n), k.action, k.policy, k.state)
	}
}
