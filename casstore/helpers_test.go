package casstore

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
)

// newTestStore opens a store in a temp dir, closed at the end of the test.
func newTestStore(t testing.TB, opt Options) *Store {
	t.Helper()
	return openTestStore(t, t.TempDir(), opt)
}

func openTestStore(t testing.TB, dir string, opt Options) *Store {
	t.Helper()
	if opt.Logger == nil {
		if tt, ok := t.(*testing.T); ok {
			opt.Logger = zaptest.NewLogger(tt)
		}
	}
	if opt.RetryBackoff == 0 {
		opt.RetryBackoff = time.Millisecond
	}
	s, err := Open(dir, opt)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// randomBlob returns n random bytes and their sha256 digest.
func randomBlob(t testing.TB, n int) ([]byte, Digest) {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b, FromBytes(b)
}

// testSource is an in-memory upstream with fault knobs. It counts what it
// serves, like a real upstream's access log would.
type testSource struct {
	data   []byte
	ranges bool // honour the requested length (else serve to the end)

	// cutAfter cuts each of the first cuts streams after that many bytes.
	cutAfter int64
	cuts     atomic.Int64
	// corruptAt flips the byte at that offset (when >= 0).
	corruptAt int64
	// gate, when set, blocks every stream that starts before gateAt when it
	// reaches byte gateAt, until the gate is closed.
	gate   chan struct{}
	gateAt int64
	// delay sleeps before each body read (to keep a fill running).
	delay time.Duration
	// fail makes Fetch return this error.
	fail error
	// failFrom, when > 0, makes every Fetch at or past that offset fail
	// for good.
	failFrom int64
	// fetchDelay sleeps in Fetch (a round trip to the source).
	fetchDelay time.Duration

	// active counts bodies fetched and not yet at their end or closed;
	// maxActive is its high-water mark.
	active, maxActive atomic.Int64

	fetches atomic.Int64
	served  atomic.Int64 // bytes delivered by bodies

	mu   sync.Mutex
	offs []int64 // offsets of fetches
}

func newTestSource(data []byte) *testSource {
	return &testSource{data: data, ranges: true, corruptAt: -1}
}

func (s *testSource) Fetch(ctx context.Context, off, length int64) (Stream, error) {
	s.fetches.Add(1)
	s.mu.Lock()
	s.offs = append(s.offs, off)
	s.mu.Unlock()
	if s.fail != nil {
		return Stream{}, s.fail
	}
	if s.fetchDelay > 0 {
		time.Sleep(s.fetchDelay)
	}
	if s.failFrom > 0 && off >= s.failFrom {
		return Stream{}, Permanent(fmt.Errorf("test: offset %d refused (injected)", off))
	}
	size := int64(len(s.data))
	if off > size {
		return Stream{}, Permanent(fmt.Errorf("offset %d beyond %d", off, size))
	}
	end := size
	if s.ranges && length >= 0 && off+length < size {
		end = off + length
	}
	body := &testBody{src: s, ctx: ctx, off: off, end: end, limit: -1, gated: s.gate != nil && off < s.gateAt}
	if s.cutAfter > 0 && s.cuts.Add(-1) >= 0 {
		body.limit = off + s.cutAfter
	}
	if a := s.active.Add(1); a > s.maxActive.Load() {
		s.maxActive.Store(a) // racy high-water mark; good enough for ≥ checks
	}
	return Stream{Body: body, Size: size, Len: end - off}, nil
}

func (s *testSource) offsets() []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int64(nil), s.offs...)
}

type testBody struct {
	src      *testSource
	ctx      context.Context
	off, end int64
	limit    int64 // cut point, -1 none
	gated    bool
	closed   atomic.Bool
	ended    atomic.Bool // counted out of src.active
}

// finish takes the body out of the source's active count once.
func (b *testBody) finish() {
	if b.ended.CompareAndSwap(false, true) {
		b.src.active.Add(-1)
	}
}

var errCut = errors.New("test: connection reset (injected cut)")

func (b *testBody) Read(p []byte) (int, error) {
	if b.closed.Load() {
		return 0, errors.New("test: read on closed body")
	}
	if b.off >= b.end {
		b.finish()
		return 0, io.EOF
	}
	if b.limit >= 0 && b.off >= b.limit {
		return 0, errCut
	}
	s := b.src
	if b.gated && b.off >= s.gateAt {
		select {
		case <-s.gate:
		case <-b.ctx.Done():
			return 0, b.ctx.Err()
		}
	}
	if s.delay > 0 {
		time.Sleep(s.delay)
	}
	n := int64(len(p))
	n = min(n, b.end-b.off, 64<<10)
	if b.limit >= 0 {
		n = min(n, b.limit-b.off)
	}
	if b.gated && b.off < s.gateAt {
		n = min(n, s.gateAt-b.off)
	}
	copy(p, s.data[b.off:b.off+n])
	if s.corruptAt >= b.off && s.corruptAt < b.off+n {
		p[s.corruptAt-b.off] ^= 0xff
	}
	b.off += n
	s.served.Add(n)
	if b.off >= b.end {
		b.finish()
	}
	return int(n), nil
}

func (b *testBody) Close() error { b.closed.Store(true); b.finish(); return nil }

// readAll reads a blob fully and closes it.
func readAll(t testing.TB, b *Blob) []byte {
	t.Helper()
	defer b.Close()
	got, err := io.ReadAll(b)
	if err != nil {
		t.Fatalf("read %s: %v", b.Digest(), err)
	}
	return got
}

// mustEqual fails unless got equals want (without dumping megabytes).
func mustEqual(t testing.TB, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Fatalf("bytes differ: got %d bytes (%s), want %d bytes (%s)", len(got), FromBytes(got), len(want), FromBytes(want))
	}
}

// filesUnder lists regular files below dir (relative paths).
func filesUnder(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, de os.DirEntry, err error) error {
		if err == nil && !de.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	return out
}
