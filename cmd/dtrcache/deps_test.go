package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// forbiddenDeps are the packages the production binary must not link: the
// test environment (in-process registries, the WAN emulator, the demo),
// the benchmark harness, and distribution's registry server, whose
// handlers bring redis, OpenTelemetry and logrus clients along.
var forbiddenDeps = []string{
	"github.com/dtrcache/dtrcache/testenv",
	"github.com/dtrcache/dtrcache/benchmarks",
	"github.com/distribution/distribution/v3/registry",
}

// TestBinaryDependencies checks the whole dependency graph of the
// dtrcache command (its non-test packages, as `go build` links them),
// like go-containerregistry's depcheck: an import anywhere below
// cmd/dtrcache that pulls one of forbiddenDeps in fails here.
func TestBinaryDependencies(t *testing.T) {
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
	deps := strings.Fields(string(out))
	if len(deps) < 50 {
		t.Fatalf("go list -deps listed %d packages; expected the binary's whole graph", len(deps))
	}
	for _, dep := range deps {
		for _, bad := range forbiddenDeps {
			if dep == bad || strings.HasPrefix(dep, bad+"/") {
				t.Errorf("cmd/dtrcache depends on %s", dep)
			}
		}
	}
}
