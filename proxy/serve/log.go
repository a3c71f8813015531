package serve

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Fields is what a handler reports about a request for its log line and
// metrics. Handlers get it with FieldsFrom and fill in what they know.
type Fields struct {
	Route    string // metric label, e.g. "blob"
	Repo     string
	Digest   string
	Result   string // hit, miss, joined, stale, redirect, direct, …
	Upstream string
	User     string
	Err      error
}

type fieldsKey struct{}

// FieldsFrom returns the request's Fields (a throwaway value outside
// Instrument, so handlers never need a nil check).
func FieldsFrom(ctx context.Context) *Fields {
	if f, ok := ctx.Value(fieldsKey{}).(*Fields); ok {
		return f
	}
	return &Fields{}
}

// Recorder wraps a ResponseWriter to capture the status and body bytes. It
// keeps io.ReaderFrom (so sendfile still works) and http.Flusher.
type Recorder struct {
	http.ResponseWriter
	Status int
	Bytes  int64
}

// WriteHeader records the status.
func (r *Recorder) WriteHeader(code int) {
	if r.Status == 0 {
		r.Status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *Recorder) Write(p []byte) (int, error) {
	if r.Status == 0 {
		r.Status = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(p)
	r.Bytes += int64(n)
	return n, err
}

// ReadFrom lets io.Copy reach the connection's sendfile path.
func (r *Recorder) ReadFrom(src io.Reader) (int64, error) {
	if r.Status == 0 {
		r.Status = http.StatusOK
	}
	var n int64
	var err error
	if rf, ok := r.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(src)
	} else {
		n, err = io.Copy(struct{ io.Writer }{r.ResponseWriter}, src)
	}
	r.Bytes += n
	return n, err
}

// Flush flushes if the underlying writer can.
func (r *Recorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Hijack supports connection hijacking (CONNECT in the forward proxy).
func (r *Recorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if h, ok := r.ResponseWriter.(http.Hijacker); ok {
		return h.Hijack()
	}
	return nil, nil, errors.New("serve: hijack not supported")
}

// Unwrap returns the wrapped writer (for http.ResponseController).
func (r *Recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// Instrument logs one line per request and records HTTP metrics. A handler
// that aborts the response (panic(http.ErrAbortHandler)) is logged too.
func Instrument(log *zap.Logger, m *HTTPMetrics, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		f := &Fields{Route: "other"}
		rec := &Recorder{ResponseWriter: w}
		m.inflightAdd(1)
		aborted := true
		defer func() {
			m.inflightAdd(-1)
			status := rec.Status
			if status == 0 {
				status = http.StatusOK
			}
			d := time.Since(start)
			m.observe(f.Route, r.Method, status, rec.Bytes, d)
			level := zapcore.InfoLevel
			if aborted || status >= 500 {
				level = zapcore.WarnLevel
			}
			if ce := log.Check(level, "request"); ce != nil {
				fields := []zap.Field{
					zap.String("method", r.Method), zap.String("path", r.URL.Path), zap.Int("status", status),
					zap.Int64("bytes", rec.Bytes), zap.Duration("duration", d), zap.String("remote", r.RemoteAddr),
					zap.String("route", f.Route),
				}
				for _, kv := range [][2]string{{"repo", f.Repo}, {"digest", f.Digest}, {"result", f.Result}, {"upstream", f.Upstream}, {"user", f.User}} {
					if kv[1] != "" {
						fields = append(fields, zap.String(kv[0], kv[1]))
					}
				}
				if f.Err != nil {
					fields = append(fields, zap.Error(f.Err))
				}
				if aborted {
					fields = append(fields, zap.Bool("aborted", true))
				}
				ce.Write(fields...)
			}
		}()
		next.ServeHTTP(rec, r.WithContext(context.WithValue(r.Context(), fieldsKey{}, f)))
		aborted = false
	})
}

func (m *HTTPMetrics) inflightAdd(d float64) {
	if m != nil {
		m.inflight.Add(d)
	}
}
