package cache

import (
	"github.com/dtrcache/dtrcache/casstore"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the cache's own Prometheus metrics.
type Metrics struct {
	blobs  *prometheus.CounterVec
	served *prometheus.CounterVec
	tokens *prometheus.CounterVec
	noNS   prometheus.Counter
}

// NewMetrics registers the cache metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		blobs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dtrcache_blob_requests_total",
			Help: "Blob requests by mode (redirect, mirror) and result (hit, miss, joined, upstream_head, not_cached, not_modified, error).",
		}, []string{"mode", "result"}),
		served: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dtrcache_blob_bytes_served_total",
			Help: "Blob body bytes sent to clients, by where they came from: the store (a complete blob) or a fill in progress.",
		}, []string{"mode", "source"}),
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dtrcache_token_verifications_total", Help: "Redirect token verifications by result.",
		}, []string{"result"}),
		noNS: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dtrcache_mirror_unknown_ns_requests_total",
			Help: "Mirror requests refused because their ?ns= names a registry no upstream mirrors (containerd then pulls from that registry directly, past the cache).",
		}),
	}
	reg.MustRegister(m.blobs, m.served, m.tokens, m.noNS)
	return m
}

func (m *Metrics) blob(mode, result string) {
	if m != nil {
		m.blobs.WithLabelValues(mode, result).Inc()
	}
}

func (m *Metrics) bytes(mode, source string, n int64) {
	if m != nil && n > 0 {
		m.served.WithLabelValues(mode, source).Add(float64(n))
	}
}

func (m *Metrics) unknownNS() {
	if m != nil {
		m.noNS.Inc()
	}
}

func (m *Metrics) token(result string) {
	if m != nil {
		m.tokens.WithLabelValues(result).Inc()
	}
}

// StoreCollector exports a store's Stats as metrics labelled with the
// store's name.
type StoreCollector struct {
	store    *casstore.Store
	gauges   map[string]*prometheus.Desc
	counters map[string]*prometheus.Desc
	budget   map[string]*prometheus.Desc // exported only for a store with a budget
}

// NewStoreCollector returns a collector for store, labelled store=name.
func NewStoreCollector(store *casstore.Store, name string) *StoreCollector {
	d := func(metric, help string) *prometheus.Desc {
		// The store's name is a constant label, so several stores'
		// collectors can be registered side by side.
		return prometheus.NewDesc(metric, help, nil, prometheus.Labels{"store": name})
	}
	return &StoreCollector{
		store: store,
		gauges: map[string]*prometheus.Desc{
			"blobs":           d("dtrcache_store_blobs", "Complete blobs in the store."),
			"bytes":           d("dtrcache_store_bytes", "Bytes of complete blobs in the store."),
			"fills_in_flight": d("dtrcache_store_fills_in_flight", "Fills running."),
		},
		counters: map[string]*prometheus.Desc{
			"hits":            d("dtrcache_store_hits_total", "Reads that found a complete blob."),
			"misses":          d("dtrcache_store_misses_total", "Reads that started a fill."),
			"joins":           d("dtrcache_store_joins_total", "Reads that joined a running fill."),
			"bytes_filled":    d("dtrcache_store_bytes_filled_total", "Bytes written by fills."),
			"source_requests": d("dtrcache_store_source_requests_total", "Upstream streams opened by fills."),
			"resumes":         d("dtrcache_store_resumes_total", "Upstream streams reopened after a break."),
			"direct_reads":    d("dtrcache_store_direct_reads_total", "Reads served by their own upstream range."),
			"evictions":       d("dtrcache_store_evictions_total", "Blobs evicted by the byte budget."),
			"expirations":     d("dtrcache_store_expirations_total", "Blobs removed by the idle TTL."),
			"evicted_bytes":   d("dtrcache_store_evicted_bytes_total", "Bytes removed by eviction and TTL."),
			"write_errors":    d("dtrcache_store_write_errors_total", "Fills that could not write to disk."),
			"verify_errors":   d("dtrcache_store_verify_errors_total", "Fills whose content did not match the digest."),
			"source_errors":   d("dtrcache_store_source_errors_total", "Fills failed by the upstream."),
		},
		budget: map[string]*prometheus.Desc{
			"max":  d("dtrcache_store_max_bytes", "Byte budget of the store (storage.max_size); absent when unlimited."),
			"high": d("dtrcache_store_high_watermark_bytes", "Bytes (with fills in flight) above which eviction starts."),
			"low":  d("dtrcache_store_low_watermark_bytes", "Bytes eviction brings the store down to."),
		},
	}
}

// Describe implements prometheus.Collector.
func (c *StoreCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.gauges {
		ch <- d
	}
	for _, d := range c.counters {
		ch <- d
	}
	for _, d := range c.budget {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *StoreCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.store.Stats()
	gauges := map[string]int64{"blobs": st.Blobs, "bytes": st.Bytes, "fills_in_flight": st.FillsInFlight}
	counters := map[string]int64{
		"hits": st.Hits, "misses": st.Misses, "joins": st.Joins, "bytes_filled": st.BytesFilled,
		"source_requests": st.SourceRequests, "resumes": st.Resumes, "direct_reads": st.DirectReads,
		"evictions": st.Evictions, "expirations": st.Expirations, "evicted_bytes": st.EvictedBytes,
		"write_errors": st.WriteErrors, "verify_errors": st.VerifyErrors, "source_errors": st.SourceErrors,
	}
	for k, v := range gauges {
		ch <- prometheus.MustNewConstMetric(c.gauges[k], prometheus.GaugeValue, float64(v))
	}
	for k, v := range counters {
		ch <- prometheus.MustNewConstMetric(c.counters[k], prometheus.CounterValue, float64(v))
	}
	if b := c.store.Budget(); b.Max > 0 {
		for k, v := range map[string]int64{"max": b.Max, "high": b.High, "low": b.Low} {
			ch <- prometheus.MustNewConstMetric(c.budget[k], prometheus.GaugeValue, float64(v))
		}
	}
}
