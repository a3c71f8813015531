package progress

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestHuman(t *testing.T) {
	tests := []struct {
		v    int64
		unit string
		want string
	}{
		{0, "B", "0 B"},
		{999, "B", "999 B"},
		{1000, "B", "1.0 kB"},
		{9_100, "B", "9.1 kB"},
		{95_900_000, "B", "95.9 MB"},
		{200_000_000, "bit/s", "200.0 Mbit/s"},
		{3_500_000_000_000_000, "B", "3500.0 TB"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := Human(tt.v, tt.unit); got != tt.want {
				t.Fatalf("Human(%d, %q) = %q, want %q", tt.v, tt.unit, got, tt.want)
			}
		})
	}
}

// TestBarPrintsPlainLinesOffTerminal is the regression test of progress
// that did not show when the output was not a terminal (the demo's bars
// under CI): a Bar writing to a pipe or a log prints a plain line at most
// every LineEvery, and one when it finishes with the time taken.
func TestBarPrintsPlainLinesOffTerminal(t *testing.T) {
	var out bytes.Buffer
	now := time.Unix(1000, 0)
	clock := func() time.Time { return now }
	bar := newBar(100_000_000, "cold, through the cache", &out, false, clock)
	step := func(d time.Duration, n int64) {
		now = now.Add(d)
		if err := bar.Add64(n); err != nil {
			t.Fatal(err)
		}
	}
	step(100*time.Millisecond, 10_000_000) // too soon for a line
	if out.Len() != 0 {
		t.Fatalf("a line before LineEvery: %q", out.String())
	}
	step(900*time.Millisecond, 15_000_000) // 25 MB after 1 s
	step(500*time.Millisecond, 25_000_000) // not yet
	bar.Describe("warm, from the cache")
	step(500*time.Millisecond, 50_000_000) // 100 MB after 2 s
	if err := bar.Finish(); err != nil {
		t.Fatal(err)
	}
	bar.Finish() // once only
	want := "" +
		"  cold, through the cache    25.0 MB of 100.0 MB (25 %), 25.0 MB/s\n" +
		"  warm, from the cache       100.0 MB of 100.0 MB (100 %), 50.0 MB/s\n" +
		"  warm, from the cache       100.0 MB of 100.0 MB (100 %), 50.0 MB/s, done in 2.0s\n"
	if out.String() != want {
		t.Fatalf("lines:\n%s\nwant:\n%s", out.String(), want)
	}
}

// TestBarOnATerminalDrawsABar: on a terminal the bar redraws one line
// (carriage returns), with the rate, and ends it on Finish.
func TestBarOnATerminalDrawsABar(t *testing.T) {
	var out bytes.Buffer
	bar := newBar(1000, "pull", &out, true, time.Now)
	bar.Write(make([]byte, 1000))
	bar.Finish()
	if s := out.String(); !strings.Contains(s, "\r") || !strings.Contains(s, "100%") || !strings.HasSuffix(s, "\n") {
		t.Fatalf("terminal output %q", s)
	}
}
