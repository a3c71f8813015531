package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/dtrcache/dtrcache/proxy/units"
	"github.com/dtrcache/dtrcache/testenv"
	"github.com/dtrcache/dtrcache/testenv/wan"
)

// options are the harness's settings.
type options struct {
	quick     bool
	out       string
	repeats   int
	latency   time.Duration
	bandwidth string // shared profile, and the aggregate of the per-connection profile
	perConn   string
	aggregate string
	loadTime  time.Duration
	systems   string
	scenarios string
	images    string
	profiles  string
	fill      string
	// mirrorFills are extra dtrcache-mirror systems, each with its own
	// fill settings: "label=YAML map;label=YAML map" makes
	// dtrcache-mirror-<label> (see mirrorVariants).
	mirrorFills string
	// baseBin is another dtrcache binary, run as the extra system
	// dtrcache-base (a mirror with the default fill settings), so a change
	// is compared with the code before it in one run.
	baseBin string
	// orderClients are the client counts of the order scenario.
	orderClients string
	keep         bool
	// mirrorSet is the unique blob bytes of the mirroring set (0: 1 GiB,
	// 24 MiB with --quick); policies extra settings of the benchmarked
	// origin's policies: section.
	mirrorSet int64
	policies  string
}

func main() {
	var o options
	flag.BoolVar(&o.quick, "quick", false, "CI-sized smoke run: small images, a fast WAN, one repetition")
	flag.StringVar(&o.out, "out", "benchmarks/results/latest", "output folder (report.md, results.json, *.png)")
	flag.IntVar(&o.repeats, "repeats", 3, "repetitions of each timed run (the median is reported)")
	flag.DurationVar(&o.latency, "latency", 30*time.Millisecond, "WAN latency, each way")
	flag.StringVar(&o.bandwidth, "bandwidth", "400Mbit", "shared-link profile: bandwidth shared by all connections")
	flag.StringVar(&o.perConn, "per-conn", "80Mbit", "per-connection profile: cap of each connection")
	flag.StringVar(&o.aggregate, "aggregate", "1Gbit", "per-connection profile: total capacity of the link")
	flag.DurationVar(&o.loadTime, "load-time", 30*time.Second, "duration of the warm throughput test")
	flag.StringVar(&o.systems, "systems", "", "comma-separated systems to run (default: all)")
	flag.StringVar(&o.scenarios, "scenarios", "", "comma-separated scenarios: cold,concurrent,range,cut,throughput,resume,order,mirror (default: all)")
	flag.StringVar(&o.images, "images", "", "comma-separated images for the cold/warm scenario, e.g. 8x64MiB (default: all)")
	flag.StringVar(&o.profiles, "profiles", "", "comma-separated WAN profiles: shared,per-conn (default: both)")
	flag.StringVar(&o.fill, "fill", "", "fill settings of the dtrcache caches as a YAML map, e.g. '{parallel: 1}' (default: the product defaults)")
	flag.StringVar(&o.mirrorFills, "mirror-fills", "", "extra dtrcache-mirror systems with their own fill settings, 'label=YAML map;…', e.g. 'wa0={prefetch_while_awaited: 0}' runs dtrcache-mirror-wa0 (with --systems, name it there too)")
	flag.StringVar(&o.orderClients, "order-clients", "1,8,16", "comma-separated client counts of the order scenario")
	flag.StringVar(&o.baseBin, "base-bin", "", "another dtrcache binary, run as the mirror dtrcache-base (e.g. main's build) for an A/B comparison in one run (with --systems, name it there too)")
	flag.BoolVar(&o.keep, "keep", false, "keep the scratch directory")
	mirrorSet := flag.String("mirror-set", "", "unique blob bytes of the mirroring set, e.g. 256MiB (default: 1GiB, 24MiB with --quick)")
	flag.StringVar(&o.policies, "policies", "", "extra policies settings of the benchmarked origin as a YAML map, e.g. '{workers: 8}' (default: the product defaults)")
	render := flag.Bool("render-mirror", false, "only write mirror.md again from the mirror.json in --out")
	renderPulls := flag.Bool("render-report", false, "only write report.md and the charts again from the results.json in --out")
	flag.Parse()
	if *renderPulls {
		if err := renderReport(o.out); err != nil {
			fmt.Fprintln(os.Stderr, "benchmarks:", err)
			os.Exit(1)
		}
		return
	}
	if *render {
		if err := renderMirror(o); err != nil {
			fmt.Fprintln(os.Stderr, "benchmarks:", err)
			os.Exit(1)
		}
		return
	}
	if *mirrorSet != "" {
		n, err := units.ParseSize(*mirrorSet)
		if err != nil || n <= 0 {
			fmt.Fprintln(os.Stderr, "benchmarks: --mirror-set:", *mirrorSet, err)
			os.Exit(2)
		}
		o.mirrorSet = int64(n)
	}
	if o.quick {
		o.repeats = 1
		o.latency = 5 * time.Millisecond
		o.bandwidth, o.perConn, o.aggregate = "800Mbit", "200Mbit", "2Gbit"
		o.loadTime = 3 * time.Second
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "benchmarks:", err)
		os.Exit(1)
	}
}

// image is one benchmark image.
type image struct {
	label   string
	repoTag string
	spec    testenv.ImageSpec
	info    testenv.ImageInfo
}

func images(quick bool) []*image {
	if quick {
		return []*image{
			{label: "8x1MiB", repoTag: "bench/layers8:1", spec: testenv.ImageSpec{Layers: 8, LayerSize: 1 << 20, Seed: 8}},
			{label: "1x32MiB", repoTag: "bench/big:1", spec: testenv.ImageSpec{Layers: 1, LayerSize: 32 << 20, Seed: 1}},
			{label: "20x64KiB", repoTag: "bench/many:1", spec: testenv.ImageSpec{Layers: 20, LayerSize: 64 << 10, Seed: 200}},
		}
	}
	return []*image{
		{label: "8x64MiB", repoTag: "bench/layers8:1", spec: testenv.ImageSpec{Layers: 8, LayerSize: 64 << 20, Seed: 8}},
		{label: "1x1GiB", repoTag: "bench/big:1", spec: testenv.ImageSpec{Layers: 1, LayerSize: 1 << 30, Seed: 1}},
		{label: "200x1MiB", repoTag: "bench/many:1", spec: testenv.ImageSpec{Layers: 200, LayerSize: 1 << 20, Seed: 200}},
	}
}

func run(ctx context.Context, o options) error {
	shared, perConn, err := profiles(o)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "dtrcache-bench-")
	if err != nil {
		return err
	}
	if o.keep {
		fmt.Println("scratch directory:", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	e := &env{dir: dir, fill: o.fill}
	if e.log, err = os.Create(filepath.Join(dir, "systems.log")); err != nil {
		return err
	}
	defer e.log.Close()
	step := func(format string, args ...any) {
		fmt.Printf("%s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
	}

	step("building dtrcache and the backend registry")
	if err := buildTools(ctx, e); err != nil {
		return err
	}
	scen := func(name string) bool {
		return o.scenarios == "" || slices.Contains(strings.Split(o.scenarios, ","), name)
	}
	if scen("cold") || scen("concurrent") || scen("range") || scen("cut") || scen("throughput") || scen("resume") || scen("order") {
		if err := runPull(ctx, o, e, step, shared, perConn, scen); err != nil {
			return err
		}
	}
	if scen("mirror") {
		return runMirror(ctx, o, e, step)
	}
	return nil
}

// runPull runs the pull scenarios through the caches and writes
// report.md and results.json.
func runPull(ctx context.Context, o options, e *env, step func(string, ...any), shared, perConn wan.Config, scen func(string) bool) error {
	dir := e.dir
	bport, err := freePort()
	if err != nil {
		return err
	}
	backend := fmt.Sprintf("127.0.0.1:%d", bport)
	reg, err := e.startProc("backend", e.registry, "--addr", backend, "--dir", filepath.Join(dir, "backend"))
	if err != nil {
		return err
	}
	defer reg.stop()
	if err := waitHTTP(ctx, "http://"+backend+"/v2/"); err != nil {
		return err
	}
	imgs := images(o.quick)
	if o.scenarios == "order" {
		imgs = nil // the order scenario seeds its own image
	}
	// Only the cold scenario (and order, with its own image) reads just
	// the images of --images: the others are not seeded then.
	coldOnly := !scen("concurrent") && !scen("range") && !scen("cut") && !scen("throughput") && !scen("resume")
	for _, im := range imgs {
		if coldOnly && o.images != "" && !slices.Contains(strings.Split(o.images, ","), im.label) {
			continue
		}
		step("seeding %s (%s)", im.repoTag, im.label)
		img, err := testenv.GenerateImage(im.spec)
		if err != nil {
			return err
		}
		if err := testenv.Push(ctx, backend+"/"+im.repoTag, img, testenv.RemoteOptions{}); err != nil {
			return err
		}
		if im.info, err = testenv.Describe(img); err != nil {
			return err
		}
	}
	link, err := wan.Listen(context.WithoutCancel(ctx), "127.0.0.1:0", backend, shared)
	if err != nil {
		return err
	}
	defer link.Close()

	var shaCPU float64
	var shaRuns []float64
	if scen("cold") {
		// The cold CPU target's sha256 share, on this machine under this
		// run's load: before the systems start, while the harness is idle.
		if shaCPU, shaRuns, err = sha256CPU(ctx, 3); err != nil {
			return err
		}
		step("sha256: %.3f CPU s per GiB (median of %v)", shaCPU, shaRuns)
	}

	step("starting the systems")
	var systems []system
	want := func(name string) bool {
		return o.systems == "" || slices.Contains(strings.Split(o.systems, ","), name)
	}
	if want("direct") {
		systems = append(systems, &directSys{l: link})
	}
	if want("dtrcache-mirror") {
		s, err := newDtrcacheMirror(e, link, "dtrcache-mirror", e.fill)
		if err != nil {
			return err
		}
		systems = append(systems, s)
	}
	variants, err := mirrorVariants(o.mirrorFills)
	if err != nil {
		return err
	}
	for _, v := range variants {
		if !want(v.name) {
			continue
		}
		s, err := newDtrcacheMirror(e, link, v.name, v.fill)
		if err != nil {
			return err
		}
		systems = append(systems, s)
	}
	if o.baseBin != "" && want("dtrcache-base") {
		s, err := newDtrcacheMirror(e, link, "dtrcache-base", e.fill)
		if err != nil {
			return err
		}
		args := s.args
		s.args = func() []string { return append([]string{o.baseBin}, args()[1:]...) }
		systems = append(systems, s)
	}
	for _, vouching := range []bool{true, false} {
		if name := map[bool]string{true: "dtrcache-forward", false: "dtrcache-forward-head"}[vouching]; o.systems == "" && !vouching || !want(name) {
			continue // the HEAD-per-blob variant runs only when named
		}
		s, err := newDtrcacheForward(ctx, e, link, vouching)
		if err != nil {
			return err
		}
		systems = append(systems, s)
	}
	if want("dtrcache-redirect") {
		s, err := newDtrcacheRedirect(ctx, e, backend, shared)
		if err != nil {
			return err
		}
		systems = append(systems, s)
	}
	if want("distribution-proxy") {
		s, err := newDistributionProxy(e, link)
		if err != nil {
			return err
		}
		systems = append(systems, s)
	}
	if want("nginx") {
		s, err := newNginx(e, link)
		if err != nil {
			return err
		}
		systems = append(systems, s)
	}
	defer func() {
		for _, s := range systems {
			s.stop()
		}
	}()
	setProfile := func(c wan.Config) {
		for _, s := range systems {
			s.link().SetConfig(c)
		}
	}

	r := &runner{o: o, step: step, systems: systems, setProfile: setProfile}
	profile := func(name string) bool {
		return o.profiles == "" || slices.Contains(strings.Split(o.profiles, ","), name)
	}
	imageWanted := func(im *image) bool {
		return o.images == "" || slices.Contains(strings.Split(o.images, ","), im.label)
	}
	start := time.Now()
	if scen("cold") {
		for _, p := range []struct {
			name string
			cfg  wan.Config
			imgs []*image
		}{{"shared", shared, imgs}, {"per-conn", perConn, imgs[:1]}} {
			if !profile(p.name) {
				continue
			}
			setProfile(p.cfg)
			for _, im := range p.imgs {
				if !imageWanted(im) {
					continue
				}
				if err := r.coldWarm(ctx, p.name, im); err != nil {
					return err
				}
			}
		}
	}
	if scen("concurrent") {
		for _, p := range []struct {
			name string
			cfg  wan.Config
		}{{"shared", shared}, {"per-conn", perConn}} {
			if !profile(p.name) {
				continue
			}
			setProfile(p.cfg)
			if err := r.concurrent(ctx, p.name, imgs[0], 16); err != nil {
				return err
			}
		}
	}
	setProfile(shared)
	if scen("range") {
		if err := r.rangeRead(ctx, imgs[1], 0.9); err != nil {
			return err
		}
	}
	if scen("cut") {
		if err := r.cut(ctx, imgs[0], shared); err != nil {
			return err
		}
	}
	if scen("resume") {
		// The first layer of the multi-layer image: 64 MiB (32 MiB of the
		// single-layer image in a quick run, so the breaks fall beyond the
		// first 4 MiB, where a range of an uncached blob may go upstream).
		im := imgs[0]
		if o.quick {
			im = imgs[1]
		}
		if err := r.resume(ctx, im); err != nil {
			return err
		}
	}
	if scen("throughput") {
		if err := r.throughput(ctx, imgs[0]); err != nil {
			return err
		}
	}
	if scen("order") {
		step("seeding the order image")
		im, err := seedOrder(ctx, backend, o.quick)
		if err != nil {
			return err
		}
		imgs = append(imgs, im)
		counts, err := clientCounts(o.orderClients)
		if err != nil {
			return err
		}
		for _, n := range counts {
			if err := r.order(ctx, im, n, shared); err != nil {
				return err
			}
		}
	}
	rep := report{
		Generated: time.Now().UTC(), Quick: o.quick, Took: time.Since(start).Round(time.Second).String(),
		Machine: machine(), WAN: wanDescription(o), Images: imageDescriptions(imgs), Results: r.results,
		RTT: (2 * o.latency).Seconds() * 1000, MirrorFills: map[string]string{},
		SHA256CPU: shaCPU, SHA256Runs: shaRuns,
	}
	for _, v := range variants {
		if want(v.name) {
			rep.MirrorFills[v.name] = v.fill
		}
	}
	step("writing the report to %s", o.out)
	return rep.write(o.out)
}

// mirrorVariant is an extra dtrcache-mirror system with its own fill
// settings.
type mirrorVariant struct {
	name string // dtrcache-mirror-<label>
	fill string // YAML flow map of the fill: section
}

// mirrorVariants parses --mirror-fills: "label=YAML map;label=YAML map".
func mirrorVariants(spec string) ([]mirrorVariant, error) {
	var out []mirrorVariant
	for _, part := range strings.Split(spec, ";") {
		if strings.TrimSpace(part) == "" {
			continue
		}
		label, fill, ok := strings.Cut(part, "=")
		label, fill = strings.TrimSpace(label), strings.TrimSpace(fill)
		if !ok || label == "" || fill == "" {
			return nil, fmt.Errorf("--mirror-fills: %q is not label=YAML map", part)
		}
		out = append(out, mirrorVariant{name: "dtrcache-mirror-" + label, fill: fill})
	}
	return out, nil
}

// clientCounts parses --order-clients: comma-separated positive counts.
func clientCounts(spec string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(spec, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("--order-clients: %q is not a positive count", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// profiles returns the shared-link and per-connection WAN settings.
func profiles(o options) (shared, perConn wan.Config, err error) {
	bw, err := wan.ParseBandwidth(o.bandwidth)
	if err != nil {
		return shared, perConn, fmt.Errorf("--bandwidth: %w", err)
	}
	pc, err := wan.ParseBandwidth(o.perConn)
	if err != nil {
		return shared, perConn, fmt.Errorf("--per-conn: %w", err)
	}
	agg, err := wan.ParseBandwidth(o.aggregate)
	if err != nil {
		return shared, perConn, fmt.Errorf("--aggregate: %w", err)
	}
	return wan.Config{Latency: o.latency, Bandwidth: bw}, wan.Config{Latency: o.latency, Bandwidth: agg, PerConnBandwidth: pc}, nil
}

func wanDescription(o options) string {
	return fmt.Sprintf("latency %s each way (RTT %s); shared profile: %s shared by all connections; per-connection profile: %s per connection, %s in all",
		o.latency, 2*o.latency, o.bandwidth, o.perConn, o.aggregate)
}

func imageDescriptions(imgs []*image) map[string]int64 {
	m := map[string]int64{}
	for _, im := range imgs {
		if im.info.BlobBytes == 0 {
			continue // not seeded
		}
		m[im.label] = im.info.BlobBytes
	}
	return m
}

func machine() string {
	host, _ := os.Hostname()
	cpu := "?"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				cpu = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	return fmt.Sprintf("%s, %d CPUs (%s)", host, numCPU(), cpu)
}
