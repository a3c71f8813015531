package main

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"slices"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/dtrcache/dtrcache/testenv/wan"
)

// result is one cell of the report: a scenario on an image under a WAN
// profile for one system, over its repetitions.
type result struct {
	Scenario string               `json:"scenario"`
	Image    string               `json:"image"`
	Profile  string               `json:"profile"`
	System   string               `json:"system"`
	Peer     bool                 `json:"peer"`
	Runs     []map[string]float64 `json:"runs"`
	Median   map[string]float64   `json:"median"`
	Errors   []string             `json:"errors,omitempty"`
}

// runner runs the scenarios and collects results.
type runner struct {
	o          options
	step       func(string, ...any)
	systems    []system
	setProfile func(wan.Config)
	results    []*result
}

func (r *runner) add(res *result) {
	res.Median = medians(res.Runs)
	r.results = append(r.results, res)
}

// resetLink waits until the link is quiet (a previous test's closed
// connections may still be draining) and zeroes its counters.
func resetLink(s system) {
	l := s.link()
	for i := 0; i < 50; i++ {
		before := l.Stats()
		time.Sleep(40 * time.Millisecond)
		if after := l.Stats(); after.BytesDown == before.BytesDown && after.BytesUp == before.BytesUp {
			break
		}
	}
	l.ResetStats()
}

func wanBytes(s system) float64 {
	st := s.link().Stats()
	return float64(st.BytesDown + st.BytesUp)
}

// coldWarm: scenario 1 (cold pull, one client) and 2 (warm pull).
func (r *runner) coldWarm(ctx context.Context, profile string, im *image) error {
	for _, s := range r.systems {
		cold := &result{Scenario: "cold", Image: im.label, Profile: profile, System: s.name(), Peer: s.peer()}
		warm := &result{Scenario: "warm", Image: im.label, Profile: profile, System: s.name(), Peer: s.peer()}
		for i := 0; i < r.o.repeats; i++ {
			if err := s.cold(ctx); err != nil {
				return fmt.Errorf("%s: %w", s.name(), err)
			}
			for _, res := range []*result{cold, warm} {
				if res == warm {
					// A warm pull comes later in real life: let every system
					// finish writing what the cold pull brought (dtrcache
					// fsyncs each blob; nginx and distribution do not).
					syscall.Sync()
					if f, ok := s.(authForgetter); ok {
						// ... and later than any authorization remembered.
						if err := f.forgetAuth(ctx); err != nil {
							return fmt.Errorf("%s: %w", s.name(), err)
						}
					}
				}
				resetLink(s)
				cpu0 := readCPU(s)
				start := time.Now()
				err := pullOnce(ctx, s, im.repoTag, im.info.Digest.String())
				took := time.Since(start)
				cpu := readCPU(s).since(cpu0)
				if err != nil {
					res.Errors = append(res.Errors, err.Error())
					r.step("%-5s %-9s %-8s %-18s run %d/%d: FAILED: %v", res.Scenario, im.label, profile, s.name(), i+1, r.o.repeats, err)
					continue
				}
				run := map[string]float64{"seconds": took.Seconds(), "wan_bytes": wanBytes(s)}
				if s.pids() != nil {
					// CPU of the system's processes per GiB of blobs filled
					// (cold) or served (warm); for the redirect flow the
					// origin's and the cache's, also apart.
					gib := float64(im.info.BlobBytes) / (1 << 30)
					run["cpu_s"] = cpu.total
					run["cpu_s_per_gib"] = cpu.total / gib
					if cpu.hasOrigin {
						run["origin_cpu_s_per_gib"] = cpu.origin / gib
						run["cache_cpu_s_per_gib"] = (cpu.total - cpu.origin) / gib
					}
				}
				res.Runs = append(res.Runs, run)
				r.step("%-5s %-9s %-8s %-18s run %d/%d: %6.2fs, %s over the WAN, %.2f CPU s%s", res.Scenario, im.label, profile, s.name(), i+1, r.o.repeats, took.Seconds(), mb(wanBytes(s)), cpu.total, cpu.originNote())
			}
		}
		r.add(cold)
		r.add(warm)
	}
	return nil
}

// concurrent: scenario 3 (n clients pull the same cold image at once),
// with the peak RSS of the system (scenario 7).
func (r *runner) concurrent(ctx context.Context, profile string, im *image, n int) error {
	// Once per system: without coalescing, 16 pulls move 16 images across
	// the WAN, which takes minutes on the full images.
	for _, s := range r.systems {
		res := &result{Scenario: "concurrent", Image: im.label, Profile: profile, System: s.name(), Peer: s.peer()}
		for i := 0; i < 1; i++ {
			if err := s.cold(ctx); err != nil {
				return err
			}
			resetLink(s)
			rss := sampleRSS(s.pids)
			orss := sampleRSS(originPIDs(s))
			cpu0, clients0 := cpuSeconds(cpuPIDs(s)), cpuSeconds([]int{os.Getpid()})
			start := time.Now()
			var wg sync.WaitGroup
			errs := make(chan error, n)
			for c := 0; c < n; c++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					errs <- pullOnce(ctx, s, im.repoTag, im.info.Digest.String())
				}()
			}
			wg.Wait()
			took := time.Since(start)
			cpu, clients := cpuSeconds(cpuPIDs(s))-cpu0, cpuSeconds([]int{os.Getpid()})-clients0
			peak, opeak := rss.Peak(), orss.Peak()
			close(errs)
			failed := 0
			for err := range errs {
				if err != nil {
					failed++
					res.Errors = append(res.Errors, err.Error())
				}
			}
			run := map[string]float64{"seconds": took.Seconds(), "wan_bytes": wanBytes(s), "failed": float64(failed)}
			if s.pids() != nil {
				run["peak_rss_mib"] = float64(peak) / (1 << 20)
				run["cpu_s"] = cpu
			}
			// The clients (go-containerregistry, each hashing what it pulls)
			// and the WAN emulator run in this process; with the system's
			// CPU this is the share of the machine's cores the scenario kept
			// busy.
			run["clients_cpu_s"] = clients
			run["cpu_busy"] = (cpu + clients) / (took.Seconds() * float64(numCPU()))
			if opeak > 0 {
				run["origin_peak_rss_mib"] = float64(opeak) / (1 << 20)
			}
			res.Runs = append(res.Runs, run)
			r.step("%d clients %-9s %-8s %-18s: %6.2fs, %s over the WAN, %d failed, peak RSS %s, CPU %.1f s + harness (clients, WAN) %.1f s = %.0f %% of the cores", n, im.label, profile, s.name(), took.Seconds(), mb(wanBytes(s)), failed, mb(float64(peak)), cpu, clients, 100*run["cpu_busy"])
		}
		r.add(res)
	}
	return nil
}

// rangeRead: scenario 4 (time to first byte of a range at frac of an
// uncached blob).
func (r *runner) rangeRead(ctx context.Context, im *image, frac float64) error {
	d := im.info.Layers[0].String()
	off := int64(float64(im.spec.LayerSize) * frac) // random layers are stored as generated
	repo := repoOf(im.repoTag)
	for _, s := range r.systems {
		if pullsOnly(s) {
			continue
		}
		res := &result{Scenario: "range", Image: im.label, Profile: "shared", System: s.name(), Peer: s.peer()}
		for i := 0; i < r.o.repeats; i++ {
			if err := s.cold(ctx); err != nil {
				return err
			}
			url := "http://" + s.host() + "/v2/" + repo + "/blobs/" + d
			opts := s.remote()
			ttfb, err := timeToFirstByte(ctx, url, off, opts.Username, opts.Password)
			if err != nil {
				res.Errors = append(res.Errors, err.Error())
				r.step("range %-9s %-18s run %d/%d: FAILED: %v", im.label, s.name(), i+1, r.o.repeats, err)
				continue
			}
			res.Runs = append(res.Runs, map[string]float64{"ttfb_ms": ms(ttfb)})
			r.step("range %-9s %-18s run %d/%d: first byte at %.0f%% after %.1f ms", im.label, s.name(), i+1, r.o.repeats, frac*100, ms(ttfb))
		}
		r.add(res)
	}
	return nil
}

// cut: scenario 5 (the upstream connection cut half way through a cold
// pull).
func (r *runner) cut(ctx context.Context, im *image, shared wan.Config) error {
	// Whichever connection carries the pull's middle byte across the WAN
	// is reset; a per-connection byte count would never fire for systems
	// that spread a layer over several connections.
	c := shared
	c.CutAtLinkBytes = im.info.BlobBytes / 2
	defer r.setProfile(shared)
	for _, s := range r.systems {
		res := &result{Scenario: "cut", Image: im.label, Profile: "shared", System: s.name(), Peer: s.peer()}
		for i := 0; i < r.o.repeats; i++ {
			if err := s.cold(ctx); err != nil {
				return err
			}
			s.link().SetConfig(c) // re-arms the single cut
			resetLink(s)
			start := time.Now()
			err := pullOnce(ctx, s, im.repoTag, im.info.Digest.String())
			took := time.Since(start)
			ok := 1.0
			if err != nil {
				ok = 0
				res.Errors = append(res.Errors, err.Error())
			}
			res.Runs = append(res.Runs, map[string]float64{"completed": ok, "seconds": took.Seconds(), "wan_bytes": wanBytes(s), "cuts": float64(s.link().Stats().Cuts)})
			r.step("cut   %-9s %-18s run %d/%d: completed=%v in %.2fs, %s over the WAN, %d cut(s)", im.label, s.name(), i+1, r.o.repeats, err == nil, took.Seconds(), mb(wanBytes(s)), s.link().Stats().Cuts)
			r.setProfile(shared)
		}
		r.add(res)
	}
	return nil
}

// throughput: scenario 6 (64 connections on one warm blob) with the peak
// RSS of the system (scenario 7).
func (r *runner) throughput(ctx context.Context, im *image) error {
	d := im.info.Layers[0].String()
	for _, s := range r.systems {
		if s.name() == "direct" || pullsOnly(s) {
			continue // bounded by the WAN, not a cache; or no blob URL of its own
		}
		res := &result{Scenario: "throughput", Image: im.label + " (one layer)", Profile: "shared", System: s.name(), Peer: s.peer()}
		if err := s.cold(ctx); err != nil {
			return err
		}
		if err := pullOnce(ctx, s, im.repoTag, im.info.Digest.String()); err != nil {
			return fmt.Errorf("%s: warming: %w", s.name(), err)
		}
		url, err := s.blobURL(ctx, repoOf(im.repoTag), d)
		if err != nil {
			return fmt.Errorf("%s: %w", s.name(), err)
		}
		rss := sampleRSS(s.pids)
		orss := sampleRSS(originPIDs(s))
		lr, err := runLoad(ctx, url, 64, r.o.loadTime)
		peak, opeak := rss.Peak(), orss.Peak()
		if err != nil {
			res.Errors = append(res.Errors, err.Error())
			r.step("throughput %-18s FAILED: %v", s.name(), err)
			r.add(res)
			continue
		}
		res.Runs = append(res.Runs, map[string]float64{
			"req_per_s": lr.Requests, "mib_per_s": lr.Bytes / (1 << 20), "p50_ms": lr.P50ms, "p99_ms": lr.P99ms,
			"peak_rss_mib": float64(peak) / (1 << 20),
		})
		if opeak > 0 {
			res.Runs[len(res.Runs)-1]["origin_peak_rss_mib"] = float64(opeak) / (1 << 20)
		}
		r.step("throughput %-18s %.0f req/s, %.0f MiB/s, p50 %.1f ms, p99 %.1f ms, peak RSS %s", s.name(), lr.Requests, lr.Bytes/(1<<20), lr.P50ms, lr.P99ms, mb(float64(peak)))
		r.add(res)
	}
	return nil
}

func repoOf(repoTag string) string {
	for i := len(repoTag) - 1; i >= 0; i-- {
		if repoTag[i] == ':' {
			return repoTag[:i]
		}
	}
	return repoTag
}

// medians returns the median of every metric over runs.
func medians(runs []map[string]float64) map[string]float64 {
	out := map[string]float64{}
	if len(runs) == 0 {
		return out
	}
	for k := range runs[0] {
		var vs []float64
		for _, r := range runs {
			vs = append(vs, r[k])
		}
		slices.Sort(vs)
		if len(vs)%2 == 1 {
			out[k] = vs[len(vs)/2]
		} else {
			out[k] = (vs[len(vs)/2-1] + vs[len(vs)/2]) / 2
		}
	}
	return out
}

func sortDurations(d []time.Duration) { sort.Slice(d, func(i, j int) bool { return d[i] < d[j] }) }

func numCPU() int { return runtime.NumCPU() }

func mb(b float64) string {
	switch {
	case b >= 1<<30:
		return fmt.Sprintf("%.2f GiB", b/(1<<30))
	case b >= 1<<20:
		return fmt.Sprintf("%.1f MiB", b/(1<<20))
	case b >= 1<<10:
		return fmt.Sprintf("%.1f KiB", b/(1<<10))
	}
	return fmt.Sprintf("%.0f B", b)
}

// cpuPIDs are the processes whose CPU counts as s's: the system's own
// and, for a system with an origin (the redirect flow: the origin
// authorizes and redirects every blob, and proxies every fill), the
// origin's too.
func cpuPIDs(s system) []int {
	return append(s.pids(), originPIDs(s)()...)
}

// cpuReading is the CPU seconds a system's processes have used so far:
// all of them (cpuPIDs), and the origin's alone when it has one.
type cpuReading struct {
	total, origin float64
	hasOrigin     bool
}

func readCPU(s system) cpuReading {
	o := originPIDs(s)()
	return cpuReading{total: cpuSeconds(cpuPIDs(s)), origin: cpuSeconds(o), hasOrigin: o != nil}
}

// since is the CPU used between r0 and r.
func (r cpuReading) since(r0 cpuReading) cpuReading {
	return cpuReading{total: r.total - r0.total, origin: r.origin - r0.origin, hasOrigin: r.hasOrigin && r0.hasOrigin}
}

// originNote is the origin's part of r for the progress lines.
func (r cpuReading) originNote() string {
	if !r.hasOrigin {
		return ""
	}
	return fmt.Sprintf(" (origin %.2f, cache %.2f)", r.origin, r.total-r.origin)
}

// originPIDs returns the origin's processes of a system that has one.
func originPIDs(s system) func() []int {
	if o, ok := s.(interface{ originPIDs() []int }); ok {
		return o.originPIDs
	}
	return func() []int { return nil }
}
