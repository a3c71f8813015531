package events

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the events' metrics. A nil *Metrics records nothing.
type Metrics struct {
	events      *prometheus.CounterVec
	deduped     *prometheus.CounterVec
	notified    *prometheus.CounterVec
	deliveries  *prometheus.CounterVec
	outboxDepth prometheus.Gauge
	duration    prometheus.Histogram
	lag         prometheus.Histogram
	inactive    prometheus.Gauge
	inactivated prometheus.Counter
	dispatchers prometheus.Gauge
}

// NewMetrics registers the metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dtrcache_events_total", Help: "Events that entered the outbox (as this replica's watch saw them), by type.",
		}, []string{"type"}),
		deduped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dtrcache_events_deduplicated_total",
			Help: "Registry operations seen twice (through the origin and in the registry's notifications) and recorded once, by the source whose report was dropped.",
		}, []string{"source"}),
		notified: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dtrcache_events_notifications_total",
			Help: "Events in the backend registry's notifications, by result (recorded, duplicate, ignored, unauthorized, invalid, error).",
		}, []string{"result"}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dtrcache_webhook_deliveries_total",
			Help: "Webhook delivery attempts by result (success, http_4xx, http_5xx, http_other, error).",
		}, []string{"result"}),
		outboxDepth: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "dtrcache_events_outbox_depth", Help: "Events held in the outbox (not yet cleaned up).",
		}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "dtrcache_webhook_delivery_duration_seconds", Help: "Duration of one webhook delivery attempt.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12),
		}),
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "dtrcache_webhook_delivery_latency_seconds", Help: "Time from an event's creation to its successful delivery.",
			Buckets: prometheus.ExponentialBuckets(0.001, 3, 14),
		}),
		inactive: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "dtrcache_webhooks_inactive", Help: "Webhooks that are inactive (too many failed deliveries, or paused).",
		}),
		inactivated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dtrcache_webhooks_inactivated_total", Help: "Webhooks marked inactive after failed deliveries.",
		}),
		dispatchers: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "dtrcache_webhook_deliverers", Help: "Webhooks this replica delivers to (holds the claim of).",
		}),
	}
	reg.MustRegister(m.events, m.deduped, m.notified, m.deliveries, m.outboxDepth, m.duration, m.lag,
		m.inactive, m.inactivated, m.dispatchers)
	return m
}

func (m *Metrics) emitted(t Type) {
	if m != nil {
		m.events.WithLabelValues(string(t)).Inc()
	}
}

func (m *Metrics) dedupe(droppedSource string) {
	if m != nil {
		m.deduped.WithLabelValues(droppedSource).Inc()
	}
}

func (m *Metrics) notification(result string, n int) {
	if m != nil && n > 0 {
		m.notified.WithLabelValues(result).Add(float64(n))
	}
}

func (m *Metrics) delivery(result string, d time.Duration) {
	if m != nil {
		m.deliveries.WithLabelValues(result).Inc()
		m.duration.Observe(d.Seconds())
	}
}

func (m *Metrics) delivered(created time.Time) {
	if m != nil {
		m.lag.Observe(time.Since(created).Seconds())
	}
}

func (m *Metrics) depth(n int) {
	if m != nil {
		m.outboxDepth.Set(float64(n))
	}
}

func (m *Metrics) inactiveCount(n int) {
	if m != nil {
		m.inactive.Set(float64(n))
	}
}

func (m *Metrics) inactivatedOne() {
	if m != nil {
		m.inactivated.Inc()
	}
}

func (m *Metrics) deliverers(n int) {
	if m != nil {
		m.dispatchers.Set(float64(n))
	}
}
