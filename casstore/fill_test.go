package casstore

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func TestFillThenHit(t *testing.T) {
	s := newTestStore(t, Options{})
	data, d := randomBlob(t, 3<<20+17)
	src := newTestSource(data)

	b, res, err := s.Fill(context.Background(), d, src, FillOptions{})
	if err != nil || res != Miss {
		t.Fatalf("Fill = %v, %v; want miss", res, err)
	}
	if b.Size() != int64(len(data)) {
		t.Fatalf("Size = %d, want %d", b.Size(), len(data))
	}
	mustEqual(t, readAll(t, b), data)
	waitFor(t, func() bool { return s.Stats().FillsInFlight == 0 })

	info, err := s.Stat(d)
	if err != nil || info.Size != int64(len(data)) {
		t.Fatalf("Stat = %+v, %v", info, err)
	}
	path := filepath.Join(s.Root(), "blobs", "sha256", d.Hex()[:2], d.Hex())
	if onDisk, err := os.ReadFile(path); err != nil {
		t.Fatalf("blob file: %v", err)
	} else {
		mustEqual(t, onDisk, data)
	}
	b2, res, err := s.Fill(context.Background(), d, src, FillOptions{})
	if err != nil || res != Hit {
		t.Fatalf("second Fill = %v, %v; want hit", res, err)
	}
	if b2.File() == nil {
		t.Fatal("a hit should expose the verified file")
	}
	mustEqual(t, readAll(t, b2), data)
	if n := src.fetches.Load(); n != 1 {
		t.Fatalf("source fetched %d times, want 1", n)
	}
	st := s.Stats()
	if st.Blobs != 1 || st.Bytes != int64(len(data)) || st.Hits != 1 || st.Misses != 1 {
		t.Fatalf("Stats = %+v", st)
	}
	if left := filesUnder(t, filepath.Join(s.Root(), "tmp")); len(left) != 0 {
		t.Fatalf("tmp not empty: %v", left)
	}
}

func TestConcurrentFillsShareOneStream(t *testing.T) {
	s := newTestStore(t, Options{})
	data, d := randomBlob(t, 2<<20)
	src := newTestSource(data)
	src.gate, src.gateAt = make(chan struct{}), 1<<20 // hold the fill half way

	const readers = 32
	var wg sync.WaitGroup
	results := make([]Result, readers)
	errs := make([]error, readers)
	got := make([][]byte, readers)
	started := make(chan struct{}, readers)
	for i := 0; i < readers; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			b, res, err := s.Fill(context.Background(), d, src, FillOptions{})
			results[i], errs[i] = res, err
			started <- struct{}{}
			if err == nil {
				got[i], errs[i] = io.ReadAll(b)
				b.Close()
			}
		}(i)
	}
	for i := 0; i < readers; i++ {
		<-started
	}
	close(src.gate)
	wg.Wait()
	misses := 0
	for i := range results {
		if errs[i] != nil {
			t.Fatalf("reader %d: %v", i, errs[i])
		}
		mustEqual(t, got[i], data)
		if results[i] == Miss {
			misses++
		}
	}
	if misses != 1 {
		t.Fatalf("%d misses, want exactly 1", misses)
	}
	if n := src.fetches.Load(); n != 1 {
		t.Fatalf("source fetched %d times for %d concurrent readers, want 1", n, readers)
	}
	if n := src.served.Load(); n != int64(len(data)) {
		t.Fatalf("source served %d bytes, want %d", n, len(data))
	}
}

func TestLateReaderGetsWrittenBytesAtOnce(t *testing.T) {
	s := newTestStore(t, Options{})
	data, d := randomBlob(t, 1<<20)
	src := newTestSource(data)
	half := int64(len(data) / 2)
	src.gate, src.gateAt = make(chan struct{}), half
	defer func() {
		select {
		case <-src.gate:
		default:
			close(src.gate)
		}
	}()

	first, _, err := s.Fill(context.Background(), d, src, FillOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	// Wait until the first half is on disk.
	waitFor(t, func() bool { return s.Stats().BytesFilled >= half })

	late, res, err := s.Fill(context.Background(), d, src, FillOptions{})
	if err != nil || res != Joined {
		t.Fatalf("late Fill = %v, %v; want joined", res, err)
	}
	defer late.Close()
	buf := make([]byte, half)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	late.ctx = ctx
	if _, err := io.ReadFull(late, buf); err != nil {
		t.Fatalf("reading the half already on disk blocked or failed: %v", err)
	}
	mustEqual(t, buf, data[:half])

	// The rest waits, honouring the reader's context.
	short, cancelShort := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancelShort()
	late.ctx = short
	if _, err := late.Read(buf[:10]); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("read beyond the fill = %v, want deadline exceeded", err)
	}
	close(src.gate)
	late.ctx = ctx
	rest, err := io.ReadAll(late)
	if err != nil {
		t.Fatal(err)
	}
	mustEqual(t, rest, data[half:])
}

func TestDigestMismatchPublishesNothing(t *testing.T) {
	for _, parallel := range []int{1, 4} {
		t.Run(map[int]string{1: "one stream", 4: "parallel"}[parallel], func(t *testing.T) {
			s := newTestStore(t, Options{})
			data, d := randomBlob(t, 1<<20)
			src := newTestSource(data)
			src.corruptAt = int64(len(data)) / 3
			src.gate, src.gateAt = make(chan struct{}), 1 // let readers attach first

			var wg sync.WaitGroup
			errs := make([]error, 4)
			for i := range errs {
				b, _, err := s.Fill(context.Background(), d, src, FillOptions{Parallel: parallel, ChunkSize: 128 << 10})
				if err != nil {
					t.Fatal(err)
				}
				wg.Add(1)
				go func(i int) {
					defer wg.Done()
					defer b.Close()
					_, errs[i] = io.ReadAll(b)
				}(i)
			}
			close(src.gate)
			wg.Wait()
			for i, err := range errs {
				if !errors.Is(err, ErrDigestMismatch) {
					t.Fatalf("reader %d got %v, want ErrDigestMismatch", i, err)
				}
			}
			waitFor(t, func() bool { return s.Stats().FillsInFlight == 0 })
			if _, err := s.Stat(d); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Stat after mismatch = %v, want ErrNotFound", err)
			}
			if _, err := s.Open(d); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Open after mismatch = %v, want ErrNotFound", err)
			}
			if files := filesUnder(t, s.Root()+"/blobs"); len(files) != 0 {
				t.Fatalf("files published: %v", files)
			}
			if files := filesUnder(t, s.Root()+"/tmp"); len(files) != 0 {
				t.Fatalf("partial files left: %v", files)
			}
			if st := s.Stats(); st.VerifyErrors != 1 || st.Blobs != 0 {
				t.Fatalf("Stats = %+v", st)
			}
		})
	}
}

func TestResumeAfterBrokenStream(t *testing.T) {
	s := newTestStore(t, Options{})
	data, d := randomBlob(t, 4<<20)
	src := newTestSource(data)
	src.cutAfter = 1<<20 + 123 // each of the first 3 streams breaks after this many bytes
	src.cuts.Store(3)

	b, _, err := s.Fill(context.Background(), d, src, FillOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mustEqual(t, readAll(t, b), data)
	waitFor(t, func() bool { return s.Stats().Blobs == 1 })
	offs := src.offsets()
	want := []int64{0, 1<<20 + 123, 2 * (1<<20 + 123), 3 * (1<<20 + 123)}
	if len(offs) != len(want) {
		t.Fatalf("fetch offsets %v, want %v", offs, want)
	}
	for i := range want {
		if offs[i] != want[i] {
			t.Fatalf("fetch offsets %v, want %v (resume at the verified offset)", offs, want)
		}
	}
	// Upstream bytes: at most the blob plus one read buffer per break.
	if served, limit := src.served.Load(), int64(len(data))+3*readBufSize; served > limit {
		t.Fatalf("source served %d bytes, limit %d", served, limit)
	}
	if st := s.Stats(); st.Resumes != 3 {
		t.Fatalf("Resumes = %d, want 3", st.Resumes)
	}
}

func TestSourceFailures(t *testing.T) {
	errBoom := errors.New("boom")
	tests := []struct {
		name        string
		fail        error
		wantFetches int64
	}{
		{"transient errors are retried", errBoom, 4}, // 1 + Retries(3)
		{"permanent errors are not", Permanent(errBoom), 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestStore(t, Options{Retries: 3})
			data, d := randomBlob(t, 1000)
			src := newTestSource(data)
			src.fail = tt.fail
			_, _, err := s.Fill(context.Background(), d, src, FillOptions{})
			if !errors.Is(err, ErrUpstream) || !errors.Is(err, errBoom) {
				t.Fatalf("Fill error = %v, want ErrUpstream wrapping the cause", err)
			}
			if n := src.fetches.Load(); n != tt.wantFetches {
				t.Fatalf("fetches = %d, want %d", n, tt.wantFetches)
			}
			if st := s.Stats(); st.SourceErrors != 1 || st.FillsInFlight != 0 {
				t.Fatalf("Stats = %+v", st)
			}
		})
	}
}

func TestParallelFill(t *testing.T) {
	const chunk = 256 << 10
	tests := []struct {
		name        string
		size        int
		ranges      bool
		cuts        int64
		wantFetches int64
	}{
		{"chunks", 4 << 20, true, 0, 16},
		{"uneven last chunk", 4<<20 + 5, true, 0, 17},
		{"small blob is one stream", chunk - 1, true, 0, 1},
		{"source ignores ranges", 4 << 20, false, 0, 1},
		{"broken chunks resume", 4 << 20, true, 3, 19},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestStore(t, Options{})
			data, d := randomBlob(t, tt.size)
			src := newTestSource(data)
			src.ranges = tt.ranges
			if tt.cuts > 0 {
				src.cutAfter = chunk / 3
				src.cuts.Store(tt.cuts)
			}
			b, _, err := s.Fill(context.Background(), d, src, FillOptions{Parallel: 4, ChunkSize: chunk})
			if err != nil {
				t.Fatal(err)
			}
			mustEqual(t, readAll(t, b), data)
			waitFor(t, func() bool { return s.Stats().Blobs == 1 })
			if n := src.fetches.Load(); n != tt.wantFetches {
				t.Fatalf("fetches = %d, want %d", n, tt.wantFetches)
			}
			if served := src.served.Load(); served != int64(len(data)) {
				t.Fatalf("source served %d bytes for a %d-byte blob (ranges must not overlap)", served, len(data))
			}
			got, err := os.ReadFile(s.blobPath(d))
			if err != nil {
				t.Fatal(err)
			}
			mustEqual(t, got, data)
		})
	}
}

// TestParallelFillOpensNextChunkAhead checks that a worker sends the range
// request for its next chunk before the current chunk has arrived, so the
// round trip between two requests does not leave its connection idle, and
// that doing so fetches no byte twice.
func TestParallelFillOpensNextChunkAhead(t *testing.T) {
	const chunk = 256 << 10
	s := newTestStore(t, Options{})
	data, d := randomBlob(t, 16*chunk)
	src := newTestSource(data)
	src.fetchDelay = 5 * time.Millisecond // the round trip
	src.delay = 2 * time.Millisecond      // per 64 KiB: 8 ms a chunk
	b, _, err := s.Fill(context.Background(), d, src, FillOptions{Parallel: 2, ChunkSize: chunk})
	if err != nil {
		t.Fatal(err)
	}
	mustEqual(t, readAll(t, b), data)
	waitFor(t, func() bool { return s.Stats().Blobs == 1 })
	if n := src.fetches.Load(); n != 16 {
		t.Fatalf("fetches = %d, want one per chunk (16)", n)
	}
	if served := src.served.Load(); served != int64(len(data)) {
		t.Fatalf("source served %d bytes for a %d-byte blob", served, len(data))
	}
	// Two workers alone keep at most two streams open; a third means a
	// worker opened its next chunk while still reading the current one.
	if m := src.maxActive.Load(); m < 3 {
		t.Fatalf("at most %d streams open at once; want ≥ 3 (next chunk opened ahead)", m)
	}
	waitFor(t, func() bool { return src.active.Load() == 0 })
}

// TestFailedFillClosesOpenedAhead checks that a stream opened ahead is
// closed when its fill fails.
func TestFailedFillClosesOpenedAhead(t *testing.T) {
	const chunk = 256 << 10
	s := newTestStore(t, Options{})
	data, d := randomBlob(t, 16*chunk)
	src := newTestSource(data)
	src.delay = time.Millisecond
	src.failFrom = 9 * chunk // chunks 9.. are refused: the fill fails

	b, _, err := s.Fill(context.Background(), d, src, FillOptions{Parallel: 2, ChunkSize: chunk})
	if err == nil {
		_, err = io.ReadAll(io.NewSectionReader(b, 0, b.Size()))
		b.Close()
	}
	if err == nil {
		t.Fatal("read of a blob whose last chunks are refused succeeded")
	}
	waitFor(t, func() bool { return s.Stats().FillsInFlight == 0 })
	waitFor(t, func() bool { return src.active.Load() == 0 })
	if s.Stats().Blobs != 0 {
		t.Fatal("a failed fill published a blob")
	}
}

func TestFarAheadRangeReadsDirect(t *testing.T) {
	s := newTestStore(t, Options{FarAhead: 64 << 10})
	data, d := randomBlob(t, 4<<20)
	src := newTestSource(data)
	src.gate, src.gateAt = make(chan struct{}), 32<<10 // the fill stalls early
	defer close(src.gate)

	b, _, err := s.Fill(context.Background(), d, src, FillOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	off := int64(len(data)) * 9 / 10
	sec := b.Section(off, 1000)
	defer sec.Close()
	done := make(chan []byte, 1)
	go func() {
		got, err := io.ReadAll(sec)
		if err != nil {
			t.Error(err)
		}
		done <- got
	}()
	select {
	case got := <-done:
		mustEqual(t, got, data[off:off+1000])
	case <-time.After(5 * time.Second):
		t.Fatal("a range far ahead of a stalled fill waited instead of fetching directly")
	}
	if st := s.Stats(); st.DirectReads != 1 {
		t.Fatalf("DirectReads = %d, want 1", st.DirectReads)
	}
	// A read just behind the fill's front waits for the fill instead.
	near := b.Section(16<<10, 100)
	defer near.Close()
	buf := make([]byte, 100)
	if _, err := io.ReadFull(near, buf); err != nil {
		t.Fatal(err)
	}
	mustEqual(t, buf, data[16<<10:16<<10+100])
	if st := s.Stats(); st.DirectReads != 1 {
		t.Fatalf("DirectReads = %d after a near read, want still 1", st.DirectReads)
	}
}

func TestFillUnknownSize(t *testing.T) {
	s := newTestStore(t, Options{})
	data, d := randomBlob(t, 700<<10)
	src := SourceFunc(func(ctx context.Context, off, length int64) (Stream, error) {
		st, err := BytesSource(data).Fetch(ctx, off, -1)
		st.Size, st.Len = -1, -1
		return st, err
	})
	b, _, err := s.Fill(context.Background(), d, src, FillOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mustEqual(t, readAll(t, b), data)
	waitFor(t, func() bool { return s.Stats().Blobs == 1 })
	if info, err := s.Stat(d); err != nil || info.Size != int64(len(data)) {
		t.Fatalf("Stat = %+v, %v", info, err)
	}
}

func TestClientLeavingDoesNotStopFill(t *testing.T) {
	s := newTestStore(t, Options{})
	data, d := randomBlob(t, 1<<20)
	src := newTestSource(data)
	src.gate, src.gateAt = make(chan struct{}), 100
	ctx, cancel := context.WithCancel(context.Background())
	b, _, err := s.Fill(ctx, d, src, FillOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	b.Close()
	close(src.gate)
	waitFor(t, func() bool { return s.Stats().Blobs == 1 })
	got, err := s.Open(d)
	if err != nil {
		t.Fatal(err)
	}
	mustEqual(t, readAll(t, got), data)
}

func TestTooLarge(t *testing.T) {
	s := newTestStore(t, Options{MaxBlobSize: 100})
	data, d := randomBlob(t, 101)
	if _, _, err := s.Fill(context.Background(), d, newTestSource(data), FillOptions{}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Fill = %v, want ErrTooLarge", err)
	}
}

func TestZeroDigestRejected(t *testing.T) {
	s := newTestStore(t, Options{})
	var zero Digest
	if _, err := s.Stat(zero); !errors.Is(err, ErrInvalidDigest) {
		t.Fatalf("Stat = %v", err)
	}
	if _, _, err := s.Fill(context.Background(), zero, BytesSource(nil), FillOptions{}); !errors.Is(err, ErrInvalidDigest) {
		t.Fatalf("Fill = %v", err)
	}
	if err := s.Delete(zero); !errors.Is(err, ErrInvalidDigest) {
		t.Fatalf("Delete = %v", err)
	}
}

// waitFor polls cond for up to 10s.
func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within 10s")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestBlobWait(t *testing.T) {
	s := newTestStore(t, Options{})
	data, d := randomBlob(t, 1<<20)
	src := newTestSource(data)
	src.gate, src.gateAt = make(chan struct{}), 1000
	b, _, err := s.Fill(context.Background(), d, src, FillOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	short, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := b.Wait(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait on a stalled fill = %v", err)
	}
	close(src.gate)
	if err := b.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.BytesFilled != int64(len(data)) {
		t.Fatalf("Wait returned before every byte arrived: %d of %d", st.BytesFilled, len(data))
	}
	bad := newTestSource(data)
	bad.corruptAt = 5
	// Held until the reader has joined: a fill from memory can otherwise
	// fail its verification before Fill returns, and Fill returns the error.
	bad.gate, bad.gateAt = make(chan struct{}), 1000
	b2, _, err := s.Fill(context.Background(), FromBytes(append([]byte("x"), data...)), bad, FillOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	close(bad.gate)
	if err := b2.Wait(context.Background()); !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("Wait on a corrupt fill = %v", err)
	}
}

// TestProgress: a fill's readers see how many bytes have landed, and the
// whole size once the blob is verified or complete.
func TestProgress(t *testing.T) {
	s := newTestStore(t, Options{})
	data, d := randomBlob(t, 1<<20)
	src := newTestSource(data)
	half := int64(len(data) / 2)
	src.gate, src.gateAt = make(chan struct{}), half
	b, _, err := s.Fill(context.Background(), d, src, FillOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	waitFor(t, func() bool { landed, _ := b.Progress(); return landed >= half })
	if landed, size := b.Progress(); landed != half || size != int64(len(data)) {
		t.Fatalf("held at half: Progress = %d, %d; want %d, %d", landed, size, half, len(data))
	}
	close(src.gate)
	if err := b.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if landed, size := b.Progress(); landed != size || size != int64(len(data)) {
		t.Fatalf("verified: Progress = %d, %d; want %d twice", landed, size, len(data))
	}
	waitFor(t, func() bool { return s.Stats().FillsInFlight == 0 })
	hit, res, err := s.Fill(context.Background(), d, src, FillOptions{})
	if err != nil || res != Hit {
		t.Fatalf("Fill = %v, %v; want hit", res, err)
	}
	defer hit.Close()
	if landed, size := hit.Progress(); landed != size || size != int64(len(data)) {
		t.Fatalf("complete: Progress = %d, %d; want %d twice", landed, size, len(data))
	}
}

// TestSectionWriteTo: io.Copy of a section of a running fill (its
// WriteTo, through the store's pooled buffer) delivers exactly the
// section's bytes, and a corrupt blob's copy fails instead of ending.
func TestSectionWriteTo(t *testing.T) {
	s := newTestStore(t, Options{})
	data, d := randomBlob(t, 3<<20+17)
	src := newTestSource(data)
	src.gate, src.gateAt = make(chan struct{}), 1<<20 // the copies start mid-fill
	b, _, err := s.Fill(context.Background(), d, src, FillOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	spans := []struct{ off, n int64 }{{0, -1}, {0, int64(len(data))}, {5, 1 << 20}, {1<<20 - 3, 2 << 20}, {int64(len(data)) - 1, 1}}
	got := make([]bytes.Buffer, len(spans))
	errs := make([]error, len(spans))
	var wg sync.WaitGroup
	for i, sp := range spans {
		sec := b.Section(sp.off, sp.n)
		if _, ok := sec.(io.WriterTo); !ok {
			t.Fatalf("section of a running fill is a %T, not an io.WriterTo", sec)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer sec.Close()
			_, errs[i] = io.Copy(&got[i], sec)
		}()
	}
	close(src.gate)
	wg.Wait()
	for i, sp := range spans {
		end := int64(len(data))
		if sp.n >= 0 {
			end = sp.off + sp.n
		}
		if errs[i] != nil || !bytes.Equal(got[i].Bytes(), data[sp.off:end]) {
			t.Errorf("section %+v: %d bytes, %v; want bytes [%d, %d)", sp, got[i].Len(), errs[i], sp.off, end)
		}
	}

	bad := newTestSource(data)
	bad.corruptAt = 2 << 20
	bad.gate, bad.gateAt = make(chan struct{}), 1<<20 // the fill fails only after the copy started
	b2, _, err := s.Fill(context.Background(), FromBytes(append([]byte("x"), data...)), bad, FillOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	sec := b2.Section(0, -1)
	defer sec.Close()
	close(bad.gate)
	if _, err := io.Copy(io.Discard, sec); !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("copy of a corrupt blob = %v, want ErrDigestMismatch", err)
	}
}

// TestFanOutDirectories: a new store has its 256 sha256 fan-out
// directories, and a commit whose directory is missing (removed by hand)
// creates it again.
func TestFanOutDirectories(t *testing.T) {
	s := newTestStore(t, Options{})
	entries, err := os.ReadDir(filepath.Join(s.Root(), "blobs", "sha256"))
	if err != nil || len(entries) != 256 || entries[0].Name() != "00" || entries[255].Name() != "ff" {
		t.Fatalf("fan-out of a new store: %d entries, %v", len(entries), err)
	}
	data, d := randomBlob(t, 64<<10)
	if err := os.Remove(filepath.Join(s.Root(), "blobs", "sha256", d.Hex()[:2])); err != nil {
		t.Fatal(err)
	}
	b, _, err := s.Fill(context.Background(), d, BytesSource(data), FillOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b.Close()
	waitFor(t, func() bool { return s.Stats().Blobs == 1 })
	got, err := os.ReadFile(filepath.Join(s.Root(), "blobs", "sha256", d.Hex()[:2], d.Hex()))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("committed blob: %d bytes, %v", len(got), err)
	}
}
