package rendezvous

import (
	"strings"
	"testing"

	"github.com/dtrcache/dtrcache/testenv/depcheck"
)

// TestDependencies keeps the package pure: the standard library (no HTTP,
// no I/O) and xxhash, nothing else of dtrcache.
func TestDependencies(t *testing.T) {
	g := depcheck.Load(t, ".")
	for _, dep := range g.Packages() {
		switch {
		case dep == "github.com/dtrcache/dtrcache/proxy/rendezvous", dep == "github.com/cespare/xxhash/v2":
		case dep == "net/http" || strings.HasPrefix(dep, "net/") || dep == "os":
			t.Errorf("rendezvous depends on %s: %s", dep, depcheck.Chain(g.Path(dep, nil)))
		case !depcheck.Stdlib(dep):
			t.Errorf("rendezvous depends on %s: %s", dep, depcheck.Chain(g.Path(dep, nil)))
		}
	}
}
