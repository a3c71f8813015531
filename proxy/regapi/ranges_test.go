package regapi

import "testing"

func TestParseRange(t *testing.T) {
	tests := []struct {
		h             string
		size          int64
		start, length int64
		ok, unsat     bool
	}{
		{"bytes=0-99", 1000, 0, 100, true, false},
		{"bytes=900-", 1000, 900, 100, true, false},
		{"bytes=900-5000", 1000, 900, 100, true, false},
		{"bytes=-100", 1000, 900, 100, true, false},
		{"bytes=-5000", 1000, 0, 1000, true, false},
		{"bytes=999-999", 1000, 999, 1, true, false},
		{"bytes=1000-", 1000, 0, 0, false, true},
		{"bytes=1000-2000", 1000, 0, 0, false, true},
		{"bytes=-0", 1000, 0, 0, false, true},
		{"bytes=0-0", 0, 0, 0, false, true},
		{"bytes=5-1", 1000, 0, 0, false, false},
		{"bytes=0-1,5-6", 1000, 0, 0, false, false},
		{"items=0-1", 1000, 0, 0, false, false},
		{"bytes=a-b", 1000, 0, 0, false, false},
		{"bytes=+1-2", 1000, 0, 0, false, false},
		{"bytes=--1", 1000, 0, 0, false, false},
		{"bytes=1", 1000, 0, 0, false, false},
		{"bytes=0-99", -1, 0, 0, false, false},
		{"", 1000, 0, 0, false, false},
		{"bytes= 10 - 19 ", 1000, 10, 10, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.h, func(t *testing.T) {
			r, ok, unsat := ParseRange(tt.h, tt.size)
			if ok != tt.ok || unsat != tt.unsat || (ok && (r.Start != tt.start || r.Length != tt.length)) {
				t.Fatalf("ParseRange(%q, %d) = %+v, %v, %v", tt.h, tt.size, r, ok, unsat)
			}
		})
	}
	if got := (ByteRange{Start: 10, Length: 5}).ContentRange(100); got != "bytes 10-14/100" {
		t.Fatalf("ContentRange = %q", got)
	}
}

// FuzzParseRange checks that an accepted range always lies inside the blob.
func FuzzParseRange(f *testing.F) {
	f.Add("bytes=0-99", int64(1000))
	f.Add("bytes=-1", int64(1))
	f.Add("bytes=9223372036854775806-", int64(9223372036854775807))
	f.Add("bytes=0-9223372036854775807", int64(10))
	f.Fuzz(func(t *testing.T, h string, size int64) {
		r, ok, unsat := ParseRange(h, size)
		if ok && unsat {
			t.Fatal("both ok and unsatisfiable")
		}
		if ok && (r.Start < 0 || r.Length <= 0 || r.Start+r.Length > size || r.Start+r.Length < r.Start) {
			t.Fatalf("ParseRange(%q, %d) = %+v outside the blob", h, size, r)
		}
	})
}
