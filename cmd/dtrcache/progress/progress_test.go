package progress

import (
	"bytes"
	"testing"
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

// TestNewBarSilentOffTerminal: a bar writing to a buffer (not a terminal)
// prints nothing, so logs and piped output stay clean.
func TestNewBarSilentOffTerminal(t *testing.T) {
	var out bytes.Buffer
	bar := NewBar(100, "pull", &out)
	if err := bar.Add64(60); err != nil {
		t.Fatal(err)
	}
	if out.Len() != 0 {
		t.Fatalf("bar wrote %q before finishing", out.String())
	}
	if err := bar.Finish(); err != nil {
		t.Fatal(err)
	}
	if out.Len() != 0 {
		t.Fatalf("bar wrote %q off a terminal", out.String())
	}
}
