package casstore

import (
	"context"
	"fmt"
	"io"
	"os"
)

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
		contig, size, ch := f.m.contig, f.m.size, f.changed
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
