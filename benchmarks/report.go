package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// report is everything a run produced.
type report struct {
	Generated time.Time        `json:"generated"`
	Quick     bool             `json:"quick"`
	Took      string           `json:"took"`
	Machine   string           `json:"machine"`
	WAN       string           `json:"wan"`
	RTT       float64          `json:"rtt_ms"`
	Images    map[string]int64 `json:"image_bytes"`
	// MirrorFills are the fill settings of the dtrcache-mirror variants
	// (--mirror-fills), by system name.
	MirrorFills map[string]string `json:"mirror_fills,omitempty"`
	// SHA256CPU is the CPU seconds per GiB that crypto/sha256 costs on
	// this machine, measured at the start of the run (the median of
	// SHA256Runs; see sha256CPU); 0 when the run did not measure it (no
	// cold scenario, or a results.json from before the harness did).
	SHA256CPU  float64   `json:"sha256_cpu_s_per_gib,omitempty"`
	SHA256Runs []float64 `json:"sha256_cpu_s_per_gib_runs,omitempty"`
	Results    []*result `json:"results"`
	Targets    []target  `json:"targets"`
}

// target is one promise of the README, checked against the run.
type target struct {
	What     string `json:"what"`
	Measured string `json:"measured"`
	Met      bool   `json:"met"`
	// Info marks a comparison shown for information, no target of the
	// issue for that system (Met then says only which side won).
	Info bool `json:"info,omitempty"`
}

// verdict is the target's "met" column.
func (t target) verdict() string {
	switch {
	case t.Info:
		return "information"
	case t.Met:
		return "yes"
	}
	return "**no**"
}

func (rep *report) find(scenario, image, profile, system string) *result {
	for _, r := range rep.Results {
		if r.Scenario == scenario && r.Image == image && r.Profile == profile && r.System == system {
			return r
		}
	}
	return nil
}

// group returns the results of one table, in a stable system order.
func (rep *report) group(scenario, image, profile string) []*result {
	var out []*result
	for _, r := range rep.Results {
		if r.Scenario == scenario && r.Image == image && r.Profile == profile {
			out = append(out, r)
		}
	}
	order := map[string]int{"direct": 0, "dtrcache-mirror": 1, "dtrcache-forward": 2, "dtrcache-forward-head": 3, "dtrcache-redirect": 4, "distribution-proxy": 5, "nginx": 6}
	rank := func(sys string) int {
		if isMirrorVariant(sys) {
			return order["dtrcache-mirror"] // after it: the sort is stable, variants run later
		}
		return order[sys]
	}
	sort.SliceStable(out, func(i, j int) bool { return rank(out[i].System) < rank(out[j].System) })
	return out
}

// bestPeer returns the best peer's value of metric (lowest, or highest
// when higherBetter).
func bestPeer(rs []*result, metric string, higherBetter bool) (float64, string) {
	best, who := math.NaN(), ""
	for _, r := range rs {
		v, ok := r.Median[metric]
		if !r.Peer || !ok || len(r.Errors) > 0 && len(r.Runs) == 0 {
			continue
		}
		if math.IsNaN(best) || higherBetter && v > best || !higherBetter && v < best {
			best, who = v, r.System
		}
	}
	return best, who
}

func ratio(a, b float64) string {
	if b == 0 || math.IsNaN(a) || math.IsNaN(b) {
		return "–"
	}
	return fmt.Sprintf("%.2f×", a/b)
}

type groupKey struct{ scenario, image, profile string }

func (rep *report) groups() []groupKey {
	var keys []groupKey
	seen := map[groupKey]bool{}
	for _, r := range rep.Results {
		k := groupKey{r.Scenario, r.Image, r.Profile}
		if !seen[k] {
			seen[k] = true
			keys = append(keys, k)
		}
	}
	return keys
}

var scenarioTitle = map[string]string{
	"cold":       "1. Cold pull, one client",
	"warm":       "2. Warm pull, one client",
	"concurrent": "3. 16 clients pull the same cold image at once",
	"range":      "4. Range read at 90 % of an uncached blob (time to first byte)",
	"cut":        "5. Upstream connection cut half way through a cold pull",
	"throughput": "6. Warm hit throughput: 64 connections on one blob",
	"resume":     "8. A download of an uncached layer breaks and resumes with a Range",
	"order-1":    "9. One client fetching one blob at a time in manifest order (as skopeo), cold",
	"order-8":    "10. 8 clients fetching one blob at a time in manifest order (as skopeo), cold",
	"order-16":   "11. 16 clients fetching one blob at a time in manifest order (as skopeo), cold",
}

// titleOf is scenario's section title; an order scenario with a client
// count not in scenarioTitle gets a numbered-after-them one.
func titleOf(scenario string) string {
	if t, ok := scenarioTitle[scenario]; ok {
		return t
	}
	if n, ok := strings.CutPrefix(scenario, "order-"); ok {
		return fmt.Sprintf("12. %s clients fetching one blob at a time in manifest order (as skopeo), cold", n)
	}
	return "99. " + scenario
}

// kind is scenario without an order scenario's client count: "order-8"
// is "order".
func kind(scenario string) string {
	if strings.HasPrefix(scenario, "order-") {
		return "order"
	}
	return scenario
}

// isMirrorVariant reports whether sys is a dtrcache-mirror with its own
// fill settings (--mirror-fills).
func isMirrorVariant(sys string) bool { return strings.HasPrefix(sys, "dtrcache-mirror-") }

// renderReport writes report.md and the charts again from dir's
// results.json (after a change to the tables or the targets).
func renderReport(dir string) error {
	b, err := os.ReadFile(filepath.Join(dir, "results.json"))
	if err != nil {
		return err
	}
	var rep report
	if err := json.Unmarshal(b, &rep); err != nil {
		return fmt.Errorf("results.json: %w", err)
	}
	return rep.write(dir)
}

// write saves report.md, results.json and the charts in dir.
func (rep *report) write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	rep.Targets = rep.checkTargets()
	var b strings.Builder
	fmt.Fprintf(&b, "# dtrcache benchmark report\n\n")
	mode := "full run"
	if rep.Quick {
		mode = "quick smoke run (numbers not meaningful)"
	}
	fmt.Fprintf(&b, "%s, %s, generated %s, took %s.\n\n", mode, rep.Machine, rep.Generated.Format(time.RFC3339), rep.Took)
	fmt.Fprintf(&b, "WAN: %s. Medians of the repetitions. Systems: `direct` (the client pulls across the WAN), `dtrcache-mirror`, `dtrcache-forward` (the HTTPS_PROXY face; its warm pull after a restart, so no authorization is remembered; `dtrcache-forward-head` is the same with manifest vouching off, run when named), `dtrcache-redirect` (origin + cache, the DTR flow), `distribution-proxy` (Debian docker-registry with proxy.remoteurl), `nginx` (proxy_cache + proxy_cache_lock). Same backend registry (distribution), same WAN emulator, same client (go-containerregistry, 3 layers at a time), a fresh cache for every cold run. CPU: seconds on CPU of the system's processes (every thread, exited ones too: each process's CPU clock, clock_gettime of clock_getcpuclockid(pid), in nanoseconds, the scheduler's run time; /proc/<pid>/stat's 10 ms ticks only where that clock does not answer) during the pull, per GiB of blobs; for `dtrcache-redirect` the origin's and the cache's, with the two shares in parentheses.\n\n", rep.WAN)
	if rep.SHA256CPU > 0 {
		runs := make([]string, len(rep.SHA256Runs))
		for i, v := range rep.SHA256Runs {
			runs[i] = fmt.Sprintf("%.3f", v)
		}
		fmt.Fprintf(&b, "sha256 on this machine, this run: **%.3f CPU s per GiB** (crypto/sha256 over 1 GiB already in memory on one thread, user + system time of that thread, median of %d: %s), measured before the scenarios. The cold CPU target's limit is 1.2 × (this + nginx's CPU per GiB in the same table).\n\n", rep.SHA256CPU, len(rep.SHA256Runs), strings.Join(runs, ", "))
	}
	imgs := make([]string, 0, len(rep.Images))
	for k, v := range rep.Images {
		imgs = append(imgs, fmt.Sprintf("%s = %s", k, mb(float64(v))))
	}
	sort.Strings(imgs)
	if len(rep.MirrorFills) > 0 {
		var vs []string
		for name, fill := range rep.MirrorFills {
			vs = append(vs, fmt.Sprintf("`%s`: `fill: %s`", name, fill))
		}
		sort.Strings(vs)
		fmt.Fprintf(&b, "dtrcache-mirror variants (the product defaults but for these fill settings): %s.\n\n", strings.Join(vs, "; "))
	}
	fmt.Fprintf(&b, "Images (blob bytes): %s.\n\n## Targets\n\n| target | measured | met |\n|---|---|---|\n", strings.Join(imgs, ", "))
	for _, t := range rep.Targets {
		fmt.Fprintf(&b, "| %s | %s | %s |\n", t.What, t.Measured, t.verdict())
	}
	last := ""
	for _, k := range rep.groups() {
		if k.scenario != last {
			fmt.Fprintf(&b, "\n## %s\n", titleOf(k.scenario))
			last = k.scenario
		}
		rs := rep.group(k.scenario, k.image, k.profile)
		fmt.Fprintf(&b, "\n**%s, %s profile**\n\n", k.image, k.profile)
		rep.table(&b, k, rs)
		if png, err := rep.chart(dir, k, rs); err == nil && png != "" {
			fmt.Fprintf(&b, "\n![%s %s %s](%s)\n", k.scenario, k.image, k.profile, png)
		} else if err != nil {
			fmt.Fprintf(&b, "\n(chart failed: %v)\n", err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "report.md"), []byte(b.String()), 0o644); err != nil {
		return err
	}
	j, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "results.json"), j, 0o644)
}

// table writes one scenario table with ratios to direct and the best peer.
func (rep *report) table(b *strings.Builder, k groupKey, rs []*result) {
	direct := rep.find(k.scenario, k.image, k.profile, "direct")
	errs := func(r *result) string {
		if len(r.Errors) == 0 {
			return ""
		}
		return fmt.Sprintf(" (%d failed)", len(r.Errors))
	}
	switch kind(k.scenario) {
	case "order":
		orderTable(b, rep.find(k.scenario, k.image, k.profile, "nginx"), rs)
	case "cold", "warm", "concurrent", "cut":
		peer, who := bestPeer(rs, "seconds", false)
		fmt.Fprintf(b, "| system | time | over the WAN | × direct | × best peer (%s) |", who)
		extra := k.scenario == "concurrent" || k.scenario == "cut" || k.scenario == "cold" || k.scenario == "warm"
		nginxCPU := math.NaN()
		if n := rep.find(k.scenario, k.image, k.profile, "nginx"); n != nil {
			if v, ok := n.Median["cpu_s_per_gib"]; ok {
				nginxCPU = v
			}
		}
		shaCols := k.scenario == "cold" && rep.SHA256CPU > 0
		if k.scenario == "cold" || k.scenario == "warm" {
			fmt.Fprintf(b, " CPU s per GiB | × nginx's CPU |")
		}
		if shaCols {
			fmt.Fprintf(b, " × (sha256 + nginx's CPU) |")
		}
		if k.scenario == "concurrent" {
			fmt.Fprintf(b, " WAN ÷ image | peak RSS |")
		}
		if k.scenario == "cut" {
			fmt.Fprintf(b, " completed | WAN ÷ image |")
		}
		fmt.Fprintf(b, "\n|---|---|---|---|---|%s%s\n", map[bool]string{true: "---|---|", false: ""}[extra], map[bool]string{true: "---|", false: ""}[shaCols])
		for _, r := range rs {
			sec := r.Median["seconds"]
			d := math.NaN()
			if direct != nil {
				d = direct.Median["seconds"]
			}
			fmt.Fprintf(b, "| %s%s | %.2f s | %s | %s | %s |", r.System, errs(r), sec, mb(r.Median["wan_bytes"]), ratio(sec, d), ratio(sec, peer))
			img := float64(rep.Images[strings.Fields(k.image)[0]])
			switch k.scenario {
			case "cold", "warm":
				if v, ok := r.Median["cpu_s_per_gib"]; ok {
					fmt.Fprintf(b, " %.2f%s | %s |", v, cpuParts(r), ratio(v, nginxCPU))
					if shaCols {
						fmt.Fprintf(b, " %s |", ratio(v, rep.SHA256CPU+nginxCPU))
					}
				} else {
					fmt.Fprintf(b, " – | – |%s", map[bool]string{true: " – |", false: ""}[shaCols])
				}
			case "concurrent":
				rss := "–"
				if v, ok := r.Median["peak_rss_mib"]; ok {
					rss = fmt.Sprintf("%.0f MiB", v)
				}
				if v, ok := r.Median["origin_peak_rss_mib"]; ok {
					rss += fmt.Sprintf(" (origin %.0f MiB)", v)
				}
				if v, ok := r.Median["cpu_busy"]; ok {
					rss += fmt.Sprintf("; CPU %.1f s + harness (clients, WAN) %.1f s = %.0f %% of the cores", r.Median["cpu_s"], r.Median["clients_cpu_s"], 100*v)
				}
				fmt.Fprintf(b, " %.3f | %s |", r.Median["wan_bytes"]/img, rss)
			case "cut":
				fmt.Fprintf(b, " %.0f/%d | %.3f |", sum(r.Runs, "completed"), len(r.Runs), r.Median["wan_bytes"]/img)
			}
			fmt.Fprintln(b)
		}
	case "range":
		peer, who := bestPeer(rs, "ttfb_ms", false)
		fmt.Fprintf(b, "| system | time to first byte | × RTT (%.0f ms) | × direct | × best peer (%s) |\n|---|---|---|---|---|\n", rep.RTT, who)
		for _, r := range rs {
			v := r.Median["ttfb_ms"]
			d := math.NaN()
			if direct != nil {
				d = direct.Median["ttfb_ms"]
			}
			fmt.Fprintf(b, "| %s%s | %.1f ms | %.2f | %s | %s |\n", r.System, errs(r), v, v/rep.RTT, ratio(v, d), ratio(v, peer))
		}
	case "resume":
		fmt.Fprintf(b, "| system | time | over the WAN | WAN ÷ blob |\n|---|---|---|---|\n")
		for _, r := range rs {
			fmt.Fprintf(b, "| %s%s | %.2f s | %s | %.3f |\n", r.System, errs(r), r.Median["seconds"], mb(r.Median["wan_bytes"]), r.Median["wan_ratio"])
		}
	case "throughput":
		nginx := rep.find(k.scenario, k.image, k.profile, "nginx")
		fmt.Fprintf(b, "| system | requests/s | MiB/s | p50 | p99 | peak RSS | × nginx |\n|---|---|---|---|---|---|---|\n")
		for _, r := range rs {
			n := math.NaN()
			if nginx != nil {
				n = nginx.Median["mib_per_s"]
			}
			rss := fmt.Sprintf("%.0f MiB", r.Median["peak_rss_mib"])
			if v, ok := r.Median["origin_peak_rss_mib"]; ok {
				rss += fmt.Sprintf(" (origin %.0f MiB)", v)
			}
			fmt.Fprintf(b, "| %s%s | %.0f | %.0f | %.1f ms | %.1f ms | %s | %s |\n", r.System, errs(r), r.Median["req_per_s"], r.Median["mib_per_s"],
				r.Median["p50_ms"], r.Median["p99_ms"], rss, ratio(r.Median["mib_per_s"], n))
		}
	}
}

// cpuParts is the cache's and the origin's shares of a system with an
// origin (the redirect flow), for its CPU cell: "" for another system.
func cpuParts(r *result) string {
	o, ok := r.Median["origin_cpu_s_per_gib"]
	c, cok := r.Median["cache_cpu_s_per_gib"]
	if !ok || !cok {
		return ""
	}
	return fmt.Sprintf(" (cache %.2f + origin %.2f)", c, o)
}

func sum(runs []map[string]float64, k string) float64 {
	var s float64
	for _, r := range runs {
		s += r[k]
	}
	return s
}
