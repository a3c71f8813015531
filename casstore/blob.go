package casstore

import (
	"context"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"sync"
)

// Blob reads one blob: either a complete, verified file, or a fill in
// progress whose bytes are read as they land. Read and Seek share a position
// and are not safe for concurrent use (like *os.File); ReadAt and Section
// may be used concurrently. Close releases the blob.
//
// While a fill is in progress the last byte is held back until the whole
// blob is verified, so a reader never sees a clean end of an unverified
// blob: on a digest mismatch every read fails instead.
type Blob struct {
	d    Digest
	size int64

	file *os.File // complete blob

	f    *fill // fill in progress
	ctx  context.Context
	src  Source
	held bool // holds a reference on f's file

	pos int64
	cur *section

	closeOnce sync.Once
}

// newBlob returns a reader attached to a fill whose size is known (or that
// failed).
func (f *fill) newBlob(ctx context.Context, src Source) (*Blob, error) {
	f.mu.Lock()
	ph, err, size := f.phase, f.err, f.m.size
	f.mu.Unlock()
	if ph == phaseFailed {
		return nil, err
	}
	b := &Blob{d: f.d, size: size, f: f, ctx: ctx, src: src}
	b.held = f.acquire()
	return b, nil
}

// Digest returns the blob's digest.
func (b *Blob) Digest() Digest { return b.d }

// Size returns the blob's size, or -1 when the source did not announce it
// and the fill is still running.
func (b *Blob) Size() int64 { return b.size }

// File returns the verified file of a complete blob (for zero-copy serving),
// or nil while the blob is being filled. The file belongs to the Blob; use
// it instead of the Blob, not alongside it, and do not close it.
func (b *Blob) File() *os.File { return b.file }

// Read reads from the current position.
func (b *Blob) Read(p []byte) (int, error) {
	if b.file != nil {
		return b.file.Read(p)
	}
	if b.cur == nil {
		b.cur = b.newSection(b.pos, -1)
	}
	n, err := b.cur.Read(p)
	b.pos += int64(n)
	return n, err
}

// Seek sets the position for Read.
func (b *Blob) Seek(offset int64, whence int) (int64, error) {
	if b.file != nil {
		return b.file.Seek(offset, whence)
	}
	var abs int64
	switch whence {
	case io.SeekStart:
		abs = offset
	case io.SeekCurrent:
		abs = b.pos + offset
	case io.SeekEnd:
		if b.size < 0 {
			return 0, errors.New("casstore: seek from end of a blob of unknown size")
		}
		abs = b.size + offset
	default:
		return 0, errors.New("casstore: invalid whence")
	}
	if abs < 0 {
		return 0, errors.New("casstore: negative position")
	}
	if abs != b.pos && b.cur != nil {
		b.cur.Close()
		b.cur = nil
	}
	b.pos = abs
	return abs, nil
}

// ReadAt reads len(p) bytes at off, waiting for them while a fill runs.
func (b *Blob) ReadAt(p []byte, off int64) (int, error) {
	if b.file != nil {
		return b.file.ReadAt(p, off)
	}
	s := b.newSection(off, int64(len(p)))
	defer s.Close()
	n, err := io.ReadFull(s, p)
	if errors.Is(err, io.ErrUnexpectedEOF) {
		err = io.EOF
	}
	return n, err
}

// Section returns a reader of n bytes at off (n < 0: to the end). While the
// blob is being filled, a section that starts far ahead of the fill, or any
// section after a disk write failure, reads its bytes with its own source
// range request instead of waiting. Close the section when done.
func (b *Blob) Section(off, n int64) io.ReadCloser {
	if b.file != nil {
		if n < 0 {
			n = b.size - off
		}
		return io.NopCloser(io.NewSectionReader(b.file, off, n))
	}
	return b.newSection(off, n)
}

// Close releases the blob.
func (b *Blob) Close() error {
	var err error
	b.closeOnce.Do(func() {
		if b.cur != nil {
			b.cur.Close()
		}
		if b.file != nil {
			err = b.file.Close()
		}
		if b.held {
			b.f.release()
		}
	})
	return err
}

func (b *Blob) newSection(off, n int64) *section {
	end := int64(-1)
	if n >= 0 {
		end = off + n
	}
	if b.size >= 0 && (end < 0 || end > b.size) {
		end = b.size
	}
	return &section{b: b, off: off, end: end, full: off == 0 && (n < 0 || end == b.size) && b.size >= 0}
}

// section reads [off, end) of a blob being filled (end < 0: to the end).
type section struct {
	b        *Blob
	off, end int64
	full     bool // covers the whole blob, so direct bytes can be verified

	direct   io.ReadCloser // own source stream, once switched
	h        hash.Hash     // digest of what a full direct section served
	failures int
}

// availability is what a reader may do at an offset of a running fill.
type availability struct {
	n        int64 // bytes readable now
	ph       phase
	verified bool          // every byte is on disk and verified
	err      error         // the fill's error, if it failed
	far      bool          // the offset is far ahead of the fill
	changed  chan struct{} // closed on the next change
}

// avail reports how many bytes are readable at off now, and why not if none.
func (f *fill) avail(off int64, farAhead int64) availability {
	f.mu.Lock()
	defer f.mu.Unlock()
	a := availability{ph: f.phase, verified: f.verified, err: f.err, changed: f.changed}
	if readable := a.ph == phaseFilling || a.ph == phaseCommitted || a.verified && a.ph != phaseFailed; !readable {
		return a
	}
	a.n = f.m.readable(off, a.verified)
	if a.n == 0 && farAhead >= 0 {
		a.far = f.m.farAt(off, farAhead, f.rateLocked(), f.streams, 2*f.openLat)
	}
	return a
}

// minRateSample is how many bytes a fill must have written before its
// rate is trusted to decide whether a read is far ahead.
const minRateSample = 256 << 10

// rateLocked returns the fill's rate in bytes per second since bytes began
// to land, or 0 while too few have landed to tell.
func (f *fill) rateLocked() float64 {
	el := f.s.opt.Now().Sub(f.since).Seconds()
	if f.m.total < minRateSample || el <= 0 {
		return 0
	}
	return float64(f.m.total) / el
}

func (s *section) Read(p []byte) (int, error) {
	if s.end >= 0 && s.off >= s.end {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	if s.end >= 0 && int64(len(p)) > s.end-s.off {
		p = p[:s.end-s.off]
	}
	if s.direct != nil {
		return s.readDirect(p)
	}
	n, direct, err := s.await()
	switch {
	case err != nil:
		return 0, err
	case direct:
		return s.startDirect(p)
	}
	p = p[:min(int64(len(p)), n)]
	rn, err := s.b.f.file.ReadAt(p, s.off)
	s.off += int64(rn)
	if rn > 0 {
		return rn, nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	// The disk failed under us: take the rest from the source.
	s.b.f.s.log.Sugar().Warnf("casstore: read %s at %d failed (%v); switching to the source", s.b.d, s.off, err)
	return s.startDirect(p)
}

// await waits until bytes at s.off can be read from the fill's file and
// returns how many (n > 0, not beyond s.end), or reports that the section
// must read from its own source stream instead (direct), or returns io.EOF
// at the verified end, or the fill's error.
func (s *section) await() (n int64, direct bool, err error) {
	f := s.b.f
	for {
		a := f.avail(s.off, f.s.opt.FarAhead)
		if a.n > 0 && s.b.held {
			if s.end >= 0 {
				a.n = min(a.n, s.end-s.off)
			}
			return a.n, false, nil
		}
		switch {
		case (a.verified || a.ph == phaseCommitted) && f.sizeKnownAt(s.off):
			return 0, false, io.EOF
		case a.ph == phaseFailed:
			return 0, false, a.err
		case a.ph == phaseWriteFailed && !a.verified, a.far, !s.b.held && a.ph != phaseStarting:
			return 0, true, nil
		}
		select {
		case <-a.changed:
		case <-s.b.ctx.Done():
			return 0, false, s.b.ctx.Err()
		}
	}
}

// sizeKnownAt reports whether off is at or past the end of the blob.
func (f *fill) sizeKnownAt(off int64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.m.size >= 0 && off >= f.m.size
}

// startDirect switches the section to its own source stream at s.off.
func (s *section) startDirect(p []byte) (int, error) {
	if s.full && s.h == nil {
		// Everything served so far came from the file: hash it so the
		// whole blob is still verified before its last byte is released.
		s.h = s.b.d.NewHash()
		if s.off > 0 {
			if !s.b.held {
				return 0, fmt.Errorf("%w: cannot verify %s", ErrWrite, s.b.d)
			}
			if _, err := io.Copy(s.h, io.NewSectionReader(s.b.f.file, 0, s.off)); err != nil {
				return 0, fmt.Errorf("%w: read back %s: %w", ErrWrite, s.b.d, err)
			}
		}
	}
	if err := s.openDirect(); err != nil {
		return 0, err
	}
	return s.readDirect(p)
}

func (s *section) openDirect() error {
	length := int64(-1)
	if s.end >= 0 {
		length = s.end - s.off
	}
	s.b.f.s.c.directReads.Add(1)
	st, err := s.b.src.Fetch(s.b.ctx, s.off, length)
	if err != nil {
		return fmt.Errorf("%w: direct read of %s at %d: %w", ErrUpstream, s.b.d, s.off, err)
	}
	s.direct = st.Body
	return nil
}

func (s *section) readDirect(p []byte) (int, error) {
	for {
		n, err := s.direct.Read(p)
		if n > 0 {
			s.failures = 0
			if s.h != nil {
				s.h.Write(p[:n])
				if s.off+int64(n) == s.end && !s.b.d.matches(s.h.Sum(nil)) {
					s.b.f.s.c.verifyErrors.Add(1)
					return 0, fmt.Errorf("%w: %s (read from the source)", ErrDigestMismatch, s.b.d)
				}
			}
			s.off += int64(n)
			return n, nil
		}
		if errors.Is(err, io.EOF) && (s.end < 0 || s.off >= s.end) {
			return 0, io.EOF
		}
		if err == nil {
			continue
		}
		// Broken direct stream: resume it, bounded like a fill.
		s.direct.Close()
		s.direct = nil
		s.failures++
		if s.failures > s.b.f.s.opt.Retries || s.b.ctx.Err() != nil {
			return 0, fmt.Errorf("%w: direct read of %s: %w", ErrUpstream, s.b.d, err)
		}
		if err := s.b.f.backoff(s.b.ctx, s.failures); err != nil {
			return 0, err
		}
		if err := s.openDirect(); err != nil {
			return 0, err
		}
	}
}

// WriteTo writes the rest of the section to w as it lands. When w can
// read from a file itself (io.ReaderFrom: a network connection sends a
// file with sendfile(2)), it is handed the fill's file, through a handle
// of the section's own, for each run of bytes that has landed: the bytes
// go from the page cache to the socket without a copy through this
// process. Otherwise (and for what the section reads from its own source
// stream) they are copied through a buffer of readBufSize from the
// store's pool: io.Copy's 32 KiB buffer would cost several reads and
// writes for each piece a fill writes.
func (s *section) WriteTo(w io.Writer) (int64, error) {
	if rf, ok := w.(io.ReaderFrom); ok && s.direct == nil && s.b.held {
		if ff, ok := s.b.f.file.(fdFile); ok {
			if fd := reopen(ff); fd != nil {
				defer fd.Close()
				return s.sendFile(w, rf, fd)
			}
		}
	}
	return s.copyTo(w, 0)
}

// sendFile writes the rest of the section to w: each run of landed bytes
// by rf from fd (the fill's file, opened again), what the section reads
// from the source (after a switch) through copyTo.
func (s *section) sendFile(w io.Writer, rf io.ReaderFrom, fd *os.File) (int64, error) {
	var written int64
	for s.end < 0 || s.off < s.end {
		n, direct, err := s.await()
		switch {
		case errors.Is(err, io.EOF):
			return written, nil
		case err != nil:
			return written, err
		case direct:
			m, err := s.copyTo(w, written)
			return m, err
		}
		if _, err := fd.Seek(s.off, io.SeekStart); err != nil {
			return written, fmt.Errorf("%w: seek %s: %w", ErrWrite, s.b.d, err)
		}
		m, err := rf.ReadFrom(io.LimitReader(fd, n))
		s.off += m
		written += m
		if err != nil {
			return written, err
		}
		if m < n {
			// The file ended short of what landed: the disk failed under us.
			return written, fmt.Errorf("%w: read %s at %d: %w", ErrWrite, s.b.d, s.off, io.ErrUnexpectedEOF)
		}
	}
	return written, nil
}

// copyTo writes the rest of the section to w through a pooled buffer and
// returns the bytes written, counting from written.
func (s *section) copyTo(w io.Writer, written int64) (int64, error) {
	st := s.b.f.s
	bp := st.getBuf()
	defer st.putBuf(bp)
	buf := *bp
	for {
		n, err := s.Read(buf)
		if n > 0 {
			nw, werr := w.Write(buf[:n])
			written += int64(nw)
			if werr != nil {
				return written, werr
			}
			if nw != n {
				return written, io.ErrShortWrite
			}
		}
		if errors.Is(err, io.EOF) {
			return written, nil
		}
		if err != nil {
			return written, err
		}
	}
}

// Close releases the section's source stream, if any.
func (s *section) Close() error {
	if s.direct != nil {
		err := s.direct.Close()
		s.direct = nil
		return err
	}
	return nil
}

// Wait blocks until every byte of the blob has arrived and matched its
// digest (nil) — making it durable and visible may still be under way —
// or its fill failed (the fill's error), or ctx ends. It returns at once
// for a blob that was complete when opened. Background work such as
// prefetching uses it to bound how many downloads run at once.
func (b *Blob) Wait(ctx context.Context) error {
	if b.file != nil {
		return nil
	}
	f := b.f
	select {
	case <-f.settled: // once, not on every write
	case <-ctx.Done():
		return ctx.Err()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.verified || f.phase == phaseCommitted {
		return nil
	}
	return f.err
}

// Progress returns how many of the blob's bytes have landed on disk and
// its size: (size, size) for a blob that was complete when opened or
// whose fill is verified. Background work such as prefetching uses it to
// see how far a fill a client waits for has come.
func (b *Blob) Progress() (landed, size int64) {
	if b.file != nil {
		return b.size, b.size
	}
	f := b.f
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.verified || f.phase == phaseCommitted {
		return f.m.size, f.m.size
	}
	return f.m.total, f.m.size
}
