package replicate

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dtrcache/dtrcache/testenv"
)

// instant makes retries wait for nothing.
func instant(time.Duration) <-chan time.Time {
	ch := make(chan time.Time, 1)
	ch <- time.Time{}
	return ch
}

// fault answers the requests that match with a registry error, the first
// times times (0: always); others pass to the registry. It is a fault
// injector: the status codes a real registry sends under load or policy.
func fault(method, pathPart string, times int64, status int, header http.Header, body string) func(http.Handler) http.Handler {
	var n atomic.Int64
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == method && strings.Contains(r.URL.Path, pathPart) && (times == 0 || n.Add(1) <= times) {
				for k, v := range header {
					w.Header()[k] = v
				}
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(status)
				fmt.Fprint(w, body)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// corruptBlobs flips one byte of every blob GET body (a fault: a proxy or
// disk that damages content).
func corruptBlobs(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/sha256:") {
			next.ServeHTTP(&flipWriter{ResponseWriter: w}, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

type flipWriter struct {
	http.ResponseWriter
	done bool
}

func (f *flipWriter) Write(b []byte) (int, error) {
	if !f.done && len(b) > 0 {
		b = append([]byte(nil), b...)
		b[0] ^= 0xff
		f.done = true
	}
	return f.ResponseWriter.Write(b)
}

// rewriteManifest serves body with content type ct for manifest GETs by
// tag (a registry with a broken or foreign manifest).
func rewriteManifest(ct, body string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/manifests/v1") {
				w.Header().Set("Content-Type", ct)
				fmt.Fprint(w, body)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// TestErrorsClassified: each failure ends the copy with an *Error that
// IsTransient sorts right, carrying the registry's code where it sent one.
func TestErrorsClassified(t *testing.T) {
	img := platformImage(t, 31, 2, 20<<10, "linux", "amd64")
	tests := []struct {
		name      string
		srcWrap   func(http.Handler) http.Handler
		dstWrap   func(http.Handler) http.Handler
		srcTag    string
		dstDown   bool
		badPass   bool
		transient bool
		wait      time.Duration
		is        error  // errors.Is target, if any
		text      string // in the message
		resumes   int
		ok        bool
	}{
		{name: "401 wrong password", badPass: true, text: "UNAUTHORIZED"},
		{name: "404 unknown tag", srcTag: "nope", text: "MANIFEST_UNKNOWN"},
		{name: "403 denied", dstWrap: fault(http.MethodPost, "/blobs/uploads/", 0, http.StatusForbidden, nil,
			`{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}`), text: "DENIED: requested access to the resource is denied"},
		{name: "429 with a long Retry-After", dstWrap: fault(http.MethodPost, "/blobs/uploads/", 0, http.StatusTooManyRequests, http.Header{"Retry-After": {"120"}},
			`{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}`), transient: true, wait: 2 * time.Minute, text: "TOOMANYREQUESTS"},
		{name: "503 every time", dstWrap: fault(http.MethodPost, "/blobs/uploads/", 0, http.StatusServiceUnavailable, nil, `{"errors":[{"code":"UNAVAILABLE","message":"maintenance"}]}`),
			transient: true, text: "UNAVAILABLE", resumes: 2},
		{name: "503 twice, then fine", dstWrap: fault(http.MethodPost, "/blobs/uploads/", 2, http.StatusServiceUnavailable, nil, `{}`), ok: true, resumes: 2},
		{name: "connection refused", dstDown: true, transient: true, text: "connect"},
		{name: "digest mismatch", srcWrap: corruptBlobs, is: ErrDigestMismatch, text: "DIGEST_INVALID"},
		{name: "invalid manifest", srcWrap: rewriteManifest(MediaTypeOCIManifest, `{"schemaVersion":2,"mediaType":"`+MediaTypeOCIManifest+`"}`), is: ErrInvalidManifest},
		{name: "unsupported media type", srcWrap: rewriteManifest("application/vnd.docker.distribution.manifest.v1+prettyjws", `{"schemaVersion":1}`), is: ErrUnsupportedMediaType},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := startDistribution(t, testenv.RegistryOptions{Wrap: tt.srcWrap})
			pushImage(t, src, "dev/app:v1", img)
			dst := startBasic(t, "eu", "pw")
			if tt.dstWrap != nil {
				dst = startDistribution(t, testenv.RegistryOptions{Wrap: tt.dstWrap})
			}
			if tt.badPass {
				dst.pass = "wrong"
			}
			dcl := dst.client(t)
			if tt.dstDown {
				down := startDistribution(t, testenv.RegistryOptions{})
				dcl = down.client(t)
				down.close()
			}
			tag := "v1"
			if tt.srcTag != "" {
				tag = tt.srcTag
			}
			res, err := Copy(context.Background(), Ref{Client: src.client(t), Repository: "dev/app", Tag: tag},
				Ref{Client: dcl, Repository: "prod/app", Tag: "v1"}, Options{Retries: 2, Concurrency: 1, sleep: instant})
			if res.Resumes != tt.resumes {
				t.Errorf("Resumes = %d, want %d", res.Resumes, tt.resumes)
			}
			if tt.ok {
				if err != nil {
					t.Fatal(err)
				}
				sameImage(t, src, "dev/app:v1", dst, "prod/app:v1")
				return
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v (%T), want an *Error", err, err)
			}
			transient, wait := IsTransient(err)
			if transient != tt.transient || wait != tt.wait {
				t.Errorf("IsTransient = %v, %v; want %v, %v (err %v)", transient, wait, tt.transient, tt.wait, err)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("err = %v, want errors.Is %v", err, tt.is)
			}
			if !strings.Contains(err.Error(), tt.text) {
				t.Errorf("err = %q, want it to contain %q", err, tt.text)
			}
			// Nothing partial is visible at the target.
			if ok, _, _, _ := headManifest(context.Background(), dst.client(t), "prod/app", "v1"); ok && tt.dstWrap == nil {
				t.Errorf("the target has the tag after a failed copy")
			}
		})
	}
}
