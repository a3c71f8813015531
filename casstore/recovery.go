package casstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/dgraph-io/badger/v4"
	"go.uber.org/zap"
)

// Recovery after an unclean shutdown. Open does not wait for the
// reconciliation of the index with the files (a walk of every file, 26 s
// at a million blobs): it moves tmp/ aside (one rename) and returns, and
// the reconciliation runs in the background. Until it ends the store
// trusts the index and verifies lazily: a blob is served only when the
// index has it with the size of its file; an entry whose file is missing
// or has another size is dropped (a miss, which a fill repairs); a file
// the index does not have is a miss until the background pass has hashed
// it (adopted or removed). So nothing the reconciliation would reject is
// ever served. The background pass removes the stale partial fills,
// reconciles as before, and rebuilds the totals from the index under
// countMu (commits and removals count under it while recovering), after
// which eviction, kept idle by the incomplete totals, resumes. If the
// store closes first, it writes no clean marker: the next Open recovers
// again.

// staleTmpPrefix names the tmp/ directories moved aside after a crash.
const staleTmpPrefix = "tmp-stale-"

// startRecovery moves the partial fills aside and starts the background
// reconciliation.
func (s *Store) startRecovery() error {
	stale := filepath.Join(s.root, fmt.Sprintf("%s%d", staleTmpPrefix, s.opt.Now().UnixNano()))
	if err := os.Rename(s.tmpDir(), stale); err != nil {
		return fmt.Errorf("casstore: move partial fills aside: %w", err)
	}
	if err := os.MkdirAll(s.tmpDir(), 0o750); err != nil {
		return fmt.Errorf("casstore: create %s: %w", s.tmpDir(), err)
	}
	if err := syncDir(s.root); err != nil {
		return err
	}
	s.recovering.Store(true)
	s.log.Info("serving after an unclean shutdown; reconciling the index with the files in the background")
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(s.recovered)
		if err := s.recoverInBackground(); err != nil {
			if s.ctx.Err() != nil {
				s.log.Info("store closed before the reconciliation ended; the next start reconciles again")
				return
			}
			s.log.Error("reconciliation after an unclean shutdown failed; serving verified blobs from the index until restarted", zap.Error(err))
		}
	}()
	return nil
}

// Recovering reports whether the reconciliation after an unclean
// shutdown is still running (reads are verified against the index until
// it ends, and Stats' Blobs and Bytes are incomplete).
func (s *Store) Recovering() bool { return s.recovering.Load() }

func (s *Store) recoverInBackground() error {
	if s.opt.holdRecovery != nil {
		select {
		case <-s.opt.holdRecovery:
		case <-s.ctx.Done():
			return s.ctx.Err()
		}
	}
	start := time.Now()
	stale, err := filepath.Glob(filepath.Join(s.root, staleTmpPrefix+"*"))
	if err != nil {
		return err
	}
	partial := 0
	for _, dir := range stale {
		if entries, err := os.ReadDir(dir); err == nil {
			partial += len(entries)
		}
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("casstore: remove partial fills: %w", err)
		}
	}
	if partial > 0 {
		s.log.Info("removed partial fills", zap.Int("files", partial))
	}
	if err := s.reconcile(); err != nil {
		return err
	}
	blobs, bytes, err := s.recount()
	if err != nil {
		return err
	}
	s.log.Info("reconciled store after unclean shutdown", zap.Int64("blobs", blobs), zap.Int64("bytes", bytes),
		zap.Duration("took", time.Since(start)))
	s.signalEvict()
	return nil
}

// recount sets the totals from the index and ends the recovery, holding
// countMu so no commit or removal counts in between.
func (s *Store) recount() (blobs, bytes int64, err error) {
	s.countMu.Lock()
	defer s.countMu.Unlock()
	err = s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefixAccess), PrefetchValues: true, PrefetchSize: 1000})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if err := it.Item().Value(func(v []byte) error {
				if len(v) == 8 {
					blobs++
					bytes += int64(binary.BigEndian.Uint64(v))
				}
				return nil
			}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("casstore: recount: %w", err)
	}
	s.blobs.Store(blobs)
	s.bytes.Store(bytes)
	s.recovering.Store(false)
	return blobs, bytes, nil
}

// lockCounts takes countMu while recovering; the returned func releases
// it and may be called more than once.
func (s *Store) lockCounts() func() {
	if !s.recovering.Load() {
		return func() {}
	}
	s.countMu.Lock()
	held := true
	return func() {
		if held {
			held = false
			s.countMu.Unlock()
		}
	}
}

// checkRecovering verifies a read lazily while recovering: d may be served
// only when the index has it with size, the size of its file (-1: no
// file). An index entry whose file is missing or has another size is
// dropped. It reports true when not recovering.
func (s *Store) checkRecovering(d Digest, size int64) bool {
	if !s.recovering.Load() {
		return true
	}
	var rec record
	err := s.db.View(func(txn *badger.Txn) error {
		var err error
		rec, err = getRecord(txn, d)
		return err
	})
	switch {
	case err == nil && size >= 0 && rec.Size == size:
		return true
	case errors.Is(err, ErrNotFound):
		return false // not indexed: the background pass hashes the file
	case err != nil:
		s.log.Warn("index read while recovering", zap.Stringer("digest", d), zap.Error(err))
		return false
	}
	s.c.verifyErrors.Add(1)
	s.log.Info("dropped a blob whose file does not match the index", zap.Stringer("digest", d),
		zap.Int64("indexed_size", rec.Size), zap.Int64("file_size", size))
	if _, _, err := s.removeBlobs([]Digest{d}, nil); err != nil {
		s.log.Warn("dropping a blob", zap.Stringer("digest", d), zap.Error(err))
	}
	return false
}
