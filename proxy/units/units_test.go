package units

import (
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func TestParseSize(t *testing.T) {
	sizes := map[string]int64{"4096": 4096, "1KB": 1000, "1KiB": 1024, "200GiB": 200 << 30, "1.5 MiB": 3 << 19, "10gb": 10e9, " 8 MiB ": 8 << 20}
	for in, want := range sizes {
		t.Run(in, func(t *testing.T) {
			if got, err := ParseSize(in); err != nil || int64(got) != want {
				t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
			}
		})
	}
	for _, bad := range []string{"", "GB", "-1", "1XB", "1e99GB", "1..5MB"} {
		t.Run("bad "+bad, func(t *testing.T) {
			if _, err := ParseSize(bad); err == nil {
				t.Errorf("ParseSize(%q) accepted", bad)
			}
		})
	}
}

func TestSizeString(t *testing.T) {
	for z, want := range map[Size]string{0: "0", 1000: "1000", 1024: "1KiB", 48 << 20: "48MiB", 1536 << 10: "1536KiB", 200 << 30: "200GiB", 3 << 40: "3TiB"} {
		if got := z.String(); got != want {
			t.Errorf("Size(%d).String() = %q, want %q", int64(z), got, want)
		}
		if back, err := ParseSize(z.String()); err != nil || back != z {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", z.String(), back, err, z)
		}
	}
}

func TestParseDuration(t *testing.T) {
	durs := map[string]time.Duration{"24h": 24 * time.Hour, "1500000000": 1500 * time.Millisecond, "7d": 7 * 24 * time.Hour, "90s": 90 * time.Second, "1h30m": 90 * time.Minute, "0": 0}
	for in, want := range durs {
		t.Run(in, func(t *testing.T) {
			if got, err := ParseDuration(in); err != nil || got.D() != want {
				t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got.D(), err, want)
			}
		})
	}
	for _, bad := range []string{"", "-1", "1y", "soon", "-5m", "-2d"} {
		t.Run("bad "+bad, func(t *testing.T) {
			if _, err := ParseDuration(bad); err == nil {
				t.Errorf("ParseDuration(%q) accepted", bad)
			}
		})
	}
}

// TestYAML: configuration files decode sizes and durations through
// UnmarshalText, numbers and strings alike, and a bad value is an error
// that quotes it.
func TestYAML(t *testing.T) {
	var v struct {
		Max   Size     `yaml:"max"`
		Chunk Size     `yaml:"chunk"`
		TTL   Duration `yaml:"ttl"`
		Raw   Duration `yaml:"raw"`
	}
	if err := yaml.Unmarshal([]byte("max: 200GiB\nchunk: 4096\nttl: 7d\nraw: 1500000000\n"), &v); err != nil {
		t.Fatal(err)
	}
	if v.Max != 200<<30 || v.Chunk != 4096 || v.TTL.D() != 7*24*time.Hour || v.Raw.D() != 1500*time.Millisecond {
		t.Fatalf("decoded %+v", v)
	}
	err := yaml.Unmarshal([]byte("max: lots\n"), &v)
	if err == nil || err.Error() != `invalid size "lots" (want a number with an optional unit such as 512MiB or 200GB)` {
		t.Fatalf("bad size: %v", err)
	}
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"1GiB", "0", "1.5MB", ".5k", "9999999999999TB"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseSize(s)
		if err == nil && v < 0 {
			t.Fatalf("ParseSize(%q) = %d", s, v)
		}
	})
}

func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"24h", "7d", "1500000000", "1h30m", "-5m", "99999d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDuration(s)
		if err == nil && d < 0 {
			t.Fatalf("ParseDuration(%q) = %d", s, d)
		}
	})
}
