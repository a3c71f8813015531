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
		{"bytes=5-1", 1000, 0, 0, false, true},
		{"bytes=500-0", 2048, 0, 0, false, true},
		{"bytes=5000-10", 1000, 0, 0, false, true},
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

func TestParseRangeStart(t *testing.T) {
	tests := []struct {
		h             string
		start, length int64
		ok            bool
	}{
		{"bytes=100-", 100, -1, true},
		{"bytes=100-199", 100, 100, true},
		{"bytes=0-9223372036854775807", 0, -1, true},
		{"bytes=-5", 0, 0, false},
		{"bytes=5-1", 0, 0, false},
		{"bytes=1-2,4-5", 0, 0, false},
		{"items=1-2", 0, 0, false},
		{"bytes=x-", 0, 0, false},
		{"", 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.h, func(t *testing.T) {
			s, l, ok := ParseRangeStart(tt.h)
			if ok != tt.ok || ok && (s != tt.start || l != tt.length) {
				t.Fatalf("ParseRangeStart(%q) = %d, %d, %v", tt.h, s, l, ok)
			}
		})
	}
}

func FuzzParseRangeStart(f *testing.F) {
	f.Add("bytes=0-")
	f.Add("bytes=9223372036854775807-9223372036854775807")
	f.Fuzz(func(t *testing.T, h string) {
		s, l, ok := ParseRangeStart(h)
		if ok && (s < 0 || l == 0 || l < -1) {
			t.Fatalf("ParseRangeStart(%q) = %d, %d", h, s, l)
		}
	})
}

// TestRangeHeader: what a fill asks an upstream for, and that the server
// side reads it back as the same range.
func TestRangeHeader(t *testing.T) {
	tests := []struct {
		off, length int64
		want        string
	}{
		{0, -1, ""},
		{0, 10, "bytes=0-9"},
		{100, -1, "bytes=100-"},
		{100, 1, "bytes=100-100"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			got := RangeHeader(tt.off, tt.length)
			if got != tt.want {
				t.Fatalf("RangeHeader(%d, %d) = %q, want %q", tt.off, tt.length, got, tt.want)
			}
			if got == "" {
				return
			}
			if s, l, ok := ParseRangeStart(got); !ok || s != tt.off || l != tt.length {
				t.Fatalf("ParseRangeStart(%q) = %d, %d, %v", got, s, l, ok)
			}
		})
	}
}

func TestParseContentRange(t *testing.T) {
	tests := []struct {
		h                 string
		start, end, total int64
		ok                bool
	}{
		{"bytes 0-9/100", 0, 9, 100, true},
		{"bytes 5-5/*", 5, 5, -1, true},
		{"bytes 5-4/100", 0, 0, 0, false},
		{"bytes 0-100/100", 0, 0, 0, false},
		{"bytes */100", 0, 0, 0, false},
		{"items 0-1/2", 0, 0, 0, false},
		{"bytes -1-2/3", 0, 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.h, func(t *testing.T) {
			s, e, tot, ok := ParseContentRange(tt.h)
			if ok != tt.ok || (ok && (s != tt.start || e != tt.end || tot != tt.total)) {
				t.Fatalf("ParseContentRange(%q) = %d %d %d %v", tt.h, s, e, tot, ok)
			}
		})
	}
	r := ByteRange{Start: 10, Length: 5}
	if s, e, tot, ok := ParseContentRange(r.ContentRange(100)); !ok || s != 10 || e != 14 || tot != 100 {
		t.Fatalf("ParseContentRange(ContentRange) = %d %d %d %v", s, e, tot, ok)
	}
}

func FuzzParseContentRange(f *testing.F) {
	f.Add("bytes 0-9/100")
	f.Add("bytes 5-5/*")
	f.Fuzz(func(t *testing.T, h string) {
		s, e, tot, ok := ParseContentRange(h)
		if ok && (s < 0 || e < s || tot != -1 && tot <= e) {
			t.Fatalf("ParseContentRange(%q) = %d %d %d", h, s, e, tot)
		}
	})
}
