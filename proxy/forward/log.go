package forward

import (
	"context"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/dtrcache/dtrcache/proxy/serve"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// fields is what the handlers report about one request for its log line
// and metrics.
type fields struct {
	connect bool   // a CONNECT (counted by action, not by result)
	host    string // the destination, host:port
	repo    string
	digest  string
	result  string // hit, miss, joined, not_modified, forward, denied, error; mitm or tunnel for CONNECTs
	auth    string // cached, allowed, denied: how a blob read was authorized
	reason  string // why a request was denied
	status  int    // set when the response was written on a hijacked connection
	err     error

	// tunnelUp is set once a tunnel's target is connected; goproxy may
	// report later copy errors, which must not touch the log fields.
	tunnelUp atomic.Bool
}

type fieldsKey struct{}

// fieldsFrom returns the request's fields (a throwaway value outside
// logRequests, so handlers never need a nil check).
func fieldsFrom(ctx context.Context) *fields {
	if f, ok := ctx.Value(fieldsKey{}).(*fields); ok {
		return f
	}
	return &fields{}
}

// logRequests writes one log line per request and counts it.
func (p *Proxy) logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		f := &fields{connect: r.Method == http.MethodConnect}
		rec := &serve.Recorder{ResponseWriter: w}
		aborted := true
		defer func() {
			status := f.status
			if status == 0 {
				status = rec.Status
			}
			if status == 0 {
				status = http.StatusOK
			}
			result := f.result
			if result == "" {
				result = "error"
				if aborted {
					result = "aborted"
				}
			}
			if f.connect {
				p.metrics.connect(result)
			} else {
				p.metrics.request(result)
				if result == "forward" {
					p.metrics.sent("forward", rec.Bytes)
				}
			}
			level := zapcore.InfoLevel
			if aborted || status >= 500 {
				level = zapcore.WarnLevel
			}
			ce := p.log.Check(level, "request")
			if ce == nil {
				return
			}
			fs := []zap.Field{
				zap.String("method", r.Method), zap.String("host", f.host), zap.Int("status", status),
				zap.Int64("bytes", rec.Bytes), zap.Duration("duration", time.Since(start)),
				zap.String("remote", r.RemoteAddr), zap.String("result", result),
			}
			if !f.connect {
				fs = append(fs, zap.String("path", r.URL.Path))
			}
			for _, kv := range [][2]string{{"repo", f.repo}, {"digest", f.digest}, {"auth", f.auth}, {"reason", f.reason}} {
				if kv[1] != "" {
					fs = append(fs, zap.String(kv[0], kv[1]))
				}
			}
			if f.err != nil {
				fs = append(fs, zap.Error(f.err))
			}
			if aborted {
				fs = append(fs, zap.Bool("aborted", true))
			}
			ce.Write(fs...)
		}()
		next.ServeHTTP(rec, r.WithContext(context.WithValue(r.Context(), fieldsKey{}, f)))
		aborted = false
	})
}
