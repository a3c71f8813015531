package cache

import "testing"

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
