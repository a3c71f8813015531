package casstore

import (
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"
)

// fakeClock is a settable clock for access times and TTLs.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// put fills a blob and waits until it is committed.
func put(t testing.TB, s *Store, data []byte) Digest {
	t.Helper()
	d := FromBytes(data)
	b, _, err := s.Fill(context.Background(), d, BytesSource(data), FillOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, b); err != nil {
		t.Fatal(err)
	}
	b.Close()
	waitFor(t, func() bool { _, err := s.Stat(d); return err == nil && s.Stats().FillsInFlight == 0 })
	return d
}

func TestBudget(t *testing.T) {
	tests := []struct {
		name string
		opt  Options
		want Budget
	}{
		{"unlimited", Options{}, Budget{}},
		{"defaults", Options{MaxBytes: 1000}, Budget{Max: 1000, High: 950, Low: 850}},
		{"set", Options{MaxBytes: 1000, HighWatermark: 0.9, LowWatermark: 0.5}, Budget{Max: 1000, High: 900, Low: 500}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Open(t.TempDir(), tt.opt)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if got := s.Budget(); got != tt.want {
				t.Fatalf("Budget() = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestEvictionIsLeastRecentlyUsedFirst(t *testing.T) {
	clock := newFakeClock()
	const blob = 100 << 10
	s := newTestStore(t, Options{MaxBytes: 10 * blob, HighWatermark: 0.95, LowWatermark: 0.5, Now: clock.Now, AccessFlushInterval: time.Hour})
	var ds []Digest
	var open *Blob
	for i := 0; i < 9; i++ {
		data, _ := randomBlob(t, blob)
		ds = append(ds, put(t, s, data))
		if i == 2 { // keep one old blob open while it is evicted
			var err error
			if open, err = s.Open(ds[2]); err != nil {
				t.Fatal(err)
			}
			defer open.Close()
		}
		clock.Advance(time.Second)
	}
	// Read the two oldest: they become the most recently used.
	for _, d := range ds[:2] {
		b, err := s.Open(d)
		if err != nil {
			t.Fatal(err)
		}
		b.Close()
		clock.Advance(time.Second)
	}
	want, _ := io.ReadAll(open.Section(0, -1))

	data, _ := randomBlob(t, blob) // 10 blobs > 95 %: evict down to 50 %
	ds = append(ds, put(t, s, data))
	waitFor(t, func() bool { return s.Stats().Bytes <= 5*blob })

	st := s.Stats()
	if st.Blobs != 5 || st.Evictions != 5 || st.EvictedBytes != 5*blob {
		t.Fatalf("Stats = %+v, want 5 blobs left and 5 evicted", st)
	}
	// Evicted: ds[2..6] (the least recently used). Kept: ds[0], ds[1], ds[7..9].
	for i, d := range ds {
		_, err := s.Stat(d)
		evicted := i >= 2 && i <= 6
		if evicted != errors.Is(err, ErrNotFound) {
			t.Errorf("blob %d: Stat err = %v, evicted = %v", i, err, evicted)
		}
	}
	// The reader of an evicted blob still reads it whole.
	got, err := io.ReadAll(open.Section(0, -1))
	if err != nil {
		t.Fatal(err)
	}
	mustEqual(t, got, want)
}

func TestLRUOrderSurvivesRestart(t *testing.T) {
	clock := newFakeClock()
	dir := t.TempDir()
	const blob = 64 << 10
	opt := Options{Now: clock.Now, AccessFlushInterval: time.Hour}
	s := openTestStore(t, dir, opt)
	var ds []Digest
	for i := 0; i < 4; i++ {
		data, _ := randomBlob(t, blob)
		ds = append(ds, put(t, s, data))
		clock.Advance(time.Second)
	}
	b, err := s.Open(ds[0]) // the oldest becomes the newest; only in memory until Close
	if err != nil {
		t.Fatal(err)
	}
	b.Close()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	opt.MaxBytes, opt.HighWatermark, opt.LowWatermark = 3*blob, 0.9, 0.5
	s = openTestStore(t, dir, opt)
	waitFor(t, func() bool { return s.Stats().Blobs == 1 })
	if _, err := s.Stat(ds[0]); err != nil {
		t.Fatalf("the most recently read blob was evicted after a restart: %v", err)
	}
}

func TestAccessTimesAreBatched(t *testing.T) {
	clock := newFakeClock()
	s := newTestStore(t, Options{Now: clock.Now, AccessFlushInterval: time.Hour})
	data, _ := randomBlob(t, 1000)
	d := put(t, s, data)
	before := s.db.MaxVersion()
	for i := 0; i < 1000; i++ {
		clock.Advance(time.Millisecond)
		b, err := s.Open(d)
		if err != nil {
			t.Fatal(err)
		}
		b.Close()
	}
	if after := s.db.MaxVersion(); after != before {
		t.Fatalf("1000 hits wrote the index %d times before the flush, want 0", after-before)
	}
	if err := s.flushAccess(); err != nil {
		t.Fatal(err)
	}
	if after := s.db.MaxVersion(); after != before+1 {
		t.Fatalf("the flush wrote %d index transactions, want 1", after-before)
	}
	rec, err := indexedRecord(s, d)
	if err != nil || !rec.Access.Equal(clock.Now()) {
		t.Fatalf("indexed access time = %v, want %v (%v)", rec.Access, clock.Now(), err)
	}
}

// TestPendingReadsAreBounded: reads wait for the flush in a list with a
// hard bound, so a flood of hits while the flush is slow costs no more
// memory than maxPendingHard records, and the flush still records the
// blob's latest read.
func TestPendingReadsAreBounded(t *testing.T) {
	clock := newFakeClock()
	s := newTestStore(t, Options{Now: clock.Now, AccessFlushInterval: time.Hour})
	data, _ := randomBlob(t, 1000)
	d := put(t, s, data)
	// The early flush these reads ask for runs beside them; the bound
	// holds either way.
	for i := 0; i < 2*maxPendingHard; i++ {
		s.touch(d)
	}
	s.accessMu.Lock()
	n := len(s.pending)
	s.accessMu.Unlock()
	if n > maxPendingHard {
		t.Fatalf("%d reads wait for the flush, want at most %d", n, maxPendingHard)
	}
	waitFor(t, func() bool { // the early flush takes the full list
		s.accessMu.Lock()
		defer s.accessMu.Unlock()
		return len(s.pending) < maxPending
	})
	clock.Advance(time.Minute)
	s.touch(d)
	if err := s.flushAccess(); err != nil {
		t.Fatal(err)
	}
	rec, err := indexedRecord(s, d)
	if err != nil || !rec.Access.Equal(clock.Now()) {
		t.Fatalf("indexed access time = %v, want the latest read %v (%v)", rec.Access, clock.Now(), err)
	}
}

func TestTTLSweep(t *testing.T) {
	clock := newFakeClock()
	s := newTestStore(t, Options{Now: clock.Now, TTL: time.Hour, SweepInterval: time.Hour})
	a, _ := randomBlob(t, 1000)
	b, _ := randomBlob(t, 2000)
	da := put(t, s, a)
	clock.Advance(40 * time.Minute)
	db := put(t, s, b)
	clock.Advance(30 * time.Minute) // a idle 70m, b idle 30m
	if err := s.sweepTTL(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stat(da); !errors.Is(err, ErrNotFound) {
		t.Fatalf("idle blob not expired: %v", err)
	}
	if _, err := s.Stat(db); err != nil {
		t.Fatalf("fresh blob expired: %v", err)
	}
	// Reading b keeps it alive past its original deadline.
	clock.Advance(20 * time.Minute)
	r, _ := s.Open(db)
	r.Close()
	clock.Advance(50 * time.Minute)
	if err := s.sweepTTL(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stat(db); err != nil {
		t.Fatalf("recently read blob expired: %v", err)
	}
	if st := s.Stats(); st.Expirations != 1 || st.Blobs != 1 || st.Bytes != 2000 {
		t.Fatalf("Stats = %+v", st)
	}
}

func TestDelete(t *testing.T) {
	s := newTestStore(t, Options{})
	data, _ := randomBlob(t, 5000)
	d := put(t, s, data)
	if err := s.Delete(d); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(d); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second Delete = %v, want ErrNotFound", err)
	}
	if _, err := s.Open(d); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Open after Delete = %v", err)
	}
	if st := s.Stats(); st.Blobs != 0 || st.Bytes != 0 {
		t.Fatalf("Stats = %+v", st)
	}
}
