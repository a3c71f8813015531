package monitoring

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/dtrcache/dtrcache/proxy/events"
	"github.com/dtrcache/dtrcache/proxy/jobs"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"gopkg.in/yaml.v3"
)

// Files checked against what the binaries export.
const (
	rulesFile     = "../prometheus/dtrcache.rules.yml"
	alertsFile    = "../prometheus/dtrcache.alerts.yml"
	dashboardFile = "../grafana/dtrcache.json"
)

// pending are metrics the rules and the dashboard use that a package on
// main registers but the binaries do not export yet. The test fails when
// one is exported after all (then remove it here) and when its package
// stops registering it.
var pending = map[string]func(prometheus.Registerer){
	// Exported by the origin once a webhook has had a delivery attempt;
	// this test's topology has no webhook.
	"dtrcache_webhook_deliveries_total": eventMetrics,
	// Exported by the origin only while a job waits or runs, which no
	// scrape of this test's topology sees.
	"dtrcache_jobs_open": func(r prometheus.Registerer) { r.MustRegister(jobs.NewOpenJobsCollector(nil)) },
}

func eventMetrics(r prometheus.Registerer) { events.NewMetrics(r) }

// use is one metric name in a query, with the job its selector names.
type use struct {
	name, job, where string
}

var (
	selectorRE = regexp.MustCompile(`\b(dtrcache_[a-zA-Z0-9_]+)(\{[^}]*\})?`)
	jobRE      = regexp.MustCompile(`job="([^"]+)"`)
	recordedRE = regexp.MustCompile(`\bdtrcache:[a-zA-Z0-9_:]+`)
)

// uses lists the dtrcache_* names in a PromQL expression.
func uses(expr, where string) []use {
	var us []use
	for _, m := range selectorRE.FindAllStringSubmatch(expr, -1) {
		u := use{name: m[1], where: where}
		if j := jobRE.FindStringSubmatch(m[2]); j != nil {
			u.job = j[1]
		}
		us = append(us, u)
	}
	return us
}

type ruleFile struct {
	Groups []struct {
		Name  string
		Rules []struct {
			Record, Alert, Expr string
		}
	}
}

func readRules(t *testing.T, path string) ruleFile {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var f ruleFile
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return f
}

type dashboard struct {
	Panels []struct {
		Title   string
		Type    string
		Targets []struct{ Expr string }
	}
	Templating struct {
		List []struct {
			Name       string
			Definition string
		}
	}
}

func readDashboard(t *testing.T) dashboard {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	return d
}

// queries returns every query of the rules and the dashboard, by where it is.
func queries(t *testing.T) map[string]string {
	t.Helper()
	q := map[string]string{}
	for _, path := range []string{rulesFile, alertsFile} {
		for _, g := range readRules(t, path).Groups {
			for _, r := range g.Rules {
				q[path+": "+r.Record+r.Alert] = r.Expr
			}
		}
	}
	d := readDashboard(t)
	for _, p := range d.Panels {
		for i, tg := range p.Targets {
			q[dashboardFile+": panel "+p.Title+": "+string(rune('A'+i))] = tg.Expr
		}
	}
	for _, v := range d.Templating.List {
		if v.Definition != "" {
			q[dashboardFile+": variable "+v.Name] = v.Definition
		}
	}
	return q
}

// exported scrapes a /metrics endpoint and returns its metric families.
func exported(t *testing.T, ctx context.Context, url string) map[string]bool {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("%s: %v", url, err)
	}
	names := map[string]bool{}
	for name, f := range fams {
		names[name] = true
		if f.GetType().String() == "HISTOGRAM" {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				names[name+s] = true
			}
		}
	}
	return names
}

// scrape returns the sum of each metric family's samples at a /metrics endpoint.
func scrape(t *testing.T, ctx context.Context, url string) map[string]float64 {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("%s: %v", url, err)
	}
	sums := map[string]float64{}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			sums[name] += m.GetGauge().GetValue() + m.GetCounter().GetValue() + m.GetUntyped().GetValue()
		}
	}
	return sums
}

// registeredBy returns the metric names a constructor registers.
func registeredBy(register func(prometheus.Registerer)) map[string]bool {
	var c capture
	register(&c)
	names := map[string]bool{}
	fqName := regexp.MustCompile(`fqName: "([^"]+)"`)
	ch := make(chan *prometheus.Desc)
	go func() {
		for _, col := range c.collectors {
			col.Describe(ch)
		}
		close(ch)
	}()
	for d := range ch {
		if m := fqName.FindStringSubmatch(d.String()); m != nil {
			names[m[1]] = true
		}
	}
	return names
}

// capture is a prometheus.Registerer that keeps what is registered.
type capture struct{ collectors []prometheus.Collector }

func (c *capture) Register(col prometheus.Collector) error {
	c.collectors = append(c.collectors, col)
	return nil
}

func (c *capture) MustRegister(cols ...prometheus.Collector) {
	c.collectors = append(c.collectors, cols...)
}

func (c *capture) Unregister(prometheus.Collector) bool { return false }

// TestRulesAndDashboardUseExportedMetrics runs the origin and the cache
// binaries, pulls an image through them cold and warm (so that the
// counters with labels exist), and checks that every metric the rules and
// the dashboard query is exported by the binary their selector names, and
// that every recorded series they use is recorded.
func TestRulesAndDashboardUseExportedMetrics(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the binaries")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	tp := startTopology(t, ctx)
	tp.pull(t, ctx)
	tp.waitStored(t, ctx, tp.blobs)
	tp.pull(t, ctx)
	tp.promote(t, ctx)
	byJob := map[string]map[string]bool{
		"dtrcache-cache":  exported(t, ctx, "http://"+tp.cacheAddr+"/metrics"),
		"dtrcache-origin": exported(t, ctx, "http://"+tp.originAddr+"/metrics"),
	}
	for name, register := range pending {
		if byJob["dtrcache-origin"][name] || byJob["dtrcache-cache"][name] {
			t.Errorf("%s is exported now: remove it from pending", name)
		}
		if !registeredBy(register)[name] {
			t.Errorf("%s is pending, but its package no longer registers it", name)
		}
	}
	recorded := map[string]bool{}
	for _, g := range readRules(t, rulesFile).Groups {
		for _, r := range g.Rules {
			recorded[r.Record] = true
		}
	}
	checked := map[string]bool{}
	for where, expr := range queries(t) {
		for _, u := range uses(expr, where) {
			name := u.name
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				if n, ok := strings.CutSuffix(name, s); ok && pending[n] != nil {
					name = n
				}
			}
			if pending[name] != nil {
				continue
			}
			switch u.job {
			case "":
				if !byJob["dtrcache-cache"][name] && !byJob["dtrcache-origin"][name] {
					t.Errorf("%s: %s is exported by neither binary", u.where, name)
				}
			case "dtrcache-cache", "dtrcache-origin":
				if !byJob[u.job][name] {
					t.Errorf("%s: %s is not exported by %s", u.where, name, u.job)
				}
			default:
				t.Errorf("%s: job %q is neither dtrcache-cache nor dtrcache-origin", u.where, u.job)
			}
			checked[name] = true
		}
		for _, r := range recordedRE.FindAllString(expr, -1) {
			if !recorded[r] {
				t.Errorf("%s: %s is recorded by no rule in %s", where, r, rulesFile)
			}
		}
	}
	names := make([]string, 0, len(checked))
	for n := range checked {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(names) < 25 {
		t.Fatalf("only %d metric names found in the rules and the dashboard: %v", len(names), names)
	}
	t.Logf("%d metric names of the rules and the dashboard are exported; pending: %d", len(names), len(pending))
}
