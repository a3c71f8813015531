// Package badgerstate is the embedded state.Store of a single origin
// process: Badger on local disk, every write synced before it returns.
//
// Layout: a value is stored under "s/<key>" as an 8-byte big-endian
// revision followed by its bytes; "m/rev" holds the last revision. Writes
// are serialised by one mutex (the origin's state is small and written
// rarely next to how often it is read), which also orders the events of
// watches. Claims live in memory: Badger locks its directory, so one
// process is the only holder there can be, and a process that dies loses
// its claims with it.
package badgerstate

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dtrcache/dtrcache/proxy/state"
)

const (
	dataPrefix = "s/"
	revKey     = "m/rev"
	formatKey  = "m/format"
	// watchBuffer is how many events a watcher may fall behind before
	// its watch is broken (it then lists again).
	watchBuffer = 4096
)

// ErrLocked: another process has the database open (Badger locks its
// directory), such as an origin that is still running.
var ErrLocked = errors.New("badgerstate: the database is in use by another process")

// Store is a state.Store on Badger. It is safe for concurrent use.
type Store struct {
	db *badger.DB

	// wmu serialises writes, event delivery and the watcher set, and
	// guards rev, watchers and closed.
	wmu      sync.Mutex
	rev      int64
	watchers map[*watcher]struct{}
	closed   bool

	// cmu guards claims.
	cmu    sync.Mutex
	claims map[string]*claim
}

type watcher struct {
	prefix string
	ch     chan state.Event
	stop   func() bool
}

// Open opens (creating) the store in dir. Keys written by the origin's
// database before this layout existed (cache/…, settings/…) are moved
// into it once.
func Open(dir string) (*Store, error) {
	opt := badger.DefaultOptions(dir).WithLogger(nil).WithMemTableSize(8 << 20).WithValueThreshold(64 << 10).WithNumMemtables(2).
		WithBlockCacheSize(4 << 20).WithValueLogFileSize(16 << 20).WithSyncWrites(true).WithMetricsEnabled(false)
	db, err := badger.Open(opt)
	// Badger keeps only the text of its lock error (TestOpenLockedDirectory
	// pins it).
	if err != nil && strings.Contains(err.Error(), "Cannot acquire directory lock") {
		return nil, fmt.Errorf("badgerstate: open %s: %w (%v)", dir, ErrLocked, err)
	}
	if err != nil {
		return nil, fmt.Errorf("badgerstate: open %s: %w", dir, err)
	}
	s := &Store{db: db, watchers: map[*watcher]struct{}{}, claims: map[string]*claim{}}
	if err := s.load(); err != nil {
		db.Close()
		return nil, fmt.Errorf("badgerstate: open %s: %w", dir, err)
	}
	return s, nil
}

// load reads the revision counter and migrates a legacy database.
func (s *Store) load() error {
	return s.db.Update(func(txn *badger.Txn) error {
		if item, err := txn.Get([]byte(revKey)); err == nil {
			return item.Value(func(b []byte) error {
				if len(b) != 8 {
					return errors.New("revision counter is corrupt")
				}
				s.rev = int64(binary.BigEndian.Uint64(b))
				return nil
			})
		} else if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		if _, err := txn.Get([]byte(formatKey)); err == nil {
			return nil
		}
		// A database of the origin from before this layout: plain JSON
		// values at the top level. Wrap each under s/ with revision 1.
		type kv struct{ k, v []byte }
		var moves []kv
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true})
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			if bytes.HasPrefix(item.Key(), []byte(dataPrefix)) || bytes.HasPrefix(item.Key(), []byte("m/")) {
				continue
			}
			v, err := item.ValueCopy(nil)
			if err != nil {
				it.Close()
				return err
			}
			moves = append(moves, kv{item.KeyCopy(nil), v})
		}
		it.Close()
		if len(moves) > 0 {
			s.rev = 1
		}
		for _, m := range moves {
			if err := txn.Set(append([]byte(dataPrefix), m.k...), encode(s.rev, m.v)); err != nil {
				return err
			}
			if err := txn.Delete(m.k); err != nil {
				return err
			}
		}
		if err := txn.Set([]byte(revKey), revBytes(s.rev)); err != nil {
			return err
		}
		return txn.Set([]byte(formatKey), []byte("1"))
	})
}

func revBytes(rev int64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(rev))
	return b[:]
}

func encode(rev int64, v []byte) []byte {
	out := make([]byte, 8+len(v))
	binary.BigEndian.PutUint64(out, uint64(rev))
	copy(out[8:], v)
	return out
}

func decode(key []byte, b []byte) (state.KV, error) {
	if len(b) < 8 {
		return state.KV{}, fmt.Errorf("badgerstate: value of %s is corrupt", key)
	}
	return state.KV{Key: string(key[len(dataPrefix):]), Rev: int64(binary.BigEndian.Uint64(b)), Value: append([]byte(nil), b[8:]...)}, nil
}

func (s *Store) isClosed() bool {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.closed
}

// Get implements state.Store.
func (s *Store) Get(ctx context.Context, key string) (state.KV, error) {
	if err := ctx.Err(); err != nil {
		return state.KV{}, err
	}
	if s.isClosed() {
		return state.KV{}, state.ErrClosed
	}
	var out state.KV
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte(dataPrefix + key))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return fmt.Errorf("%w: %s", state.ErrNotFound, key)
		}
		if err != nil {
			return err
		}
		return item.Value(func(b []byte) error {
			out, err = decode(item.Key(), b)
			return err
		})
	})
	return out, err
}

// List implements state.Store.
func (s *Store) List(ctx context.Context, prefix, after string, limit int) ([]state.KV, error) {
	if s.isClosed() {
		return nil, state.ErrClosed
	}
	var out []state.KV
	err := s.db.View(func(txn *badger.Txn) error {
		p := []byte(dataPrefix + prefix)
		it := txn.NewIterator(badger.IteratorOptions{Prefix: p, PrefetchValues: true, PrefetchSize: 64})
		defer it.Close()
		start := p
		if after > prefix { // an after before the prefix lists from its start
			start = []byte(dataPrefix + after)
		}
		for it.Seek(start); it.Valid(); it.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			item := it.Item()
			if after != "" && string(item.Key()[len(dataPrefix):]) <= after {
				continue
			}
			var kv state.KV
			if err := item.Value(func(b []byte) (err error) { kv, err = decode(item.Key(), b); return err }); err != nil {
				return err
			}
			out = append(out, kv)
			if limit > 0 && len(out) >= limit {
				return nil
			}
		}
		return nil
	})
	return out, err
}

// Txn implements state.Store.
func (s *Store) Txn(ctx context.Context, conds []state.Cond, ops ...state.Op) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if err := state.CheckTxn(conds, ops); err != nil {
		return 0, err
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.closed {
		return 0, state.ErrClosed
	}
	rev := s.rev + 1
	var events []state.Event
	err := s.db.Update(func(txn *badger.Txn) error {
		for _, c := range conds {
			item, err := txn.Get([]byte(dataPrefix + c.Key))
			switch {
			case errors.Is(err, badger.ErrKeyNotFound):
				if c.Rev != 0 {
					return fmt.Errorf("%w: %s does not exist", state.ErrConflict, c.Key)
				}
				continue
			case err != nil:
				return err
			}
			var have int64
			if err := item.Value(func(b []byte) error {
				kv, err := decode(item.Key(), b)
				have = kv.Rev
				return err
			}); err != nil {
				return err
			}
			if have != c.Rev {
				return fmt.Errorf("%w: %s is at revision %d, not %d", state.ErrConflict, c.Key, have, c.Rev)
			}
		}
		for _, op := range ops {
			k := []byte(dataPrefix + op.Key)
			if op.Delete {
				if _, err := txn.Get(k); errors.Is(err, badger.ErrKeyNotFound) {
					continue
				} else if err != nil {
					return err
				}
				if err := txn.Delete(k); err != nil {
					return err
				}
				events = append(events, state.Event{Type: state.EventDelete, Key: op.Key, Rev: rev})
				continue
			}
			if err := txn.Set(k, encode(rev, op.Value)); err != nil {
				return err
			}
			events = append(events, state.Event{Type: state.EventPut, Key: op.Key, Value: append([]byte(nil), op.Value...), Rev: rev})
		}
		if len(events) == 0 {
			return nil
		}
		return txn.Set([]byte(revKey), revBytes(rev))
	})
	if err != nil {
		if errors.Is(err, state.ErrConflict) {
			return 0, err
		}
		return 0, fmt.Errorf("badgerstate: write: %w", err)
	}
	if len(events) == 0 {
		return s.rev, nil
	}
	s.rev = rev
	for w := range s.watchers {
		for _, ev := range events {
			if !strings.HasPrefix(ev.Key, w.prefix) {
				continue
			}
			select {
			case w.ch <- ev:
			default: // too slow: break its watch, it lists again
				s.dropWatcherLocked(w)
			}
			if _, ok := s.watchers[w]; !ok {
				break
			}
		}
	}
	return rev, nil
}

// Watch implements state.Store.
func (s *Store) Watch(ctx context.Context, prefix string) (<-chan state.Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.closed {
		return nil, state.ErrClosed
	}
	w := &watcher{prefix: prefix, ch: make(chan state.Event, watchBuffer)}
	s.watchers[w] = struct{}{}
	w.stop = context.AfterFunc(ctx, func() {
		s.wmu.Lock()
		defer s.wmu.Unlock()
		s.dropWatcherLocked(w)
	})
	return w.ch, nil
}

func (s *Store) dropWatcherLocked(w *watcher) {
	if _, ok := s.watchers[w]; !ok {
		return
	}
	delete(s.watchers, w)
	close(w.ch)
}

// Close implements state.Store: watches end, claims are released, and the
// database is closed.
func (s *Store) Close() error {
	s.wmu.Lock()
	if s.closed {
		s.wmu.Unlock()
		return nil
	}
	s.closed = true
	for w := range s.watchers {
		w.stop()
		s.dropWatcherLocked(w)
	}
	s.wmu.Unlock()
	s.cmu.Lock()
	for _, c := range s.claims {
		c.lose()
	}
	s.claims = map[string]*claim{}
	s.cmu.Unlock()
	return s.db.Close()
}

// claim is a claim held in this process.
type claim struct {
	s    *Store
	key  string
	lost chan struct{}
	once sync.Once
	stop func() bool
}

func (c *claim) lose() {
	c.once.Do(func() {
		if c.stop != nil {
			c.stop()
		}
		close(c.lost)
	})
}

// Lost implements state.Claim.
func (c *claim) Lost() <-chan struct{} { return c.lost }

// Release implements state.Claim.
func (c *claim) Release(context.Context) error {
	c.s.cmu.Lock()
	if c.s.claims[c.key] == c {
		delete(c.s.claims, c.key)
	}
	c.s.cmu.Unlock()
	c.lose()
	return nil
}

// Claim implements state.Store. The ttl does not matter in one process: a
// holder that stops has its ctx end (or the process ends).
func (s *Store) Claim(ctx context.Context, key string, ttl time.Duration) (state.Claim, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := state.CheckClaim(key, ttl); err != nil {
		return nil, err
	}
	if s.isClosed() {
		return nil, state.ErrClosed
	}
	s.cmu.Lock()
	defer s.cmu.Unlock()
	if _, held := s.claims[key]; held {
		return nil, fmt.Errorf("%w: %s", state.ErrClaimed, key)
	}
	c := &claim{s: s, key: key, lost: make(chan struct{})}
	s.claims[key] = c
	c.stop = context.AfterFunc(ctx, func() { c.Release(context.Background()) })
	return c, nil
}
