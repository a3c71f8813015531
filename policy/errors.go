package policy

import "errors"

// Errors returned by the package. They are always wrapped with context, so
// check them with errors.Is, never with ==.
var (
	// ErrMalformedToken means a redirect token could not be decoded: wrong
	// number of segments, bad base64 or JSON, an unusable header, or a
	// claim of the wrong type.
	ErrMalformedToken = errors.New("policy: malformed token")
	// ErrBadSignature means the token's signature does not verify with the
	// key its kid names, or the token uses an algorithm other than EdDSA.
	ErrBadSignature = errors.New("policy: bad token signature")
	// ErrExpired means the token's exp lies in the past, beyond the allowed
	// clock skew.
	ErrExpired = errors.New("policy: token expired")
	// ErrNotYetValid means the token's nbf or iat lies in the future,
	// beyond the allowed clock skew.
	ErrNotYetValid = errors.New("policy: token not yet valid")
	// ErrUnknownKey means no public key is known for the token's kid.
	ErrUnknownKey = errors.New("policy: unknown signing key")
	// ErrClaimMismatch means a claim (repo, digest, aud or iss) differs from
	// the value the verifier requires. The message names the claim.
	ErrClaimMismatch = errors.New("policy: token claim mismatch")
	// ErrMissingClaim means a required claim (exp, repo or digest) is absent.
	ErrMissingClaim = errors.New("policy: token claim missing")
	// ErrBadCredentials means a user name and password did not
	// authenticate. Unknown users and wrong passwords get the same error.
	ErrBadCredentials = errors.New("policy: bad credentials")
)
