package health

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics count verdict changes. A nil *Metrics counts nothing.
type Metrics struct {
	changes    *prometheus.CounterVec
	downSecs   *prometheus.CounterVec
	redirected *prometheus.CounterVec
	up         *prometheus.GaugeVec
}

// NewMetrics registers the health metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dtrcache_origin_cache_state_changes_total",
			Help: "Changes of a cache node's verdict written by this replica, by cache, node, new state (up, down) and reason class (refused, not_ready, timeout, status, error, heartbeat_missed, ok).",
		}, []string{"cache", "node", "state", "reason"}),
		downSecs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dtrcache_origin_cache_down_seconds_total",
			Help: "Seconds cache nodes spent down, added when a node comes back up (changes this replica wrote), by cache and node.",
		}, []string{"cache", "node"}),
		redirected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dtrcache_origin_redirects_to_down_total",
			Help: "Redirects this replica made to a cache node after its last good check, counted when a check then found it down (users sent to a node that was already down), by cache and node.",
		}, []string{"cache", "node"}),
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "dtrcache_origin_cache_node_up", Help: "1 while a cache node takes users, 0 while it is down, by cache and node.",
		}, []string{"cache", "node"}),
	}
	reg.MustRegister(m.changes, m.downSecs, m.redirected, m.up)
	return m
}

// Observe counts a change.
func (m *Metrics) Observe(c Change) {
	if m == nil {
		return
	}
	st := "down"
	if c.Up {
		st = "up"
		m.downSecs.WithLabelValues(c.Cache, c.Node).Add(c.Down.Seconds())
	}
	m.changes.WithLabelValues(c.Cache, c.Node, st, c.Class).Inc()
}

// Redirected counts n redirects this replica made to k after its last
// good check, found down afterwards.
func (m *Metrics) Redirected(k Key, n int64) {
	if m == nil || n <= 0 {
		return
	}
	m.redirected.WithLabelValues(k.Cache, k.Node).Add(float64(n))
}

// SetUp records a node's current state.
func (m *Metrics) SetUp(k Key, up bool) {
	if m == nil {
		return
	}
	v := 0.0
	if up {
		v = 1
	}
	m.up.WithLabelValues(k.Cache, k.Node).Set(v)
}

// Delete drops a removed node's series.
func (m *Metrics) Delete(k Key) {
	if m == nil {
		return
	}
	m.up.DeleteLabelValues(k.Cache, k.Node)
}
