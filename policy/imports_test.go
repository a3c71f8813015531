package policy

import (
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// allowedImport reports whether the policy package may import path: the
// standard library except HTTP, the JWT library and bcrypt.
func allowedImport(path string) bool {
	switch {
	case path == "net/http" || strings.HasPrefix(path, "net/http/"):
		return false
	case path == "github.com/golang-jwt/jwt/v5", path == "golang.org/x/crypto/bcrypt":
		return true
	}
	first, _, _ := strings.Cut(path, "/")
	return !strings.Contains(first, ".") // standard library paths have no dot
}

// TestImports keeps HTTP and the rest of dtrcache out of this package,
// tests included.
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
			if !allowedImport(path) {
				t.Errorf("%s imports %s", name, path)
			}
		}
	}
}

// TestDependencies checks the whole dependency graph of the non-test
// package with `go list -deps`, so that an allowed import cannot bring
// net/http in through the back door.
func TestDependencies(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the go command")
	}
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go command not found")
	}
	cmd := exec.Command(goCmd, "list", "-deps", ".")
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=readonly")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		switch {
		case dep == "github.com/dtrcache/dtrcache/policy":
		case dep == "net/http" || strings.HasPrefix(dep, "net/http/"):
			t.Errorf("policy depends on %s", dep)
		case strings.HasPrefix(dep, "github.com/dtrcache/dtrcache/"):
			t.Errorf("policy depends on %s of this module", dep)
		}
	}
}
