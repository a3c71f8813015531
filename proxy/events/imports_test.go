package events

import (
	"strings"
	"testing"

	"github.com/dtrcache/dtrcache/testenv/depcheck"
)

// TestImports: the events package is below the origin, not beside it (the
// origin mounts it with its own authentication), and links no registry,
// test environment or command.
func TestImports(t *testing.T) {
	g := depcheck.Load(t, ".")
	forbidden := []string{
		"github.com/dtrcache/dtrcache/proxy/origin",
		"github.com/dtrcache/dtrcache/proxy/forward",
		"github.com/dtrcache/dtrcache/testenv",
		"github.com/dtrcache/dtrcache/cmd",
		"github.com/distribution/distribution",
	}
	for _, dep := range g.Packages() {
		for _, bad := range forbidden {
			if dep == bad || strings.HasPrefix(dep, bad+"/") {
				t.Errorf("proxy/events depends on %s: %s", dep, depcheck.Chain(g.Path(dep, nil)))
			}
		}
	}
}
