package casstore

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// TestOptionsValidate: the store's option rules, each problem an
// *OptionError naming its field; zero values are defaults and valid.
func TestOptionsValidate(t *testing.T) {
	tests := []struct {
		name string
		opt  Options
		bad  []string // the fields named, in order
	}{
		{"zero", Options{}, nil},
		{"explicit", Options{MaxBytes: 1 << 30, HighWatermark: 0.9, LowWatermark: 0.8, TTL: time.Hour}, nil},
		{"high only", Options{HighWatermark: 0.5}, nil}, // low defaults below it
		{"low only", Options{LowWatermark: 0.9}, nil},   // below the default high
		{"high above 1", Options{HighWatermark: 1.5}, []string{"HighWatermark"}},
		{"negative high", Options{HighWatermark: -0.1}, []string{"HighWatermark"}},
		{"low above high", Options{HighWatermark: 0.5, LowWatermark: 0.7}, []string{"LowWatermark"}},
		{"low equals default high", Options{LowWatermark: 0.95}, []string{"LowWatermark"}},
		{"negative sizes and times", Options{MaxBytes: -1, MaxBlobSize: -1, TTL: -time.Second, StallTimeout: -1},
			[]string{"MaxBytes", "MaxBlobSize", "TTL", "StallTimeout"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.opt.Validate()
			var got []string
			if err != nil {
				for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
					var oe *OptionError
					if !errors.As(e, &oe) {
						t.Fatalf("%v is not an *OptionError", e)
					}
					got = append(got, oe.Option)
				}
			}
			if strings.Join(got, ",") != strings.Join(tt.bad, ",") {
				t.Fatalf("Validate() = %v; want problems with %v", err, tt.bad)
			}
		})
	}
}

// TestOpenRefusesBadOptions: Open checks its options instead of
// repairing them.
func TestOpenRefusesBadOptions(t *testing.T) {
	_, err := Open(t.TempDir(), Options{HighWatermark: 0.5, LowWatermark: 0.7})
	var oe *OptionError
	if !errors.As(err, &oe) || oe.Option != "LowWatermark" {
		t.Fatalf("Open = %v, want an *OptionError for LowWatermark", err)
	}
}
