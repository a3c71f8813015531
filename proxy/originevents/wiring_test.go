package originevents

import "testing"

// TestPaths: the webhooks API gets exactly its own paths under /api/v0
// (the policies API has the other repository paths).
func TestPaths(t *testing.T) {
	for _, tt := range []struct {
		path string
		want bool
	}{
		{"/api/v0/webhooks", true},
		{"/api/v0/webhooks/test", true},
		{"/api/v0/webhooks/0123/deliveries", true},
		{"/api/v0/namespaces/team/webhooks", true},
		{"/api/v0/repositories/team/app/webhooks", true},
		{"/api/v0/repositories/team/webhooks", true},
		{"/api/v0/webhooksx", false},
		{"/api/v0/repositories/team/app/promotionPolicies", false},
		{"/api/v0/repositories/team/webhooks/x", false},
		{"/api/v0/jobs", false},
		{NotificationsPath, false},
	} {
		if got := isWebhooksPath(tt.path); got != tt.want {
			t.Errorf("isWebhooksPath(%q) = %v, want %v", tt.path, got, tt.want)
		}
	}
}

// TestNextLink: the catalog's pagination (distribution's Link header).
func TestNextLink(t *testing.T) {
	for _, tt := range []struct{ header, want string }{
		{`</v2/_catalog?last=b&n=1000>; rel="next"`, "/v2/_catalog?last=b&n=1000"},
		{`<http://127.0.0.1:5000/v2/_catalog?last=a%2Fb&n=2>; rel="next"`, "/v2/_catalog?last=a%2Fb&n=2"},
		{"", ""},
		{"garbage", ""},
		{"<>", ""},
	} {
		if got := nextLink(tt.header); got != tt.want {
			t.Errorf("nextLink(%q) = %q, want %q", tt.header, got, tt.want)
		}
	}
}
