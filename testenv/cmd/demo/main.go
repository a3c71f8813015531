// Command demo starts a whole dtrcache topology in one process on loopback
// — a backend registry and the origin in the "US", a WAN emulator, the
// "asia" cache — seeds an image, and has the demo user alice pull it three
// ways: direct from the origin, cold through the cache, warm. It prints
// what each pull cost.
//
//	go run ./testenv/cmd/demo [--layers 8 --layer-size 64MiB] [--keep]
//
// With --keep it leaves everything running (the origin with its policy
// engine and web console) and prints the commands and the console's URL.
//
// It lives in the test environment, not in the production binary, so the
// dtrcache that operators deploy links no test registry.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/dtrcache/dtrcache/casstore"
	"github.com/dtrcache/dtrcache/cmd/dtrcache/progress"
	"github.com/dtrcache/dtrcache/proxy/cache"
	"github.com/dtrcache/dtrcache/proxy/units"
	"github.com/dtrcache/dtrcache/testenv"
	"github.com/dtrcache/dtrcache/testenv/stack"
	"github.com/dtrcache/dtrcache/testenv/wan"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

func main() { os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr)) }

// demoFlags are the settings of the demo.
type demoFlags struct {
	layers              int
	layerSize           string
	latency             time.Duration
	bandwidth, perConn  string
	realistic, keep     bool
	seed                uint64
	dir, logFile, image string
}

// run parses the flags and runs the demo until it is done (or, with
// --keep, until SIGINT or SIGTERM); it returns the exit code: 0 done, 1 a
// failure (or a bad flag value), 2 bad usage.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f demoFlags
	fs.IntVar(&f.layers, "layers", 4, "number of image layers")
	fs.StringVar(&f.layerSize, "layer-size", "48MiB", "size of each layer (before compression)")
	fs.DurationVar(&f.latency, "latency", 90*time.Millisecond, "WAN latency, each way")
	fs.StringVar(&f.bandwidth, "bandwidth", "200Mbit", "WAN bandwidth, shared by all connections (e.g. 200Mbit, 25MB/s)")
	fs.StringVar(&f.perConn, "per-conn-bandwidth", "0", "cap of each WAN connection (a long fat network); 0 for none")
	fs.BoolVar(&f.realistic, "realistic", true, "gzipped tar layers (pullable by docker); false: incompressible random layers")
	fs.BoolVar(&f.keep, "keep", false, "leave the topology running and print commands to try by hand (Ctrl-C stops it)")
	fs.Uint64Var(&f.seed, "seed", 1, "content seed of the generated image")
	fs.StringVar(&f.dir, "dir", "", "keep the stores in this directory (default: a temporary one, removed at the end)")
	fs.StringVar(&f.logFile, "log", "", "write the servers' logs (JSON) to this file")
	fs.StringVar(&f.image, "image", "website/ui:3-stable", "repository:tag of the demo image")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := demo(ctx, f, stdout); err != nil {
		fmt.Fprintf(stderr, "demo: %v\n", err)
		return 1
	}
	return 0
}

// pullRow is one line of the demo's table.
type pullRow struct {
	name     string
	took     time.Duration
	wanBytes int64
}

func demo(ctx context.Context, f demoFlags, out io.Writer) error {
	size, err := units.ParseSize(f.layerSize)
	if err != nil {
		return fmt.Errorf("--layer-size: %w", err)
	}
	bw, err := wan.ParseBandwidth(f.bandwidth)
	if err != nil {
		return fmt.Errorf("--bandwidth: %w", err)
	}
	perConn, err := wan.ParseBandwidth(f.perConn)
	if err != nil {
		return fmt.Errorf("--per-conn-bandwidth: %w", err)
	}
	log := zap.NewNop()
	if f.logFile != "" {
		lf, err := os.Create(f.logFile)
		if err != nil {
			return err
		}
		defer lf.Close()
		enc := zap.NewProductionEncoderConfig()
		enc.TimeKey, enc.EncodeTime = "ts", zapcore.ISO8601TimeEncoder
		log = zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(enc), zapcore.AddSync(lf), zapcore.InfoLevel))
	}
	fmt.Fprintf(out, "dtrcache demo: a US origin, an Asia office cache, and a WAN between them\n")
	fmt.Fprintf(out, "  WAN: %s each way, %s shared by all connections", f.latency, progress.Human(bw*8, "bit/s"))
	if perConn > 0 {
		fmt.Fprintf(out, ", %s per connection", progress.Human(perConn*8, "bit/s"))
	}
	fmt.Fprintln(out)
	tp, err := stack.Start(ctx, stack.Options{TopologyOptions: testenv.TopologyOptions{
		Dir:      f.dir,
		WAN:      wan.Config{Latency: f.latency, Bandwidth: bw, PerConnBandwidth: perConn},
		Fill:     casstore.FillOptions{Parallel: cache.DefaultParallel}, // as a cache configured with defaults
		Prefetch: cache.DefaultPrefetch,
		Logger:   log,
	}})
	if err != nil {
		return err
	}
	defer tp.Close()
	fmt.Fprintf(out, "  origin %s (backend registry %s), cache %q at %s\n", tp.OriginURL, tp.Registry.URL, tp.CacheName, tp.CacheURL)

	fmt.Fprintf(out, "Seeding %s: %d layers of %s (%s)… ", f.image, f.layers, f.layerSize, map[bool]string{true: "gzipped tar", false: "random"}[f.realistic])
	info, err := tp.Seed(ctx, f.image, testenv.ImageSpec{Layers: f.layers, LayerSize: int64(size), Seed: f.seed, Realistic: f.realistic})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "%s of blobs, manifest %s\n", progress.Human(info.BlobBytes, "B"), info.Digest.String()[:19])

	var rows []pullRow
	pull := func(name string) error {
		tp.Link.ResetStats()
		bar := progress.NewBar(info.BlobBytes, name, out)
		start := time.Now()
		res, err := tp.PullAs(ctx, "alice", f.image, func(n int64) { bar.Add64(n) })
		bar.Finish()
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if res.Digest != info.Digest {
			return fmt.Errorf("%s: pulled %s, want %s", name, res.Digest, info.Digest)
		}
		st := tp.Link.Stats()
		rows = append(rows, pullRow{name: name, took: time.Since(start), wanBytes: st.BytesDown + st.BytesUp})
		return nil
	}
	fmt.Fprintln(out, "alice pulls the image three ways:")
	if err := pull("direct from the origin"); err != nil {
		return err
	}
	if err := tp.SetUserCache(ctx, "alice", tp.CacheName); err != nil {
		return err
	}
	for _, name := range []string{"cold, through the cache", "warm, from the cache"} {
		if err := pull(name); err != nil {
			return err
		}
	}
	printTable(out, rows)
	saved := rows[0].wanBytes - rows[2].wanBytes
	fmt.Fprintf(out, "\nThe warm pull sent %s over the WAN instead of %s: the cache saved %s (%.1f%%) for every later pull in the office.\n",
		progress.Human(rows[2].wanBytes, "B"), progress.Human(rows[0].wanBytes, "B"), progress.Human(saved, "B"), 100*float64(saved)/float64(max(rows[0].wanBytes, 1)))
	st := tp.CacheStore.Stats()
	fmt.Fprintf(out, "The cache holds %d blobs (%s); it filled each once (%d fills, %s from upstream).\n",
		st.Blobs, progress.Human(st.Bytes, "B"), st.Misses, progress.Human(st.BytesFilled, "B"))
	if !f.keep {
		return nil
	}
	fmt.Fprintf(out, `
The topology keeps running (Ctrl-C stops it). Users admin, alice and bob share the password %q;
alice's pulls go to the cache, bob's to the origin.

  docker login %[2]s -u alice            # loopback registries may use plain HTTP
  docker image pull %[2]s/%[3]s
  skopeo copy --src-tls-verify=false --src-creds alice:%[1]s docker://%[2]s/%[3]s dir:/tmp/ui
  curl -s %[4]s/metrics | grep -E '^dtrcache_(blob|store)'
  curl -s -u admin:%[1]s %[5]s/api/v0/content_caches

The web console: %[6]s
  sign in as admin (every page, the caches too), alice or bob (a user's pages), password %[1]q
`, tp.Password, tp.OriginHost, f.image, tp.CacheURL, tp.OriginURL, tp.ConsoleURL)
	<-ctx.Done() // run's context ends on SIGINT or SIGTERM
	fmt.Fprintln(out, "\nstopping")
	return nil
}

// printTable prints the pulls with their time, the bytes they sent over
// the WAN and their speed-up against the first (the direct pull).
func printTable(out io.Writer, rows []pullRow) {
	fmt.Fprintln(out)
	tw := tabwriter.NewWriter(out, 0, 0, 3, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "pull\ttime\tover the WAN\tspeed-up\t")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%.2fs\t%s\t%.1f×\t\n", r.name, r.took.Seconds(), progress.Human(r.wanBytes, "B"), rows[0].took.Seconds()/r.took.Seconds())
	}
	tw.Flush()
}
