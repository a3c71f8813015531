package policy

import (
	"regexp"
	"strings"
	"testing"
)

func TestValidName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"asia", true},
		{"cache-asia.example.org", true},
		{"a", true},
		{"0_x", true},
		{strings.Repeat("a", 63), true},
		{strings.Repeat("a", 64), false},
		{"", false},
		{"Asia", false},
		{"asia!", false},
		{"-asia", false},
		{".asia", false},
		{"as ia", false},
		{"asia/1", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ValidName(tt.name); got != tt.ok {
				t.Fatalf("ValidName(%q) = %v, want %v", tt.name, got, tt.ok)
			}
		})
	}
}

// FuzzValidName checks ValidName against the pattern the configuration
// and the origin's API used before it: ^[a-z0-9][a-z0-9._-]{0,62}$.
func FuzzValidName(f *testing.F) {
	re := regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)
	for _, s := range []string{"asia", "", "A", "a-", strings.Repeat("b", 64), "é"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := ValidName(s), re.MatchString(s); got != want {
			t.Fatalf("ValidName(%q) = %v, pattern says %v", s, got, want)
		}
	})
}
