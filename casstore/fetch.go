package casstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"
	"time"

	"go.uber.org/zap"
)

// Fetching a fill's bytes: workers take chunks, open each range (the next
// one ahead of time, see lookahead), copy it to the file, and resume a
// broken stream where it stopped, with bounded retries.

// readBufSize is the buffer each worker copies a stream through. The
// buffers are pooled on the Store (Store.bufs): a fill of a small blob
// would otherwise allocate (and zero) one for a few reads.
const readBufSize = 256 << 10

// getBuf takes a worker's buffer from the store's pool; putBuf returns it
// once nothing (no gather, no timer) refers to it any more.
func (s *Store) getBuf() *[]byte {
	if bp, ok := s.bufs.Get().(*[]byte); ok {
		return bp
	}
	b := make([]byte, readBufSize)
	return &b
}

func (s *Store) putBuf(bp *[]byte) { s.bufs.Put(bp) }

// worker fetches chunk c (starting with the already-open stream st, if
// any), then takes further chunks until none are left. Near the end of
// each chunk it opens the next one ahead (see lookahead), so a worker's
// link never idles for the round trip between two range requests.
func (f *fill) worker(ctx context.Context, st *Stream, c int) error {
	bp := f.s.getBuf()
	defer f.s.putBuf(bp) // every gather of this worker has finished by then
	buf := *bp
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
	st   *Stream         // nil when the open failed: the chunk is then opened again
	wg   *sync.WaitGroup // the store's: its goroutines are waited for on Close
}

func (f *fill) preopen(ctx context.Context, c int) *preopen {
	p := &preopen{c: c, done: make(chan struct{}), wg: &f.s.wg}
	start, clen := f.span(c)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer close(p.done)
		f.s.c.sourceRequests.Add(1)
		st, err := f.src.Fetch(ctx, start, clen)
		if err != nil {
			return // fetchChunk opens it again, with retries
		}
		if st.Size != f.size() || st.Len != clen {
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
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
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
	start, clen := f.span(c)
	failures := 0
	for {
		done := f.done(c)
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
			if size := f.size(); size >= 0 && st.Size >= 0 && st.Size != size {
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
// size is unknown, at EOF). What it returns as written is on disk: the
// bytes a gather holds are written before it returns, whatever the reason.
func (f *fill) copyStream(ctx context.Context, c int, off, want int64, body io.Reader, buf []byte, la *lookahead) (int64, error) {
	stall := time.AfterFunc(f.s.opt.StallTimeout, func() {
		if cl, ok := body.(io.Closer); ok {
			cl.Close()
		}
	})
	defer stall.Stop()
	g := newGather(f, c, off, buf)
	start := time.Now()
	for {
		received, p, err := g.space(want)
		if err != nil {
			return g.finish(err)
		}
		if received >= want {
			return g.finish(nil)
		}
		if err := ctx.Err(); err != nil {
			return g.finish(err)
		}
		la.check(received, want-received, time.Since(start))
		n, err := body.Read(p)
		if n > 0 {
			stall.Reset(f.s.opt.StallTimeout)
		}
		end := err != nil || received+int64(n) >= want
		if werr := g.add(n, end); werr != nil {
			return g.finish(werr)
		}
		if errors.Is(err, io.EOF) {
			written, werr := g.finish(nil)
			switch {
			case werr != nil:
				return written, werr
			case want == math.MaxInt64: // size unknown: the stream end is the blob end
				f.setEOF(off + written)
				return written, nil
			case written < want:
				return written, io.ErrUnexpectedEOF
			}
			return written, nil
		}
		if err != nil {
			return g.finish(err)
		}
	}
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
	return f.m.chunks() > 1
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
	inline := f.hashWritten(p, off)
	f.s.c.bytesFilled.Add(int64(len(p)))
	f.mu.Lock()
	before := f.m.contig
	f.m.add(c, int64(len(p)))
	// The hasher has nothing to do after a write that did not extend the
	// contiguous prefix, or extended it by bytes hashed as they were
	// written, unless that completed the blob or writeback is due.
	after := f.m.contig
	quiet := (after == before || inline && after == off+int64(len(p))) &&
		after != f.m.size && after/writebackKick == before/writebackKick
	f.notifyLocked()
	f.mu.Unlock()
	if !quiet {
		f.kickHasher()
	}
	return nil
}

// setEOF fixes the size of a blob whose source did not announce it.
func (f *fill) setEOF(size int64) {
	f.mu.Lock()
	f.m.setEOF(size)
	f.notifyLocked()
	f.mu.Unlock()
	f.kickHasher()
}
