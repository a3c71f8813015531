package cache

import "testing"

func TestRangeStart(t *testing.T) {
	tests := []struct {
		h             string
		start, length int64
		ok            bool
	}{
		{"bytes=100-", 100, -1, true},
		{"bytes=100-199", 100, 100, true},
		{"bytes=-5", 0, 0, false},
		{"bytes=5-1", 0, 0, false},
		{"bytes=1-2,4-5", 0, 0, false},
		{"items=1-2", 0, 0, false},
		{"bytes=x-", 0, 0, false},
		{"", 0, 0, false},
	}
	for _, tt := range tests {
		s, l, ok := rangeStart(tt.h)
		if ok != tt.ok || ok && (s != tt.start || l != tt.length) {
			t.Errorf("rangeStart(%q) = %d, %d, %v", tt.h, s, l, ok)
		}
	}
}

func FuzzRangeStart(f *testing.F) {
	f.Add("bytes=0-")
	f.Add("bytes=9223372036854775807-9223372036854775807")
	f.Fuzz(func(t *testing.T, h string) {
		s, l, ok := rangeStart(h)
		if ok && (s < 0 || l == 0 || l < -1) {
			t.Fatalf("rangeStart(%q) = %d, %d", h, s, l)
		}
	})
}

func TestWithNS(t *testing.T) {
	tests := []struct{ link, ns, want string }{
		{`</v2/a/tags/list?last=b&n=2>; rel="next"`, "docker.io", `</v2/a/tags/list?last=b&n=2&ns=docker.io>; rel="next"`},
		{`</v2/a/tags/list?last=b>; rel="next"`, "", `</v2/a/tags/list?last=b>; rel="next"`},
		{`garbage`, "docker.io", `garbage`},
	}
	for _, tt := range tests {
		if got := withNS(tt.link, tt.ns); got != tt.want {
			t.Errorf("withNS(%q, %q) = %q, want %q", tt.link, tt.ns, got, tt.want)
		}
	}
}
