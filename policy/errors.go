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

// Errors returned by the rules, templates, scan reports and policy
// definitions. Like the ones above they are always wrapped with context.
var (
	// ErrInvalidRule means a rule failed to compile: unknown field or
	// operator, wrong number of values, or a value that does not parse. The
	// message names the rule by index, field and operator.
	ErrInvalidRule = errors.New("policy: invalid rule")
	// ErrInvalidVersion means a string is not a semantic version.
	ErrInvalidVersion = errors.New("policy: invalid semantic version")
	// ErrInvalidRange means a string is not a semantic version range.
	ErrInvalidRange = errors.New("policy: invalid semver range")
	// ErrInvalidTagTemplate means a tag template does not parse. The message
	// names the position of the problem.
	ErrInvalidTagTemplate = errors.New("policy: invalid tag template")
	// ErrInvalidTag means a tag template expanded to something that is not
	// a valid OCI tag. The message names the template, the input tag and the
	// result.
	ErrInvalidTag = errors.New("policy: tag template gives an invalid tag")
	// ErrNotScanReport means a referrer is well formed but is not a
	// vulnerability report (an SBOM, a provenance attestation, another JSON
	// document), so it says nothing about vulnerabilities.
	ErrNotScanReport = errors.New("policy: not a vulnerability scan report")
	// ErrInvalidScanReport means a referrer looks like a vulnerability
	// report but is malformed or too large.
	ErrInvalidScanReport = errors.New("policy: invalid scan report")
	// ErrInvalidPolicy means a promotion or mirroring policy failed
	// validation. Each problem names its JSON key.
	ErrInvalidPolicy = errors.New("policy: invalid policy")
	// ErrPromotionCycle means promotion policies would form a loop of
	// repositories. The message names the loop and the policies on it.
	ErrPromotionCycle = errors.New("policy: promotion policies form a loop")
)
