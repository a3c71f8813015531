// Package cache is the dtrcache cache server: the read-only registry API
// that serves blobs redirected from the origin (with a signed token) and,
// when configured, acts as a pull-through mirror of other registries.
//
// Two trust domains are kept apart. Redirect mode serves a blob only with a
// valid token for exactly that repository and digest (or to a chained
// child cache that authenticates with its own credentials) and fills from
// the origin with the cache's credentials, forwarding the user's token.
// Mirror mode serves anyone on its network, like distribution's proxy
// mode, and uses its own store, so a digest cached for a token-holder can
// never be read through the mirror by guessing it.
//
// Misses fill through casstore: one upstream stream per digest however
// many clients ask, parallel range requests for large blobs, resume after a
// cut, and a verified digest before the last byte reaches any client.
package cache
