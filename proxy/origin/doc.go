// Package origin is the origin gateway: the DTR role in front of any OCI
// registry. It logs users in (htpasswd, Basic), authorizes every request
// against the repository rules (one audit line per decision), proxies
// manifests, tags, pushes and everything else to the backend registry
// (streamed), and answers an authorized blob GET from a user whose profile
// names a healthy registered cache with a 307 to that cache carrying a
// short-lived signed token. Without a usable cache it serves the blob
// itself; a cache's own request is always served, never redirected again.
//
// Caches and user settings live in the origin's state store (the DTR
// /api/v0 resources). Prober keeps a verdict per node of each registered
// cache (package health: probes and watches of each node's /readyz, or the
// node's heartbeats), shared by the origin replicas, and blobs go only to
// nodes that are up, so a dead cache never breaks a pull.
package origin
