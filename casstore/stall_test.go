package casstore

import (
	"bytes"
	"context"
	"io"
	"sync/atomic"
	"testing"
	"time"
)

// stallingSource's first stream sends stallAt bytes and then nothing,
// until it is closed: an upstream that stops sending without closing (a
// fault a real registry cannot be made to produce on demand). Later
// streams serve their range.
type stallingSource struct {
	data    []byte
	stallAt int64
	fetches atomic.Int64
}

func (s *stallingSource) Fetch(ctx context.Context, off, length int64) (Stream, error) {
	end := int64(len(s.data))
	if length >= 0 {
		end = min(end, off+length)
	}
	var body io.ReadCloser = io.NopCloser(bytes.NewReader(s.data[off:end]))
	if s.fetches.Add(1) == 1 {
		body = &stalledBody{r: bytes.NewReader(s.data[off:s.stallAt]), closed: make(chan struct{})}
	}
	return Stream{Body: body, Size: int64(len(s.data)), Len: end - off}, nil
}

type stalledBody struct {
	r      *bytes.Reader
	closed chan struct{}
	once   atomic.Bool
}

func (b *stalledBody) Read(p []byte) (int, error) {
	if b.r.Len() > 0 {
		return b.r.Read(p)
	}
	<-b.closed // stalled: nothing more, until the reader gives up
	return 0, io.ErrClosedPipe
}

func (b *stalledBody) Close() error {
	if b.once.CompareAndSwap(false, true) {
		close(b.closed)
	}
	return nil
}

// TestStallTimeoutResumesAStalledStream: a stream that delivers nothing
// for StallTimeout is given up and resumed from the verified offset, and
// the blob completes.
func TestStallTimeoutResumesAStalledStream(t *testing.T) {
	s := newTestStore(t, Options{StallTimeout: 100 * time.Millisecond, RetryBackoff: time.Millisecond})
	data, d := randomBlob(t, 1<<20)
	src := &stallingSource{data: data, stallAt: 300_000}
	start := time.Now()
	b, _, err := s.Fill(context.Background(), d, src, FillOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	got, err := io.ReadAll(io.NewSectionReader(b, 0, b.Size()))
	if err != nil {
		t.Fatal(err)
	}
	mustEqual(t, got, data)
	if n := src.fetches.Load(); n != 2 {
		t.Fatalf("%d fetches, want 2 (the stalled stream and its resume)", n)
	}
	if st := s.Stats(); st.Resumes != 1 || st.BytesFilled != int64(len(data)) {
		t.Fatalf("stats %+v: want one resume and every byte filled once", st)
	}
	if took := time.Since(start); took > 30*time.Second {
		t.Fatalf("took %s: the stall was not cut at StallTimeout", took)
	}
}
