package testenv

import (
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
)

// Counter is HTTP middleware that counts what passes through one hop:
// requests by method and route kind, blob GETs per digest, range requests
// and response bytes. Tests assert on it at the upstream, not in the cache.
type Counter struct {
	next http.Handler

	mu       sync.Mutex
	blobGets map[string]int // digest → GET count
	ranges   map[string]int // digest → GETs with a Range header
	requests map[string]int // "GET manifest" → count

	bytes atomic.Int64
}

// NewCounter wraps next.
func NewCounter(next http.Handler) *Counter {
	c := &Counter{next: next}
	c.Reset()
	return c
}

// Reset zeroes the counts.
func (c *Counter) Reset() {
	c.mu.Lock()
	c.blobGets, c.ranges, c.requests = map[string]int{}, map[string]int{}, map[string]int{}
	c.mu.Unlock()
	c.bytes.Store(0)
}

func kindOf(path string) (kind, digest string) {
	switch {
	case strings.Contains(path, "/blobs/uploads"):
		return "upload", ""
	case strings.Contains(path, "/blobs/"):
		return "blob", path[strings.LastIndex(path, "/")+1:]
	case strings.Contains(path, "/manifests/"):
		return "manifest", ""
	case strings.HasSuffix(path, "/tags/list"):
		return "tags", ""
	}
	return "other", ""
}

func (c *Counter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	kind, digest := kindOf(r.URL.Path)
	c.mu.Lock()
	c.requests[r.Method+" "+kind]++
	if kind == "blob" && r.Method == http.MethodGet {
		c.blobGets[digest]++
		if r.Header.Get("Range") != "" {
			c.ranges[digest]++
		}
	}
	c.mu.Unlock()
	c.next.ServeHTTP(&countingWriter{ResponseWriter: w, n: &c.bytes}, r)
}

// BlobGets returns how many GETs the digest received.
func (c *Counter) BlobGets(digest string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.blobGets[digest]
}

// RangeGets returns how many GETs of the digest carried a Range header.
func (c *Counter) RangeGets(digest string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ranges[digest]
}

// TotalBlobGets returns the blob GETs of every digest.
func (c *Counter) TotalBlobGets() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, v := range c.blobGets {
		n += v
	}
	return n
}

// Requests returns the count of "METHOD kind" requests (kind: blob,
// manifest, tags, upload, other).
func (c *Counter) Requests(methodKind string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.requests[methodKind]
}

// Bytes returns the response body bytes sent.
func (c *Counter) Bytes() int64 { return c.bytes.Load() }

type countingWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (w *countingWriter) Write(p []byte) (int, error) {
	n, err := w.ResponseWriter.Write(p)
	w.n.Add(int64(n))
	return n, err
}

// ReadFrom keeps the sendfile path of the wrapped writer.
func (w *countingWriter) ReadFrom(r io.Reader) (int64, error) {
	var n int64
	var err error
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(r)
	} else {
		n, err = io.Copy(struct{ io.Writer }{w.ResponseWriter}, r)
	}
	w.n.Add(n)
	return n, err
}

func (w *countingWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}
