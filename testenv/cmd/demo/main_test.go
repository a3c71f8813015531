package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestDemo runs the README's demo with small sizes and a short
// WAN delay, and checks the table it prints and its progress: written to
// a buffer, not a terminal, each pull prints plain progress lines (the
// regression test of the demo's bars that showed nothing when its output
// was a pipe or a CI log), the last one with every byte of the image and
// the time taken, and nothing redraws a line.
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
	if strings.ContainsAny(s, "\r\x1b") {
		t.Fatalf("output for a non-terminal redraws lines (carriage returns or escapes):\n%q", s)
	}
	for _, pull := range []string{"direct from the origin", "cold, through the cache", "warm, from the cache"} {
		last := regexp.MustCompile(`(?m)^  ` + regexp.QuoteMeta(pull) + ` +([\d.]+ [kMG]?B) of ([\d.]+ [kMG]?B) \(100 %\), [\d.]+ [kMG]?B/s, done in \d+\.\ds$`)
		m := last.FindStringSubmatch(s)
		if m == nil || m[1] != m[2] {
			t.Fatalf("no plain progress line ending the pull %q with every byte (%v):\n%s", pull, m, s)
		}
	}
}

func TestDemoRejectsBadFlags(t *testing.T) {
	var errOut bytes.Buffer
	if code := run(context.Background(), []string{"--bandwidth", "fast"}, &bytes.Buffer{}, &errOut); code != 1 || !strings.Contains(errOut.String(), "--bandwidth") {
		t.Fatalf("exit %d, %q", code, errOut.String())
	}
}

// syncBuffer is a buffer written by the demo and read by the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestDemoKeepPrintsTheConsole: with --keep the demo stays up and prints
// the web console's URL and accounts; the console answers there.
func TestDemoKeepPrintsTheConsole(t *testing.T) {
	var out, errOut syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"--keep", "--layers", "1", "--layer-size", "256KiB", "--latency", "1ms", "--dir", t.TempDir()}, &out, &errOut)
	}()
	consoleURL := regexp.MustCompile(`The web console: (http://\S+/console/)`)
	deadline := time.Now().Add(2 * time.Minute)
	var m []string
	for m == nil {
		select {
		case code := <-done:
			t.Fatalf("the demo ended (%d) before printing the console:\n%s\n%s", code, out.String(), errOut.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no console URL printed:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
		m = consoleURL.FindStringSubmatch(out.String())
	}
	if !strings.Contains(out.String(), `sign in as admin`) || !strings.Contains(out.String(), `password "dtrcache"`) {
		t.Errorf("the accounts are not printed:\n%s", out.String())
	}
	resp, err := http.Get(m[1] + "signin")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `name="username"`) {
		t.Fatalf("the console's sign-in page: %d %s", resp.StatusCode, body)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
}
