package casstore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/dgraph-io/badger/v4"
	"go.uber.org/zap"
)

// How a fill ends — committed, failed, or failed to write — and the
// references readers hold to its file until they are done.

// commit makes the verified file durable, moves it into place and indexes it.
func (f *fill) commit() error {
	f.mu.Lock()
	file, size := f.file, f.m.size
	f.mu.Unlock()
	if err := file.Sync(); err != nil {
		return fmt.Errorf("%w: sync: %w", ErrWrite, err)
	}
	final := f.s.blobPath(f.d)
	if err := f.s.publish(file.Name(), final); err != nil {
		return err
	}
	now := f.s.opt.Now()
	var existed bool
	unlock := f.s.lockCounts()
	defer unlock()
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
	unlock()
	f.mu.Lock()
	f.phase = phaseCommitted
	f.notifyLocked()
	f.settleLocked()
	f.mu.Unlock()
	f.finish(false)
	f.s.signalEvict()
	return nil
}

// publish renames the verified, synced temp file to final and makes the
// rename durable (final's directory is synced). The fan-out directory
// usually exists, so the rename is tried first; only when it fails because
// the directory is missing is it created (with the missing directories
// above it), each new directory synced in its parent before the rename,
// so a blob's whole path survives a crash once it is visible.
func (s *Store) publish(tmp, final string) error {
	dir := filepath.Dir(final)
	err := os.Rename(tmp, final)
	if errors.Is(err, fs.ErrNotExist) {
		if merr := s.makeDir(dir); merr != nil {
			return fmt.Errorf("%w: %w", ErrWrite, merr)
		}
		err = os.Rename(tmp, final)
	}
	if err != nil {
		return fmt.Errorf("%w: publish: %w", ErrWrite, err)
	}
	if err := syncDir(dir); err != nil {
		os.Remove(final)
		return fmt.Errorf("%w: %w", ErrWrite, err)
	}
	return nil
}

// makeDir creates dir under blobs/, and the missing directories between
// them, each synced in its parent. A directory another fill created
// meanwhile is synced in its parent too: that fill may not have done it
// yet.
func (s *Store) makeDir(dir string) error {
	parent := filepath.Dir(dir)
	err := os.Mkdir(dir, 0o750)
	if errors.Is(err, fs.ErrNotExist) && parent+string(filepath.Separator) != s.blobsPrefix {
		if err = s.makeDir(parent); err == nil {
			err = os.Mkdir(dir, 0o750)
		}
	}
	if err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	return syncDir(parent)
}

// end moves a fill that has not committed to the end phase ph with err,
// waking its readers; it reports false when the fill had already ended
// committed (or failed) and nothing changed.
func (f *fill) end(ph phase, err error) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.phase >= phaseCommitted {
		return false
	}
	f.phase, f.err = ph, err
	f.notifyLocked()
	f.settleLocked()
	return true
}

// fail ends the fill without publishing anything; readers get err.
func (f *fill) fail(err error) {
	if !f.end(phaseFailed, err) {
		return
	}
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
	if !f.end(phaseWriteFailed, err) {
		return
	}
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
