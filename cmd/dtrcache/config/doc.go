// Package config reads dtrcache's configuration files: YAML with strict
// keys, sizes ("200GiB") and durations ("24h", DTR's bare nanoseconds),
// environment and flag overrides applied by the caller, and validation
// that names the offending key. The cache also accepts the configuration
// shape of a DTR content cache (a registry configuration with the
// "downstream" middleware) and of distribution's proxy mode unchanged.
//
// Only the dtrcache command uses this package; the other packages take
// plain values.
package config
