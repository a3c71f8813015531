package depcheck

import (
	"slices"
	"testing"
)

// TestGraph loads this package's own graph: the standard library only,
// reached through the imports the source names.
func TestGraph(t *testing.T) {
	g := Load(t, ".")
	if g.Root != "github.com/dtrcache/dtrcache/testenv/depcheck" {
		t.Fatalf("root %q", g.Root)
	}
	pkgs := g.Packages()
	if pkgs[len(pkgs)-1] != g.Root || !g.Contains("os/exec") || !g.Contains("strings") {
		t.Fatalf("packages %v", pkgs)
	}
	for _, p := range pkgs {
		if p != g.Root && !Stdlib(p) {
			t.Errorf("depends on %s, outside the standard library", p)
		}
	}
	// testing imports flag directly: the shortest chain is root → testing → flag.
	if path := g.Path("flag", nil); !slices.Equal(path, []string{g.Root, "testing", "flag"}) {
		t.Fatalf("Path(flag) = %v", path)
	}
	// Not through testing or os/exec: flag is still reached (os/exec
	// does not import it, but other packages do), or not at all.
	if path := g.Path("flag", func(p string) bool { return p != "testing" }); slices.Contains(path, "testing") {
		t.Fatalf("Path(flag, not through testing) = %v", path)
	}
	if path := g.Path("net/http", nil); path != nil {
		t.Fatalf("Path(net/http) = %v, want none", path)
	}
	if imps := g.Imports(g.Root); !slices.Contains(imps, "os/exec") || slices.Contains(imps, "flag") {
		t.Fatalf("Imports(root) = %v", imps)
	}
	if Chain([]string{"a", "b"}) != "a → b" {
		t.Fatal(Chain([]string{"a", "b"}))
	}
}

func TestStdlib(t *testing.T) {
	for path, want := range map[string]bool{
		"net/http": true, "vendor/golang.org/x/net/idna": true, "fmt": true,
		"github.com/dgraph-io/badger/v4": false, "go.uber.org/zap": false, "golang.org/x/sync/errgroup": false,
	} {
		if got := Stdlib(path); got != want {
			t.Errorf("Stdlib(%q) = %v, want %v", path, got, want)
		}
	}
}
