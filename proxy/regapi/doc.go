// Package regapi holds the pieces of the OCI distribution API that every
// dtrcache HTTP face shares: route and name parsing, registry-style JSON
// errors (decided in one place), Range parsing and serving a blob with the
// headers registry clients expect.
package regapi
