package main

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestColdCPULimit(t *testing.T) {
	for _, tc := range []struct {
		name       string
		sha, nginx float64
		want       float64
	}{
		{"last full run, 8x64MiB", 0.5, 2.32, 3.384},
		{"no nginx CPU", 0.5, 0, 0.6},
		{"no sha256", 0, 2.5, 3.0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := coldCPULimit(tc.sha, tc.nginx); math.Abs(got-tc.want) > 1e-9 {
				t.Errorf("coldCPULimit(%v, %v) = %v, want %v", tc.sha, tc.nginx, got, tc.want)
			}
		})
	}
}

func TestCPUTarget(t *testing.T) {
	for _, tc := range []struct {
		name         string
		scenario     string
		c, n, sha    float64
		wantOK       bool
		wantMet      bool
		wantWhat     string
		wantMeasured string
	}{
		{"cold over the limit (the last full run's 8x64MiB)", "cold", 6.98, 2.32, 0.5, true, false,
			"cold: CPU per GiB ≤ 1.2 × (sha256 + nginx's) (s)", "6.98 vs 1.2 × (0.50 + 2.32) = 3.38 s/GiB: 2.06× the limit (3.01× nginx's)"},
		// 3.3 > 1.2 × 2.5 (the old limit) but ≤ 1.2 × (0.5 + 2.5): sha256 counts.
		{"cold met only thanks to sha256", "cold", 3.3, 2.5, 0.5, true, true,
			"cold: CPU per GiB ≤ 1.2 × (sha256 + nginx's) (s)", "3.30 vs 1.2 × (0.50 + 2.50) = 3.60 s/GiB: 0.92× the limit (1.32× nginx's)"},
		{"cold exactly at the limit", "cold", coldCPULimit(0.5, 2.5), 2.5, 0.5, true, true, "", ""},
		{"cold without a sha256 figure", "cold", 3.0, 2.5, 0, false, false, "", ""},
		{"warm under nginx", "warm", 0.67, 0.77, 0.5, true, true,
			"warm: CPU per GiB ≤ 1.0 × nginx's (s)", "0.67 vs 0.77 s/GiB = 0.87×"},
		// sha256 is no part of the warm limit: a hit verifies nothing.
		{"warm over nginx", "warm", 0.32, 0.20, 0.5, true, false, "", "0.32 vs 0.20 s/GiB = 1.60×"},
		{"another scenario", "concurrent", 1, 1, 1, false, false, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := cpuTarget(tc.scenario, "s", tc.c, tc.n, tc.sha)
			if ok != tc.wantOK {
				t.Fatalf("ok = %v, want %v (%+v)", ok, tc.wantOK, got)
			}
			if !ok {
				return
			}
			if got.Met != tc.wantMet {
				t.Errorf("met = %v, want %v (%+v)", got.Met, tc.wantMet, got)
			}
			if tc.wantWhat != "" && got.What != tc.wantWhat {
				t.Errorf("what = %q, want %q", got.What, tc.wantWhat)
			}
			if tc.wantMeasured != "" && got.Measured != tc.wantMeasured {
				t.Errorf("measured = %q, want %q", got.Measured, tc.wantMeasured)
			}
		})
	}
}

// TestReportCPUTargets writes a report of a cold/warm run and checks its
// CPU targets, header and cold table against the run's own sha256.
func TestReportCPUTargets(t *testing.T) {
	res := func(scenario, system string, cpu float64) *result {
		runs := []map[string]float64{{"seconds": 10, "cpu_s_per_gib": cpu}}
		return &result{Scenario: scenario, Image: "8x64MiB", Profile: "shared", System: system, Peer: system == "nginx", Runs: runs, Median: medians(runs)}
	}
	for _, tc := range []struct {
		name     string
		sha      float64
		wantCold string // the cold CPU target's met column, "" when there is none
		wantWarm string
	}{
		{"sha256 measured", 0.5, "| cold: CPU per GiB ≤ 1.2 × (sha256 + nginx's) (dtrcache-mirror, 8x64MiB, shared) | 3.30 vs 1.2 × (0.50 + 2.50) = 3.60 s/GiB: 0.92× the limit (1.32× nginx's) | yes |",
			"| warm: CPU per GiB ≤ 1.0 × nginx's (dtrcache-mirror, 8x64MiB, shared) | 0.30 vs 0.20 s/GiB = 1.50× | **no** |"},
		{"an older run without sha256", 0, "",
			"| warm: CPU per GiB ≤ 1.0 × nginx's (dtrcache-mirror, 8x64MiB, shared) | 0.30 vs 0.20 s/GiB = 1.50× | **no** |"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep := &report{
				Images:    map[string]int64{"8x64MiB": 8 << 26},
				SHA256CPU: tc.sha,
				Results: []*result{
					res("cold", "dtrcache-mirror", 3.3), res("cold", "nginx", 2.5),
					res("warm", "dtrcache-mirror", 0.3), res("warm", "nginx", 0.2),
				},
			}
			if tc.sha > 0 {
				rep.SHA256Runs = []float64{0.49, 0.5, 0.52}
			}
			md := renderedReport(t, rep)
			hasCold := strings.Contains(md, "cold: CPU per GiB")
			if tc.wantCold == "" && hasCold {
				t.Errorf("a cold CPU target without a sha256 figure:\n%s", md)
			}
			if tc.wantCold != "" && !strings.Contains(md, tc.wantCold+"\n") {
				t.Errorf("report lacks %q:\n%s", tc.wantCold, md)
			}
			if !strings.Contains(md, tc.wantWarm+"\n") {
				t.Errorf("report lacks %q:\n%s", tc.wantWarm, md)
			}
			header := "sha256 on this machine, this run: **0.500 CPU s per GiB**"
			row := "| dtrcache-mirror | 10.00 s | 0 B | – | 1.00× | 3.30 | 1.32× | 1.10× |"
			if got := strings.Contains(md, header) && strings.Contains(md, row+"\n"); got != (tc.sha > 0) {
				t.Errorf("sha256 header and cold column shown = %v, want %v:\n%s", got, tc.sha > 0, md)
			}
		})
	}
}

func TestSHA256CPU(t *testing.T) {
	if testing.Short() {
		t.Skip("hashes 2 GiB")
	}
	med, runs, err := sha256CPU(context.Background(), 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 2 {
		t.Fatalf("runs = %v, want 2", runs)
	}
	// Any machine hashes a GiB in more than 10 ms and less than a minute.
	if med < 0.01 || med > 60 {
		t.Errorf("sha256: %v CPU s per GiB, runs %v", med, runs)
	}
}

// TestRedirectWarmTargets: the redirect flow's warm pull is held to its
// physical limit (a round trip to the origin per blob, 3 at a time, plus
// the local transfer the mirror's warm pull measures); the floor of the
// client's round trips in series and the comparison with the best peer,
// which makes no such round trip, are information for it (the best peer
// stays a target for the mirror). Its CPU is shown with the cache's and
// the origin's shares.
func TestRedirectWarmTargets(t *testing.T) {
	res := func(system string, seconds float64, cpu map[string]float64) *result {
		run := map[string]float64{"seconds": seconds}
		for k, v := range cpu {
			run[k] = v
		}
		runs := []map[string]float64{run}
		return &result{Scenario: "warm", Image: "200x1MiB", Profile: "shared", System: system, Peer: system == "nginx", Runs: runs, Median: medians(runs)}
	}
	rep := &report{
		RTT:    60,
		Images: map[string]int64{"200x1MiB": 200 << 20},
		Results: []*result{
			res("dtrcache-mirror", 0.40, map[string]float64{"cpu_s_per_gib": 0.5}),
			res("dtrcache-redirect", 4.50, map[string]float64{"cpu_s_per_gib": 1.5, "cache_cpu_s_per_gib": 1.0, "origin_cpu_s_per_gib": 0.5}),
			res("nginx", 0.50, map[string]float64{"cpu_s_per_gib": 0.6}),
		},
	}
	md := renderedReport(t, rep)
	// ceil(201/3) = 67 round trips of 60 ms + 0.40 s = 4.42 s.
	for _, want := range []string{
		"| warm pull ≤ 1.1 × ceil(blobs/3) × RTT + local transfer (dtrcache-redirect, 200x1MiB, shared) | 4.50 s vs 4.42 s = 1.02× | yes |\n",
		// 3 + ceil(200/3) = 70 round trips in series: 4.20 s + 0.40 s.
		"| warm pull against the client's round trips in series, (ping + manifest + config + ceil(layers/3)) × RTT + local transfer, no target (dtrcache-redirect, 200x1MiB, shared) | 4.50 s vs 70 × 60 ms + 0.40 s = 4.60 s: 0.98× | information |\n",
		"| warm pull against the best peer, no target for the redirect flow (dtrcache-redirect, 200x1MiB, shared) | 4.50 s vs nginx 0.50 s = 9.00× | information |\n",
		"| warm pull ≤ 0.9 × best peer (dtrcache-mirror, 200x1MiB, shared) | 0.40 s vs nginx 0.50 s = 0.80× | yes |\n",
		"| dtrcache-redirect | 4.50 s | 0 B | – | 9.00× | 1.50 (cache 1.00 + origin 0.50) | 2.50× |\n",
		"| dtrcache-mirror | 0.40 s | 0 B | – | 0.80× | 0.50 | 0.83× |\n",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	if strings.Contains(md, "warm pull ≤ 0.9 × best peer (dtrcache-redirect") {
		t.Errorf("the best peer is a target of the redirect flow:\n%s", md)
	}
	for _, tg := range rep.Targets {
		if tg.Info != strings.Contains(tg.What, "no target") {
			t.Errorf("target %+v: info = %v", tg, tg.Info)
		}
	}
}

// renderedReport writes rep into a temporary directory and returns its
// report.md.
func renderedReport(t *testing.T, rep *report) string {
	t.Helper()
	dir := t.TempDir()
	if err := rep.write(dir); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "report.md"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
