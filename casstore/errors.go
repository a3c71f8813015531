package casstore

import "errors"

// Errors returned by the store. Check them with errors.Is; they are usually
// wrapped with context.
var (
	// ErrInvalidDigest is wrapped by every *DigestError.
	ErrInvalidDigest = errors.New("casstore: invalid digest")
	// ErrNotFound means the blob is not in the store.
	ErrNotFound = errors.New("casstore: blob not found")
	// ErrDigestMismatch means the bytes from the source do not hash to the
	// requested digest (or have a different size than announced). Nothing
	// was stored.
	ErrDigestMismatch = errors.New("casstore: content does not match digest")
	// ErrSizeMismatch means the source announced one size and delivered
	// another. Nothing was stored.
	ErrSizeMismatch = errors.New("casstore: content size does not match")
	// ErrWrite means the store could not write a fill to disk (disk full,
	// I/O error). Readers already attached keep receiving bytes from the
	// source; nothing is published.
	ErrWrite = errors.New("casstore: write to disk failed")
	// ErrUpstream means the source failed and retries were exhausted.
	ErrUpstream = errors.New("casstore: source failed")
	// ErrClosed means the store was closed.
	ErrClosed = errors.New("casstore: store closed")
	// ErrTooLarge means the blob is larger than Options.MaxBlobSize.
	ErrTooLarge = errors.New("casstore: blob larger than the allowed maximum")
)

// OptionError is an Options field the store cannot work with.
type OptionError struct {
	// Option is the field's name in Options ("LowWatermark").
	Option string
	// Reason says what is wrong with its value.
	Reason string
}

func (e *OptionError) Error() string { return "casstore: " + e.Option + ": " + e.Reason }
