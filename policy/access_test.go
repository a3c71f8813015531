package policy

import (
	"strings"
	"testing"
)

func testAccess(t *testing.T) *Access {
	t.Helper()
	a, err := NewAccess(AccessConfig{
		Admins: []string{"root"},
		Teams: []Team{
			{Name: "web", Members: []string{"alice", "bob"}},
			{Name: "ops", Members: []string{"carol"}},
			{Name: "readers", Members: []string{"dave", "alice"}},
		},
		Repositories: []RepoRule{
			{Pattern: "website/*", Grants: []Grant{
				{Team: "web", Actions: []Action{ActionPush}},
				{Team: "readers", Actions: []Action{ActionPull}},
			}},
			{Pattern: "infra/**", Grants: []Grant{{Team: "ops", Actions: []Action{ActionAdmin}}}},
			{Pattern: "library/*", Public: true, Grants: []Grant{{User: "erin", Actions: []Action{ActionPush}}}},
			{Pattern: "library/*", Grants: []Grant{{User: "frank", Actions: []Action{ActionPull, ActionPush}}}},
			{Pattern: "tools/build-*", Grants: []Grant{{User: "bob", Actions: []Action{ActionPull}}}},
			{Pattern: "exact/name", Grants: []Grant{{User: "dave", Actions: []Action{ActionPush}}}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestDecide(t *testing.T) {
	a := testAccess(t)
	tests := []struct {
		user, repo string
		action     Action
		allowed    bool
		reason     string // substring of the reason
	}{
		// Team grants, and what they imply.
		{"alice", "website/ui", ActionPull, true, "team web grants push on website/*"},
		{"alice", "website/ui", ActionPush, true, "team web grants push on website/*"},
		{"alice", "website/ui", ActionAdmin, false, "no rule grants admin on website/ui to alice"},
		{"dave", "website/ui", ActionPull, true, "team readers grants pull on website/*"},
		{"dave", "website/ui", ActionPush, false, "no rule grants push"},
		{"carol", "website/ui", ActionPull, false, "no rule grants pull on website/ui to carol"},
		// * stays within one segment; ** crosses them.
		{"alice", "website", ActionPull, false, ""},
		{"alice", "website/ui/nested", ActionPull, false, ""},
		{"carol", "infra", ActionPull, true, "team ops grants admin on infra/**"},
		{"carol", "infra/dns", ActionPush, true, ""},
		{"carol", "infra/k8s/node/agent", ActionAdmin, true, ""},
		{"carol", "infrastructure", ActionPull, false, ""},
		{"bob", "tools/build-go", ActionPull, true, "user bob has pull on tools/build-*"},
		{"bob", "tools/build-", ActionPull, true, ""},
		{"bob", "tools/test-go", ActionPull, false, ""},
		{"bob", "tools/build-go/x", ActionPull, false, ""},
		{"dave", "exact/name", ActionPush, true, "user dave has push on exact/name"},
		{"dave", "exact/names", ActionPush, false, ""},
		// Public repositories: pull for anyone, nothing more.
		{"", "library/alpine", ActionPull, true, "library/* is public"},
		{"", "library/alpine", ActionPush, false, "no rule grants push on library/alpine to anonymous"},
		{"", "website/ui", ActionPull, false, "to anonymous"},
		{"mallory", "library/alpine", ActionPull, true, "public"},
		{"mallory", "library/alpine", ActionPush, false, ""},
		{"erin", "library/alpine", ActionPush, true, "user erin has push on library/*"},
		// Matching rules are unioned.
		{"frank", "library/alpine", ActionPush, true, "user frank has push on library/*"},
		// Admins do everything, anywhere.
		{"root", "anything/at/all", ActionAdmin, true, "user root is an admin"},
		{"root", "website/ui", ActionPush, true, "admin"},
		// Odd input.
		{"alice", "website/ui", Action("delete"), false, `unknown action "delete"`},
		{"alice", "website/ui", Action(""), false, "unknown action"},
		{"root", "", ActionPull, false, "invalid repository name"},
		{"carol", "infra//dns", ActionPull, false, "invalid repository name"},
		{"carol", "infra/../website/ui", ActionPull, false, "invalid repository name"},
		{"carol", "/infra/dns", ActionPull, false, "invalid repository name"},
		{"alice", "website/ui/", ActionPull, false, "invalid repository name"},
	}
	for _, tt := range tests {
		name := tt.user + " " + string(tt.action) + " " + tt.repo
		t.Run(name, func(t *testing.T) {
			d := a.Decide(tt.user, tt.repo, tt.action)
			if d.Allowed != tt.allowed {
				t.Fatalf("Allowed = %v (%s), want %v", d.Allowed, d.Reason, tt.allowed)
			}
			if d.Reason == "" || !strings.Contains(d.Reason, tt.reason) {
				t.Fatalf("Reason = %q, want one containing %q", d.Reason, tt.reason)
			}
		})
	}
}

func TestIsAdmin(t *testing.T) {
	a := testAccess(t)
	for _, tt := range []struct {
		user string
		want bool
	}{{"root", true}, {"alice", false}, {"", false}, {"Root", false}} {
		t.Run(tt.user, func(t *testing.T) {
			if got := a.IsAdmin(tt.user); got != tt.want {
				t.Fatalf("IsAdmin(%q) = %v", tt.user, got)
			}
		})
	}
}

func TestNilAndEmptyAccessDeny(t *testing.T) {
	var nilAccess *Access
	if d := nilAccess.Decide("root", "a", ActionPull); d.Allowed {
		t.Fatal("nil Access allowed")
	}
	empty, err := NewAccess(AccessConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if d := empty.Decide("alice", "a", ActionPull); d.Allowed || d.Reason != "no rule grants pull on a to alice" {
		t.Fatalf("empty Access: %+v", d)
	}
}

func TestNewAccessErrors(t *testing.T) {
	teams := []Team{{Name: "web", Members: []string{"alice"}}}
	pull := []Action{ActionPull}
	tests := []struct {
		name    string
		cfg     AccessConfig
		wantErr string
	}{
		{name: "unknown team", cfg: AccessConfig{Teams: teams, Repositories: []RepoRule{
			{Pattern: "a", Grants: []Grant{{Team: "web", Actions: pull}}},
			{Pattern: "b"},
			{Pattern: "c", Grants: []Grant{{Team: "x", Actions: pull}}},
		}}, wantErr: `repositories[2].grants[0].team: unknown team "x"`},
		{name: "empty pattern", cfg: AccessConfig{Repositories: []RepoRule{{Pattern: ""}}}, wantErr: "repositories[0].pattern"},
		{name: "bad pattern", cfg: AccessConfig{Repositories: []RepoRule{{Pattern: "a/**b"}}}, wantErr: "repositories[0].pattern"},
		{name: "bad action", cfg: AccessConfig{Repositories: []RepoRule{{Pattern: "a", Grants: []Grant{{User: "u", Actions: []Action{"pull", "delete"}}}}}}, wantErr: `repositories[0].grants[0].actions[1]: unknown action "delete"`},
		{name: "upper-case action", cfg: AccessConfig{Repositories: []RepoRule{{Pattern: "a", Grants: []Grant{{User: "u", Actions: []Action{"Pull"}}}}}}, wantErr: "actions[0]"},
		{name: "no actions", cfg: AccessConfig{Repositories: []RepoRule{{Pattern: "a", Grants: []Grant{{User: "u"}}}}}, wantErr: "repositories[0].grants[0].actions: empty"},
		{name: "user and team", cfg: AccessConfig{Teams: teams, Repositories: []RepoRule{{Pattern: "a", Grants: []Grant{{User: "u", Team: "web", Actions: pull}}}}}, wantErr: "repositories[0].grants[0]: both user and team"},
		{name: "neither user nor team", cfg: AccessConfig{Repositories: []RepoRule{{Pattern: "a", Grants: []Grant{{Actions: pull}}}}}, wantErr: "repositories[0].grants[0]: neither"},
		{name: "empty admin", cfg: AccessConfig{Admins: []string{"root", ""}}, wantErr: "admins[1]"},
		{name: "empty team name", cfg: AccessConfig{Teams: []Team{{Members: []string{"a"}}}}, wantErr: "teams[0].name"},
		{name: "duplicate team", cfg: AccessConfig{Teams: []Team{{Name: "web"}, {Name: "web"}}}, wantErr: `teams[1].name: team "web" defined twice`},
		{name: "empty member", cfg: AccessConfig{Teams: []Team{{Name: "web", Members: []string{"a", ""}}}}, wantErr: "teams[0].members[1]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewAccess(tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestPatternMatch(t *testing.T) {
	tests := []struct {
		pattern, repo string
		want          bool
	}{
		{"website/ui", "website/ui", true},
		{"website/ui", "website/ui2", false},
		{"website/*", "website/ui", true},
		{"website/*", "website", false},
		{"website/*", "website/ui/x", false},
		{"*", "alpine", true},
		{"*", "library/alpine", false},
		{"**", "alpine", true},
		{"**", "a/b/c/d", true},
		{"a/**", "a", true},
		{"a/**", "a/b/c", true},
		{"a/**", "ab", false},
		{"**/x", "x", true},
		{"**/x", "a/b/x", true},
		{"**/x", "a/b/xy", false},
		{"a/**/b", "a/b", true},
		{"a/**/b", "a/x/y/b", true},
		{"a/**/b", "a/x/y/c", false},
		{"a/**/b/**/c", "a/1/b/2/b/3/c", true},
		{"a/**/b/**/c", "a/1/c/2/b", false},
		{"**/*-dev", "team/app-dev", true},
		{"**/*-dev", "team/app-prod", false},
		{"web*", "web", true},
		{"web*", "website", true},
		{"*site", "website", true},
		{"w*b*e", "website", true},
		{"w*b*e", "websites", false},
		{"*/*", "a/b", true},
		{"*/*", "a", false},
		{"a/*/c", "a/b/c", true},
		{"a/*/c", "a/b/b/c", false},
	}
	for _, tt := range tests {
		t.Run(tt.pattern+" "+tt.repo, func(t *testing.T) {
			p, err := compilePattern(tt.pattern)
			if err != nil {
				t.Fatal(err)
			}
			if got := p.match(tt.repo); got != tt.want {
				t.Fatalf("match = %v, want %v", got, tt.want)
			}
			if got := naiveMatch(tt.pattern, tt.repo); got != tt.want {
				t.Fatalf("naiveMatch = %v, want %v (the reference is wrong)", got, tt.want)
			}
		})
	}
}

func TestCompilePatternErrors(t *testing.T) {
	for _, p := range []string{"", "/a", "a/", "a//b", "a/**b", "**a", "a/b**", "a?", "a/[bc]", "{a,b}", `a\b`} {
		t.Run(p, func(t *testing.T) {
			if _, err := compilePattern(p); err == nil {
				t.Fatalf("compilePattern(%q) succeeded", p)
			}
		})
	}
}

// naiveMatch is a slow, obviously correct matcher: the reference for
// TestPatternMatch and FuzzPatternMatch.
func naiveMatch(pattern, repo string) bool {
	return naiveSegments(strings.Split(pattern, "/"), strings.Split(repo, "/"))
}

func naiveSegments(segs, names []string) bool {
	if len(segs) == 0 {
		return len(names) == 0
	}
	if segs[0] == "**" {
		for i := 0; i <= len(names); i++ {
			if naiveSegments(segs[1:], names[i:]) {
				return true
			}
		}
		return false
	}
	return len(names) > 0 && naiveSegment(segs[0], names[0]) && naiveSegments(segs[1:], names[1:])
}

func naiveSegment(seg, name string) bool {
	if seg == "" {
		return name == ""
	}
	if seg[0] == '*' {
		for i := 0; i <= len(name); i++ {
			if naiveSegment(seg[1:], name[i:]) {
				return true
			}
		}
		return false
	}
	return name != "" && seg[0] == name[0] && naiveSegment(seg[1:], name[1:])
}
