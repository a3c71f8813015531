package monitoring

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// promServer is a Prometheus server (Debian's prometheus) run by a test.
type promServer struct{ url string }

// sample is one series of an instant query's result.
type sample struct {
	Metric map[string]string
	Value  float64
}

// query evaluates expr at time at (zero: now).
func (p *promServer) query(ctx context.Context, expr string, at time.Time) ([]sample, error) {
	v := url.Values{"query": {expr}}
	if !at.IsZero() {
		v.Set("time", strconv.FormatFloat(float64(at.UnixMilli())/1000, 'f', 3, 64))
	}
	var resp struct {
		Status, Error string
		Data          struct {
			ResultType string
			Result     []struct {
				Metric map[string]string
				Value  [2]any
			}
		}
	}
	if err := p.get(ctx, "/api/v1/query?"+v.Encode(), &resp); err != nil {
		return nil, err
	}
	if resp.Status != "success" {
		return nil, fmt.Errorf("query %s: %s", expr, resp.Error)
	}
	var out []sample
	for _, r := range resp.Data.Result {
		s, _ := r.Value[1].(string)
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, fmt.Errorf("query %s: value %q", expr, s)
		}
		out = append(out, sample{r.Metric, f})
	}
	return out, nil
}

func (p *promServer) get(ctx context.Context, path string, out any) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.url+path, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(out)
}

// scalar evaluates expr and returns its only value, or NaN.
func (p *promServer) scalar(ctx context.Context, expr string, at time.Time) float64 {
	s, err := p.query(ctx, expr, at)
	if err != nil || len(s) != 1 {
		return math.NaN()
	}
	return s[0].Value
}

// startPrometheus runs Prometheus scraping the topology every second,
// with the rules of deploy/prometheus, or skips the test.
func startPrometheus(t *testing.T, ctx context.Context, tp *topology) *promServer {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Skip("SKIP: no prometheus on this machine (Debian package prometheus; make deps installs it)")
	}
	dir := t.TempDir()
	var rules []string
	for _, f := range []string{rulesFile, alertsFile} {
		abs, err := filepath.Abs(f)
		if err != nil {
			t.Fatal(err)
		}
		rules = append(rules, fmt.Sprintf("%q", abs))
	}
	cfg := fmt.Sprintf(`global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: [%s]
scrape_configs:
  - job_name: dtrcache-cache
    static_configs: [{targets: [%q], labels: {cache: %s}}]
  - job_name: dtrcache-origin
    static_configs: [{targets: [%q]}]
`, strings.Join(rules, ", "), tp.cacheAddr, cacheName, tp.originAddr)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	startProcess(t, dir, "prometheus", bin, "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+addr, "--log.level=warn")
	p := &promServer{url: "http://" + addr}
	waitReady(t, ctx, p.url+"/-/ready")
	return p
}

// TestPrometheusHitRatio has a real Prometheus scrape the origin and the
// cache binaries while an image is pulled cold and then warm: the
// dashboard's hit ratio query over the pulls returns 0.5 (every blob a
// miss, then every blob a hit), every query of the dashboard evaluates,
// every rule evaluates without error and no alert fires.
func TestPrometheusHitRatio(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the binaries and Prometheus")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	tp := startTopology(t, ctx)
	prom := startPrometheus(t, ctx, tp)
	const blobs = `dtrcache_blob_requests_total{job="dtrcache-cache", cache="asia"}`
	waitFor(t, ctx, "Prometheus scrapes both targets", func() bool {
		return prom.scalar(ctx, `count(up{job=~"dtrcache-cache|dtrcache-origin"} == 1)`, time.Time{}) == 2
	})
	// A first image, so that the hit and miss series exist before the
	// window the ratio is taken over (a counter's first sample is its
	// start, not an increase).
	tp.pull(t, ctx)
	tp.waitStored(t, ctx, tp.blobs)
	tp.pull(t, ctx)
	count := func(result string) float64 {
		return prom.scalar(ctx, `sum(`+blobs[:len(blobs)-1]+`, result="`+result+`"})`, time.Time{})
	}
	waitFor(t, ctx, "Prometheus has the first image's pulls", func() bool {
		return count("miss") == float64(tp.blobs) && count("hit") == float64(tp.blobs)
	}, func() string {
		res, err := prom.query(ctx, `sum by (result) (`+blobs+`)`, time.Time{})
		return fmt.Sprintf("blob requests by result: %v %v", res, err)
	})
	// The window of the queries starts at the latest sample of the first
	// image's counts, so that it holds only the second image's pulls.
	first := prom.scalar(ctx, `max(timestamp(`+blobs[:len(blobs)-1]+`, result="hit"}))`, time.Time{})
	if math.IsNaN(first) {
		t.Fatal("no timestamp of the hit series")
	}

	tp.image = "website/ui:2"
	tp.seed(t, ctx, 19)
	tp.pull(t, ctx) // cold: every blob a miss
	waitFor(t, ctx, "Prometheus has the cold pull", func() bool { return count("miss") == float64(2*tp.blobs) })
	tp.waitStored(t, ctx, 2*tp.blobs)
	tp.pull(t, ctx) // warm: every blob a hit
	waitFor(t, ctx, "Prometheus has the warm pull", func() bool { return count("hit") == float64(2*tp.blobs) })
	end := time.Now()
	// A policy job, for the dashboard's job panels (after the window
	// closed: its copy reads no blob through the cache).
	tp.promote(t, ctx)
	waitFor(t, ctx, "Prometheus has two samples of the job's counters", func() bool {
		return prom.scalar(ctx, `min(count_over_time(dtrcache_jobs_run_duration_seconds_count{job="dtrcache-origin"}[30s]))`, time.Time{}) >= 2
	})
	queryAt := time.Now()
	window := fmt.Sprintf("%dms", end.UnixMilli()-int64(first*1000))

	d := readDashboard(t)
	expand := func(expr string) string {
		return strings.NewReplacer("$__rate_interval", window, "$__range", window, "$cache", ".*", "$instance", ".*", "$origin", ".*").Replace(expr)
	}
	var ratioExpr string
	for _, p := range d.Panels {
		if p.Title == "Hit ratio" {
			ratioExpr = expand(p.Targets[0].Expr)
		}
	}
	if ratioExpr == "" {
		t.Fatal("the dashboard has no Hit ratio panel")
	}
	if got := prom.scalar(ctx, ratioExpr, end); got != 0.5 {
		t.Fatalf("hit ratio over a cold and a warm pull: %v, want 0.5\n%s", got, ratioExpr)
	}
	t.Logf("hit ratio over a cold and a warm pull of %d blobs: 0.5 (%s)", tp.blobs, ratioExpr)

	// Every dashboard query evaluates; those over metrics the binaries
	// export have data (over the last 30 s, which hold two samples of
	// every series).
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			expr := strings.NewReplacer("$__rate_interval", "30s", "$__range", "30s", "$cache", ".*", "$instance", ".*", "$origin", ".*").Replace(tg.Expr)
			res, err := prom.query(ctx, expr, queryAt)
			if err != nil {
				t.Errorf("panel %q: %v", p.Title, err)
				continue
			}
			if len(res) == 0 && !mayBeEmpty(expr) {
				t.Errorf("panel %q: no data for %s", p.Title, expr)
			}
		}
	}
	checkRules(t, ctx, prom)
}

// mayBeEmpty reports whether a query has no data in a healthy topology:
// one over errors, or over a pending metric.
func mayBeEmpty(expr string) bool {
	if strings.Contains(expr, `code=~"5.."`) {
		return true
	}
	for name := range pending {
		if strings.Contains(expr, name) {
			return true
		}
	}
	return false
}

// checkRules waits until every rule was evaluated, and checks that each
// is healthy and that no alert is pending or firing.
func checkRules(t *testing.T, ctx context.Context, prom *promServer) {
	t.Helper()
	type rule struct {
		Name, Health, LastError, Type, State string
		LastEvaluation                       time.Time
	}
	var resp struct {
		Data struct {
			Groups []struct {
				File  string
				Rules []rule
			}
		}
	}
	var rules []rule
	waitFor(t, ctx, "Prometheus evaluates every rule", func() bool {
		rules = nil
		if err := prom.get(ctx, "/api/v1/rules", &resp); err != nil {
			return false
		}
		for _, g := range resp.Data.Groups {
			rules = append(rules, g.Rules...)
		}
		for _, r := range rules {
			if r.LastEvaluation.Year() < 2000 {
				return false
			}
		}
		return len(rules) > 0
	})
	want := len(readRules(t, rulesFile).Groups) + len(readRules(t, alertsFile).Groups)
	if len(resp.Data.Groups) != want {
		t.Errorf("Prometheus loaded %d rule groups, want %d", len(resp.Data.Groups), want)
	}
	for _, r := range rules {
		if r.Health != "ok" {
			t.Errorf("rule %s: health %q: %s", r.Name, r.Health, r.LastError)
		}
		if r.Type == "alerting" && r.State != "inactive" {
			t.Errorf("alert %s is %s in a healthy topology", r.Name, r.State)
		}
	}
	t.Logf("%d rules evaluated, all healthy, no alert active", len(rules))
}
