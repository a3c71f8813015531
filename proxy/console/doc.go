// Package console is the origin's web console, served by the origin at
// /console/ (same binary, same port): sign in with the origin's accounts,
// pick a content cache, register and watch caches, browse repositories and
// which of their blobs each cache holds, and manage policies, jobs and
// webhooks.
//
// It has no permission model of its own. Every page reads and changes
// through the origin's own handlers — the registry API, the caches and
// settings API, the policies, jobs and webhooks APIs — called in process
// as the signed-in user (origin.OnBehalfOf), so a page shows exactly what
// the API would answer that user and an action the API refuses is refused
// with the API's status and message. The administrators' pages (caches)
// ask policy.Access.IsAdmin, the check behind the API's admin-only calls,
// and answer 403 to anyone else, audited like an API decision.
//
// Sessions are server-side records in the origin's state store (Badger,
// or etcd shared by every origin replica), keyed by the SHA-256 of a
// random 256-bit id that only the browser's cookie holds (HttpOnly,
// SameSite=Strict, Secure under TLS, path /console/): a dump of the store
// yields no usable session, signing out ends the session everywhere, and
// any replica serves any session. A session ends after an idle time and
// after an absolute lifetime, whichever comes first, and when its user is
// removed from the htpasswd file. Every form carries the session's CSRF
// token, compared in constant time; the sign-in form a pre-session token
// (double-submit cookie). Failed sign-ins are rate limited per user and
// per client address and written to the audit log like the API's
// decisions; passwords are never logged.
//
// Pages are server-rendered HTML (html/template) that work without
// JavaScript; a few lines of embedded script add live updates (the tag
// template preview, a running job). Every asset is embedded; the
// Content-Security-Policy allows nothing from another origin, no inline
// script or style. Charts are SVG drawn here from samples of each cache's
// /metrics (Prometheus text format) that the origin takes into a bounded
// in-memory ring covering the last 24 hours.
package console
