package regapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// memContent is a blob held in memory, optionally backed by a file.
type memContent struct {
	data []byte
	file *os.File
}

func (m memContent) Size() int64    { return int64(len(m.data)) }
func (m memContent) File() *os.File { return m.file }
func (m memContent) Section(off, n int64) io.ReadCloser {
	if n < 0 {
		n = int64(len(m.data)) - off
	}
	return io.NopCloser(bytes.NewReader(m.data[off : off+n]))
}

func TestServeBlob(t *testing.T) {
	data := []byte("0123456789abcdefghij")
	const digest = "sha256:test"
	path := filepath.Join(t.TempDir(), "blob")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		method     string
		header     map[string]string
		wantStatus int
		wantBody   string
		wantRange  string
	}{
		{"get", "GET", nil, 200, string(data), ""},
		{"head", "HEAD", nil, 200, "", ""},
		{"range", "GET", map[string]string{"Range": "bytes=2-5"}, 206, "2345", "bytes 2-5/20"},
		{"suffix range", "GET", map[string]string{"Range": "bytes=-3"}, 206, "hij", "bytes 17-19/20"},
		{"open range", "GET", map[string]string{"Range": "bytes=18-"}, 206, "ij", "bytes 18-19/20"},
		{"unsatisfiable", "GET", map[string]string{"Range": "bytes=20-"}, 416, "", "bytes */20"},
		{"multi-range served whole", "GET", map[string]string{"Range": "bytes=0-1,3-4"}, 200, string(data), ""},
		{"if-none-match", "GET", map[string]string{"If-None-Match": `"` + digest + `"`}, 304, "", ""},
		{"if-none-match other", "GET", map[string]string{"If-None-Match": `"sha256:other"`}, 200, string(data), ""},
		{"if-range mismatch serves whole", "GET", map[string]string{"Range": "bytes=2-5", "If-Range": `"x"`}, 200, string(data), ""},
	}
	for _, tt := range tests {
		for _, backing := range []string{"file", "stream"} {
			t.Run(tt.name+"/"+backing, func(t *testing.T) {
				c := memContent{data: data}
				if backing == "file" {
					f, err := os.Open(path)
					if err != nil {
						t.Fatal(err)
					}
					defer f.Close()
					c.file = f
				}
				r := httptest.NewRequest(tt.method, "/v2/a/blobs/"+digest, nil)
				for k, v := range tt.header {
					r.Header.Set(k, v)
				}
				w := httptest.NewRecorder()
				ServeBlob(w, r, digest, c, "")
				res := w.Result()
				body, _ := io.ReadAll(res.Body)
				if res.StatusCode != tt.wantStatus {
					t.Fatalf("status %d, want %d", res.StatusCode, tt.wantStatus)
				}
				if tt.wantStatus == 416 {
					var eb errorBody
					if err := json.Unmarshal(body, &eb); err != nil || len(eb.Errors) != 1 || eb.Errors[0].Code != CodeRangeInvalid {
						t.Fatalf("416 body %q", body)
					}
					if res.Header.Get("Cache-Control") != "" || res.Header.Get("ETag") != "" {
						t.Fatalf("an error response carries blob caching headers: %v", res.Header)
					}
				} else if string(body) != tt.wantBody {
					t.Fatalf("body %q, want %q", body, tt.wantBody)
				}
				if got := res.Header.Get("Content-Range"); got != tt.wantRange {
					t.Fatalf("Content-Range %q, want %q", got, tt.wantRange)
				}
				if tt.wantStatus == 200 || tt.wantStatus == 206 {
					wantLen := len(tt.wantBody)
					if tt.method == "HEAD" {
						wantLen = len(data)
					}
					if res.Header.Get("Content-Length") != strconv.Itoa(wantLen) {
						t.Fatalf("Content-Length %q, want %d", res.Header.Get("Content-Length"), wantLen)
					}
					for _, h := range []string{"Docker-Content-Digest", "ETag", "Accept-Ranges", "Content-Type"} {
						if res.Header.Get(h) == "" {
							t.Fatalf("missing header %s", h)
						}
					}
				}
			})
		}
	}
}

type failingContent struct{ memContent }

func (f failingContent) Section(off, n int64) io.ReadCloser {
	return io.NopCloser(io.MultiReader(bytes.NewReader(f.data[:5]), errReader{}))
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("digest mismatch") }

func TestServeBlobAbortsAfterHeaders(t *testing.T) {
	w := httptest.NewRecorder()
	r := httptest.NewRequest("GET", "/v2/a/blobs/x", nil)
	_, err := ServeBlob(w, r, "sha256:x", failingContent{memContent{data: []byte("0123456789")}}, "")
	if !errors.Is(err, ErrAborted) {
		t.Fatalf("err = %v, want ErrAborted", err)
	}
}

// shortContent's sections end early without an error, and copy
// themselves (bytes.Reader is an io.WriterTo).
type shortContent struct{ memContent }

func (c shortContent) Section(off, n int64) io.ReadCloser {
	return io.NopCloser(bytes.NewReader(c.data[:5]))
}

// TestServeBlobAbortsAShortSection: a streamed section that copies itself
// (io.WriterTo, as a fill's does) and ends before the Content-Length is a
// cut response, not a clean one.
func TestServeBlobAbortsAShortSection(t *testing.T) {
	w := httptest.NewRecorder()
	r := httptest.NewRequest("GET", "/v2/a/blobs/x", nil)
	n, err := ServeBlob(w, r, "sha256:x", shortContent{memContent{data: []byte("0123456789")}}, "")
	if !errors.Is(err, ErrAborted) || n != 5 {
		t.Fatalf("ServeBlob = %d, %v; want 5 bytes and ErrAborted", n, err)
	}
}

// TestStreamedBlobHeadersReachTheClientBeforeAFailure: a blob served while
// it is still arriving (a fill) sends its status and headers at once, so a
// client whose download then fails (the fill's digest did not match) sees a
// 200 whose body is cut, the same answer however far the fill got, and a
// client waiting on a slow fill sees the response start. Before, the
// headers and the first bytes sat in the server's buffer and the abort
// discarded them: the client got a bare EOF (CI saw it through the forward
// proxy in TestCorruptBlobIsCutNotStored).
func TestStreamedBlobHeadersReachTheClientBeforeAFailure(t *testing.T) {
	data := []byte("0123456789")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := ServeBlob(w, r, "sha256:x", failingContent{memContent{data: data}}, ""); errors.Is(err, ErrAborted) {
			panic(http.ErrAbortHandler)
		}
	}))
	defer srv.Close()
	res, err := srv.Client().Get(srv.URL + "/v2/a/blobs/sha256:x")
	if err != nil {
		t.Fatalf("no response before the failure: %v", err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK || res.Header.Get("Docker-Content-Digest") != "sha256:x" {
		t.Fatalf("status %d, digest %q; want 200 with the digest", res.StatusCode, res.Header.Get("Docker-Content-Digest"))
	}
	body, err := io.ReadAll(res.Body)
	if err == nil {
		t.Fatalf("the cut body ended cleanly after %d of %d bytes", len(body), len(data))
	}
	if len(body) >= len(data) {
		t.Fatalf("%d bytes delivered, want fewer than %d", len(body), len(data))
	}
}

func TestWriteError(t *testing.T) {
	w := httptest.NewRecorder()
	WriteError(w, httptest.NewRequest("GET", "/", nil),
		NewError(http.StatusUnauthorized, CodeUnauthorized, "authentication required").WithHeader("WWW-Authenticate", `Basic realm="x"`))
	if w.Code != 401 || w.Header().Get("WWW-Authenticate") == "" {
		t.Fatalf("got %d %v", w.Code, w.Header())
	}
	var eb errorBody
	if err := json.Unmarshal(w.Body.Bytes(), &eb); err != nil || eb.Errors[0].Code != CodeUnauthorized {
		t.Fatalf("body %s", w.Body)
	}
	// Unknown errors do not leak their text.
	w = httptest.NewRecorder()
	WriteError(w, nil, errors.New("secret internal detail"))
	if w.Code != 500 || bytes.Contains(w.Body.Bytes(), []byte("secret")) {
		t.Fatalf("got %d %s", w.Code, w.Body)
	}
}
