package health

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"syscall"
	"time"
)

// ReadyPath is the path a node is probed at: its readiness, which covers
// its store and its draining, not only that it listens (/healthz).
const ReadyPath = "/readyz"

// DefaultTimeout bounds one probe.
const DefaultTimeout = 500 * time.Millisecond

// Probe asks the node at base for its readiness (GET base+ReadyPath) with
// client, within timeout (0: DefaultTimeout), and classifies the answer:
// 200 is good; a 503 is ClassNotReady with the node's own reason; a
// refused connection ClassRefused; no answer in time ClassTimeout.
func Probe(ctx context.Context, client *http.Client, base string, timeout time.Duration) Result {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	r := Result{At: start}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+ReadyPath, nil)
	if err != nil {
		r.Class, r.Reason = ClassError, err.Error()
		return r
	}
	resp, err := client.Do(req)
	if err != nil {
		r.Class, r.Reason = classifyError(ctx, err), err.Error()
		return r
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	r.RTT = time.Since(start)
	switch resp.StatusCode {
	case http.StatusOK:
		r.OK, r.Class = true, ClassOK
	case http.StatusServiceUnavailable:
		r.Class, r.Reason = ClassNotReady, "not ready: "+readyReason(body, resp.Status)
	default:
		r.Class, r.Reason = ClassStatus, resp.Status
	}
	return r
}

// readyReason is the reason of a /readyz answer ({"reason": …}), or
// status when it has none.
func readyReason(body []byte, status string) string {
	var v struct {
		Reason string `json:"reason"`
	}
	if json.Unmarshal(body, &v) == nil && v.Reason != "" {
		return v.Reason
	}
	return status
}

func classifyError(ctx context.Context, err error) string {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return ClassRefused
	case errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil:
		return ClassTimeout
	}
	var t interface{ Timeout() bool }
	if errors.As(err, &t) && t.Timeout() {
		return ClassTimeout
	}
	return ClassError
}
