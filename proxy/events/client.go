package events

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"time"
)

// Guard dials webhook endpoints only at addresses that are safe to reach
// (netguard.Dialer): a name is resolved once, every address it resolves to
// is checked, and only a checked address is dialled. Resolve also checks
// a subscription's endpoint when it is made.
type Guard interface {
	DialContext(ctx context.Context, network, addr string) (net.Conn, error)
	Resolve(ctx context.Context, host string, port int) ([]netip.AddrPort, error)
}

// The headers of a delivery.
const (
	HeaderEventID   = "X-Dtrcache-Event-Id"
	HeaderEventType = "X-Dtrcache-Event-Type"
	HeaderWebhookID = "X-Dtrcache-Webhook-Id"
	HeaderAttempt   = "X-Dtrcache-Delivery-Attempt"
	HeaderSignature = "X-Dtrcache-Signature-256"
)

// Sign returns the X-Dtrcache-Signature-256 value of body: "sha256=" and
// the hex HMAC-SHA256 of the body with the webhook's secret.
func Sign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Verify reports whether signature (a header value) is body's signature
// with secret, comparing in constant time.
func Verify(secret string, body []byte, signature string) bool {
	return hmac.Equal([]byte(Sign(secret, body)), []byte(signature))
}

// endpointClient makes the requests of one webhook.
type endpointClient struct {
	http      *http.Client
	transport *http.Transport
}

// newEndpointClient returns a client that dials through guard, trusts the
// system roots plus tlsCert, and follows no redirects.
func newEndpointClient(guard Guard, skipVerify bool, tlsCert string, timeout time.Duration) (*endpointClient, error) {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if tlsCert != "" {
		if _, err := parseCerts(tlsCert); err != nil {
			return nil, err
		}
		pool.AppendCertsFromPEM([]byte(tlsCert))
	}
	tr := &http.Transport{
		DialContext: guard.DialContext,
		// No proxy from the environment: it would dial addresses the
		// guard never saw.
		Proxy:                 nil,
		TLSClientConfig:       &tls.Config{RootCAs: pool, InsecureSkipVerify: skipVerify, MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2:     true,
		MaxIdleConnsPerHost:   2,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   timeout,
		ResponseHeaderTimeout: timeout,
	}
	return &endpointClient{
		transport: tr,
		http: &http.Client{Transport: tr, Timeout: timeout,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
	}, nil
}

// parseCerts checks that s is PEM with at least one certificate.
func parseCerts(s string) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	rest := []byte(s)
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("a %q PEM block is not a certificate", b.Type)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("invalid certificate: %w", err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM certificate found")
	}
	return certs, nil
}

func (c *endpointClient) close() { c.transport.CloseIdleConnections() }

// result is the outcome of one request.
type result struct {
	status     int
	duration   time.Duration
	err        error
	retryAfter time.Duration // from a 429 or 503 answer
}

func (r result) ok() bool { return r.err == nil && r.status >= 200 && r.status < 300 }

// label is the metric label of r.
func (r result) label() string {
	switch {
	case r.ok():
		return "success"
	case r.err != nil:
		return "error"
	case r.status >= 400 && r.status < 500:
		return "http_4xx"
	case r.status >= 500:
		return "http_5xx"
	}
	return "http_other"
}

// text describes a failed result for the history and the log, without
// the endpoint's URL (which may hold a token).
func (r result) text() string {
	switch {
	case r.err != nil:
		return r.err.Error()
	case r.ok():
		return ""
	case r.status >= 300 && r.status < 400:
		return fmt.Sprintf("answered %d: redirects are not followed", r.status)
	}
	return fmt.Sprintf("answered %d %s", r.status, http.StatusText(r.status))
}

// send posts one event's body.
func (c *endpointClient) send(ctx context.Context, endpoint string, headers http.Header, body []byte) result {
	start := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(body))
	if err != nil {
		return result{err: errors.New("invalid endpoint URL")}
	}
	req.Header = headers
	resp, err := c.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the same error without the URL
		}
		if errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
			err = fmt.Errorf("timed out: %w", err)
		}
		return result{err: err, duration: time.Since(start)}
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	r := result{status: resp.StatusCode, duration: time.Since(start)}
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		r.retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	}
	return r
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// parseRetryAfter reads a Retry-After value: seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil {
		if s < 0 {
			return 0
		}
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// deliveryHeaders are the headers of one attempt at ev for webhook id.
func deliveryHeaders(id, secret, userAgent string, ev *entry, attempt int) http.Header {
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", userAgent)
	h.Set(HeaderEventID, ev.ID)
	h.Set(HeaderEventType, string(ev.typ))
	h.Set(HeaderWebhookID, id)
	h.Set(HeaderAttempt, strconv.Itoa(attempt))
	h.Set(HeaderSignature, Sign(secret, ev.body))
	return h
}
