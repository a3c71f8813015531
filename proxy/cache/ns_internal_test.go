package cache

import (
	"testing"

	"github.com/dtrcache/dtrcache/proxy/upstream"
)

// TestMirrorPickDockerHub: containerd sends ?ns=docker.io for Docker Hub,
// whose registry is registry-1.docker.io: an upstream at that URL takes
// docker.io without a hosts entry. Nothing is fetched.
func TestMirrorPickDockerHub(t *testing.T) {
	hub, err := upstream.New(upstream.Config{URLs: []string{"https://registry-1.docker.io"}})
	if err != nil {
		t.Fatal(err)
	}
	other, err := upstream.New(upstream.Config{URLs: []string{"https://ghcr.io"}})
	if err != nil {
		t.Fatal(err)
	}
	m := &Mirror{Upstreams: []MirrorUpstream{{Name: "ghcr", Client: other}, {Name: "hub", Client: hub}}}
	for ns, want := range map[string]string{"docker.io": "hub", "registry-1.docker.io": "hub", "ghcr.io": "ghcr", "GHCR.IO": "ghcr", "quay.io": ""} {
		up, err := m.pick(ns)
		switch {
		case want == "" && err == nil:
			t.Errorf("pick(%q) = %s, want an error", ns, up.Name)
		case want != "" && (err != nil || up.Name != want):
			t.Errorf("pick(%q) = %v, %v; want %s", ns, up, err, want)
		}
	}
}
