package main

import (
	"strings"
	"testing"

	"github.com/dtrcache/dtrcache/testenv/depcheck"
)

// forbiddenDeps are the packages the production binary must not link: the
// test environment (in-process registries, the WAN emulator, the demo),
// the benchmark harness, distribution's registry server, whose handlers
// bring redis, OpenTelemetry and logrus clients along, etcd's server (the
// origin links the etcd client only; the embedded members of the tests
// stay in the tests), and the Kubernetes API types the Helm chart's tests
// decode with (deploy/helm).
var forbiddenDeps = []string{
	"github.com/dtrcache/dtrcache/testenv",
	"github.com/dtrcache/dtrcache/benchmarks",
	"github.com/dtrcache/dtrcache/deploy",
	"github.com/distribution/distribution/v3/registry",
	"go.etcd.io/etcd/server",
	"go.etcd.io/raft",
	"go.etcd.io/bbolt",
	"k8s.io/api",
	"k8s.io/apimachinery",
	"github.com/prometheus-operator/prometheus-operator",
}

// TestBinaryDependencies checks the whole dependency graph of the
// dtrcache command (its non-test packages, as `go build` links them): an
// import anywhere below cmd/dtrcache that pulls one of forbiddenDeps in
// fails here, with the chain of imports that does it.
func TestBinaryDependencies(t *testing.T) {
	g := depcheck.Load(t, ".")
	if n := len(g.Packages()); n < 50 {
		t.Fatalf("go list -deps listed %d packages; expected the binary's whole graph", n)
	}
	for _, dep := range g.Packages() {
		for _, bad := range forbiddenDeps {
			if dep == bad || strings.HasPrefix(dep, bad+"/") {
				t.Errorf("cmd/dtrcache depends on %s: %s", dep, depcheck.Chain(g.Path(dep, nil)))
			}
		}
	}
}
