package regapi

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
)

// Error codes of the OCI distribution specification (and distribution's
// RANGE_INVALID and UNAVAILABLE).
const (
	CodeBlobUnknown     = "BLOB_UNKNOWN"
	CodeUploadInvalid   = "BLOB_UPLOAD_INVALID"
	CodeDigestInvalid   = "DIGEST_INVALID"
	CodeManifestUnknown = "MANIFEST_UNKNOWN"
	CodeManifestInvalid = "MANIFEST_INVALID"
	CodeNameInvalid     = "NAME_INVALID"
	CodeNameUnknown     = "NAME_UNKNOWN"
	CodeSizeInvalid     = "SIZE_INVALID"
	CodeUnauthorized    = "UNAUTHORIZED"
	CodeDenied          = "DENIED"
	CodeUnsupported     = "UNSUPPORTED"
	CodeTooManyRequests = "TOOMANYREQUESTS"
	CodeRangeInvalid    = "RANGE_INVALID"
	CodeUnavailable     = "UNAVAILABLE"
	CodeUnknown         = "UNKNOWN"
)

// Error is a registry API error: an HTTP status and one entry of the
// {"errors":[{"code","message","detail"}]} body. Err, when set, is the
// cause (logged, never sent).
type Error struct {
	Status  int
	Code    string
	Message string
	Detail  any
	// Header is added to the response (e.g. WWW-Authenticate).
	Header http.Header
	Err    error
}

// NewError returns an *Error with the given status, code and message.
func NewError(status int, code, message string) *Error {
	return &Error{Status: status, Code: code, Message: message}
}

// Errorf wraps cause in an *Error; the cause is logged, not sent.
func Errorf(status int, code, message string, cause error) *Error {
	return &Error{Status: status, Code: code, Message: message, Err: cause}
}

func (e *Error) Error() string {
	s := strconv.Itoa(e.Status) + " " + e.Code + ": " + e.Message
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// WithHeader returns e with a response header added.
func (e *Error) WithHeader(key, value string) *Error {
	if e.Header == nil {
		e.Header = http.Header{}
	}
	e.Header.Add(key, value)
	return e
}

type errorBody struct {
	Errors []errorEntry `json:"errors"`
}

type errorEntry struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Detail  any    `json:"detail,omitempty"`
}

// AsError returns err as an *Error; anything else becomes a 500 UNKNOWN
// whose message does not leak the internal error text.
func AsError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return Errorf(http.StatusInternalServerError, CodeUnknown, "internal error", err)
}

// WriteError writes err as a registry JSON error. HEAD responses get the
// status and headers only.
func WriteError(w http.ResponseWriter, r *http.Request, err error) {
	e := AsError(err)
	h := w.Header()
	for k, vs := range e.Header {
		for _, v := range vs {
			h.Add(k, v)
		}
	}
	body, _ := json.Marshal(errorBody{Errors: []errorEntry{{Code: e.Code, Message: e.Message, Detail: e.Detail}}})
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(e.Status)
	if r == nil || r.Method != http.MethodHead {
		w.Write(body)
	}
}
