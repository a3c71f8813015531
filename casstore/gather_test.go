package casstore

import (
	"context"
	"io"
	"os"
	"sync"
	"testing"
	"time"
)

// writeLog is a real temp file that records the writes made to it.
type writeLog struct {
	*os.File
	mu     sync.Mutex
	writes [][2]int64 // offset, length
}

func (w *writeLog) WriteAt(p []byte, off int64) (int, error) {
	w.mu.Lock()
	w.writes = append(w.writes, [2]int64{off, int64(len(p))})
	w.mu.Unlock()
	return w.File.WriteAt(p, off)
}

// TestFillWritesInPagedPieces: a stream delivering small reads (as a WAN
// socket does) is written in few pieces of at least writeStep bytes that
// start and end on page boundaries, except a stream's first write (at
// once, for the first reader), the one after it and its last; the blob verifies and every
// byte is written once.
func TestFillWritesInPagedPieces(t *testing.T) {
	tests := []struct {
		name     string
		size     int
		readMax  int
		parallel int
	}{
		{"16 KiB reads, one stream", 3<<20 + 1234, 16 << 10, 1},
		{"odd 5000-byte reads, one stream", 1<<20 + 7, 5000, 1},
		{"16 KiB reads, 4 ranges", 4<<20 + 99, 16 << 10, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var files []*writeLog
			var mu sync.Mutex
			opt := Options{writeDelay: time.Hour, createTemp: func(dir string) (fillFile, error) {
				f, err := os.CreateTemp(dir, "fill-*")
				if err != nil {
					return nil, err
				}
				w := &writeLog{File: f}
				mu.Lock()
				files = append(files, w)
				mu.Unlock()
				return w, nil
			}}
			s := newTestStore(t, opt)
			data, d := randomBlob(t, tt.size)
			src := shortReads{src: newTestSource(data), max: tt.readMax}
			b, _, err := s.Fill(context.Background(), d, src, FillOptions{Parallel: tt.parallel, ChunkSize: 1 << 20})
			if err != nil {
				t.Fatal(err)
			}
			mustEqual(t, readAll(t, b), data)
			waitFor(t, func() bool { return s.Stats().Blobs == 1 })
			if len(files) != 1 {
				t.Fatalf("%d temp files, want 1", len(files))
			}
			w := files[0]
			w.mu.Lock()
			defer w.mu.Unlock()
			var total int64
			unaligned := 0
			for _, wr := range w.writes {
				total += wr[1]
				if wr[0]%pageSize != 0 || (wr[0]+wr[1])%pageSize != 0 && wr[0]+wr[1] != int64(tt.size) {
					unaligned++
				}
			}
			if total != int64(tt.size) {
				t.Fatalf("%d bytes written, want %d", total, tt.size)
			}
			streams := (tt.size + 1<<20 - 1) >> 20 // chunks, or the one stream
			if tt.parallel == 1 {
				streams = 1
			}
			if max := tt.size/writeStep + 2*streams; len(w.writes) > max {
				t.Fatalf("%d writes for %d bytes in reads of %d, want at most %d", len(w.writes), tt.size, tt.readMax, max)
			}
			if unaligned > 3*streams {
				t.Fatalf("%d writes off page boundaries, want at most %d (a stream's first two and its last)", unaligned, 3*streams)
			}
		})
	}
}

// TestPausedStreamBytesReachReaders: bytes a stream delivered before it
// paused are written and readable while it is paused (they are not held
// back waiting for a full piece).
func TestPausedStreamBytesReachReaders(t *testing.T) {
	s := newTestStore(t, Options{})
	data, d := randomBlob(t, 1<<20)
	src := newTestSource(data)
	const pauseAt = 40_000 // not a page or a piece boundary
	src.gate, src.gateAt = make(chan struct{}), pauseAt
	defer close(src.gate)
	b, _, err := s.Fill(context.Background(), d, shortReads{src: src, max: 7000}, FillOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b.ctx = ctx
	got := make([]byte, pauseAt)
	if _, err := io.ReadFull(b.Section(0, pauseAt), got); err != nil {
		t.Fatalf("reading the bytes delivered before the pause: %v", err)
	}
	mustEqual(t, got, data[:pauseAt])
}
