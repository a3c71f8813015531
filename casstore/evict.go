package casstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"go.uber.org/zap"
)

// maxPending is how many recorded reads start an early flush of the
// access times; maxPendingHard bounds them in memory: a read beyond it is
// not recorded until the flush has taken the batch (the blob's next read
// is), so a stalled index costs LRU precision, never memory.
const (
	maxPending     = 100_000
	maxPendingHard = 2 * maxPending
)

// access is one read of a blob, waiting for the next flush.
type access struct {
	d  Digest
	at time.Time
}

// maintain runs the batched access-time flush, the TTL sweep and eviction,
// one at a time, until the store closes.
func (s *Store) maintain() {
	defer s.wg.Done()
	flush := time.NewTicker(s.opt.AccessFlushInterval)
	defer flush.Stop()
	var sweep <-chan time.Time
	if s.opt.TTL > 0 {
		t := time.NewTicker(s.opt.SweepInterval)
		defer t.Stop()
		sweep = t.C
	}
	for {
		var err error
		select {
		case <-s.ctx.Done():
			return
		case <-flush.C:
			err = s.flushAccess()
		case <-s.flushCh:
			err = s.flushAccess()
		case <-sweep:
			err = s.sweepTTL()
		case <-s.evictCh:
			err = s.evict()
		}
		if err != nil && s.ctx.Err() == nil {
			s.log.Error("store maintenance failed", zap.Error(err))
		}
	}
}

func (s *Store) signalEvict() {
	if s.opt.MaxBytes <= 0 {
		return
	}
	select {
	case s.evictCh <- struct{}{}:
	default:
	}
}

// touch records a read of d; it reaches the index with the next flush.
// It appends to a list rather than updating a map keyed by digest: the hit
// path pays an append under a mutex (no hashing, no random access into a
// large table, no growth once the buffers are warm), and the flush keeps
// each blob's latest read.
func (s *Store) touch(d Digest) {
	now := s.opt.Now()
	s.accessMu.Lock()
	n := len(s.pending)
	if n < maxPendingHard {
		s.pending = append(s.pending, access{d: d, at: now})
		n++
	}
	s.accessMu.Unlock()
	if n >= maxPending {
		select {
		case s.flushCh <- struct{}{}:
		default:
		}
	}
}

// flushAccess writes the batched access times, moving each blob's LRU key.
// It swaps the spare buffer in for the list and keeps the list it took as
// the next spare, so steady reads allocate nothing.
func (s *Store) flushAccess() error {
	s.accessMu.Lock()
	reads := s.pending
	s.pending, s.spare = s.spare[:0], nil
	s.accessMu.Unlock()
	defer func() {
		if cap(reads) > maxPending {
			return // a burst's big buffer is let go
		}
		clear(reads) // drop the digests' strings while the buffer waits
		s.accessMu.Lock()
		if s.spare == nil {
			s.spare = reads[:0]
		}
		s.accessMu.Unlock()
	}()
	if len(reads) == 0 {
		return nil
	}
	batch := make(map[Digest]time.Time, len(reads))
	for _, a := range reads {
		if t, ok := batch[a.d]; !ok || a.at.After(t) {
			batch[a.d] = a.at
		}
	}
	ds := make([]Digest, 0, len(batch))
	for d := range batch {
		ds = append(ds, d)
	}
	const perTxn = 1000
	for i := 0; i < len(ds); i += perTxn {
		part := ds[i:min(i+perTxn, len(ds))]
		err := update(s.db, func(txn *badger.Txn) error {
			for _, d := range part {
				rec, err := getRecord(txn, d)
				if errors.Is(err, ErrNotFound) {
					continue // evicted meanwhile
				}
				if err != nil {
					return err
				}
				if !batch[d].After(rec.Access) {
					continue
				}
				if err := txn.Delete(accessKey(rec.Access, d)); err != nil {
					return err
				}
				rec.Access = batch[d]
				if err := txn.Set(blobKey(d), rec.marshal()); err != nil {
					return err
				}
				if err := txn.Set(accessKey(rec.Access, d), sizeValue(rec.Size)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("casstore: flush access times: %w", err)
		}
	}
	return nil
}

// Budget is a store's byte budget and its watermarks in bytes.
type Budget struct {
	// Max is the byte budget of complete blobs; 0 means unlimited (and
	// High and Low are 0 too).
	Max int64
	// High is where eviction starts (with fills in flight), Low where it
	// stops.
	High, Low int64
}

// Budget returns the store's budget, with the watermark defaults applied.
func (s *Store) Budget() Budget {
	if s.opt.MaxBytes <= 0 {
		return Budget{}
	}
	return Budget{
		Max:  s.opt.MaxBytes,
		High: int64(float64(s.opt.MaxBytes) * s.opt.HighWatermark),
		Low:  int64(float64(s.opt.MaxBytes) * s.opt.LowWatermark),
	}
}

// evict removes least recently used blobs until the store (with fills in
// flight) is below the low watermark, if it is above the high one.
func (s *Store) evict() error {
	b := s.Budget()
	if b.Max == 0 {
		return nil
	}
	high, low := b.High, b.Low
	if s.bytes.Load()+s.reserved.Load() <= high {
		return nil
	}
	if err := s.flushAccess(); err != nil {
		return err
	}
	start := time.Now()
	need := s.bytes.Load() + s.reserved.Load() - low
	ds, err := s.oldest(need, time.Time{})
	if err != nil {
		return err
	}
	var blobs, freed int64
	for i := 0; i < len(ds) && s.ctx.Err() == nil; i += removeBatch {
		n, b, err := s.removeBlobs(ds[i:min(i+removeBatch, len(ds))], &s.c.evictions)
		blobs, freed = blobs+n, freed+b
		if err != nil {
			return err
		}
	}
	s.log.Info("evicted least recently used blobs", zap.Int64("blobs", blobs), zap.Int64("bytes", freed),
		zap.Int64("store_bytes", s.bytes.Load()), zap.Duration("took", time.Since(start)))
	return nil
}

// removeBatch is how many blobs one index transaction removes.
const removeBatch = 1000

// sweepTTL removes blobs not read for longer than the TTL.
func (s *Store) sweepTTL() error {
	if err := s.flushAccess(); err != nil {
		return err
	}
	cutoff := s.opt.Now().Add(-s.opt.TTL)
	ds, err := s.oldest(-1, cutoff)
	if err != nil {
		return err
	}
	var total int64
	for i := 0; i < len(ds) && s.ctx.Err() == nil; i += removeBatch {
		n, _, err := s.removeBlobs(ds[i:min(i+removeBatch, len(ds))], &s.c.expirations)
		total += n
		if err != nil {
			return err
		}
	}
	if total > 0 {
		s.log.Info("expired idle blobs", zap.Int64("blobs", total), zap.Duration("ttl", s.opt.TTL))
	}
	return nil
}

// oldest lists least recently used blobs in one pass over the LRU keys:
// enough to free need bytes (need < 0: no byte limit), stopping at the
// first blob read at or after cutoff when cutoff is set.
func (s *Store) oldest(need int64, cutoff time.Time) ([]Digest, error) {
	var ds []Digest
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefixAccess), PrefetchValues: true, PrefetchSize: 1000})
		defer it.Close()
		var sum int64
		for it.Rewind(); it.Valid(); it.Next() {
			if need >= 0 && sum >= need {
				break
			}
			item := it.Item()
			t, d, err := parseAccessKey(item.Key())
			if err != nil {
				continue // reconciled on the next unclean start
			}
			if !cutoff.IsZero() && !t.Before(cutoff) {
				break
			}
			if need >= 0 {
				err := item.Value(func(v []byte) error {
					if len(v) == 8 {
						sum += int64(binary.BigEndian.Uint64(v))
					}
					return nil
				})
				if err != nil {
					return err
				}
			}
			ds = append(ds, d)
		}
		return nil
	})
	return ds, err
}

// removeBlobs deletes blobs from the index, then their files. Open readers
// keep their file handles. It returns how many blobs and bytes it removed,
// and counts them in counter (eviction or expiry; nil for a plain delete).
func (s *Store) removeBlobs(ds []Digest, counter *atomic.Int64) (n, bytes int64, err error) {
	var removed []Digest
	unlock := s.lockCounts()
	defer unlock()
	err = update(s.db, func(txn *badger.Txn) error {
		removed, n, bytes = removed[:0], 0, 0
		for _, d := range ds {
			rec, err := deleteRecord(txn, d)
			if errors.Is(err, ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			removed = append(removed, d)
			n++
			bytes += rec.Size
		}
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("casstore: remove from index: %w", err)
	}
	// The files go before the totals move, so that once Stats shows a blob
	// gone, Stat and Open do not find it either.
	var errs []error
	for _, d := range removed {
		if err := os.Remove(s.blobPath(d)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if counter != nil {
		counter.Add(n)
		s.c.evictedBytes.Add(bytes)
	}
	s.blobs.Add(-n)
	s.bytes.Add(-bytes)
	return n, bytes, errors.Join(errs...)
}
