package regapi

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
)

// Content is a blob to serve. *casstore.Blob implements it.
type Content interface {
	// Size is the blob's size, or -1 while unknown.
	Size() int64
	// File is the verified file of a complete blob (for zero-copy
	// serving), or nil.
	File() *os.File
	// Section reads n bytes at off (n < 0: to the end).
	Section(off, n int64) io.ReadCloser
}

// ErrAborted wraps a failure after the response headers were sent: the
// handler must abort the connection (panic(http.ErrAbortHandler)) so the
// client sees a cut body, never a clean end.
var ErrAborted = errors.New("regapi: response aborted after headers")

// BlobHeaders sets the headers of a blob response.
func BlobHeaders(h http.Header, digest string, contentType string) {
	if contentType == "" {
		contentType = "application/octet-stream"
	}
	h.Set("Docker-Content-Digest", digest)
	h.Set("ETag", `"`+digest+`"`)
	h.Set("Accept-Ranges", "bytes")
	h.Set("Content-Type", contentType)
	h.Set("Cache-Control", "max-age=31536000, immutable")
	h.Set("X-Content-Type-Options", "nosniff")
}

// clearBlobHeaders removes what BlobHeaders set, before an error response
// (which must not be cached for a year or claim a digest).
func clearBlobHeaders(h http.Header) {
	for _, k := range []string{"Docker-Content-Digest", "ETag", "Accept-Ranges", "Content-Type", "Cache-Control"} {
		h.Del(k)
	}
}

// NotModified reports whether the request's If-None-Match names digest.
func NotModified(r *http.Request, digest string) bool {
	inm := r.Header.Get("If-None-Match")
	if inm == "" {
		return false
	}
	for _, tag := range strings.Split(inm, ",") {
		tag = strings.TrimPrefix(strings.TrimSpace(tag), "W/")
		if tag == "*" || tag == `"`+digest+`"` {
			return true
		}
	}
	return false
}

// ServeBlob answers GET or HEAD for a blob with its digest headers,
// If-None-Match (304), Range (206 or 416) and the body. It returns the body
// bytes written. An error before the headers is returned as an *Error
// already written; an error after them wraps ErrAborted.
func ServeBlob(w http.ResponseWriter, r *http.Request, digest string, c Content, contentType string) (int64, error) {
	h := w.Header()
	BlobHeaders(h, digest, contentType)
	if NotModified(r, digest) {
		w.WriteHeader(http.StatusNotModified)
		return 0, nil
	}
	size := c.Size()
	status, off, n := http.StatusOK, int64(0), size
	if rh := r.Header.Get("Range"); rh != "" && size >= 0 {
		br, ok, unsat := ParseRange(rh, size)
		switch {
		case unsat:
			e := NewError(http.StatusRequestedRangeNotSatisfiable, CodeRangeInvalid, "requested range not satisfiable").
				WithHeader("Content-Range", "bytes */"+strconv.FormatInt(size, 10))
			clearBlobHeaders(h)
			WriteError(w, r, e)
			return 0, e
		case ok && (r.Header.Get("If-Range") == "" || r.Header.Get("If-Range") == `"`+digest+`"`):
			status, off, n = http.StatusPartialContent, br.Start, br.Length
			h.Set("Content-Range", br.ContentRange(size))
		}
	}
	if n >= 0 {
		h.Set("Content-Length", strconv.FormatInt(n, 10))
	}
	if r.Method == http.MethodHead {
		w.WriteHeader(status)
		return 0, nil
	}
	var body io.Reader
	streamed := false
	if f := c.File(); f != nil {
		// A plain *os.File under an io.LimitedReader lets net/http use
		// sendfile(2).
		if _, err := f.Seek(off, io.SeekStart); err != nil {
			e := Errorf(http.StatusInternalServerError, CodeUnknown, "internal error", err)
			clearBlobHeaders(h)
			WriteError(w, r, e)
			return 0, e
		}
		body = f
	} else {
		sec := c.Section(off, n)
		defer sec.Close()
		body = sec
		streamed = true
	}
	w.WriteHeader(status)
	if streamed {
		// A section may still be arriving (a fill): send the status and
		// headers now, so the client sees the response start however slow
		// the source, and a later failure reaches it as a cut 200 rather
		// than as a connection closed with the headers still in the
		// server's buffer. A writer that cannot flush sends them with the
		// body.
		_ = http.NewResponseController(w).Flush()
	}
	var written int64
	var err error
	switch wt, ok := body.(io.WriterTo); {
	case streamed && ok:
		// The section ends at n bytes itself, and its WriteTo copies in
		// pieces as large as the fill writes (io.CopyN's buffer is 32
		// KiB).
		written, err = wt.WriteTo(w)
		if err == nil && n >= 0 && written != n {
			err = io.ErrUnexpectedEOF
		}
	case n >= 0:
		written, err = io.CopyN(w, body, n)
	default:
		written, err = io.Copy(w, body)
	}
	if err != nil {
		return written, fmt.Errorf("%w: %d of %d bytes sent: %w", ErrAborted, written, n, err)
	}
	return written, nil
}
