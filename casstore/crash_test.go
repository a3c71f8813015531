package casstore

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"go.uber.org/zap"
)

// The crash tests run a child copy of this test binary that works on a
// store, kill it with SIGKILL at a chosen moment, then reopen the store in
// the parent and check every invariant.
const (
	envCrashMode = "CASSTORE_CRASH_MODE"
	envCrashDir  = "CASSTORE_CRASH_DIR"
)

func TestCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns child processes")
	}
	tests := []struct {
		mode   string
		marker string        // line the child prints when the moment has come
		jitter time.Duration // random extra wait before the kill
	}{
		{"fill", "filling", 30 * time.Millisecond},
		{"evict", "evicting", 5 * time.Millisecond},
		{"index", "writing", 60 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			for round := 0; round < 2; round++ {
				dir := t.TempDir()
				killChild(t, tt.mode, dir, tt.marker, time.Duration(rand.Int64N(int64(tt.jitter))))
				plant := plantDamage(t, dir)
				hold := make(chan struct{})
				s := openTestStore(t, dir, Options{holdRecovery: hold})
				checkWhileRecovering(t, s, plant)
				close(hold)
				<-s.recovered
				checkInvariants(t, s, plant)
				s.Close()
			}
		})
	}
}

func killChild(t *testing.T, mode, dir, marker string, wait time.Duration) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.v")
	cmd.Env = append(os.Environ(), envCrashMode+"="+mode, envCrashDir+"="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(out)
	found := false
	deadline := time.AfterFunc(60*time.Second, func() { cmd.Process.Kill() })
	defer deadline.Stop()
	for lines.Scan() {
		if strings.TrimSpace(lines.Text()) == marker {
			found = true
			break
		}
	}
	if !found {
		cmd.Wait()
		t.Fatalf("child never printed %q", marker)
	}
	time.Sleep(wait)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, out)
	err = cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child was not killed by SIGKILL: %v", err)
	}
}

// TestCrashChild is the child half of TestCrashRecovery; it does nothing
// unless started by it.
func TestCrashChild(t *testing.T) {
	mode, dir := os.Getenv(envCrashMode), os.Getenv(envCrashDir)
	if mode == "" {
		t.Skip("only runs as the child of TestCrashRecovery")
	}
	s, err := Open(dir, Options{AccessFlushInterval: time.Millisecond, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	var ds []Digest
	for i := 0; i < 20; i++ {
		data, _ := randomBlob(t, 1+rand.IntN(64<<10))
		ds = append(ds, put(t, s, data))
	}
	switch mode {
	case "fill":
		for i := 0; i < 6; i++ {
			data, d := randomBlob(t, 4<<20)
			src := newTestSource(data)
			src.delay = time.Millisecond
			go func() {
				b, _, err := s.Fill(context.Background(), d, src, FillOptions{Parallel: 1 + i%3, ChunkSize: 256 << 10})
				if err == nil {
					io.Copy(io.Discard, b)
					b.Close()
				}
			}()
		}
		waitFor(t, func() bool { return s.Stats().BytesFilled > 1<<20 })
		fmt.Println("filling")
	case "evict":
		const n = 1200
		for i := 0; i < n; i++ {
			data, _ := randomBlob(t, 4096)
			d := FromBytes(data)
			b, _, err := s.Fill(context.Background(), d, BytesSource(data), FillOptions{})
			if err != nil {
				t.Fatal(err)
			}
			b.Close()
		}
		waitFor(t, func() bool { return s.Stats().Blobs == n+20 })
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		// Reopen with a small budget: eviction starts at once.
		s, err = Open(dir, Options{MaxBytes: 256 << 10, Logger: zap.NewNop()})
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, func() bool { return s.Stats().Evictions > 0 })
		fmt.Println("evicting")
	case "index":
		fmt.Println("writing")
		for i := 0; ; i++ {
			data, _ := randomBlob(t, 512)
			d := FromBytes(data)
			if b, _, err := s.Fill(context.Background(), d, BytesSource(data), FillOptions{}); err == nil {
				b.Close()
			}
			if b, err := s.Open(ds[i%len(ds)]); err == nil {
				b.Close()
			}
		}
	}
	time.Sleep(time.Minute) // wait to be killed
}

// planted is damage added after the crash that recovery must repair.
type planted struct {
	corrupt   Digest // file whose content does not match its name
	orphan    Digest // valid file without an index entry
	stray     string // partial file in tmp/
	misnamed  string // file in blobs/ with a name that is no digest
	truncated Digest // indexed blob whose file was cut short
	missing   Digest // indexed blob whose file is gone
}

func plantDamage(t *testing.T, dir string) planted {
	t.Helper()
	write := func(path string, data []byte) {
		if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, data, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	var p planted
	good, d := randomBlob(t, 3000)
	p.orphan = d
	write(filepath.Join(dir, "blobs", "sha256", d.Hex()[:2], d.Hex()), good)
	_, bad := randomBlob(t, 3000)
	p.corrupt = bad
	write(filepath.Join(dir, "blobs", "sha256", bad.Hex()[:2], bad.Hex()), []byte("not the content"))
	p.stray = filepath.Join(dir, "tmp", "fill-planted")
	write(p.stray, good[:100])
	p.misnamed = filepath.Join(dir, "blobs", "sha256", "zz", "junk")
	write(p.misnamed, good[:10])
	// Two blobs the index has: one cut short, one removed.
	var indexed []Digest
	for _, rel := range filesUnder(t, filepath.Join(dir, "blobs")) {
		if d, ok := digestFromPath(rel); ok && d != p.orphan && d != p.corrupt {
			indexed = append(indexed, d)
		}
	}
	if len(indexed) < 2 {
		t.Fatalf("only %d blobs to damage", len(indexed))
	}
	p.truncated, p.missing = indexed[0], indexed[1]
	path := func(d Digest) string { return filepath.Join(dir, "blobs", "sha256", d.Hex()[:2], d.Hex()) }
	if err := os.Truncate(path(p.truncated), 1); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path(p.missing)); err != nil {
		t.Fatal(err)
	}
	return p
}

// checkWhileRecovering reads from a store whose reconciliation has not
// started: partial fills are already out of the way, every blob served
// verifies, and the damage is a miss (the index entries of damaged blobs
// dropped).
func checkWhileRecovering(t *testing.T, s *Store, p planted) {
	t.Helper()
	if !s.Recovering() {
		t.Fatal("not recovering after a crash")
	}
	if files := filesUnder(t, s.tmpDir()); len(files) != 0 {
		t.Errorf("partial files in tmp/ while serving: %v", files)
	}
	for name, d := range map[string]Digest{"corrupt": p.corrupt, "orphan": p.orphan, "truncated": p.truncated, "missing": p.missing} {
		if _, err := s.Stat(d); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s blob: Stat %v, want ErrNotFound", name, err)
		}
		if b, err := s.Open(d); !errors.Is(err, ErrNotFound) {
			if err == nil {
				b.Close()
			}
			t.Errorf("%s blob: Open %v, want ErrNotFound", name, err)
		}
	}
	for name, d := range map[string]Digest{"truncated": p.truncated, "missing": p.missing} {
		if _, err := indexedRecord(s, d); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s blob still indexed: %v", name, err)
		}
	}
	served := 0
	for _, rel := range filesUnder(t, filepath.Join(s.root, "blobs")) {
		d, ok := digestFromPath(rel)
		if !ok {
			continue
		}
		b, err := s.Open(d)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(b)
		b.Close()
		if err != nil || FromBytes(data) != d {
			t.Errorf("served %s while recovering, content %s (%v)", d, FromBytes(data), err)
		}
		served++
	}
	if served < 2 {
		t.Errorf("only %d blobs served while recovering", served)
	}
}

func checkInvariants(t *testing.T, s *Store, p planted) {
	t.Helper()
	if files := filesUnder(t, s.tmpDir()); len(files) != 0 {
		t.Errorf("stray partial files survived: %v", files)
	}
	if _, err := os.Stat(p.misnamed); !os.IsNotExist(err) {
		t.Errorf("misnamed file survived: %v", err)
	}
	if _, err := indexedRecord(s, p.corrupt); err == nil {
		t.Errorf("corrupt file was indexed")
	}
	if _, err := os.Stat(s.blobPath(p.corrupt)); !os.IsNotExist(err) {
		t.Errorf("corrupt file survived: %v", err)
	}
	if _, err := indexedRecord(s, p.orphan); err != nil {
		t.Errorf("valid orphan file was not adopted: %v", err)
	}
	// Every file is verified and indexed with its size; every index entry
	// has its file; totals are exact.
	var files, bytes int64
	for _, rel := range filesUnder(t, filepath.Join(s.root, "blobs")) {
		d, ok := digestFromPath(rel)
		if !ok {
			t.Errorf("unexpected file %s", rel)
			continue
		}
		size, good := verifyFile(s.blobPath(d), d)
		if !good {
			t.Errorf("unverified content visible: %s", d)
		}
		rec, err := indexedRecord(s, d)
		if err != nil || rec.Size != size {
			t.Errorf("file %s: index %+v, %v; size %d", d, rec, err, size)
		}
		files++
		bytes += size
	}
	var entries, access int64
	s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.DefaultIteratorOptions)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := string(it.Item().Key())
			switch {
			case strings.HasPrefix(k, prefixBlob):
				entries++
				d := MustParseDigest(k[len(prefixBlob):])
				if _, err := os.Stat(s.blobPath(d)); err != nil {
					t.Errorf("index entry without file: %s", d)
				}
			case strings.HasPrefix(k, prefixAccess):
				access++
			}
		}
		return nil
	})
	st := s.Stats()
	if entries != files || access != files || st.Blobs != files || st.Bytes != bytes {
		t.Errorf("files %d (%d bytes), index entries %d, LRU keys %d, Stats %d blobs %d bytes",
			files, bytes, entries, access, st.Blobs, st.Bytes)
	}
	if files < 2 {
		t.Errorf("only %d blobs survived", files)
	}
}

// indexedRecord reads d's index record.
func indexedRecord(s *Store, d Digest) (rec record, err error) {
	err = s.db.View(func(txn *badger.Txn) error {
		rec, err = getRecord(txn, d)
		return err
	})
	return rec, err
}

// TestRecoveryTotalsAndClose: blobs filled while the store recovers are
// counted once the totals are rebuilt, and a store closed before its
// reconciliation ended writes no clean marker, so the next Open
// reconciles again.
func TestRecoveryTotalsAndClose(t *testing.T) {
	dir := t.TempDir()
	s := openTestStore(t, dir, Options{})
	var bytes int64
	for i := 0; i < 10; i++ {
		data, _ := randomBlob(t, 1000+i)
		put(t, s, data)
		bytes += int64(len(data))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	crash := func() {
		if err := os.Remove(filepath.Join(dir, cleanMarker)); err != nil {
			t.Fatal(err)
		}
	}
	crash() // as if killed: no clean marker

	s = openTestStore(t, dir, Options{holdRecovery: make(chan struct{})}) // never released
	if !s.Recovering() {
		t.Fatal("not recovering")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, cleanMarker)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("clean marker written by a store closed while recovering: %v", err)
	}

	hold := make(chan struct{})
	s = openTestStore(t, dir, Options{holdRecovery: hold})
	defer s.Close()
	if !s.Recovering() {
		t.Fatal("the next Open does not recover again")
	}
	data, _ := randomBlob(t, 5000)
	put(t, s, data)
	close(hold)
	<-s.recovered
	if st := s.Stats(); st.Blobs != 11 || st.Bytes != bytes+5000 || s.Recovering() {
		t.Fatalf("after recovery: %d blobs, %d bytes, recovering %v; want 11, %d, false", st.Blobs, st.Bytes, s.Recovering(), bytes+5000)
	}
}
