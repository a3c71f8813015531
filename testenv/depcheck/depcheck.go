// Package depcheck checks the dependency graph of a package in tests,
// after go-containerregistry's depcheck: which packages its non-test
// build links, and through which chain of imports. The import-boundary
// tests of the production binary, casstore and policy use it.
//
// It runs the go command (`go list -deps`), so it needs the go tool and
// the module's dependencies in the module cache; Load skips the test in
// -short mode or when the go command is missing.
package depcheck

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Graph is the dependency graph of one package's non-test build.
type Graph struct {
	// Root is the package the graph was loaded for, by import path.
	Root string
	// order lists every package, dependencies before their importers and
	// the root last, as `go list -deps` prints them.
	order []string
	// imports are each package's direct imports.
	imports map[string][]string
}

// Load lists the dependencies of pkg (a package pattern the go command
// accepts, such as "." for the test's own package) with its direct
// imports. It fails the test if the go command fails.
func Load(t testing.TB, pkg string) *Graph {
	t.Helper()
	if testing.Short() {
		t.Skip("depcheck runs the go command")
	}
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Skip("depcheck: go command not found")
	}
	cmd := exec.Command(goCmd, "list", "-deps", "-f", "{{.ImportPath}}{{range .Imports}} {{.}}{{end}}", pkg)
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=readonly")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("depcheck: go list -deps %s: %v\n%s", pkg, err, stderr.String())
	}
	g := &Graph{imports: map[string][]string{}}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		g.order = append(g.order, fields[0])
		g.imports[fields[0]] = fields[1:]
	}
	if len(g.order) == 0 {
		t.Fatalf("depcheck: go list -deps %s listed nothing", pkg)
	}
	g.Root = g.order[len(g.order)-1]
	return g
}

// Packages returns every package the build links, the root included.
func (g *Graph) Packages() []string { return g.order }

// Imports returns the direct imports of pkg.
func (g *Graph) Imports(pkg string) []string { return g.imports[pkg] }

// Contains reports whether the build links pkg.
func (g *Graph) Contains(pkg string) bool {
	_, ok := g.imports[pkg]
	return ok
}

// Path returns a shortest chain of imports from the root to pkg (both
// included) that passes through no package for which through reports
// false (the root and pkg are not asked), or nil if there is none. A nil
// through allows every package.
func (g *Graph) Path(pkg string, through func(string) bool) []string {
	prev := map[string]string{g.Root: ""}
	queue := []string{g.Root}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if p == pkg {
			var chain []string
			for ; p != ""; p = prev[p] {
				chain = append([]string{p}, chain...)
			}
			return chain
		}
		if p != g.Root && through != nil && !through(p) {
			continue
		}
		for _, imp := range g.imports[p] {
			if _, seen := prev[imp]; !seen {
				prev[imp] = p
				queue = append(queue, imp)
			}
		}
	}
	return nil
}

// Chain formats a Path for a test failure: "a → b → c".
func Chain(path []string) string { return strings.Join(path, " → ") }

// Stdlib reports whether an import path is in the standard library (its
// first element has no dot; the standard library's vendored packages
// start with "vendor/").
func Stdlib(path string) bool {
	first, _, _ := strings.Cut(path, "/")
	return !strings.Contains(first, ".")
}
