package casstore

import (
	"errors"
	"strings"
	"testing"
)

func TestParseDigest(t *testing.T) {
	h64 := strings.Repeat("a", 64)
	h128 := strings.Repeat("0", 128)
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"sha256", "sha256:" + h64, true},
		{"sha512", "sha512:" + h128, true},
		{"empty", "", false},
		{"no colon", "sha256" + h64, false},
		{"unknown alg", "md5:" + h64, false},
		{"upper-case alg", "SHA256:" + h64, false},
		{"upper-case hex", "sha256:" + strings.Repeat("A", 64), false},
		{"short", "sha256:" + h64[:63], false},
		{"long", "sha256:" + h64 + "a", false},
		{"sha512 with sha256 length", "sha512:" + h64, false},
		{"slash", "sha256:" + h64[:32] + "/" + h64[:31], false},
		{"dotdot", "sha256:../" + h64[:61], false},
		{"nul", "sha256:" + h64[:63] + "\x00", false},
		{"space", "sha256: " + h64[:63], false},
		{"non-hex", "sha256:" + strings.Repeat("g", 64), false},
		{"double colon", "sha256::" + h64[:63], false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := ParseDigest(tt.in)
			if tt.ok {
				if err != nil {
					t.Fatalf("ParseDigest(%q) = %v", tt.in, err)
				}
				if d.String() != tt.in {
					t.Fatalf("String() = %q, want %q", d.String(), tt.in)
				}
				return
			}
			if err == nil {
				t.Fatalf("ParseDigest(%q) accepted", tt.in)
			}
			if !errors.Is(err, ErrInvalidDigest) {
				t.Fatalf("error %v does not wrap ErrInvalidDigest", err)
			}
			var de *DigestError
			if !errors.As(err, &de) || de.Reason == "" {
				t.Fatalf("error %v is not a *DigestError with a reason", err)
			}
		})
	}
}

func TestFromBytes(t *testing.T) {
	d := FromBytes([]byte("hello"))
	if d.String() != "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824" {
		t.Fatalf("FromBytes = %s", d)
	}
	if !d.matches(func() []byte { h := d.NewHash(); h.Write([]byte("hello")); return h.Sum(nil) }()) {
		t.Fatal("matches failed for the right content")
	}
}

// FuzzParseDigest checks that the parser never panics, that whatever it
// accepts round-trips exactly and is safe to use as a path element.
func FuzzParseDigest(f *testing.F) {
	f.Add("sha256:" + strings.Repeat("a", 64))
	f.Add("sha512:" + strings.Repeat("f", 128))
	f.Add("sha256:../../etc/passwd")
	f.Add("sha256:" + strings.Repeat("A", 64))
	f.Add("")
	f.Add(":")
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDigest(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidDigest) {
				t.Fatalf("error does not wrap ErrInvalidDigest: %v", err)
			}
			return
		}
		if d.String() != s {
			t.Fatalf("round trip: %q -> %q", s, d.String())
		}
		if strings.ContainsAny(d.Hex(), "/\\.\x00") || len(d.Hex()) != hexLen(d.Algorithm()) {
			t.Fatalf("accepted unsafe digest %q", s)
		}
	})
}
