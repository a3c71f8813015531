package casstore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"go.uber.org/zap"
)

// Options configure a Store. The zero value is usable: no byte budget, no
// TTL, and defaults for every timing.
type Options struct {
	// MaxBytes is the byte budget of complete blobs. 0 means unlimited.
	MaxBytes int64
	// HighWatermark is the fraction of MaxBytes (including fills in flight)
	// above which eviction starts. 0 means 0.95.
	HighWatermark float64
	// LowWatermark is the fraction of MaxBytes eviction brings the store
	// down to. 0 means 0.85.
	LowWatermark float64
	// TTL removes blobs not read for this long (DTR's blobttl). 0 disables.
	TTL time.Duration
	// SweepInterval is how often the TTL sweep runs. 0 means TTL/10,
	// clamped to [1s, 1m].
	SweepInterval time.Duration
	// AccessFlushInterval is how often batched access times are written to
	// the index. 0 means 5s.
	AccessFlushInterval time.Duration
	// Retries is how many consecutive source failures without progress a
	// fill tolerates before it fails. 0 means 5; negative means none.
	Retries int
	// RetryBackoff is the first pause between retries, doubled up to 5s.
	// 0 means 200ms.
	RetryBackoff time.Duration
	// StallTimeout aborts a source stream that delivers nothing for this
	// long (then it is retried). 0 means 60s.
	StallTimeout time.Duration
	// FillTimeout bounds a whole fill. 0 means 6h.
	FillTimeout time.Duration
	// FarAhead is how far beyond a running fill's write position a read may
	// start before it may be served by its own source range instead of
	// waiting. Beyond it, a read still waits when the fill, at the rate it
	// has been writing, reaches it within twice the time opening a source
	// stream took (about what a request of its own would take to answer).
	// 0 means 4 MiB; negative disables direct reads (always wait).
	FarAhead int64
	// MaxBlobSize refuses blobs larger than this. 0 means unlimited.
	MaxBlobSize int64
	// Logger receives the store's logs. nil means no logs.
	Logger *zap.Logger
	// Now is the clock. nil means time.Now.
	Now func() time.Time

	// createTemp creates a fill's temporary file; tests replace it to inject
	// write faults. nil means os.CreateTemp in the store's tmp directory.
	createTemp func(dir string) (fillFile, error)
	// writeDelay is how long a fill's worker may hold received bytes
	// before it writes them (gather.go); 0 means writeDelay. Tests that
	// count writes set it long, so a slow test machine cannot split them.
	writeDelay time.Duration
	// holdRecovery, if set, is waited for before the background
	// reconciliation after a crash starts; tests use it to read from a
	// store that is still recovering.
	holdRecovery <-chan struct{}
}

// fillFile is the part of *os.File a fill uses.
type fillFile interface {
	WriteAt(p []byte, off int64) (int, error)
	ReadAt(p []byte, off int64) (int, error)
	Truncate(size int64) error
	Sync() error
	Close() error
	Name() string
}

// fdFile is a fill's file with a descriptor (*os.File), which a reader
// of the running fill may open again (reopen).
type fdFile interface{ Fd() uintptr }

// Validate reports every option the store cannot work with, each as an
// *OptionError (joined with errors.Join): a watermark outside (0, 1], a
// LowWatermark at or above the HighWatermark, a negative byte count or
// duration. Zero values mean the defaults and are always valid. Open calls
// it; a command that configures a store from a file calls it first, to
// report the problems of the whole file before anything opens.
func (o Options) Validate() error {
	var errs []error
	bad := func(option, format string, args ...any) {
		errs = append(errs, &OptionError{Option: option, Reason: fmt.Sprintf(format, args...)})
	}
	high := o.withDefaults().HighWatermark
	if o.HighWatermark < 0 || o.HighWatermark > 1 {
		bad("HighWatermark", "must be in (0, 1], got %v", o.HighWatermark)
	} else if o.LowWatermark < 0 || o.LowWatermark != 0 && o.LowWatermark >= high {
		bad("LowWatermark", "must be in (0, %v) (below the high watermark), got %v", high, o.LowWatermark)
	}
	for _, v := range []struct {
		option string
		value  int64
	}{{"MaxBytes", o.MaxBytes}, {"MaxBlobSize", o.MaxBlobSize}} {
		if v.value < 0 {
			bad(v.option, "must not be negative, got %d", v.value)
		}
	}
	for _, v := range []struct {
		option string
		value  time.Duration
	}{{"TTL", o.TTL}, {"SweepInterval", o.SweepInterval}, {"AccessFlushInterval", o.AccessFlushInterval},
		{"RetryBackoff", o.RetryBackoff}, {"StallTimeout", o.StallTimeout}, {"FillTimeout", o.FillTimeout}} {
		if v.value < 0 {
			bad(v.option, "must not be negative, got %s", v.value)
		}
	}
	return errors.Join(errs...)
}

// withDefaults replaces zero values by the defaults. It expects options
// that passed Validate.
func (o Options) withDefaults() Options {
	if o.HighWatermark == 0 {
		o.HighWatermark = 0.95
	}
	if o.LowWatermark == 0 {
		o.LowWatermark = o.HighWatermark - 0.10
		if o.LowWatermark <= 0 {
			o.LowWatermark = o.HighWatermark / 2
		}
	}
	if o.SweepInterval <= 0 {
		o.SweepInterval = min(max(o.TTL/10, time.Second), time.Minute)
	}
	if o.AccessFlushInterval <= 0 {
		o.AccessFlushInterval = 5 * time.Second
	}
	if o.Retries == 0 {
		o.Retries = 5
	} else if o.Retries < 0 {
		o.Retries = 0
	}
	if o.RetryBackoff <= 0 {
		o.RetryBackoff = 200 * time.Millisecond
	}
	if o.StallTimeout <= 0 {
		o.StallTimeout = 60 * time.Second
	}
	if o.FillTimeout <= 0 {
		o.FillTimeout = 6 * time.Hour
	}
	if o.FarAhead == 0 {
		o.FarAhead = 4 << 20
	}
	if o.writeDelay <= 0 {
		o.writeDelay = writeDelay
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.createTemp == nil {
		o.createTemp = func(dir string) (fillFile, error) {
			return os.CreateTemp(dir, "fill-*")
		}
	}
	return o
}

// Info describes a complete blob.
type Info struct {
	Digest  Digest
	Size    int64
	Created time.Time // when it was stored
}

// Stats are the store's counters, for metrics. Counters only grow;
// Blobs, Bytes and FillsInFlight are current values.
type Stats struct {
	Blobs          int64 // complete blobs
	Bytes          int64 // bytes of complete blobs
	Hits           int64 // Open or Fill found a complete blob
	Misses         int64 // Fill started a fill
	Joins          int64 // Fill joined a running fill
	FillsInFlight  int64
	BytesFilled    int64 // bytes written by fills (from sources)
	SourceRequests int64 // source streams opened by fills (including resumes)
	Resumes        int64 // source streams reopened after a break
	DirectReads    int64 // reads served by their own source range
	Evictions      int64 // blobs removed by the byte budget
	Expirations    int64 // blobs removed by the TTL
	EvictedBytes   int64
	WriteErrors    int64
	VerifyErrors   int64 // digest or size mismatches
	SourceErrors   int64 // fills failed because the source failed
}

// counters are the atomic backing of Stats.
type counters struct {
	hits, misses, joins, bytesFilled, sourceRequests, resumes, directReads   atomic.Int64
	evictions, expirations, evictedBytes, writeErrors, verifyErrors, srcErrs atomic.Int64
}

// Store is a content-addressed blob store on local disk. All methods are
// safe for concurrent use.
type Store struct {
	root string
	// blobsPrefix is root/blobs/ with the OS's separator, so blobPath is
	// one concatenation on the hit path (no filepath.Join).
	blobsPrefix string
	opt         Options
	log         *zap.Logger
	db          *badger.DB

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // fills and the maintenance loop

	// mu guards fills: the running fill of each digest.
	mu    sync.Mutex
	fills map[Digest]*fill

	// accessMu guards pending, the reads whose access times are not yet
	// written to the index, and spare, the buffer a flush swaps in for
	// pending (flushAccess).
	accessMu sync.Mutex
	pending  []access
	spare    []access

	blobs, bytes, reserved, inflight atomic.Int64
	c                                counters

	evictCh chan struct{}
	flushCh chan struct{}
	closed  atomic.Bool

	// recovering is set while the background reconciliation after an
	// unclean shutdown runs (recovery.go); recovered is closed when it
	// ends, finished or stopped by Close.
	recovering atomic.Bool
	recovered  chan struct{}
	// countMu orders the counter updates of commits and removals with the
	// recount that ends a recovery; taken only while recovering.
	countMu sync.Mutex

	check checker // the running Check, if any

	bufs sync.Pool // *[]byte of readBufSize: the workers' buffers (fetch.go)
}

const cleanMarker = "clean-shutdown"

// Open opens (creating if needed) the store rooted at dir. After an unclean
// shutdown it returns at once, serving from the index, and reconciles the
// index with the files in the background (see recovery.go).
func Open(dir string, opt Options) (*Store, error) {
	if err := opt.Validate(); err != nil {
		return nil, err
	}
	opt = opt.withDefaults()
	for _, d := range []string{dir, filepath.Join(dir, "blobs"), filepath.Join(dir, "tmp")} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return nil, fmt.Errorf("casstore: create %s: %w", d, err)
		}
	}
	if err := prepareFanOut(filepath.Join(dir, "blobs")); err != nil {
		return nil, err
	}
	_, statErr := os.Stat(filepath.Join(dir, "index"))
	fresh := errors.Is(statErr, fs.ErrNotExist)
	bopt := badger.DefaultOptions(filepath.Join(dir, "index")).
		WithLogger(badgerLogger{opt.Logger.Sugar()}).
		WithMemTableSize(8 << 20).
		WithNumMemtables(2).
		WithNumLevelZeroTables(2).
		WithNumLevelZeroTablesStall(8).
		WithBlockCacheSize(16 << 20).
		WithIndexCacheSize(8 << 20).
		WithValueLogFileSize(64 << 20).
		WithNumCompactors(2).
		WithMetricsEnabled(false)
	db, err := badger.Open(bopt)
	if err != nil {
		return nil, fmt.Errorf("casstore: open index in %s: %w", dir, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Store{
		root:        dir,
		blobsPrefix: filepath.Join(dir, "blobs") + string(filepath.Separator),
		opt:         opt,
		log:         opt.Logger,
		db:          db,
		ctx:         ctx,
		cancel:      cancel,
		fills:       make(map[Digest]*fill),
		pending:     make([]access, 0, 1024),
		spare:       make([]access, 0, 1024),
		evictCh:     make(chan struct{}, 1),
		flushCh:     make(chan struct{}, 1),
		recovered:   make(chan struct{}),
	}
	if err := s.recover(fresh); err != nil {
		cancel()
		db.Close()
		return nil, err
	}
	s.wg.Add(1)
	go s.maintain()
	s.signalEvict()
	return s, nil
}

// recover loads the totals after a clean shutdown, or reconciles the index
// with the files after a crash. Either way the clean marker is removed
// (durably) before the store is used, so a later crash is noticed.
func (s *Store) recover(fresh bool) error {
	marker := filepath.Join(s.root, cleanMarker)
	_, statErr := os.Stat(marker)
	clean := statErr == nil || fresh
	if clean && !fresh {
		var blobs, bytes int64
		err := s.db.View(func(txn *badger.Txn) error {
			item, err := txn.Get([]byte(keyTotals))
			if err != nil {
				return err
			}
			return item.Value(func(v []byte) error {
				blobs, bytes, err = unmarshalTotals(v)
				return err
			})
		})
		if err != nil {
			s.log.Warn("clean-shutdown marker without totals; reconciling", zap.Error(err))
			clean = false
		} else {
			s.blobs.Store(blobs)
			s.bytes.Store(bytes)
		}
	}
	if err := os.Remove(marker); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("casstore: remove %s: %w", marker, err)
	}
	if err := syncDir(s.root); err != nil {
		return err
	}
	if clean {
		close(s.recovered)
		// Stray partial files never survive a restart, clean or not.
		if err := s.removeTemps(); err != nil {
			return err
		}
		return s.db.Update(func(txn *badger.Txn) error { return txn.Delete([]byte(keyTotals)) })
	}
	return s.startRecovery()
}

// Close stops fills and maintenance, writes pending access times and the
// totals, and closes the index. Readers already open keep working.
func (s *Store) Close() error {
	if !s.closed.CompareAndSwap(false, true) {
		return nil
	}
	s.cancel()
	s.wg.Wait()
	var errs []error
	if err := s.flushAccess(); err != nil {
		errs = append(errs, err)
	}
	if s.recovering.Load() {
		// Closed before the reconciliation finished: no totals and no
		// clean marker, so the next Open reconciles again.
		if err := s.db.Close(); err != nil {
			errs = append(errs, fmt.Errorf("casstore: close index: %w", err))
		}
		return errors.Join(errs...)
	}
	if err := s.db.Update(func(txn *badger.Txn) error {
		return txn.Set([]byte(keyTotals), marshalTotals(s.blobs.Load(), s.bytes.Load()))
	}); err != nil {
		errs = append(errs, fmt.Errorf("casstore: write totals: %w", err))
	}
	if err := s.db.Close(); err != nil {
		errs = append(errs, fmt.Errorf("casstore: close index: %w", err))
	}
	if len(errs) == 0 {
		if err := writeMarker(filepath.Join(s.root, cleanMarker)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// prepareFanOut gives a new store its sha256 fan-out directories,
// blobs/sha256/00 to ff, so that its commits neither create a directory
// nor sync one in its parent (publish still creates one found missing).
// They are made aside and renamed into place, so a crash leaves all of
// them or none; a store that has blobs/sha256 is left as it is.
func prepareFanOut(blobs string) error {
	alg := filepath.Join(blobs, "sha256")
	if _, err := os.Stat(alg); !errors.Is(err, fs.ErrNotExist) {
		return nil // present, or unreadable: Open and the commits report that
	}
	aside := alg + ".new"
	if err := os.RemoveAll(aside); err != nil {
		return fmt.Errorf("casstore: remove %s: %w", aside, err)
	}
	if err := os.Mkdir(aside, 0o750); err != nil {
		return fmt.Errorf("casstore: create %s: %w", aside, err)
	}
	for i := 0; i < 256; i++ {
		if err := os.Mkdir(filepath.Join(aside, fmt.Sprintf("%02x", i)), 0o750); err != nil {
			return fmt.Errorf("casstore: create fan-out directory: %w", err)
		}
	}
	if err := syncDir(aside); err != nil {
		return err
	}
	if err := os.Rename(aside, alg); err != nil {
		return fmt.Errorf("casstore: create %s: %w", alg, err)
	}
	return syncDir(blobs)
}

func writeMarker(path string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o640)
	if err != nil {
		return fmt.Errorf("casstore: write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("casstore: sync %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("casstore: open dir %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("casstore: sync dir %s: %w", dir, err)
	}
	return nil
}

// blobPath is where a complete blob lives.
func (s *Store) blobPath(d Digest) string {
	const sep = string(filepath.Separator)
	return s.blobsPrefix + d.alg + sep + d.hex[:2] + sep + d.hex
}

func (s *Store) tmpDir() string { return filepath.Join(s.root, "tmp") }

// Stat describes a complete blob, or returns ErrNotFound. Like Open it
// consults the file, not the index (only verified blobs have files), so the
// hit path costs a few system calls however large the store is. Stat does
// not count as an access.
func (s *Store) Stat(d Digest) (Info, error) {
	if d.IsZero() {
		return Info{}, &DigestError{Reason: "zero digest"}
	}
	fi, err := os.Stat(s.blobPath(d))
	if errors.Is(err, fs.ErrNotExist) {
		s.checkRecovering(d, -1)
		return Info{}, ErrNotFound
	}
	if err != nil {
		return Info{}, fmt.Errorf("casstore: stat %s: %w", d, err)
	}
	if !s.checkRecovering(d, fi.Size()) {
		return Info{}, ErrNotFound
	}
	return Info{Digest: d, Size: fi.Size(), Created: fi.ModTime()}, nil
}

// Filling reports whether a fill of d is running: a reader that joins it
// (Fill) reads the bytes already on disk at once, waits for those about to
// land, and reads ahead of the fill with its own source range only when
// the fill is far from reaching it (Options.FarAhead).
func (s *Store) Filling(d Digest) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.fills[d]
	return ok
}

// Open opens a complete blob for reading and records the access. It returns
// ErrNotFound when the blob is not in the store (a running fill does not
// count; use Fill to join it).
func (s *Store) Open(d Digest) (*Blob, error) {
	b, err := s.openComplete(d)
	if err != nil {
		return nil, err
	}
	s.c.hits.Add(1)
	return b, nil
}

func (s *Store) openComplete(d Digest) (*Blob, error) {
	if d.IsZero() {
		return nil, &DigestError{Reason: "zero digest"}
	}
	if s.closed.Load() {
		return nil, ErrClosed
	}
	// Only verified blobs are ever renamed into blobs/, so the file itself
	// is the proof of completeness; the index is not consulted (except
	// while recovering from a crash: checkRecovering).
	f, err := os.Open(s.blobPath(d))
	if errors.Is(err, fs.ErrNotExist) {
		s.checkRecovering(d, -1)
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("casstore: open %s: %w", d, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("casstore: stat %s: %w", d, err)
	}
	if !s.checkRecovering(d, fi.Size()) {
		f.Close()
		return nil, ErrNotFound
	}
	s.touch(d)
	return &Blob{d: d, size: fi.Size(), file: f}, nil
}

// Delete removes a complete blob. Readers that have it open keep reading.
func (s *Store) Delete(d Digest) error {
	if d.IsZero() {
		return &DigestError{Reason: "zero digest"}
	}
	n, _, err := s.removeBlobs([]Digest{d}, nil)
	if err != nil {
		return err
	}
	if n == 0 {
		return ErrNotFound
	}
	return nil
}

// Stats returns a snapshot of the counters.
func (s *Store) Stats() Stats {
	return Stats{
		Blobs:          s.blobs.Load(),
		Bytes:          s.bytes.Load(),
		Hits:           s.c.hits.Load(),
		Misses:         s.c.misses.Load(),
		Joins:          s.c.joins.Load(),
		FillsInFlight:  s.inflight.Load(),
		BytesFilled:    s.c.bytesFilled.Load(),
		SourceRequests: s.c.sourceRequests.Load(),
		Resumes:        s.c.resumes.Load(),
		DirectReads:    s.c.directReads.Load(),
		Evictions:      s.c.evictions.Load(),
		Expirations:    s.c.expirations.Load(),
		EvictedBytes:   s.c.evictedBytes.Load(),
		WriteErrors:    s.c.writeErrors.Load(),
		VerifyErrors:   s.c.verifyErrors.Load(),
		SourceErrors:   s.c.srcErrs.Load(),
	}
}

// Ping reports whether the store is open and its directories usable (for
// readiness checks).
func (s *Store) Ping() error {
	if s.closed.Load() {
		return ErrClosed
	}
	if _, err := os.Stat(s.tmpDir()); err != nil {
		return fmt.Errorf("casstore: %w", err)
	}
	return nil
}

// Root returns the store's root directory.
func (s *Store) Root() string { return s.root }
