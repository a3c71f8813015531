// Package config reads dtrcache's configuration files: YAML with strict
// keys (an unknown key is an error that names it), sizes and durations in
// the forms of proxy/units, and normalisation into one native shape.
// The cache also accepts the configuration shape of a DTR content cache (a
// registry configuration with the "downstream" middleware) and of
// distribution's proxy mode unchanged.
//
// The package decodes and normalises only. The rules of each value belong
// to the package that takes it (casstore, forward, upstream, …); the
// dtrcache command checks the normalised configuration with their checks
// and reports every problem at once, each naming its key (Problems).
// Environment and flag overrides are applied by the command.
//
// Only the dtrcache command uses this package; the other packages take
// plain values.
package config
