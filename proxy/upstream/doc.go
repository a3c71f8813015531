// Package upstream is dtrcache's client for upstream registries: the
// origin, a parent cache, or any OCI registry a mirror fronts.
//
// A Client holds one or more base URLs and spreads requests over them
// round-robin; a connection error or a 5xx fails over to the next URL. It
// authenticates with the cache's own credentials: Basic, or the registry
// token handshake (a 401 with "WWW-Authenticate: Bearer realm=…" → a token
// from the realm → the request again), with tokens cached per scope until
// they expire. Redirects (to object storage) are followed; Go's client drops
// Authorization when a redirect leaves the host.
//
// HTTP/2 is disabled on purpose: parallel range fills must use separate TCP
// connections, which is the point of them on links that cap each
// connection.
//
// BlobSource adapts a Client to casstore.Source: range requests that resume
// a fill or fetch one chunk of a parallel fill.
package upstream
