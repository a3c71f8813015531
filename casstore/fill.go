package casstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/dgraph-io/badger/v4"
	"go.uber.org/zap"
)

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

const readBufSize = 128 << 10

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
	size     int64   // -1 while unknown
	chunk    int64   // bytes per chunk
	prog     []int64 // bytes written in each chunk
	next     int     // chunks [0,next) were taken by a worker
	first    int     // first chunk not yet complete
	contig   int64   // length of the written contiguous prefix
	file     fillFile
	refs     int           // holders of file: the fill and its readers
	reserved int64         // bytes counted in Store.reserved until the fill ends
	verified bool          // every byte is on disk and matched the digest
	changed  chan struct{} // closed and replaced on every change
	openLat  time.Duration // how long the latest source open took
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
	b, err := f.newBlob(ctx, src)
	return b, res, err
}

func (s *Store) startFillLocked(d Digest, src Source, fo FillOptions) *fill {
	if fo.ChunkSize <= 0 {
		fo.ChunkSize = DefaultChunkSize
	}
	f := &fill{
		s: s, d: d, src: src, opt: fo,
		ready:   make(chan struct{}),
		size:    -1,
		refs:    1,
		changed: make(chan struct{}),
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

func (f *fill) markReady() { f.once.Do(func() { close(f.ready) }) }

// chunkLenLocked is the length of chunk c (MaxInt64 while the size is unknown).
func (f *fill) chunkLenLocked(c int) int64 {
	if f.size < 0 {
		return math.MaxInt64
	}
	return min(f.chunk, f.size-int64(c)*f.chunk)
}

func (f *fill) run() {
	defer f.s.wg.Done()
	ctx, cancel := context.WithTimeout(f.s.ctx, f.s.opt.FillTimeout)
	f.cancel = cancel
	defer cancel()
	log := f.s.log.With(zap.String("digest", f.d.String()))
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
	workers := min(max(f.opt.Parallel, 1), len(f.prog))
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
	f.mu.Unlock()
	if err := f.commit(); err != nil {
		f.writeFailed(err)
		return
	}
	f.mu.Lock()
	size := f.size
	f.mu.Unlock()
	log.Debug("fill committed", zap.Int64("bytes", size), zap.Int("streams", workers), zap.Duration("took", time.Since(start)))
}

// setup creates the temp file for a fill whose first stream is open and
// publishes the size and chunk layout.
func (f *fill) setup(st Stream) error {
	size := st.Size
	chunk := int64(math.MaxInt64)
	n := 1
	if size >= 0 {
		chunk = max(size, 1)
		if f.opt.Parallel > 1 && st.Len >= 0 && st.Len < size {
			chunk = st.Len // the source honoured the first range: fetch in chunks
			n = int((size + chunk - 1) / chunk)
		}
	}
	// Readers learn the size even if the disk fails below: a reader of the
	// whole blob then still verifies what it takes from the source.
	f.mu.Lock()
	f.size = size
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
	f.size, f.chunk, f.prog, f.next, f.file = size, chunk, make([]int64, n), 1, file
	f.reserved = max(size, 0)
	f.s.reserved.Add(f.reserved)
	f.phase = phaseFilling
	f.notifyLocked()
	f.mu.Unlock()
	f.markReady()
	return nil
}

// allocate sizes the temp file (sparse) after checking that the file
// system has room for it, so a full disk shows at once instead of part way.
// (fallocate would reserve the blocks, but on tmpfs it zero-fills every
// page, which costs more than the check saves.)
func allocate(file fillFile, size int64) error {
	if osf, ok := file.(*os.File); ok {
		var st syscall.Statfs_t
		if err := syscall.Fstatfs(int(osf.Fd()), &st); err == nil && int64(st.Bavail)*st.Bsize < size {
			return fmt.Errorf("%d bytes free: %w", int64(st.Bavail)*st.Bsize, syscall.ENOSPC)
		}
	}
	return file.Truncate(size)
}

// take hands out the next chunk, or -1 when all are taken.
func (f *fill) take() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.next >= len(f.prog) {
		return -1
	}
	f.next++
	return f.next - 1
}

// worker fetches chunk c (starting with the already-open stream st, if
// any), then takes further chunks until none are left. Near the end of
// each chunk it opens the next one ahead (see lookahead), so a worker's
// link never idles for the round trip between two range requests.
func (f *fill) worker(ctx context.Context, st *Stream, c int) error {
	buf := make([]byte, readBufSize)
	var ahead *preopen
	defer func() { ahead.discard() }()
	next := func() {
		if ahead != nil {
			return
		}
		if nc := f.take(); nc >= 0 {
			ahead = f.preopen(ctx, nc)
		} else {
			ahead = &preopen{c: -1}
		}
	}
	for c >= 0 {
		if err := f.fetchChunk(ctx, c, st, buf, next); err != nil {
			return err
		}
		st = nil
		if ahead == nil {
			c = f.take()
			continue
		}
		c, st = ahead.c, ahead.wait()
		ahead = nil
	}
	return nil
}

// preopen is a range request for the next chunk, sent before the current
// chunk ends.
type preopen struct {
	c    int // the chunk, -1 when none was left
	done chan struct{}
	st   *Stream // nil when the open failed: the chunk is then opened again
}

func (f *fill) preopen(ctx context.Context, c int) *preopen {
	p := &preopen{c: c, done: make(chan struct{})}
	f.mu.Lock()
	start, clen := int64(c)*f.chunk, f.chunkLenLocked(c)
	f.mu.Unlock()
	go func() {
		defer close(p.done)
		f.s.c.sourceRequests.Add(1)
		st, err := f.src.Fetch(ctx, start, clen)
		if err != nil {
			return // fetchChunk opens it again, with retries
		}
		f.mu.Lock()
		size := f.size
		f.mu.Unlock()
		if st.Size != size || st.Len != clen {
			st.Body.Close()
			return
		}
		p.st = &st
	}()
	return p
}

// wait returns the pre-opened stream, or nil.
func (p *preopen) wait() *Stream {
	if p.done != nil {
		<-p.done
	}
	return p.st
}

// discard closes a pre-opened stream nobody will read.
func (p *preopen) discard() {
	if p == nil || p.done == nil {
		return
	}
	go func() {
		if st := p.wait(); st != nil {
			st.Body.Close()
		}
	}()
}

// fetchChunk writes chunk c, resuming from where it stopped after a broken
// stream, with bounded retries and backoff.
// ahead is called once when the rest of the chunk will take about two
// stream opening times (see lookahead).
func (f *fill) fetchChunk(ctx context.Context, c int, st *Stream, buf []byte, ahead func()) error {
	f.mu.Lock()
	start, clen := int64(c)*f.chunk, f.chunkLenLocked(c)
	f.mu.Unlock()
	failures := 0
	for {
		f.mu.Lock()
		done := f.prog[c]
		f.mu.Unlock()
		if done >= clen {
			if st != nil {
				st.Body.Close()
			}
			return nil
		}
		openTime := f.openTime()
		if st == nil {
			length := int64(-1)
			if clen != math.MaxInt64 {
				length = clen - done
			}
			t0 := time.Now()
			s, err := f.open(ctx, start+done, length, failures)
			if err != nil {
				return err
			}
			openTime = f.noteOpenTime(time.Since(t0))
			st = &s
		}
		want := clen - done
		if clen == math.MaxInt64 {
			want = math.MaxInt64 // size unknown: read to the stream's end
		}
		var la *lookahead
		if ahead != nil && f.parallel() {
			la = &lookahead{rtt: openTime, fire: ahead}
		}
		n, err := f.copyStream(ctx, c, start+done, want, st.Body, buf, la)
		st.Body.Close()
		st = nil
		if err == nil {
			return nil
		}
		if errors.Is(err, ErrWrite) || ctx.Err() != nil {
			return err
		}
		if n > 0 {
			failures = 0
		}
		failures++
		if failures > f.s.opt.Retries {
			return fmt.Errorf("%w: %s at offset %d after %d attempts: %w", ErrUpstream, f.d, start+done+n, failures, err)
		}
		f.s.log.Info("source stream broke; resuming", zap.String("digest", f.d.String()),
			zap.Int64("offset", start+done+n), zap.Int("attempt", failures), zap.Error(err))
		if err := f.backoff(ctx, failures); err != nil {
			return err
		}
	}
}

// open opens the source at off, retrying transient errors. failures is
// the number of failed attempts already made for this range.
func (f *fill) open(ctx context.Context, off, length int64, failures int) (Stream, error) {
	for {
		f.s.c.sourceRequests.Add(1)
		if off > 0 && length < 0 || failures > 0 {
			f.s.c.resumes.Add(1)
		}
		st, err := f.src.Fetch(ctx, off, length)
		if err == nil {
			f.mu.Lock()
			size := f.size
			f.mu.Unlock()
			if size >= 0 && st.Size >= 0 && st.Size != size {
				st.Body.Close()
				return Stream{}, Permanent(fmt.Errorf("%w: source now reports %d bytes, first %d", ErrSizeMismatch, st.Size, size))
			}
			return st, nil
		}
		failures++
		if IsPermanent(err) || ctx.Err() != nil || failures > f.s.opt.Retries {
			return Stream{}, fmt.Errorf("%w: fetch %s at offset %d: %w", ErrUpstream, f.d, off, err)
		}
		f.s.log.Info("source fetch failed; retrying", zap.String("digest", f.d.String()),
			zap.Int64("offset", off), zap.Int("attempt", failures), zap.Error(err))
		if err := f.backoff(ctx, failures); err != nil {
			return Stream{}, err
		}
	}
}

func (f *fill) backoff(ctx context.Context, failures int) error {
	d := f.s.opt.RetryBackoff << min(failures-1, 5)
	d = min(d, 5*time.Second)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", ErrUpstream, ctx.Err())
	}
}

// copyStream copies up to want bytes from body into chunk c at off. It
// returns the bytes written and nil once want bytes landed (or, while the
// size is unknown, at EOF).
func (f *fill) copyStream(ctx context.Context, c int, off, want int64, body io.Reader, buf []byte, la *lookahead) (int64, error) {
	stall := time.AfterFunc(f.s.opt.StallTimeout, func() {
		if cl, ok := body.(io.Closer); ok {
			cl.Close()
		}
	})
	defer stall.Stop()
	var written int64
	start := time.Now()
	for written < want {
		if err := ctx.Err(); err != nil {
			return written, err
		}
		la.check(written, want-written, time.Since(start))
		p := buf
		if rest := want - written; rest < int64(len(p)) {
			p = p[:rest]
		}
		n, err := body.Read(p)
		if n > 0 {
			stall.Reset(f.s.opt.StallTimeout)
			if werr := f.write(c, p[:n], off+written); werr != nil {
				return written, werr
			}
			written += int64(n)
		}
		if errors.Is(err, io.EOF) {
			if want == math.MaxInt64 { // size unknown: the stream end is the blob end
				f.setEOF(off + written)
				return written, nil
			}
			if written < want {
				return written, io.ErrUnexpectedEOF
			}
			return written, nil
		}
		if err != nil {
			return written, err
		}
	}
	return written, nil
}

// lookahead fires once when the rest of a chunk, at the rate measured so
// far, will take no longer than twice the time opening a stream took (≈ one
// round trip to the source, doubled as a margin).
type lookahead struct {
	rtt   time.Duration
	fire  func()
	fired bool
}

func (la *lookahead) check(written, rest int64, elapsed time.Duration) {
	if la == nil || la.fired || written <= 0 || elapsed <= 0 {
		return
	}
	// rest / (written/elapsed) <= 2 × rtt, without division.
	if float64(rest)*elapsed.Seconds() <= 2*la.rtt.Seconds()*float64(written) {
		la.fired = true
		la.fire()
	}
}

// parallel reports whether the blob is fetched as several chunks.
func (f *fill) parallel() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.prog) > 1
}

// openTime is the latest time a stream took to open (at least 1ms).
func (f *fill) openTime() time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.openLat
}

func (f *fill) noteOpenTime(d time.Duration) time.Duration {
	d = max(d, time.Millisecond)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.openLat = d
	return d
}

// write stores p at off in chunk c and publishes the progress.
func (f *fill) write(c int, p []byte, off int64) error {
	if _, err := f.file.WriteAt(p, off); err != nil {
		return fmt.Errorf("%w: %w", ErrWrite, err)
	}
	f.s.c.bytesFilled.Add(int64(len(p)))
	f.mu.Lock()
	f.prog[c] += int64(len(p))
	f.advanceLocked()
	f.notifyLocked()
	f.mu.Unlock()
	return nil
}

// advanceLocked recomputes the contiguous prefix.
func (f *fill) advanceLocked() {
	for f.first < len(f.prog) && f.prog[f.first] >= f.chunkLenLocked(f.first) {
		f.first++
	}
	if f.first < len(f.prog) {
		f.contig = int64(f.first)*f.chunk + f.prog[f.first]
	} else {
		f.contig = f.size
	}
}

// setEOF fixes the size of a blob whose source did not announce it.
func (f *fill) setEOF(size int64) {
	f.mu.Lock()
	f.size = size
	f.chunk = max(size, 1)
	f.advanceLocked()
	f.notifyLocked()
	f.mu.Unlock()
}

// hash follows the contiguous prefix and returns the digest of the whole
// blob once it is written. It reads the file through small memory-mapped
// windows when it can (no copy, bounded RSS), else with pread.
func (f *fill) hash(ctx context.Context) ([]byte, error) {
	h := f.d.NewHash()
	var buf []byte
	var done, flushed int64
	osf, _ := f.file.(*os.File)
	for {
		f.mu.Lock()
		contig, size, ch := f.contig, f.size, f.changed
		f.mu.Unlock()
		if done < contig {
			n, err := f.hashRange(h, done, contig, &buf)
			if err != nil {
				return nil, fmt.Errorf("%w: read back for hashing: %w", ErrWrite, err)
			}
			done += n
			if osf != nil && done-flushed >= writebackStep {
				startWriteback(osf, flushed, done-flushed)
				flushed = done
			}
			continue
		}
		if size >= 0 && done >= size {
			return h.Sum(nil), nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// writebackStep is how many hashed bytes the hasher lets pile up before it
// starts their writeback.
const writebackStep = 8 << 20

// hashWindow is the most the hasher maps or reads at once.
const hashWindow = 8 << 20

// hashRange hashes some of the bytes [from, to) of the file and returns how
// many.
func (f *fill) hashRange(h io.Writer, from, to int64, buf *[]byte) (int64, error) {
	if osf, ok := f.file.(*os.File); ok {
		// Map whole pages: the window starts at a page boundary at or
		// before from.
		page := int64(os.Getpagesize())
		start := from &^ (page - 1)
		end := min(to, start+hashWindow)
		m, err := syscall.Mmap(int(osf.Fd()), start, int(end-start), syscall.PROT_READ, syscall.MAP_SHARED)
		if err == nil {
			h.Write(m[from-start:])
			syscall.Munmap(m)
			return end - from, nil
		}
	}
	if *buf == nil {
		*buf = make([]byte, 128<<10)
	}
	n, err := f.file.ReadAt((*buf)[:min(int64(len(*buf)), to-from)], from)
	if n == 0 && err != nil {
		return 0, err
	}
	h.Write((*buf)[:n])
	return int64(n), nil
}

// commit makes the verified file durable, moves it into place and indexes it.
func (f *fill) commit() error {
	f.mu.Lock()
	file, size := f.file, f.size
	f.mu.Unlock()
	if err := file.Sync(); err != nil {
		return fmt.Errorf("%w: sync: %w", ErrWrite, err)
	}
	final := f.s.blobPath(f.d)
	if err := os.MkdirAll(filepath.Dir(final), 0o750); err != nil {
		return fmt.Errorf("%w: %w", ErrWrite, err)
	}
	if err := os.Rename(file.Name(), final); err != nil {
		return fmt.Errorf("%w: publish: %w", ErrWrite, err)
	}
	if err := syncDir(filepath.Dir(final)); err != nil {
		os.Remove(final)
		return fmt.Errorf("%w: %w", ErrWrite, err)
	}
	now := f.s.opt.Now()
	var existed bool
	err := update(f.s.db, func(txn *badger.Txn) error {
		var err error
		existed, err = putRecord(txn, f.d, record{Size: size, Created: now, Access: now})
		return err
	})
	if err != nil {
		os.Remove(final)
		return fmt.Errorf("%w: index: %w", ErrWrite, err)
	}
	f.unreserve() // before the bytes count, so the blob is never counted twice
	if !existed {
		f.s.blobs.Add(1)
		f.s.bytes.Add(size)
	}
	f.mu.Lock()
	f.phase = phaseCommitted
	f.notifyLocked()
	f.mu.Unlock()
	f.finish(false)
	f.s.signalEvict()
	return nil
}

// fail ends the fill without publishing anything; readers get err.
func (f *fill) fail(err error) {
	f.mu.Lock()
	if f.phase >= phaseCommitted {
		f.mu.Unlock()
		return
	}
	f.phase, f.err = phaseFailed, err
	f.notifyLocked()
	f.mu.Unlock()
	switch {
	case errors.Is(err, ErrDigestMismatch), errors.Is(err, ErrSizeMismatch):
		f.s.c.verifyErrors.Add(1)
		f.s.log.Warn("fill failed verification; nothing stored", zap.String("digest", f.d.String()), zap.Error(err))
	case errors.Is(err, ErrClosed), errors.Is(err, context.Canceled) && f.s.ctx.Err() != nil:
	default:
		f.s.c.srcErrs.Add(1)
		f.s.log.Warn("fill failed", zap.String("digest", f.d.String()), zap.Error(err))
	}
	f.finish(true)
	f.markReady()
}

// writeFailed ends a fill whose disk writes failed: nothing is published,
// and readers switch to their own source streams for what is not on disk.
func (f *fill) writeFailed(err error) {
	f.mu.Lock()
	if f.phase >= phaseCommitted {
		f.mu.Unlock()
		return
	}
	f.phase, f.err = phaseWriteFailed, err
	f.notifyLocked()
	f.mu.Unlock()
	if f.cancel != nil {
		f.cancel()
	}
	f.s.c.writeErrors.Add(1)
	f.s.log.Error("fill could not write to disk; serving readers from the source", zap.String("digest", f.d.String()), zap.Error(err))
	f.finish(true)
	f.markReady()
}

// finish unregisters the fill, removes its temp file when nothing was
// published, and drops the fill's reference to the file.
func (f *fill) finish(removeTemp bool) {
	f.s.mu.Lock()
	if f.s.fills[f.d] == f {
		delete(f.s.fills, f.d)
	}
	f.s.mu.Unlock()
	f.s.inflight.Add(-1)
	f.unreserve()
	f.mu.Lock()
	file := f.file
	f.mu.Unlock()
	if removeTemp && file != nil {
		os.Remove(file.Name())
	}
	f.release()
}

// unreserve returns the fill's reservation in the byte budget.
func (f *fill) unreserve() {
	f.mu.Lock()
	r := f.reserved
	f.reserved = 0
	f.mu.Unlock()
	f.s.reserved.Add(-r)
}

// acquire takes a reference to the fill's file; false if there is none.
func (f *fill) acquire() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.file == nil || f.refs == 0 {
		return false
	}
	f.refs++
	return true
}

// release drops a reference; the last one closes the file.
func (f *fill) release() {
	f.mu.Lock()
	f.refs--
	var file fillFile
	if f.refs == 0 {
		file = f.file
	}
	f.mu.Unlock()
	if file != nil {
		file.Close()
	}
}
