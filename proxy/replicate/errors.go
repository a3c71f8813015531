package replicate

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/dtrcache/dtrcache/casstore"
	"github.com/dtrcache/dtrcache/proxy/netguard"
	"github.com/dtrcache/dtrcache/proxy/upstream"
)

// The engine's own permanent errors, checked with errors.Is.
var (
	// ErrDigestMismatch: content does not hash to the digest that names it.
	ErrDigestMismatch = errors.New("digest mismatch")
	// ErrSizeMismatch: a blob is not the size its descriptor says.
	ErrSizeMismatch = errors.New("size mismatch")
	// ErrInvalidManifest: a manifest that does not parse or is inconsistent.
	ErrInvalidManifest = errors.New("invalid manifest")
	// ErrUnsupportedMediaType: a manifest type the engine does not copy
	// (Docker schema 1, for one).
	ErrUnsupportedMediaType = errors.New("unsupported media type")
	// ErrTooLarge: a manifest or config over the engine's size bounds.
	ErrTooLarge = errors.New("too large")
)

// Error is a failed step of a copy: what was being done to what, and why.
// Its message carries the registry's own error text (code: message).
type Error struct {
	// Op is the step: "fetch manifest", "copy blob", "push manifest", …
	Op string
	// Ref names the content: registry/repository@digest or :tag.
	Ref string
	Err error
}

func (e *Error) Error() string { return "replicate: " + e.Op + " " + e.Ref + ": " + e.Err.Error() }

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// permanent marks err as not worth retrying.
func permanent(err error) error { return casstore.Permanent(err) }

// statusErr turns an unexpected registry response into an error (closing
// its body): a *upstream.StatusError, marked permanent unless it is one
// retrying may cure (5xx, 408, 429).
func statusErr(resp *http.Response) error {
	se := upstream.StatusErrorOf(resp)
	if transientStatus(se.Status) {
		return se
	}
	return permanent(se)
}

func transientStatus(status int) bool {
	return status >= 500 || status == http.StatusTooManyRequests || status == http.StatusRequestTimeout
}

// IsTransient reports whether err may go away if the copy is tried again
// later, and how long the registry asked to wait (its Retry-After, 0 if
// it said nothing).
//
// Transient: connection refused or reset, timeouts, a stream cut short,
// 5xx, 408 and 429. Permanent: 401, 403, 404 and other 4xx (with the
// registry's error code and message in the error), digest or size
// mismatches, invalid manifests, unsupported media types, refused
// destinations (netguard), TLS certificate errors, and a cancelled
// context (the caller gave up; its deadline passing is a timeout, so
// transient).
func IsTransient(err error) (bool, time.Duration) {
	if err == nil {
		return false, 0
	}
	var re *retryableError
	if errors.As(err, &re) {
		return true, 0
	}
	var se *upstream.StatusError
	if errors.As(err, &se) {
		return transientStatus(se.Status), se.RetryAfter
	}
	if casstore.IsPermanent(err) || errors.Is(err, context.Canceled) {
		return false, 0
	}
	var denied *netguard.DeniedError
	var unknownCA x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	var verify *tls.CertificateVerificationError
	if errors.As(err, &denied) || errors.As(err, &unknownCA) || errors.As(err, &hostname) ||
		errors.As(err, &invalid) || errors.As(err, &verify) {
		return false, 0
	}
	// Everything else is the network: refused, reset, timed out, cut.
	return true, 0
}

// retryableError is a failure that another attempt cures, whatever the
// status it wraps says (a 416 to an upload whose offset moved).
type retryableError struct{ err error }

func (e *retryableError) Error() string { return e.err.Error() }
func (e *retryableError) Unwrap() error { return e.err }

// wrap names the step and content of err; nil stays nil.
func wrap(op, ref string, err error) error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	return &Error{Op: op, Ref: ref, Err: err}
}

// errf is fmt.Errorf for the engine's permanent errors.
func errf(sentinel error, format string, args ...any) error {
	return permanent(fmt.Errorf("%w: "+format, append([]any{sentinel}, args...)...))
}
