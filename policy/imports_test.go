package policy

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/dtrcache/dtrcache/testenv/depcheck"
)

// allowedImport reports whether the policy package may import path: the
// standard library except HTTP, the JWT library and bcrypt; its tests may
// import the dependency checker too.
func allowedImport(path string, test bool) bool {
	switch {
	case test && path == "github.com/dtrcache/dtrcache/testenv/depcheck":
		return true
	case path == "net/http" || strings.HasPrefix(path, "net/http/"):
		return false
	case path == "github.com/golang-jwt/jwt/v5", path == "golang.org/x/crypto/bcrypt":
		return true
	}
	return depcheck.Stdlib(path)
}

// TestImports keeps HTTP and the rest of dtrcache out of this package,
// tests included (but for the dependency checker).
func TestImports(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil || len(files) == 0 {
		t.Fatalf("no Go files: %v", err)
	}
	fset := token.NewFileSet()
	for _, name := range files {
		f, err := parser.ParseFile(fset, name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			path, err := strconv.Unquote(imp.Path.Value)
			if err != nil {
				t.Fatal(err)
			}
			if !allowedImport(path, strings.HasSuffix(name, "_test.go")) {
				t.Errorf("%s imports %s", name, path)
			}
		}
	}
}

// TestDependencies checks the whole dependency graph of the non-test
// package, so that an allowed import cannot bring net/http in through the
// back door.
func TestDependencies(t *testing.T) {
	g := depcheck.Load(t, ".")
	for _, dep := range g.Packages() {
		switch {
		case dep == "github.com/dtrcache/dtrcache/policy":
		case dep == "net/http" || strings.HasPrefix(dep, "net/http/"):
			t.Errorf("policy depends on %s: %s", dep, depcheck.Chain(g.Path(dep, nil)))
		case strings.HasPrefix(dep, "github.com/dtrcache/dtrcache/"):
			t.Errorf("policy depends on %s of this module: %s", dep, depcheck.Chain(g.Path(dep, nil)))
		}
	}
}
