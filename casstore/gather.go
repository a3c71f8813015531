package casstore

import (
	"sync"
	"time"
)

// A worker gathers what its stream delivers and writes it to the file in
// pieces of at least writeStep bytes ending on a page boundary, instead of
// one write per socket read. A read from a WAN socket returns a few KiB to
// a few dozen, and every write is a pwrite(2) that zero-fills the partial
// pages it touches, takes the file's lock, and wakes the readers waiting
// for the bytes and the hasher. Bytes wait in the buffer at most about
// writeDelay while the stream delivers (checked on each read), and at most
// 2 × writeDelay when it pauses (a timer writes them), so readers of a
// slow or paused source still get every byte that arrived. The first bytes
// of a stream are written at once (a reader's first byte is not delayed).
const (
	writeStep  = 128 << 10
	writeDelay = 10 * time.Millisecond
	pageSize   = 4 << 10
)

// gather holds the bytes one stream delivered for chunk c until they are
// written at off (the file offset of the stream's first byte).
type gather struct {
	f     *fill
	c     int
	off   int64
	buf   []byte
	timer *time.Timer // writes the held bytes of a paused stream

	// mu guards the fields below and the writes; the stream's Read fills
	// buf[hi:] without it (the timer writes only buf[lo:hi]).
	mu      sync.Mutex
	lo, hi  int       // buf[lo:hi] is held: received, not yet written
	since   time.Time // when the oldest held byte arrived
	written int64     // bytes written at off
	err     error     // a write failed
	done    bool      // finished: the timer must not touch buf
}

func newGather(f *fill, c int, off int64, buf []byte) *gather {
	g := &gather{f: f, c: c, off: off, buf: buf}
	g.timer = time.AfterFunc(time.Hour, g.tick)
	g.timer.Stop()
	return g
}

// space returns the bytes received so far and the part of the buffer the
// next read may fill (at most want bytes received in all), or the error
// of a write the timer made.
func (g *gather) space(want int64) (int64, []byte, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.err != nil {
		return 0, nil, g.err
	}
	if g.lo == g.hi {
		g.lo, g.hi = 0, 0
	} else if len(g.buf)-g.hi < pageSize {
		g.hi = copy(g.buf, g.buf[g.lo:g.hi])
		g.lo = 0
	}
	received := g.written + int64(g.hi-g.lo)
	p := g.buf[g.hi:]
	if rest := want - received; rest < int64(len(p)) {
		p = p[:max(rest, 0)]
	}
	return received, p, nil
}

// add records n more bytes received after the held ones and writes what
// is due: everything at the stream's end, else a page-aligned piece once
// writeStep bytes are held, the oldest has waited writeDelay, the buffer
// is full, or nothing of the stream was written yet.
func (g *gather) add(n int, end bool) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.err != nil {
		return g.err
	}
	if n > 0 && g.lo == g.hi {
		g.since = time.Now()
	}
	g.hi += n
	held := g.hi - g.lo
	switch {
	case held == 0:
		return nil
	case end:
		return g.writeLocked(true)
	case held >= writeStep || g.written == 0 || len(g.buf)-g.hi < pageSize || time.Since(g.since) >= g.f.s.opt.writeDelay:
		if err := g.writeLocked(false); err != nil {
			return err
		}
	}
	if g.hi > g.lo {
		g.timer.Reset(2 * g.f.s.opt.writeDelay)
	}
	return nil
}

// writeLocked writes the held bytes: all, or up to the last page boundary
// (all when that is none and the stream has written nothing yet).
func (g *gather) writeLocked(all bool) error {
	n := g.hi - g.lo
	if !all {
		at := g.off + g.written
		if aligned := int((at+int64(n))&^(pageSize-1) - at); aligned > 0 {
			n = aligned
		} else if g.written > 0 {
			return nil
		}
	}
	if err := g.f.write(g.c, g.buf[g.lo:g.lo+n], g.off+g.written); err != nil {
		g.err = err
		return err
	}
	g.written += int64(n)
	g.lo += n
	g.since = time.Now()
	return nil
}

// tick writes the bytes of a stream that paused with bytes held.
func (g *gather) tick() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.done && g.err == nil && g.hi > g.lo {
		_ = g.writeLocked(true) // the error is kept in g.err for the stream
	}
}

// finish writes what is held and ends the gather; it returns the bytes
// written and err, or the write's error.
func (g *gather) finish(err error) (int64, error) {
	g.timer.Stop()
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.err == nil && g.hi > g.lo {
		g.writeLocked(true)
	}
	g.done = true
	if g.err != nil {
		return g.written, g.err
	}
	return g.written, err
}
