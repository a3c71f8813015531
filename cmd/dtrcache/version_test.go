package main

import (
	"bytes"
	"context"
	"runtime"
	"strings"
	"testing"
)

func TestBuildInfoString(t *testing.T) {
	tests := []struct {
		name string
		b    buildInfo
		want string
	}{
		{"stamped", buildInfo{Version: "v1.2.0", Commit: "0123456789abcdef0123", Date: "2026-01-02T03:04:05Z", Go: "go1.26.8", Platform: "linux/arm64"},
			"dtrcache v1.2.0 (commit 0123456789ab, built 2026-01-02T03:04:05Z, go1.26.8, linux/arm64)"},
		{"modified tree", buildInfo{Version: "dev", Commit: "0123456789abcdef", Modified: true, Go: "go1.26.8", Platform: "linux/amd64"},
			"dtrcache dev (commit 0123456789ab-dirty, go1.26.8, linux/amd64)"},
		{"nothing known", buildInfo{Version: "dev", Go: "go1.26.8", Platform: "linux/amd64"}, "dtrcache dev (go1.26.8, linux/amd64)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.b.String(); got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestVersionCommandPrintsStamps(t *testing.T) {
	defer func(v, c, d string) { version, commit, date = v, c, d }(version, commit, date)
	version, commit, date = "v3.4.5", "fedcba9876543210", "2026-02-03T04:05:06Z"
	var out bytes.Buffer
	if code := run(context.Background(), []string{"version"}, &out, &out); code != 0 {
		t.Fatalf("exit %d", code)
	}
	want := "dtrcache v3.4.5 (commit fedcba987654, built 2026-02-03T04:05:06Z, " + runtime.Version() + ", " + runtime.GOOS + "/" + runtime.GOARCH + ")"
	if got := strings.TrimSpace(out.String()); got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}
