// Package policy decides who may fetch what from where. It holds the
// pieces of dtrcache that are about trust rather than bytes, and knows
// nothing of HTTP serving: the proxy package maps its answers and errors
// onto status codes, and the cmd package reads its files.
//
// # Redirect tokens
//
// When the origin redirects a blob request to a user's cache (the DTR
// flow), the redirect URL carries a short-lived token, because clients drop
// their Authorization header on a cross-host redirect. A Signer mints it: a
// JWT signed with Ed25519 ("alg": "EdDSA"), whose header names the signing
// key ("kid") and whose claims bind it to one user (sub), one cache (aud),
// one origin (iss), one repository (repo) and one blob (digest) for a few
// minutes (iat, nbf, exp; 5 minutes by default), with a random ID (jti).
//
// A Verifier on the cache checks it. The algorithm is pinned to EdDSA, so
// "alg": "none" and the HMAC-with-the-public-key confusion are refused
// before any key is looked at; exp is required; times are checked with at
// most 30 s of clock skew; and the repo and digest claims must equal the
// request path exactly. Failures wrap one sentinel error each
// (ErrMalformedToken, ErrBadSignature, ErrUnknownKey, ErrExpired,
// ErrNotYetValid, ErrMissingClaim, ErrClaimMismatch), so the caller can log
// and count them without parsing messages. The JWT encoding itself is left
// to github.com/golang-jwt/jwt/v5.
//
// # Keys
//
// Keys are Ed25519 pairs whose key ID is the RFC 7638 thumbprint of the
// public key, so an ID never names two keys. The origin keeps its keys in a
// directory (WriteKeyPair, LoadKeyDir) with time-stamped file names; the
// newest private key signs, and all public keys verify, which lets keys
// rotate without breaking tokens already handed out. Public keys travel as
// PEM files or as a JWK Set (MarshalJWKS, ParseJWKS). Verifiers look keys
// up through the one-method KeySet interface: StaticKeys for a fixed list,
// RemoteKeys for a JWK Set fetched from the origin by a function the caller
// provides, refetched when a token names a key it has not seen (rate
// limited) and when it grows stale, and kept when a fetch fails.
//
// # Users and access rules
//
// Users reads an htpasswd file of bcrypt hashes. Unknown users cost the
// same bcrypt work as known ones, and successful checks are remembered for
// a few minutes (keyed by an in-memory HMAC of user and password, never the
// password itself) so that clients that send Basic auth with every request
// do not pay bcrypt every time.
//
// Access holds the repository rules: admins, teams, and rules that match
// repositories by pattern ("*" within one path segment, "**" across any
// number of segments) and grant pull, push or admin to users and teams,
// each action implying the weaker ones. Decisions deny by default and carry
// a short reason for the audit log. The rule types have yaml tags but the
// package parses no YAML; the cmd package does.
//
// # Promotion and mirroring policies
//
// The pure half of DTR's promotion, push-mirroring and poll-mirroring
// policies lives here; the copy engine gathers what it needs from the
// registries and asks. Image is the contract between them: what the
// engine learnt about one tag (platforms, labels, annotations, created
// time, whether a signature is attached, the counts of the attached scan
// report). CompileRules checks a policy's rules (DTR's {field, operator,
// values}) when it is saved, reporting every bad one with its index, and
// returns a Matcher that evaluates them. Semantic version ranges (Range)
// follow npm's node-semver, pre-release rule included. TagTemplate
// expands DTR's tag templates (%n and strftime codes) and refuses results
// that are not OCI tags. ParseScanReport counts the vulnerabilities of a
// cosign vulnerability attestation (bare, in a DSSE envelope or a Sigstore
// bundle) or of a Trivy or Grype JSON report; IsSignature and IsScanReport
// classify referrers. PromotionPolicy, PushMirroringPolicy and
// PollMirroringPolicy are the policy definitions with DTR's JSON keys and
// a Validate that reports every problem by key; their password is
// write-only. DetectPromotionCycle refuses a promotion policy that would
// close a loop of repositories.
//
// # Conventions
//
// The package keeps no mutable package-level state. Clocks and random
// sources are fields (nil meaning the real ones) so that tests are exact.
// Types with a mutex are safe for concurrent use once configured; the others
// are immutable after construction.
package policy
