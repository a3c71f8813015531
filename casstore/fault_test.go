package casstore

import (
	"context"
	"errors"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
)

// faultyFile is a real temp file whose writes fail once a byte budget is
// spent, standing in for a full disk or an I/O error: a fault that cannot
// be produced on the test machine's real disk without root.
type faultyFile struct {
	*os.File
	budget   atomic.Int64
	err      error
	truncErr error
}

func (f *faultyFile) WriteAt(p []byte, off int64) (int, error) {
	if f.budget.Add(-int64(len(p))) < 0 {
		return 0, f.err
	}
	return f.File.WriteAt(p, off)
}

func (f *faultyFile) Truncate(size int64) error {
	if f.truncErr != nil {
		return f.truncErr
	}
	return f.File.Truncate(size)
}

func TestWriteFaultKeepsReadersServed(t *testing.T) {
	tests := []struct {
		name     string
		budget   int64
		err      error
		truncErr error
		// fills is how many fills fail: a fill that fails before any
		// reader attached is not joined, so each request tries its own.
		fills int64
	}{
		{"disk full mid-fill", 1 << 20, syscall.ENOSPC, nil, 1},
		{"EIO mid-fill", 512 << 10, syscall.EIO, nil, 1},
		{"no space to allocate", 0, syscall.ENOSPC, syscall.ENOSPC, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var injected atomic.Int64
			opt := Options{createTemp: func(dir string) (fillFile, error) {
				f, err := os.CreateTemp(dir, "fill-*")
				if err != nil {
					return nil, err
				}
				injected.Add(1)
				ff := &faultyFile{File: f, err: tt.err, truncErr: tt.truncErr}
				ff.budget.Store(tt.budget)
				return ff, nil
			}}
			s := newTestStore(t, opt)
			data, d := randomBlob(t, 3<<20)
			src := newTestSource(data)
			src.gate, src.gateAt = make(chan struct{}), 256<<10

			var wg sync.WaitGroup
			got := make([][]byte, 4)
			errs := make([]error, 4)
			for i := range got {
				b, _, err := s.Fill(context.Background(), d, src, FillOptions{})
				if err != nil {
					t.Fatal(err)
				}
				wg.Add(1)
				go func(i int) {
					defer wg.Done()
					defer b.Close()
					got[i], errs[i] = io.ReadAll(b)
				}(i)
			}
			close(src.gate)
			wg.Wait()
			for i := range got {
				if errs[i] != nil {
					t.Fatalf("reader %d: %v", i, errs[i])
				}
				mustEqual(t, got[i], data)
			}
			waitFor(t, func() bool { return s.Stats().FillsInFlight == 0 })
			st := s.Stats()
			if st.WriteErrors != tt.fills || st.Blobs != 0 {
				t.Fatalf("Stats = %+v, want %d write errors and nothing stored", st, tt.fills)
			}
			if files := filesUnder(t, s.Root()+"/blobs"); len(files) != 0 {
				t.Fatalf("published after a write fault: %v", files)
			}
			if files := filesUnder(t, s.Root()+"/tmp"); len(files) != 0 {
				t.Fatalf("partial files left: %v", files)
			}
			// The store keeps working once the disk recovers.
			s.opt.createTemp = func(dir string) (fillFile, error) { return os.CreateTemp(dir, "fill-*") }
			b, _, err := s.Fill(context.Background(), d, src, FillOptions{})
			if err != nil {
				t.Fatal(err)
			}
			mustEqual(t, readAll(t, b), data)
			waitFor(t, func() bool { return s.Stats().Blobs == 1 })
		})
	}
}

// TestWriteFaultStillVerifies: the disk is full from the start and the
// source sends a corrupt byte; readers take the blob from the source and
// must get an error, not a clean end.
func TestWriteFaultStillVerifies(t *testing.T) {
	opt := Options{createTemp: func(dir string) (fillFile, error) {
		f, err := os.CreateTemp(dir, "fill-*")
		if err != nil {
			return nil, err
		}
		return &faultyFile{File: f, err: syscall.ENOSPC, truncErr: syscall.ENOSPC}, nil
	}}
	s := newTestStore(t, opt)
	data, d := randomBlob(t, 1<<20)
	src := newTestSource(data)
	src.corruptAt = 1000
	b, _, err := s.Fill(context.Background(), d, src, FillOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if b.Size() != int64(len(data)) {
		t.Fatalf("Size = %d after a setup failure, want %d", b.Size(), len(data))
	}
	if _, err := io.ReadAll(b); !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("reading a corrupt blob past a full disk: %v, want ErrDigestMismatch", err)
	}
}
