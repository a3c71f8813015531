//go:build unix

package casstore

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestCheckNoticesAHangingDisk: Check passes on a working store; when the
// canary's file hangs (a FIFO without a reader: opening it for writing
// blocks in the kernel, as a stalled disk does) Check fails within its
// context and says so, later Checks do not pile up goroutines, and once
// the hang ends Check passes again.
func TestCheckNoticesAHangingDisk(t *testing.T) {
	s := openTestStore(t, t.TempDir(), Options{})
	if err := s.Check(context.Background()); err != nil {
		t.Fatalf("check of a working store: %v", err)
	}
	path := filepath.Join(s.Root(), canaryName)
	os.Remove(path)
	if err := syscall.Mkfifo(path, 0o640); err != nil {
		t.Skipf("no FIFOs here: %v", err)
	}
	for i := range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		err := s.Check(ctx)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "has not answered a check") {
			t.Fatalf("check %d of a hanging disk: %v", i, err)
		}
	}
	// End the hang: a reader opens the FIFO, the blocked write goes
	// through, and the check that was waiting returns.
	r, err := os.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 256)
	r.Read(buf)
	r.Close()
	os.Remove(path)
	deadline := time.Now().Add(5 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := s.Check(ctx)
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("check after the hang ended: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.Close()
	if err := s.Check(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("check of a closed store: %v", err)
	}
}
