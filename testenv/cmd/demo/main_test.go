package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// TestDemo runs the README's demo with small sizes and a short
// WAN delay, and checks the table it prints.
func TestDemo(t *testing.T) {
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	code := run(ctx, []string{"--layers", "2", "--layer-size", "512KiB", "--latency", "10ms", "--bandwidth", "400Mbit", "--dir", t.TempDir()}, &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errOut.String())
	}
	s := out.String()
	for _, want := range []string{"direct from the origin", "cold, through the cache", "warm, from the cache", "speed-up", "the cache saved", "it filled each once (3 fills"} {
		if !strings.Contains(s, want) {
			t.Fatalf("output lacks %q:\n%s", want, s)
		}
	}
}

func TestDemoRejectsBadFlags(t *testing.T) {
	var errOut bytes.Buffer
	if code := run(context.Background(), []string{"--bandwidth", "fast"}, &bytes.Buffer{}, &errOut); code != 1 || !strings.Contains(errOut.String(), "--bandwidth") {
		t.Fatalf("exit %d, %q", code, errOut.String())
	}
}
