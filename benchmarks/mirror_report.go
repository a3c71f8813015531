package main

import (
	"encoding/json"
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// mirrorResult is one system in one mirroring scenario and profile.
type mirrorResult struct {
	Scenario string               `json:"scenario"` // mirror, cut, promotion
	Profile  string               `json:"profile"`
	System   string               `json:"system"`
	Peer     bool                 `json:"peer"`
	Runs     []map[string]float64 `json:"runs"`
	Median   map[string]float64   `json:"median"`
	Errors   []string             `json:"errors,omitempty"`
}

// mirrorReport is everything the mirroring benchmark produced.
type mirrorReport struct {
	Generated   time.Time `json:"generated"`
	Quick       bool      `json:"quick"`
	Took        string    `json:"took"`
	Machine     string    `json:"machine"`
	WAN         string    `json:"wan"`
	Images      int       `json:"images"`
	Blobs       int       `json:"blobs"`
	UniqueBytes int64     `json:"unique_blob_bytes"`
	PromoBlobs  int       `json:"promotion_blobs"`
	PromoBytes  int64     `json:"promotion_blob_bytes"`
	// LinkLimit is the least time the unique bytes take at each
	// profile's link bandwidth, in seconds.
	LinkLimit map[string]float64 `json:"link_limit_seconds"`
	// LargestBlob (the shared base layer) and PerConnBandwidth (bytes/s)
	// bound the per-connection profile: one blob travels on one
	// connection.
	LargestBlob      int64           `json:"largest_blob_bytes"`
	PerConnBandwidth int64           `json:"per_conn_bandwidth"`
	Results          []*mirrorResult `json:"results"`
	Targets          []target        `json:"targets"`
}

func (rep *mirrorReport) find(scenario, profile, system string) *mirrorResult {
	for _, r := range rep.Results {
		if r.Scenario == scenario && r.Profile == profile && r.System == system {
			return r
		}
	}
	return nil
}

func (rep *mirrorReport) group(scenario, profile string) []*mirrorResult {
	var out []*mirrorResult
	for _, r := range rep.Results {
		if r.Scenario == scenario && r.Profile == profile {
			out = append(out, r)
		}
	}
	return out
}

// fastestPeer returns the fastest peer's median wall time in a group.
func fastestPeer(rs []*mirrorResult) (float64, string) {
	best, who := math.NaN(), ""
	for _, r := range rs {
		v, ok := r.Median["seconds"]
		if !r.Peer || !ok {
			continue
		}
		if math.IsNaN(best) || v < best {
			best, who = v, r.System
		}
	}
	return best, who
}

// bound is the least time any mirror can take in a profile: the link's
// limit, or in the per-connection profile the largest blob on one
// connection if that is longer.
func (rep *mirrorReport) bound(profile string) float64 {
	b := rep.LinkLimit[profile]
	if profile == "per-conn" && rep.PerConnBandwidth > 0 {
		b = math.Max(b, float64(rep.LargestBlob)/float64(rep.PerConnBandwidth))
	}
	return b
}

// rateOf writes bytes per second as megabits per second.
func rateOf(bps int64) string { return fmt.Sprintf("%.0f Mbit/s", float64(bps)*8/1e6) }

func (rep *mirrorReport) profiles() []string {
	var out []string
	for _, p := range []string{"shared", "per-conn"} {
		if len(rep.group("mirror", p)) > 0 {
			out = append(out, p)
		}
	}
	return out
}

// checkTargets compares dtrcache's medians with the targets.
func (rep *mirrorReport) checkTargets() []target {
	var ts []target
	add := func(what, measured string, met bool) {
		ts = append(ts, target{What: what, Measured: measured, Met: met})
	}
	u := float64(rep.UniqueBytes)
	const sys = "dtrcache-push"
	for _, p := range rep.profiles() {
		r := rep.find("mirror", p, sys)
		if r == nil || len(r.Runs) == 0 {
			add(fmt.Sprintf("mirror completes (%s)", p), "failed: "+strings.Join(r.errorsOrNone(), "; "), false)
			continue
		}
		wb := r.Median["wan_bytes"] / u
		add(fmt.Sprintf("mirror: WAN bytes = 1.00 × unique blob bytes (%s)", p), fmt.Sprintf("%.4f ×", wb), wb < 1.005)
		peer, who := fastestPeer(rep.group("mirror", p))
		if who != "" {
			v := r.Median["seconds"]
			add(fmt.Sprintf("mirror: wall time ≤ 0.8 × fastest peer (%s)", p), fmt.Sprintf("%.2f s vs %s %.2f s = %s", v, who, peer, ratio(v, peer)), v <= 0.8*peer)
		}
	}
	if r := rep.find("cut", "shared", sys); r != nil {
		if len(r.Runs) == 0 {
			add("link cut at 50 %: completes, WAN bytes ≤ 1.05 × unique", "failed: "+strings.Join(r.Errors, "; "), false)
		} else {
			wb := r.Median["wan_bytes"] / u
			add("link cut at 50 %: completes, WAN bytes ≤ 1.05 × unique", fmt.Sprintf("completed in %.0f run(s), %.0f cut(s), %.4f ×", r.Median["attempts"], r.Median["cuts"], wb), wb <= 1.05 && r.Median["cuts"] >= 1)
		}
	}
	if r := rep.find("promotion", "-", sys); r != nil {
		if len(r.Runs) == 0 {
			add("promotion: ≤ 2 requests per blob, 0 layer bytes read", "failed: "+strings.Join(r.Errors, "; "), false)
		} else {
			rpb, gets := r.Median["requests_per_blob"], r.Median["blob_gets"]
			add("promotion: ≤ 2 requests per blob at the registry", fmt.Sprintf("%.2f", rpb), rpb <= 2)
			add("promotion: 0 layer bytes read", fmt.Sprintf("%.0f blob GETs, %s of responses in all", gets, mb(r.Median["bytes_read"])), gets == 0)
		}
	}
	return ts
}

func (r *mirrorResult) errorsOrNone() []string {
	if r == nil {
		return []string{"not run"}
	}
	return r.Errors
}

func failedNote(r *mirrorResult) string {
	if len(r.Errors) == 0 {
		return ""
	}
	if len(r.Runs) == 0 {
		return " (failed)"
	}
	return fmt.Sprintf(" (%d failed)", len(r.Errors))
}

// write saves mirror.md, mirror.json and the charts in dir.
func (rep *mirrorReport) write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	rep.Targets = rep.checkTargets()
	u := float64(rep.UniqueBytes)
	var b strings.Builder
	mode := "full run"
	if rep.Quick {
		mode = "quick smoke run (numbers not meaningful)"
	}
	fmt.Fprintf(&b, "# dtrcache mirroring benchmark\n\n%s, %s, generated %s, took %s.\n\n", mode, rep.Machine, rep.Generated.Format(time.RFC3339), rep.Took)
	fmt.Fprintf(&b, "The set: %d images that share a base layer (`testenv.MirrorSet`), %d distinct blobs, **%s of unique blob bytes** (random, incompressible). "+
		"US → EU across the WAN emulator: %s. The US and EU registries are distribution v3; every run goes into a fresh, empty EU registry. "+
		"Systems: `dtrcache-push` (a `dtrcache origin` in front of the US registry, one push-mirroring policy per repository created with "+
		"`initialEvaluation=true`, timed from the first `POST` until every job is `done`; policies.workers 4, concurrency 4), "+
		"`skopeo-sync` (Debian's skopeo, `sync --src yaml --preserve-digests --retry-times 3`, one image after the other), "+
		"`regsync` (regclient, `regsync once`, `parallel: 4`), `crane-copy` (`crane copy` in a loop). Every image is checked digest-equal "+
		"in EU after each run. CPU: the seconds of CPU time the system's own processes used (not the registries, not the emulator). Medians of the runs.\n\n", rep.Images, rep.Blobs, mb(u), rep.WAN)
	fmt.Fprintf(&b, "## Targets\n\n| target | measured | met |\n|---|---|---|\n")
	for _, t := range rep.Targets {
		fmt.Fprintf(&b, "| %s | %s | %s |\n", t.What, t.Measured, t.verdict())
	}
	for i, p := range rep.profiles() {
		rs := rep.group("mirror", p)
		peer, who := fastestPeer(rs)
		limit := rep.LinkLimit[p]
		bound := rep.bound(p)
		fmt.Fprintf(&b, "\n## %d. Mirror the set US → EU, %s profile\n\n", i+1, p)
		fmt.Fprintf(&b, "Link limit (unique bytes ÷ the link's bandwidth): %.2f s.", limit)
		if bound > limit {
			fmt.Fprintf(&b, " One blob travels on one connection (an upload is one ordered stream), so the %s base layer alone takes %.2f s at %s a connection: the lower bound is %.2f s.",
				mb(float64(rep.LargestBlob)), bound, rateOf(rep.PerConnBandwidth), bound)
		}
		fmt.Fprintf(&b, "\n\n| system | wall time | × fastest peer (%s) | × lower bound | WAN bytes | × unique | blob requests at EU (HEAD/POST/PATCH/PUT) | per unique blob | read from US | CPU |\n|---|---|---|---|---|---|---|---|---|---|\n", who)
		for _, r := range rs {
			med := r.Median
			if len(r.Runs) == 0 {
				fmt.Fprintf(&b, "| %s%s | – | – | – | – | – | – | – | – | – |\n", r.System, failedNote(r))
				continue
			}
			fmt.Fprintf(&b, "| %s%s | %.2f s | %s | %.2f | %s | %.4f | %.0f/%.0f/%.0f/%.0f | %.2f | %s | %.1f s |\n", r.System, failedNote(r), med["seconds"], ratio(med["seconds"], peer),
				med["seconds"]/bound, mb(med["wan_bytes"]), med["wan_bytes"]/u, med["eu_head_blob"], med["eu_post_upload"], med["eu_patch_upload"], med["eu_put_upload"],
				med["eu_blob_requests_per_blob"], mb(med["us_bytes_read"]), med["cpu_seconds"])
		}
		if png, err := rep.chart(dir, p, rs); err == nil {
			fmt.Fprintf(&b, "\n![mirror %s](%s)\n", p, png)
		} else {
			fmt.Fprintf(&b, "\n(chart failed: %v)\n", err)
		}
	}
	if rs := rep.group("cut", "shared"); len(rs) > 0 {
		fmt.Fprintf(&b, "\n## Link cut half way (shared profile)\n\nThe connection that carries the link's byte number unique ÷ 2 towards EU is reset (`wan.Config.CutUpAtLinkBytes`). A system that fails is run again, up to 3 runs in all, into the same EU registry; the bytes of every run count.\n\n")
		fmt.Fprintf(&b, "| system | completed | runs | wall time | WAN bytes | × unique | cuts |\n|---|---|---|---|---|---|---|\n")
		for _, r := range rs {
			if len(r.Runs) == 0 {
				fmt.Fprintf(&b, "| %s | **no**: %s | – | – | – | – | – |\n", r.System, strings.Join(r.Errors, "; "))
				continue
			}
			med := r.Median
			fmt.Fprintf(&b, "| %s | yes | %.0f | %.2f s | %s | %.4f | %.0f |\n", r.System, med["attempts"], med["seconds"], mb(med["wan_bytes"]), med["wan_bytes"]/u, med["cuts"])
		}
	}
	if rs := rep.group("promotion", "-"); len(rs) > 0 {
		fmt.Fprintf(&b, "\n## Promotion within one registry\n\nImage 0 of the set (%d blobs, %s) copied to another repository of the US registry; the registry's own counters. Requests per blob: blob HEAD, GET, upload POST (a mount is one), PATCH and PUT, over the image's blobs.\n\n", rep.PromoBlobs, mb(float64(rep.PromoBytes)))
		fmt.Fprintf(&b, "| system | wall time | blob requests | per blob | blob GETs | bytes read | manifest requests |\n|---|---|---|---|---|---|---|\n")
		for _, r := range rs {
			if len(r.Runs) == 0 {
				fmt.Fprintf(&b, "| %s | failed: %s | – | – | – | – | – |\n", r.System, strings.Join(r.Errors, "; "))
				continue
			}
			med := r.Median
			fmt.Fprintf(&b, "| %s | %.2f s | %.0f | %.2f | %.0f | %s | %.0f |\n", r.System, med["seconds"], med["blob_requests"], med["requests_per_blob"], med["blob_gets"], mb(med["bytes_read"]), med["manifest_requests"])
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "mirror.md"), []byte(b.String()), 0o644); err != nil {
		return err
	}
	j, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "mirror.json"), j, 0o644)
}

// chart draws the wall times of one profile.
func (rep *mirrorReport) chart(dir, profile string, rs []*mirrorResult) (string, error) {
	var vals plotter.Values
	var names []string
	for _, r := range rs {
		vals = append(vals, r.Median["seconds"])
		names = append(names, shortName(r.System))
	}
	p := plot.New()
	p.Title.Text = fmt.Sprintf("Mirror %d images US → EU — %s profile", rep.Images, profile)
	p.Y.Label.Text = "seconds (lower is better)"
	bars, err := plotter.NewBarChart(vals, vg.Points(28))
	if err != nil {
		return "", err
	}
	bars.Color = color.RGBA{R: 46, G: 110, B: 190, A: 255}
	bars.LineStyle.Width = 0
	p.Add(bars)
	p.NominalX(names...)
	p.Y.Min = 0
	name := "mirror-" + profile + ".png"
	return name, p.Save(7*vg.Inch, 3.5*vg.Inch, filepath.Join(dir, name))
}
