package casstore

import (
	"strings"
	"testing"

	"github.com/dtrcache/dtrcache/testenv/depcheck"
)

// allowedDirect reports whether the store may import path itself: the
// standard library but HTTP, Badger, zap and golang.org/x/sys.
func allowedDirect(path string) bool {
	switch {
	case path == "net/http" || strings.HasPrefix(path, "net/http/"):
		return false
	case path == "github.com/dgraph-io/badger/v4", path == "go.uber.org/zap", strings.HasPrefix(path, "golang.org/x/sys/"):
		return true
	}
	return depcheck.Stdlib(path)
}

// TestDependencies checks the store's whole dependency graph, as TestNoHTTP
// checks its files: its own imports are the allowed ones, no other package
// of this module is linked, and HTTP is reached only inside Badger and zap
// (their metrics and level handlers), never through the store's own
// standard-library imports (expvar, net/rpc, …).
func TestDependencies(t *testing.T) {
	g := depcheck.Load(t, ".")
	for _, imp := range g.Imports(g.Root) {
		if !allowedDirect(imp) {
			t.Errorf("casstore imports %s", imp)
		}
	}
	for _, dep := range g.Packages() {
		if dep != g.Root && strings.HasPrefix(dep, "github.com/dtrcache/dtrcache/") {
			t.Errorf("casstore depends on %s: %s", dep, depcheck.Chain(g.Path(dep, nil)))
		}
	}
	if path := g.Path("net/http", depcheck.Stdlib); path != nil {
		t.Errorf("casstore reaches net/http through the standard library: %s", depcheck.Chain(path))
	}
}
