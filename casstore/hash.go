package casstore

import (
	"context"
	"fmt"
	"io"
	"os"
)

// The digest is fed in order, one pass: a worker whose write lands exactly
// where the digest ends hashes its bytes from its own buffer as it writes
// them (hashWritten); the hasher reads back from the file only what landed
// out of order (the chunks of a parallel fill written ahead of the
// contiguous prefix) or while it held the digest itself.

// hashWritten feeds p, just written at off, to the digest if the digest
// ends at off, and reports whether it did. It never waits: when the hasher
// holds the digest, the hasher reads these bytes back from the file
// instead.
func (f *fill) hashWritten(p []byte, off int64) bool {
	if !f.hmu.TryLock() {
		return false
	}
	defer f.hmu.Unlock()
	if f.h != nil && f.hashed == off {
		f.h.Write(p)
		f.hashed += int64(len(p))
		return true
	}
	return false
}

// kickHasher wakes the hasher. Writes call it unless they leave the
// hasher nothing to do (fill.write), so the hasher of a fill whose bytes
// arrive in order sleeps until writeback is due or the last byte lands,
// instead of waking on every write.
func (f *fill) kickHasher() {
	select {
	case f.hashKick <- struct{}{}:
	default: // a kick is pending already
	}
}

// hash follows the contiguous prefix and returns the digest of the whole
// blob once it is written. What the workers did not hash as they wrote it
// is read back through small memory-mapped windows when it can (no copy,
// bounded RSS), else with pread.
func (f *fill) hash(ctx context.Context) ([]byte, error) {
	var buf []byte
	var flushed int64
	osf, _ := f.file.(*os.File)
	for {
		f.mu.Lock()
		contig, size := f.m.contig, f.m.size
		f.mu.Unlock()
		f.hmu.Lock()
		if f.hashed < contig {
			n, err := f.hashRange(f.h, f.hashed, contig, &buf)
			if err != nil {
				f.hmu.Unlock()
				return nil, fmt.Errorf("%w: read back for hashing: %w", ErrWrite, err)
			}
			f.hashed += n
		}
		done := f.hashed
		f.hmu.Unlock()
		if osf != nil && done-flushed >= writebackStep {
			startWriteback(osf, flushed, done-flushed)
			flushed = done
		}
		if done < contig {
			continue
		}
		if size >= 0 && done >= size {
			f.hmu.Lock()
			defer f.hmu.Unlock()
			return f.h.Sum(nil), nil
		}
		select {
		case <-f.hashKick: // sent after every change it must see
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// writebackStep is how many hashed bytes the hasher lets pile up before it
// starts their writeback. In-order writes wake the hasher each time they
// cross a multiple of writebackKick, so writeback starts at most
// writebackStep + writebackKick behind.
const (
	writebackStep = 8 << 20
	writebackKick = writebackStep / 4
)

// hashWindow is the most the hasher maps or reads at once.
const hashWindow = 8 << 20

// hashRange hashes some of the bytes [from, to) of the file and returns how
// many.
func (f *fill) hashRange(h io.Writer, from, to int64, buf *[]byte) (int64, error) {
	if osf, ok := f.file.(*os.File); ok {
		if n, ok := hashMapped(h, osf, from, min(to, from+hashWindow)); ok {
			return n, nil
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
