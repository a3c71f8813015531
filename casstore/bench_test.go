package casstore

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
)

// Benchmarks for the numbers the store promises. The 1M-blob store is
// seeded once into $CASSTORE_BENCH_DIR (default: the OS temp dir) and
// reused by later runs, since creating a million files takes a while.
//
//	go test -run '^$' -bench . -benchtime 1x ./casstore/   # every benchmark once
//	go test -run '^$' -bench 'Hit' ./casstore/

func benchDir(b *testing.B, name string) string {
	base := os.Getenv("CASSTORE_BENCH_DIR")
	if base == "" {
		base = os.TempDir()
	}
	return filepath.Join(base, "dtrcache-bench-"+name)
}

// seedStore writes n small blobs straight into a store's layout and index
// (no fills: this measures reading, not writing). It returns their digests.
func seedStore(b *testing.B, dir string, n int) []Digest {
	b.Helper()
	listPath := filepath.Join(dir, "digests.txt")
	if raw, err := os.ReadFile(listPath); err == nil {
		var ds []Digest
		for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
			ds = append(ds, MustParseDigest(line))
		}
		if len(ds) == n {
			return ds
		}
	}
	os.RemoveAll(dir)
	s, err := Open(dir, Options{Logger: zap.NewNop()})
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("seeding %d blobs in %s (once)", n, dir)
	ds := make([]Digest, n)
	wb := s.db.NewWriteBatch()
	now := time.Now()
	var total int64
	var list strings.Builder
	for i := 0; i < n; i++ {
		data := binary.BigEndian.AppendUint64(nil, uint64(i))
		data = append(data, "dtrcache-bench"...)
		d := FromBytes(data)
		ds[i] = d
		path := s.blobPath(d)
		if err := os.WriteFile(path, data, 0o640); err != nil {
			if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
				b.Fatal(err)
			}
			if err := os.WriteFile(path, data, 0o640); err != nil {
				b.Fatal(err)
			}
		}
		at := now.Add(time.Duration(i))
		rec := record{Size: int64(len(data)), Created: at, Access: at}
		if err := wb.Set(blobKey(d), rec.marshal()); err != nil {
			b.Fatal(err)
		}
		if err := wb.Set(accessKey(at, d), sizeValue(rec.Size)); err != nil {
			b.Fatal(err)
		}
		total += rec.Size
		list.WriteString(d.String() + "\n")
	}
	if err := wb.Flush(); err != nil {
		b.Fatal(err)
	}
	s.blobs.Store(int64(n))
	s.bytes.Store(total)
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(listPath, []byte(list.String()), 0o640); err != nil {
		b.Fatal(err)
	}
	return ds
}

func reportPercentiles(b *testing.B, lat []time.Duration) {
	slices.Sort(lat)
	pct := func(p float64) float64 { return float64(lat[int(float64(len(lat)-1)*p)].Nanoseconds()) / 1e3 }
	b.ReportMetric(pct(0.50), "p50-µs")
	b.ReportMetric(pct(0.99), "p99-µs")
}

// BenchmarkHit1M measures the hit path (Stat + Open + Close) on a store
// indexing 1,000,000 blobs, with random keys so the index is not all
// cached, against the floor of the system calls it makes (stat, open,
// fstat, close of another random blob file), interleaved in the same
// run: p50/p99 of both and their ratios (x-floor). Each digest is
// parsed from its string before the clock starts, as a request's is.
func BenchmarkHit1M(b *testing.B) {
	const n = 1_000_000
	dir := benchDir(b, "1m")
	ds := seedStore(b, dir, n)
	flush, _ := time.ParseDuration(os.Getenv("CASSTORE_BENCH_FLUSH"))
	s, err := Open(dir, Options{Logger: zap.NewNop(), AccessFlushInterval: flush})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	lat := make([]time.Duration, 0, b.N)
	floor := make([]time.Duration, 0, b.N)
	rng := rand.New(rand.NewPCG(1, 2))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// The digest is parsed afresh, as a server parses it from the
		// request's path, so both measurements start with the name in
		// hand: the floor's path is built before its clock starts too.
		d, err := ParseDigest(ds[rng.IntN(n)].String())
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if _, err := s.Stat(d); err != nil {
			b.Fatal(err)
		}
		blob, err := s.Open(d)
		if err != nil {
			b.Fatal(err)
		}
		blob.Close()
		lat = append(lat, time.Since(start))

		path := s.blobPath(ds[rng.IntN(n)])
		start = time.Now()
		if _, err := os.Stat(path); err != nil {
			b.Fatal(err)
		}
		f, err := os.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := f.Stat(); err != nil {
			b.Fatal(err)
		}
		f.Close()
		floor = append(floor, time.Since(start))
	}
	b.StopTimer()
	reportPercentiles(b, lat)
	slices.Sort(lat)
	slices.Sort(floor)
	pct := func(l []time.Duration, p float64) float64 { return float64(l[int(float64(len(l)-1)*p)]) }
	b.ReportMetric(pct(floor, 0.50)/1e3, "floor-p50-µs")
	b.ReportMetric(pct(floor, 0.99)/1e3, "floor-p99-µs")
	b.ReportMetric(pct(lat, 0.50)/pct(floor, 0.50), "p50-x-floor")
	b.ReportMetric(pct(lat, 0.99)/pct(floor, 0.99), "p99-x-floor")
}

// BenchmarkOpen1M measures opening a store that indexes 1,000,000 blobs,
// after a clean shutdown and after a crash. After a crash Open returns
// before the reconciliation, which runs in the background
// (reconciled-s: from Open until it ended; every blob is counted then).
func BenchmarkOpen1M(b *testing.B) {
	const n = 1_000_000
	dir := benchDir(b, "1m")
	seedStore(b, dir, n)
	for _, mode := range []string{"clean", "after-crash"} {
		b.Run(mode, func(b *testing.B) {
			var reconciled time.Duration
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				if mode == "after-crash" {
					os.Remove(filepath.Join(dir, cleanMarker))
				}
				b.StartTimer()
				start := time.Now()
				s, err := Open(dir, Options{Logger: zap.NewNop()})
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				<-s.recovered
				reconciled += time.Since(start)
				if got := s.Stats().Blobs; got != n {
					b.Fatalf("opened with %d blobs, want %d", got, n)
				}
				if err := s.Close(); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			b.ReportMetric(reconciled.Seconds()/float64(b.N), "reconciled-s")
		})
	}
}

// BenchmarkFill compares fill throughput from an in-memory source (one
// stream, and 4 parallel ranges) with plain sha256 over the same bytes. The
// read=16KiB cases cap every source read at 16 KiB, as a socket read at WAN
// rates returns, so the per-read costs (wake-ups, notifications) show.
// cpu-s/GiB is the process's user + system time per GiB filled (every
// thread: the fill's workers, its hasher, the runtime).
func BenchmarkFill(b *testing.B) {
	const size = 256 << 20
	data := make([]byte, size)
	rand.NewChaCha8([32]byte{3, 4}).Read(data)
	d := FromBytes(data)
	b.Run("sha256", func(b *testing.B) {
		b.SetBytes(size)
		cpu := startCPU()
		for i := 0; i < b.N; i++ {
			h := sha256.New()
			h.Write(data)
			h.Sum(nil)
		}
		cpu.report(b, int64(b.N)*size)
	})
	for _, tc := range []struct {
		parallel int
		readMax  int // 0: the source's own reads (128 KiB, the fill's buffer)
	}{{1, 0}, {4, 0}, {1, 16 << 10}, {4, 16 << 10}} {
		name := fmt.Sprintf("streams=%d", tc.parallel)
		if tc.readMax > 0 {
			name += fmt.Sprintf("/read=%dKiB", tc.readMax>>10)
		}
		b.Run(name, func(b *testing.B) {
			// CASSTORE_FILL_DIR puts the store on another file system, e.g.
			// /dev/shm to measure the fill path without the disk's fsync.
			dir := b.TempDir()
			if base := os.Getenv("CASSTORE_FILL_DIR"); base != "" {
				var err error
				if dir, err = os.MkdirTemp(base, "fill-bench-"); err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { os.RemoveAll(dir) }) // after the store's Close
			}
			s := openTestStore(b, dir, Options{Logger: zap.NewNop()})
			var src Source = BytesSource(data)
			if tc.readMax > 0 {
				src = shortReads{src: src, max: tc.readMax}
			}
			b.SetBytes(size)
			cpu := startCPU()
			for i := 0; i < b.N; i++ {
				blob, _, err := s.Fill(context.Background(), d, src, FillOptions{Parallel: tc.parallel, ChunkSize: 16 << 20})
				if err != nil {
					b.Fatal(err)
				}
				blob.Close()
				for s.Stats().Blobs == 0 {
					time.Sleep(100 * time.Microsecond)
					if s.Stats().FillsInFlight == 0 && s.Stats().Blobs == 0 {
						b.Fatal("fill failed")
					}
				}
				b.StopTimer()
				cpu.pause()
				if err := s.Delete(d); err != nil {
					b.Fatal(err)
				}
				cpu.resume()
				b.StartTimer()
			}
			cpu.report(b, int64(b.N)*size)
		})
	}
	b.Run("blobs=1MiB", func(b *testing.B) { benchFillSmall(b, data) })
}

// benchFillSmall fills the 1 MiB pieces of data as blobs of their own, 3
// at a time (as a client pulls an image's layers), each copied to its end
// as it lands (io.Copy of a section, as the registry API serves a fill),
// so the per-blob costs of a fill (temp file, fsyncs, rename, index,
// goroutines, buffers) show in cpu-s/GiB. Reads are capped at 16 KiB, as
// from a WAN socket.
func benchFillSmall(b *testing.B, data []byte) {
	const blobSize, clients = 1 << 20, 3
	n := len(data) / blobSize
	ds := make([]Digest, n)
	for i := range ds {
		ds[i] = FromBytes(data[i*blobSize : (i+1)*blobSize])
	}
	base := os.Getenv("CASSTORE_FILL_DIR")
	if base == "" {
		base = b.TempDir()
	}
	b.SetBytes(int64(n) * blobSize)
	cpu := startCPU()
	for i := 0; i < b.N; i++ {
		// A fresh store each time, as in a cold pull: no fan-out
		// directories yet.
		b.StopTimer()
		cpu.pause()
		dir, err := os.MkdirTemp(base, "fill-bench-")
		if err != nil {
			b.Fatal(err)
		}
		s, err := Open(dir, Options{Logger: zap.NewNop()})
		if err != nil {
			b.Fatal(err)
		}
		cpu.resume()
		b.StartTimer()
		var next atomic.Int64
		var wg sync.WaitGroup
		for c := 0; c < clients; c++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := int(next.Add(1) - 1); j < n; j = int(next.Add(1) - 1) {
					src := shortReads{src: BytesSource(data[j*blobSize : (j+1)*blobSize]), max: 16 << 10}
					blob, _, err := s.Fill(context.Background(), ds[j], src, FillOptions{})
					if err != nil {
						b.Error(err)
						return
					}
					sec := blob.Section(0, -1)
					got, err := io.Copy(onlyWriter{io.Discard}, sec)
					sec.Close()
					blob.Close()
					if err != nil || got != blobSize {
						b.Errorf("read %d bytes of blob %d: %v", got, j, err)
						return
					}
				}
			}()
		}
		wg.Wait()
		for s.Stats().Blobs < int64(n) {
			time.Sleep(100 * time.Microsecond)
			if st := s.Stats(); st.FillsInFlight == 0 && st.Blobs < int64(n) {
				b.Fatal("a fill failed")
			}
		}
		b.StopTimer()
		cpu.pause()
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
		os.RemoveAll(dir)
		cpu.resume()
		b.StartTimer()
	}
	cpu.report(b, int64(b.N)*int64(n)*blobSize)
}

// onlyWriter hides a writer's ReadFrom (io.Discard's reads 8 KiB at a
// time), as a network connection's does for such a reader.
type onlyWriter struct{ io.Writer }

// shortReads caps every read of its source's bodies at max bytes.
type shortReads struct {
	src Source
	max int
}

func (s shortReads) Fetch(ctx context.Context, off, length int64) (Stream, error) {
	st, err := s.src.Fetch(ctx, off, length)
	if err == nil {
		st.Body = shortBody{st.Body, s.max}
	}
	return st, err
}

type shortBody struct {
	io.ReadCloser
	max int
}

func (b shortBody) Read(p []byte) (int, error) {
	if len(p) > b.max {
		p = p[:b.max]
	}
	return b.ReadCloser.Read(p)
}

// cpuMeter sums the process's user + system time over the timed parts of a
// benchmark.
type cpuMeter struct {
	total time.Duration
	from  time.Duration
}

func startCPU() *cpuMeter   { return &cpuMeter{from: processCPU()} }
func (m *cpuMeter) pause()  { m.total += processCPU() - m.from }
func (m *cpuMeter) resume() { m.from = processCPU() }
func (m *cpuMeter) report(b *testing.B, bytes int64) {
	m.pause()
	b.ReportMetric(m.total.Seconds()/(float64(bytes)/(1<<30)), "cpu-s/GiB")
}

// genSource serves a large deterministic pseudo-random blob without holding
// it in memory: each 64 KiB block is generated from its index.
type genSource struct{ size int64 }

const genBlock = 64 << 10

func (g genSource) block(i int64, buf []byte) {
	rand.NewChaCha8([32]byte{byte(i), byte(i >> 8), byte(i >> 16), byte(i >> 24)}).Read(buf)
}

func (g genSource) Fetch(ctx context.Context, off, length int64) (Stream, error) {
	end := g.size
	if length >= 0 && off+length < end {
		end = off + length
	}
	return Stream{Body: io.NopCloser(&genReader{g: g, off: off, end: end, buf: make([]byte, genBlock)}), Size: g.size, Len: end - off}, nil
}

type genReader struct {
	g        genSource
	off, end int64
	buf      []byte
	bufIdx   int64
	have     bool
}

func (r *genReader) Read(p []byte) (int, error) {
	if r.off >= r.end {
		return 0, io.EOF
	}
	idx := r.off / genBlock
	if !r.have || r.bufIdx != idx {
		r.g.block(idx, r.buf)
		r.bufIdx, r.have = idx, true
	}
	n := copy(p, r.buf[r.off%genBlock:min(int64(genBlock), r.end-idx*genBlock)])
	r.off += int64(n)
	return n, nil
}

func (g genSource) digest() Digest {
	h := sha256.New()
	st, _ := g.Fetch(context.Background(), 0, -1)
	io.CopyBuffer(h, st.Body, make([]byte, 1<<20))
	return Digest{alg: "sha256", hex: fmt.Sprintf("%x", h.Sum(nil))}
}

// rssKiB reads VmRSS or VmHWM from /proc/self/status.
func rssKiB(field string) int64 {
	raw, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(line, field+":") {
			v, _ := strconv.ParseInt(strings.Fields(line)[1], 10, 64)
			return v
		}
	}
	return -1
}

// BenchmarkReaders16 fills a 4 GiB blob while 16 readers stream it and
// reports how much the process RSS grew (it must stay small: streaming,
// no buffering). Set CASSTORE_BENCH_SIZE to change the size.
func BenchmarkReaders16(b *testing.B) {
	size := int64(4 << 30)
	if v, err := strconv.ParseInt(os.Getenv("CASSTORE_BENCH_SIZE"), 10, 64); err == nil {
		size = v
	}
	g := genSource{size: size}
	d := g.digest()
	for i := 0; i < b.N; i++ {
		s := newTestStore(b, Options{Logger: zap.NewNop()})
		before := rssKiB("VmRSS")
		var peak int64
		stop := make(chan struct{})
		sampled := make(chan struct{})
		go func() {
			defer close(sampled)
			for {
				peak = max(peak, rssKiB("VmRSS"))
				select {
				case <-stop:
					return
				case <-time.After(10 * time.Millisecond):
				}
			}
		}()
		start := time.Now()
		var wg sync.WaitGroup
		for r := 0; r < 16; r++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				blob, _, err := s.Fill(context.Background(), d, g, FillOptions{})
				if err != nil {
					b.Error(err)
					return
				}
				defer blob.Close()
				if n, err := io.CopyBuffer(io.Discard, blob, make([]byte, 256<<10)); err != nil || n != size {
					b.Errorf("reader got %d bytes, %v", n, err)
				}
			}()
		}
		wg.Wait()
		close(stop)
		<-sampled
		b.ReportMetric(float64(peak-before)/1024, "rss-growth-MiB")
		b.ReportMetric(float64(size)/time.Since(start).Seconds()/(1<<20), "MiB/s")
		s.Close()
	}
}

// BenchmarkEvict100k measures evicting 100,000 blobs.
func BenchmarkEvict100k(b *testing.B) {
	const n = 100_000
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		dir := filepath.Join(b.TempDir(), "store")
		seedStoreFresh(b, dir, n)
		s, err := Open(dir, Options{Logger: zap.NewNop()})
		if err != nil {
			b.Fatal(err)
		}
		s.opt.MaxBytes, s.opt.HighWatermark, s.opt.LowWatermark = 1, 0.95, 0.5
		b.StartTimer()
		if err := s.evict(); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if st := s.Stats(); st.Blobs != 0 || st.Evictions != n {
			b.Fatalf("after eviction: %+v", st)
		}
		s.Close()
	}
}

func seedStoreFresh(b *testing.B, dir string, n int) {
	os.Remove(filepath.Join(dir, "digests.txt"))
	seedStore(b, dir, n)
}
