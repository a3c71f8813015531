package cache

import (
	"strings"
	"testing"

	"github.com/dtrcache/dtrcache/casstore"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestStoreCollectorExportsTheBudget(t *testing.T) {
	tests := []struct {
		name string
		opt  casstore.Options
		want string // the budget gauges in the text format; "" for none
	}{
		{"budget", casstore.Options{MaxBytes: 1 << 20, HighWatermark: 0.9, LowWatermark: 0.5}, `
# HELP dtrcache_store_high_watermark_bytes Bytes (with fills in flight) above which eviction starts.
# TYPE dtrcache_store_high_watermark_bytes gauge
dtrcache_store_high_watermark_bytes{store="redirect"} 943718
# HELP dtrcache_store_low_watermark_bytes Bytes eviction brings the store down to.
# TYPE dtrcache_store_low_watermark_bytes gauge
dtrcache_store_low_watermark_bytes{store="redirect"} 524288
# HELP dtrcache_store_max_bytes Byte budget of the store (storage.max_size); absent when unlimited.
# TYPE dtrcache_store_max_bytes gauge
dtrcache_store_max_bytes{store="redirect"} 1.048576e+06
`},
		{"unlimited", casstore.Options{}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := casstore.Open(t.TempDir(), tt.opt)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			reg := prometheus.NewPedanticRegistry()
			reg.MustRegister(NewStoreCollector(s, "redirect"))
			names := []string{"dtrcache_store_max_bytes", "dtrcache_store_high_watermark_bytes", "dtrcache_store_low_watermark_bytes"}
			if err := testutil.GatherAndCompare(reg, strings.NewReader(tt.want), names...); err != nil {
				t.Fatal(err)
			}
			if n, err := testutil.GatherAndCount(reg, "dtrcache_store_bytes"); err != nil || n != 1 {
				t.Fatalf("dtrcache_store_bytes: %d series, %v", n, err)
			}
		})
	}
}
