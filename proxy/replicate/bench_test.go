package replicate

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/dtrcache/dtrcache/testenv"
	"github.com/dtrcache/dtrcache/testenv/wan"
)

// benchSetBytes is the mirror set's size: DTRCACHE_BENCH_SET_MIB, else
// 256 MiB (the 1 GiB set is DTRCACHE_BENCH_SET_MIB=1024).
func benchSetBytes(b *testing.B) int64 {
	if s := os.Getenv("DTRCACHE_BENCH_SET_MIB"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n <= 0 {
			b.Fatalf("DTRCACHE_BENCH_SET_MIB=%q", s)
		}
		return n << 20
	}
	return 256 << 20
}

// BenchmarkMirror10 mirrors 10 images that share a base layer (US → EU)
// across the emulated WAN (20 ms each way, 100 MiB/s), 3 images at a time
// sharing one BlobIndex, as a mirroring policy's jobs would, and reports the WAN bytes as a
// ratio to the unique blob bytes (the least any mirror must move) and the
// wall time as a ratio to the link's limit (unique bytes / bandwidth).
func BenchmarkMirror10(b *testing.B) {
	const bandwidth = 100 << 20
	set, err := testenv.GenerateImageSet(testenv.MirrorSet(benchSetBytes(b)))
	if err != nil {
		b.Fatal(err)
	}
	src := startDistribution(b, testenv.RegistryOptions{})
	if err := set.Push(context.Background(), src.Host, "team/app", testenv.RemoteOptions{Transport: src.tr}); err != nil {
		b.Fatal(err)
	}
	dst := startDistribution(b, testenv.RegistryOptions{})
	link, err := wan.Listen(context.Background(), "127.0.0.1:0", dst.Host, wan.Config{Latency: 20 * time.Millisecond, Bandwidth: bandwidth})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { link.Close() })
	scl, dcl := src.client(b), (&reg{URL: "http://" + link.Addr()}).client(b)
	var wanBytes int64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		link.ResetStats()
		blobs := NewBlobIndex(0)
		g, ctx := errgroup.WithContext(context.Background())
		g.SetLimit(3)
		for k := range set.Images {
			g.Go(func() error {
				_, err := Copy(ctx, Ref{Client: scl, Repository: fmt.Sprintf("team/app-%d", k), Tag: "1.0"},
					Ref{Client: dcl, Repository: fmt.Sprintf("run%d/app-%d", i, k), Tag: "1.0"}, Options{Blobs: blobs})
				return err
			})
		}
		if err := g.Wait(); err != nil {
			b.Fatal(err)
		}
		st := link.Stats()
		wanBytes += st.BytesUp + st.BytesDown
	}
	b.StopTimer()
	perOp := b.Elapsed() / time.Duration(b.N)
	limit := time.Duration(float64(set.UniqueBytes) / bandwidth * float64(time.Second))
	b.ReportMetric(float64(wanBytes)/float64(b.N)/float64(set.UniqueBytes), "wan/unique")
	b.ReportMetric(float64(perOp)/float64(limit), "wall/link-limit")
	b.ReportMetric(float64(set.UniqueBytes)/(1<<20), "unique-MiB")
	b.SetBytes(set.UniqueBytes)
}

// BenchmarkPromotion promotes a two-platform index with its referrers
// within one registry and reports the registry requests per blob (HEAD +
// mount POST) and the blob bytes read (zero: every blob is mounted).
func BenchmarkPromotion(b *testing.B) {
	r := startDistribution(b, testenv.RegistryOptions{})
	seedIndex(b, r, "dev/app", "1.0", 81)
	cl := r.client(b)
	r.Counter.Reset()
	blobs := 0
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		res, err := Copy(context.Background(), Ref{Client: cl, Repository: "dev/app", Tag: "1.0"},
			Ref{Client: cl, Repository: fmt.Sprintf("qa%d/app", i), Tag: "1.0"}, Options{})
		if err != nil {
			b.Fatal(err)
		}
		blobs += res.BlobsMounted + res.BlobsCopied + res.BlobsSkipped
	}
	b.StopTimer()
	reqs := r.Counter.Requests("POST upload") + r.Counter.Requests("HEAD blob") + r.Counter.Requests("GET blob")
	b.ReportMetric(float64(reqs)/float64(blobs), "requests/blob")
	b.ReportMetric(float64(r.Counter.Requests("GET blob")), "blob-GETs")
	b.ReportMetric(float64(blobs)/float64(b.N), "blobs/op")
}
