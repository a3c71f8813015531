package casstore

import (
	"context"
	"errors"
	"fmt"
	"hash"
	"os"
	"sync"
	"time"

	"go.uber.org/zap"
)

// A fill's lifecycle: Fill starts or joins it, run drives it (first
// stream, layout, workers, hash, commit), and it ends committed, failed or
// write-failed (commit.go); readers hold references to its file until they
// are done. Fetching is in fetch.go, the chunk layout in chunks.go,
// hashing in hash.go, platform code in platform_*.go.

// FillOptions tune one fill.
type FillOptions struct {
	// Parallel is how many range streams may fetch the blob at once. 0 or 1
	// means one stream. Parallel streams are used only when the source
	// honours ranges and the blob is larger than ChunkSize.
	Parallel int
	// ChunkSize is the size of each range request of a parallel fill, and
	// so the smallest blob that is fetched in parallel. 0 means
	// DefaultChunkSize.
	ChunkSize int64
}

// DefaultChunkSize is the range size of parallel fills when
// FillOptions.ChunkSize is 0.
const DefaultChunkSize = 4 << 20

// Result says how Fill found the blob.
type Result int

// The results of Fill.
const (
	// Hit means the blob was complete in the store.
	Hit Result = iota
	// Miss means this call started the fill.
	Miss
	// Joined means this call joined a fill already running.
	Joined
)

// String returns "hit", "miss" or "joined".
func (r Result) String() string {
	switch r {
	case Hit:
		return "hit"
	case Miss:
		return "miss"
	case Joined:
		return "joined"
	}
	return fmt.Sprintf("Result(%d)", int(r))
}

type phase int

const (
	phaseStarting    phase = iota // waiting for the first source response
	phaseFilling                  // size known, bytes landing on disk
	phaseCommitted                // verified and published
	phaseFailed                   // nothing published; readers get err
	phaseWriteFailed              // disk write failed; readers use the source
)

// fill is one coalesced download of a digest. Its file is written at the
// offsets of one or more chunks while any number of readers read what has
// landed; a hasher follows the contiguous prefix.
type fill struct {
	s      *Store
	d      Digest
	src    Source
	opt    FillOptions
	ready  chan struct{} // closed once the size is known or the fill failed
	once   sync.Once     // closes ready
	cancel context.CancelFunc

	// mu guards the fields below.
	mu       sync.Mutex
	phase    phase
	err      error
	m        chunkMap // layout and progress; m.size is -1 while unknown
	file     fillFile
	refs     int           // holders of file: the fill and its readers
	reserved int64         // bytes counted in Store.reserved until the fill ends
	verified bool          // every byte is on disk and matched the digest
	changed  chan struct{} // closed and replaced on every change
	settled  chan struct{} // closed once verified or ended (Blob.Wait)
	hashKick chan struct{} // buffered (1): wakes the hasher (kickHasher)
	openLat  time.Duration // how long the latest source open took
	since    time.Time     // when the layout was known and bytes began to land
	streams  int           // workers fetching chunks

	// hmu guards the digest of the blob's first hashed bytes, fed in order
	// by the workers and the hasher (hash.go). It is never held with mu.
	hmu    sync.Mutex
	h      hash.Hash
	hashed int64
}

// Fill returns a reader of the blob d, fetching it from src if the store
// does not have it. Concurrent calls for one digest share one fill; a call
// that arrives while a fill runs joins it. Fill returns once the blob's size
// is known; the returned Blob then reads bytes as they land and waits for
// the rest (honouring ctx). The fill itself runs detached from ctx, so a
// client going away does not stop it.
func (s *Store) Fill(ctx context.Context, d Digest, src Source, fo FillOptions) (*Blob, Result, error) {
	if d.IsZero() {
		return nil, Miss, &DigestError{Reason: "zero digest"}
	}
	if b, err := s.Open(d); err == nil {
		return b, Hit, nil
	} else if !errors.Is(err, ErrNotFound) {
		return nil, Hit, err
	}
	s.mu.Lock()
	if s.closed.Load() {
		s.mu.Unlock()
		return nil, Miss, ErrClosed
	}
	f, res := s.fills[d], Joined
	if f == nil {
		// Re-check under the lock: a fill may have committed since.
		if b, err := s.openComplete(d); err == nil {
			s.mu.Unlock()
			s.c.hits.Add(1)
			return b, Hit, nil
		}
		f, res = s.startFillLocked(d, src, fo), Miss
	}
	s.mu.Unlock()
	if res == Joined {
		s.c.joins.Add(1)
	} else {
		s.c.misses.Add(1)
	}
	select {
	case <-f.ready:
	case <-ctx.Done():
		return nil, res, ctx.Err()
	}
	b, err := s.joinFill(ctx, f, src)
	return b, res, err
}

// joinFill returns a reader of the fill f, whose size is known (or that
// failed). A fill that committed and closed its file before the reader
// could hold it has its blob in the store: the reader gets that (a hit),
// not a stream of its own from the source.
func (s *Store) joinFill(ctx context.Context, f *fill, src Source) (*Blob, error) {
	b, err := f.newBlob(ctx, src)
	if err != nil || b.held {
		return b, err
	}
	f.mu.Lock()
	committed := f.phase == phaseCommitted
	f.mu.Unlock()
	if committed {
		if ob, oerr := s.Open(f.d); oerr == nil {
			b.Close()
			return ob, nil
		}
	}
	return b, nil // not on disk (a write failed, or evicted since): from the source
}

func (s *Store) startFillLocked(d Digest, src Source, fo FillOptions) *fill {
	if fo.ChunkSize <= 0 {
		fo.ChunkSize = DefaultChunkSize
	}
	f := &fill{
		s: s, d: d, src: src, opt: fo,
		ready:    make(chan struct{}),
		m:        chunkMap{size: -1},
		refs:     1,
		changed:  make(chan struct{}),
		settled:  make(chan struct{}),
		hashKick: make(chan struct{}, 1),
	}
	s.fills[d] = f
	s.inflight.Add(1)
	s.wg.Add(1)
	go f.run()
	return f
}

// notifyLocked wakes every reader waiting for a change.
func (f *fill) notifyLocked() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// settleLocked closes settled the first time the fill is verified or ends:
// what Blob.Wait waits for, without waking on every write.
func (f *fill) settleLocked() {
	select {
	case <-f.settled:
	default:
		close(f.settled)
	}
}

func (f *fill) markReady() { f.once.Do(func() { close(f.ready) }) }

func (f *fill) run() {
	defer f.s.wg.Done()
	ctx, cancel := context.WithTimeout(f.s.ctx, f.s.opt.FillTimeout)
	f.cancel = cancel
	defer cancel()
	start := time.Now()

	firstLen := int64(-1)
	if f.opt.Parallel > 1 {
		firstLen = f.opt.ChunkSize
	}
	t0 := time.Now()
	st, err := f.open(ctx, 0, firstLen, 0)
	f.noteOpenTime(time.Since(t0))
	if err == nil && firstLen >= 0 && st.Size < 0 && st.Len >= 0 {
		// A range answered without the total: the blob's size is unknown,
		// so fetch it whole in one stream.
		st.Body.Close()
		st, err = f.open(ctx, 0, -1, 0)
	}
	if err != nil {
		f.fail(err)
		return
	}
	if max := f.s.opt.MaxBlobSize; max > 0 && st.Size > max {
		st.Body.Close()
		f.fail(Permanent(fmt.Errorf("%w: %d bytes > %d", ErrTooLarge, st.Size, max)))
		return
	}
	if err := f.setup(st); err != nil {
		st.Body.Close()
		if errors.Is(err, ErrWrite) {
			f.writeFailed(err)
		} else {
			f.fail(err)
		}
		return
	}
	f.s.signalEvict()

	f.hmu.Lock()
	f.h = f.d.NewHash()
	f.hmu.Unlock()
	type hashResult struct {
		sum []byte
		err error
	}
	hashed := make(chan hashResult, 1)
	go func() {
		sum, err := f.hash(ctx)
		hashed <- hashResult{sum, err}
	}()

	f.mu.Lock()
	workers := min(max(f.opt.Parallel, 1), f.m.chunks())
	f.streams = workers
	f.mu.Unlock()
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		var first *Stream
		c := 0
		if w == 0 {
			first = &st
		} else if c = f.take(); c < 0 {
			errs <- nil
			continue
		}
		go func() { errs <- f.worker(ctx, first, c) }()
	}
	var werr error
	for w := 0; w < workers; w++ {
		if err := <-errs; err != nil && werr == nil {
			werr = err
			cancel() // stop the other workers and the hasher
		}
	}
	hr := <-hashed
	switch {
	case werr != nil:
		if errors.Is(werr, ErrWrite) {
			f.writeFailed(werr)
		} else {
			f.fail(werr)
		}
		return
	case hr.err != nil:
		f.fail(hr.err)
		return
	case !f.d.matches(hr.sum):
		f.fail(Permanent(fmt.Errorf("%w: %s", ErrDigestMismatch, f.d)))
		return
	}
	// Readers may have the last byte now: the content is verified. Making
	// it durable and visible (fsync, rename, index) follows without them.
	f.mu.Lock()
	f.verified = true
	f.notifyLocked()
	f.settleLocked()
	f.mu.Unlock()
	if err := f.commit(); err != nil {
		f.writeFailed(err)
		return
	}
	// The fields are built only when the line is logged: a fill of a small
	// blob is short enough for them to show.
	if ce := f.s.log.Check(zap.DebugLevel, "fill committed"); ce != nil {
		ce.Write(zap.String("digest", f.d.String()), zap.Int64("bytes", f.size()),
			zap.Int("streams", workers), zap.Duration("took", time.Since(start)))
	}
}

// setup creates the temp file for a fill whose first stream is open and
// publishes the size and chunk layout.
func (f *fill) setup(st Stream) error {
	size := st.Size
	// Readers learn the size even if the disk fails below: a reader of the
	// whole blob then still verifies what it takes from the source.
	f.mu.Lock()
	f.m.size = size
	f.mu.Unlock()
	file, err := f.s.opt.createTemp(f.s.tmpDir())
	if err != nil {
		return fmt.Errorf("%w: create temp file: %w", ErrWrite, err)
	}
	if size > 0 {
		if err := allocate(file, size); err != nil {
			file.Close()
			os.Remove(file.Name())
			return fmt.Errorf("%w: allocate %d bytes: %w", ErrWrite, size, err)
		}
	}
	f.mu.Lock()
	f.m, f.file = newChunkMap(size, st.Len, f.opt.Parallel > 1), file
	f.since = f.s.opt.Now()
	f.reserved = max(size, 0)
	f.s.reserved.Add(f.reserved)
	f.phase = phaseFilling
	f.notifyLocked()
	f.mu.Unlock()
	f.markReady()
	return nil
}

// take hands out the next chunk, or -1 when all are taken.
func (f *fill) take() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.m.take()
}

// span returns where chunk c starts and its length.
func (f *fill) span(c int) (start, length int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.m.span(c)
}

// done returns the bytes of chunk c written so far.
func (f *fill) done(c int) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.m.done(c)
}

// size returns the blob's size, -1 while unknown.
func (f *fill) size() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.m.size
}
