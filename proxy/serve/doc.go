// Package serve runs dtrcache's HTTP servers: the access log (one zap line
// per request), HTTP and upstream metrics, the /healthz, /readyz and
// /metrics endpoints, TLS, and graceful shutdown.
package serve
