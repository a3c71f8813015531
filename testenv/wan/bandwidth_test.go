package wan

import (
	"errors"
	"strings"
	"testing"
)

func TestParseBandwidth(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		err  string // a substring of the error; "" for success
	}{
		{in: "0", want: 0},
		{in: "unlimited", want: 0},
		{in: " Unlimited ", want: 0},
		{in: "none", want: 0},
		{in: "0Mbit", want: 0},
		{in: "200Mbit", want: 25_000_000},
		{in: "200mbit", want: 25_000_000},
		{in: "200mbps", want: 25_000_000},
		{in: "200Mbps", want: 25_000_000},
		{in: "200Mb/s", want: 25_000_000},
		{in: "200 Mbit/s", want: 25_000_000},
		{in: "200Mbits/s", want: 25_000_000},
		{in: "1Gbit", want: 125_000_000},
		{in: "1.5Gbit", want: 187_500_000},
		{in: "10Tbit", want: 1_250_000_000_000},
		{in: "100kbit", want: 12_500},
		{in: "64Kibit", want: 8192},
		{in: "25MB/s", want: 25_000_000},
		{in: "25MBps", want: 25_000_000},
		{in: "25MB", want: 25_000_000},
		{in: "25mbytes/s", want: 25_000_000},
		{in: "8MiB/s", want: 8 << 20},
		{in: "512KiB/s", want: 512 << 10},
		{in: "1GiB/s", want: 1 << 30},
		{in: "1000B/s", want: 1000},
		{in: "1000bytes", want: 1000},
		{in: "800bit", want: 100},
		{in: "", err: "want a number"},
		{in: "fast", err: "want a number"},
		{in: "-5Mbit", err: "want a number"},
		{in: "200", err: "missing unit"},
		{in: "1.2.3Mbit", err: "bad number"},
		{in: "200Mhz", err: `unknown unit "hz"`},
		{in: "200Xbit", err: `unknown unit "Xbit"`},
		{in: "200Mi", err: `unknown unit ""`},
		{in: "1bit", err: "below 1 byte per second"},
		{in: "99999999999999999999Tbit", err: "too large"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseBandwidth(tc.in)
			if tc.err == "" {
				if err != nil || got != tc.want {
					t.Errorf("ParseBandwidth(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("ParseBandwidth(%q) = %d, want an error", tc.in, got)
			}
			if !errors.Is(err, ErrInvalidBandwidth) {
				t.Errorf("error %v does not wrap ErrInvalidBandwidth", err)
			}
			if !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), tc.in) {
				t.Errorf("error %q should name %q and contain %q", err, tc.in, tc.err)
			}
		})
	}
}
