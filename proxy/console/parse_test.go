package console

import (
	"math"
	"strings"
	"testing"
	"time"
)

const cacheMetrics = `# TYPE dtrcache_blob_requests_total counter
dtrcache_blob_requests_total{mode="redirect",result="hit"} 30
dtrcache_blob_requests_total{mode="mirror",result="hit"} 10
dtrcache_blob_requests_total{mode="redirect",result="miss"} 8
dtrcache_blob_requests_total{mode="redirect",result="joined"} 2
dtrcache_blob_requests_total{mode="redirect",result="upstream_head"} 99
# TYPE dtrcache_blob_bytes_served_total counter
dtrcache_blob_bytes_served_total{mode="redirect",source="store"} 4096
dtrcache_blob_bytes_served_total{mode="redirect",source="fill"} 1024
# TYPE dtrcache_upstream_bytes_total counter
dtrcache_upstream_bytes_total{upstream="a"} 1500
dtrcache_upstream_bytes_total{upstream="b"} 500
# TYPE dtrcache_store_evictions_total counter
dtrcache_store_evictions_total{store="redirect"} 3
# TYPE dtrcache_store_expirations_total counter
dtrcache_store_expirations_total{store="redirect"} 1
# TYPE dtrcache_store_bytes gauge
dtrcache_store_bytes{store="redirect"} 123456
# TYPE dtrcache_store_blobs gauge
dtrcache_store_blobs{store="redirect"} 7
# TYPE dtrcache_store_max_bytes gauge
dtrcache_store_max_bytes{store="redirect"} 1e+06
`

func TestParseMetrics(t *testing.T) {
	var s sample
	if err := parseMetrics(strings.NewReader(cacheMetrics), &s); err != nil {
		t.Fatal(err)
	}
	want := sample{Hits: 40, Misses: 8, Joins: 2, ServedStore: 4096, ServedFill: 1024, Upstream: 2000, Evictions: 4,
		StoreBytes: 123456, StoreBlobs: 7, StoreMax: 1e6}
	if s != want {
		t.Fatalf("parsed %+v\nwant   %+v", s, want)
	}
	if r := s.HitRatio(); r != 0.8 {
		t.Errorf("hit ratio %v, want 0.8", r)
	}
	// Without the upstream metrics, the store's filled bytes stand in.
	var s2 sample
	if err := parseMetrics(strings.NewReader("dtrcache_store_bytes_filled_total{store=\"x\"} 77\n"), &s2); err != nil || s2.Upstream != 77 {
		t.Fatalf("filled bytes: %+v %v", s2, err)
	}
	if err := parseMetrics(strings.NewReader("dtrcache_store_bytes{ 1\n"), &s2); err == nil {
		t.Fatal("a broken exposition parsed")
	}
}

func FuzzParseMetrics(f *testing.F) {
	f.Add(cacheMetrics)
	f.Add("")
	f.Add("# HELP x y\n# TYPE x counter\nx 1\n")
	f.Add("dtrcache_store_bytes NaN\n")
	f.Fuzz(func(t *testing.T, text string) {
		var s sample
		if parseMetrics(strings.NewReader(text), &s) == nil {
			_ = s.HitRatio()
			cacheCharts([]sample{s, s}, time.Unix(1e9, 0), time.Hour)
		}
	})
}

func TestNextLast(t *testing.T) {
	for link, want := range map[string]string{
		`</v2/_catalog?last=website%2Fui&n=100>; rel="next"`: "website/ui",
		``:                          "",
		`garbage`:                   "",
		`</v2/_catalog?n=100>`:      "",
		`<http://[::1>; rel="next"`: "",
	} {
		if got := nextLast(link); got != want {
			t.Errorf("nextLast(%q) = %q, want %q", link, got, want)
		}
	}
}

func FuzzNextLast(f *testing.F) {
	f.Add(`</v2/_catalog?last=a&n=100>; rel="next"`)
	f.Fuzz(func(t *testing.T, link string) { nextLast(link) })
}

func TestCharts(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	ss := []sample{
		{At: t0, Healthy: true, RTT: 2 * time.Millisecond, Scraped: true, Hits: 0, Misses: 0, StoreBytes: 0, StoreMax: 1000},
		{At: t0.Add(time.Minute), Healthy: true, RTT: 3 * time.Millisecond, Scraped: true, Hits: 3, Misses: 1, ServedStore: 600, Upstream: 60, StoreBytes: 500, StoreMax: 1000},
		{At: t0.Add(2 * time.Minute), Healthy: false},
		{At: t0.Add(3 * time.Minute), Healthy: true, Scraped: true, Hits: 1, Misses: 1, Evictions: 2, StoreBytes: 200, StoreMax: 1000}, // restarted
	}
	cs := cacheCharts(ss, t0.Add(4*time.Minute), 24*time.Hour)
	if len(cs) != 5 {
		t.Fatalf("%d charts", len(cs))
	}
	byID := map[string]chart{}
	for _, c := range cs {
		byID[c.ID] = c
		if !strings.HasPrefix(string(c.SVG), "<svg") || !strings.Contains(string(c.SVG), `role="img"`) {
			t.Errorf("%s: %.80s", c.ID, c.SVG)
		}
	}
	if s := byID["health"].Summary; !strings.Contains(s, "3 of 4 samples") {
		t.Errorf("health summary %q", s)
	}
	if s := byID["store"].Summary; !strings.Contains(s, "20.0 % of its 1000 B budget") {
		t.Errorf("store summary %q", s)
	}
	if s := byID["bytes"].Summary; !strings.Contains(s, "600 B served from the store") || !strings.Contains(s, "60 B filled from upstream") {
		t.Errorf("bytes summary %q", s)
	}
	// The down sample leaves a gap; the reset counts as an increase.
	if s := byID["evictions"].Summary; !strings.Contains(s, "0 blobs evicted in this window") {
		t.Errorf("evictions summary %q (the sample after the gap has no previous one)", s)
	}
	if strings.Count(string(byID["health"].SVG), "<rect") != 4+1 {
		t.Errorf("health band: %d rects", strings.Count(string(byID["health"].SVG), "<rect"))
	}
}

func TestNiceCeilAndDelta(t *testing.T) {
	for v, want := range map[float64]float64{0.7: 1, 1: 1, 1.2: 2, 3: 5, 7: 10, 420: 500, 1e6 + 1: 2e6} {
		if got := niceCeil(v); math.Abs(got-want) > 1e-9 {
			t.Errorf("niceCeil(%v) = %v, want %v", v, got, want)
		}
	}
	if delta(10, 4) != 4 || delta(4, 10) != 6 {
		t.Error("delta")
	}
}

func TestLimiter(t *testing.T) {
	now := time.Unix(0, 0)
	l := newLimiter(2, time.Minute, func() time.Time { return now })
	if l.wait("user:a") != 0 {
		t.Fatal("a fresh key waits")
	}
	l.failed("user:a", "addr:1")
	l.failed("user:a", "addr:2")
	if w := l.wait("user:a", "addr:3"); w != time.Minute {
		t.Fatalf("after 2 failures: wait %v, want 1m", w)
	}
	if w := l.wait("user:b", "addr:1"); w != 0 {
		t.Fatalf("another user from an address with one failure waits %v", w)
	}
	now = now.Add(30 * time.Second)
	if w := l.wait("user:a"); w != 30*time.Second {
		t.Fatalf("half a minute later: wait %v", w)
	}
	now = now.Add(30 * time.Second)
	if w := l.wait("user:a"); w != 0 {
		t.Fatalf("a minute later: wait %v", w)
	}
}

func TestSafeNext(t *testing.T) {
	for in, want := range map[string]string{
		"/console/jobs?state=error": "/console/jobs?state=error",
		"https://evil.example/":     "/console/profile",
		"//evil.example/console/":   "/console/profile",
		"/console/\\evil":           "/console/profile",
		"":                          "/console/profile",
		"/v2/":                      "/console/profile",
	} {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}
