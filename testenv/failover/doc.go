// Package failover holds the acceptance tests of failover (issue 19): real
// dtrcache processes (the binary built once per run) for the origin and a
// cache that is killed, stopped, stalled or unreachable, while skopeo and
// go-containerregistry clients pull through the origin in loops.
package failover
