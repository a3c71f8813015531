package casstore

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

// canaryName is the file under the store's root that Check writes and
// reads back.
const canaryName = "canary"

// storeCheck is one run of the canary, shared by the Checks that arrive
// while it runs.
type storeCheck struct {
	started time.Time
	done    chan struct{}
	err     error
}

// checker holds the running check (nil when none runs).
type checker struct {
	// mu guards cur.
	mu  sync.Mutex
	cur *storeCheck
}

// Check exercises the disk under the store, for readiness probes: it
// writes a small canary file (<root>/canary), syncs it to the disk, reads
// it back and compares, waiting at most until ctx ends. A disk that hangs
// (a stalled device, a dead network mount) makes Check fail with ctx's
// error (a *HangError) although the process still answers; until the
// hung check returns, later calls wait on it instead of starting another,
// and say since when it hangs. The store owns the check's goroutine: Close waits
// for it.
func (s *Store) Check(ctx context.Context) error {
	if s.closed.Load() {
		return ErrClosed
	}
	s.check.mu.Lock()
	c := s.check.cur
	if c == nil {
		c = &storeCheck{started: time.Now(), done: make(chan struct{})}
		s.check.cur = c
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			c.err = s.canary(c.started)
			s.check.mu.Lock()
			s.check.cur = nil
			s.check.mu.Unlock()
			close(c.done)
		}()
	}
	s.check.mu.Unlock()
	select {
	case <-c.done:
		return c.err
	case <-ctx.Done():
		return &HangError{Root: s.root, For: time.Since(c.started), Err: ctx.Err()}
	}
}

// HangError is a Check that did not finish within its context: the disk
// has not answered the running check for For.
type HangError struct {
	Root string
	For  time.Duration
	Err  error // the context's error
}

func (e *HangError) Error() string {
	return fmt.Sprintf("casstore: the disk under %s has not answered a check for %s", e.Root, e.For.Round(time.Millisecond))
}

// Unwrap returns the context's error.
func (e *HangError) Unwrap() error { return e.Err }

// canary writes, syncs and reads back the canary file.
func (s *Store) canary(now time.Time) error {
	path := filepath.Join(s.root, canaryName)
	want := []byte("dtrcache store check " + strconv.FormatInt(now.UnixNano(), 10) + "\n")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return fmt.Errorf("casstore: check: %w", err)
	}
	if _, err := f.Write(want); err != nil {
		f.Close()
		return fmt.Errorf("casstore: check: write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("casstore: check: sync %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("casstore: check: %w", err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("casstore: check: %w", err)
	}
	if !bytes.Equal(got, want) {
		return fmt.Errorf("casstore: check: %s read back %d bytes unlike the %d written", path, len(got), len(want))
	}
	if _, err := os.Stat(s.tmpDir()); err != nil {
		return fmt.Errorf("casstore: check: %w", err)
	}
	return nil
}
