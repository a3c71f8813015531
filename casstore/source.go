package casstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
)

// Stream is an open byte range of a blob from a Source.
type Stream struct {
	// Body yields the blob's bytes starting at the requested offset.
	Body io.ReadCloser
	// Size is the blob's total size, or -1 when the source does not know it
	// (then only a single whole-blob stream is possible).
	Size int64
	// Len is how many bytes Body yields: the requested length when the
	// source honoured it, or everything from the offset to the end (-1 when
	// unknown).
	Len int64
}

// Source opens a blob's bytes, typically from an upstream registry. A fill
// calls Fetch once to start and again to resume after a break or to fetch
// other ranges in parallel.
type Source interface {
	// Fetch opens the blob at byte off. length is the number of bytes wanted,
	// or -1 for everything to the end; a source that cannot honour a length
	// may return more (and says so in Stream.Len). The body must start at off.
	// Errors that retrying cannot fix (not found, unauthorized) should be
	// wrapped with Permanent.
	Fetch(ctx context.Context, off, length int64) (Stream, error)
}

// SourceFunc adapts a function to Source.
type SourceFunc func(ctx context.Context, off, length int64) (Stream, error)

// Fetch calls f.
func (f SourceFunc) Fetch(ctx context.Context, off, length int64) (Stream, error) {
	return f(ctx, off, length)
}

// BytesSource is a Source serving an in-memory blob, for tests, benchmarks
// and small objects such as manifests.
type BytesSource []byte

// Fetch returns the requested range of b.
func (b BytesSource) Fetch(_ context.Context, off, length int64) (Stream, error) {
	size := int64(len(b))
	if off < 0 || off > size {
		return Stream{}, Permanent(fmt.Errorf("casstore: offset %d outside blob of %d bytes", off, size))
	}
	end := size
	if length >= 0 && off+length < size {
		end = off + length
	}
	return Stream{Body: io.NopCloser(bytes.NewReader(b[off:end])), Size: size, Len: end - off}, nil
}

// permanentError marks a source error that retrying cannot fix.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent marks err as not worth retrying (the fill fails at once and
// every waiting reader gets err). It returns nil for nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

// IsPermanent reports whether err was marked with Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}
