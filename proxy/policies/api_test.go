package policies_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/dtrcache/dtrcache/proxy/jobs"
	"github.com/dtrcache/dtrcache/proxy/state"
)

// regError is a registry-style error body.
type regError struct {
	Errors []struct {
		Code, Message string
		Detail        []map[string]string
	}
}

func TestAPIPermissions(t *testing.T) {
	e := newEnv(t, envOptions{allowPrivate: true})
	prom := `{"enabled":true,"targetRepository":"qa/app","rules":[]}`
	tests := []struct {
		name, user, method, path, body string
		want                           int
	}{
		{"anonymous", "", http.MethodGet, "/api/v0/repositories/dev/app/promotionPolicies", "", http.StatusUnauthorized},
		{"repo admin creates", "alice", http.MethodPost, "/api/v0/repositories/dev/app/promotionPolicies", prom, http.StatusCreated},
		{"push is not admin", "bob", http.MethodPost, "/api/v0/repositories/dev/app/promotionPolicies", prom, http.StatusForbidden},
		{"pull is not admin", "bob", http.MethodGet, "/api/v0/repositories/dev/app/promotionPolicies", "", http.StatusForbidden},
		{"repo admin lists", "alice", http.MethodGet, "/api/v0/repositories/dev/app/promotionPolicies", "", http.StatusOK},
		{"target needs push", "alice", http.MethodPost, "/api/v0/repositories/dev/app/promotionPolicies", `{"enabled":true,"targetRepository":"prod/app"}`, http.StatusForbidden},
		{"admin of another repo", "alice", http.MethodPost, "/api/v0/repositories/qa/app/pushMirroringPolicies",
			`{"enabled":true,"remoteHost":"` + e.eu.URL + `","remoteRepository":"prod/app"}`, http.StatusForbidden},
		{"admin anywhere", "admin", http.MethodPost, "/api/v0/repositories/qa/app/pushMirroringPolicies",
			`{"enabled":true,"remoteHost":"` + e.eu.URL + `","remoteRepository":"prod/app"}`, http.StatusCreated},
		{"poll into a repo needs admin there", "bob", http.MethodPost, "/api/v0/repositories/mirror/x/pollMirroringPolicies",
			`{"enabled":true,"remoteHost":"` + e.eu.URL + `","remoteRepository":"library/x"}`, http.StatusForbidden},
		{"jobs of others are hidden", "bob", http.MethodGet, "/api/v0/jobs/nope", "", http.StatusNotFound},
		{"unknown kind", "admin", http.MethodGet, "/api/v0/repositories/dev/app/fooPolicies", "", http.StatusNotFound},
		{"bad repository name", "admin", http.MethodGet, "/api/v0/repositories/Dev/App/promotionPolicies", "", http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out regError
			code := e.call(tt.user, tt.method, tt.path, tt.body, &out)
			if code != tt.want {
				t.Fatalf("%s %s as %q: %d %+v, want %d", tt.method, tt.path, tt.user, code, out, tt.want)
			}
			if code >= 400 && (len(out.Errors) != 1 || out.Errors[0].Code == "" || out.Errors[0].Message == "") {
				t.Fatalf("error body %+v is not a registry error", out)
			}
		})
	}
}

func TestAPIValidation(t *testing.T) {
	e := newEnv(t, envOptions{})
	path := "/api/v0/repositories/dev/app/"
	tests := []struct {
		name, kind, body string
		wantField        string
		wantMessage      string
	}{
		{"unknown key", "promotionPolicies", `{"targetRepository":"qa/app","tagTemplat":"%n"}`, "", `unknown field "tagTemplat"`},
		{"bad regexp", "promotionPolicies", `{"targetRepository":"qa/app","rules":[{"field":"tag","operator":"matches","values":["("]}]}`,
			"rules", `rules[0] (tag matches): invalid regexp "(": missing closing )`},
		{"bad range", "promotionPolicies", `{"targetRepository":"qa/app","rules":[{"field":"tag","operator":"semver","values":[">=1.x.y"]}]}`,
			"rules", "rules[0] (tag semver"},
		{"unknown field", "promotionPolicies", `{"targetRepository":"qa/app","rules":[{"field":"colour","operator":"eq","values":["red"]}]}`,
			"rules", `unknown field "colour"`},
		{"bad template", "promotionPolicies", `{"targetRepository":"qa/app","tagTemplate":"%n-%q"}`, "tagTemplate", "%q"},
		{"same repository", "promotionPolicies", `{"targetRepository":"dev/app"}`, "targetRepository", "is the source repository"},
		{"other source", "promotionPolicies", `{"sourceRepository":"x/y","targetRepository":"qa/app"}`, "sourceRepository", `"x/y" but the URL names "dev/app"`},
		{"loopback remote refused", "pushMirroringPolicies", `{"remoteHost":"http://127.0.0.1:5000","remoteRepository":"prod/app"}`,
			"remoteHost", "loopback"},
		{"metadata service refused", "pollMirroringPolicies", `{"remoteHost":"http://169.254.169.254","remoteRepository":"prod/app"}`,
			"remoteHost", "169.254.169.254"},
		{"interval too short", "pollMirroringPolicies", `{"remoteHost":"https://registry.example.org","remoteRepository":"a/b","interval":"10s"}`,
			"interval", "below the minimum"},
		{"password without user", "pushMirroringPolicies", `{"remoteHost":"https://registry.example.org","remoteRepository":"a/b","password":"x"}`,
			"username", "required when a password is set"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out regError
			code := e.call("admin", http.MethodPost, path+tt.kind, tt.body, &out)
			if code != http.StatusBadRequest || len(out.Errors) != 1 {
				t.Fatalf("%d %+v, want 400", code, out)
			}
			got := out.Errors[0]
			if !strings.Contains(got.Message, tt.wantMessage) {
				t.Fatalf("message %q, want it to contain %q", got.Message, tt.wantMessage)
			}
			if tt.wantField == "" {
				return
			}
			found := false
			for _, d := range got.Detail {
				found = found || d["field"] == tt.wantField
			}
			if !found {
				t.Fatalf("detail %+v names no field %q", got.Detail, tt.wantField)
			}
		})
	}
	// A loop of promotions is refused when the policy closing it is saved.
	e.create("dev/app", "promotionPolicies", false, `{"enabled":true,"targetRepository":"qa/app"}`)
	e.create("qa/app", "promotionPolicies", false, `{"enabled":true,"targetRepository":"prod/app"}`)
	var out regError
	if code := e.call("admin", http.MethodPost, "/api/v0/repositories/prod/app/promotionPolicies", `{"enabled":true,"targetRepository":"dev/app"}`, &out); code != http.StatusBadRequest ||
		!strings.Contains(out.Errors[0].Message, "prod/app -> dev/app -> qa/app -> prod/app") {
		t.Fatalf("closing a loop: %d %+v", code, out)
	}
}

// TestPasswordIsWriteOnly: a mirroring policy's password is never in an
// API answer nor in the store in the clear, and an update without one
// keeps it.
func TestPasswordIsWriteOnly(t *testing.T) {
	e := newEnv(t, envOptions{allowPrivate: true})
	const secret = "hunter2-very-secret"
	id := e.create("qa/app", "pushMirroringPolicies", false, `{"enabled":true,"remoteHost":"`+e.eu.URL+`","remoteRepository":"prod/app","username":"mirror","password":"`+secret+`"}`)
	var raw json.RawMessage
	e.call("admin", http.MethodGet, "/api/v0/repositories/qa/app/pushMirroringPolicies/"+id, nil, &raw)
	if strings.Contains(string(raw), secret) || !strings.Contains(string(raw), `"hasPassword":true`) {
		t.Fatalf("GET shows %s", raw)
	}
	kvs, err := e.store.List(context.Background(), "", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range kvs {
		if strings.Contains(string(kv.Value), secret) {
			t.Fatalf("the store holds the password in the clear under %s", kv.Key)
		}
	}
	// Update without a password: kept.
	var out map[string]any
	if code := e.call("admin", http.MethodPut, "/api/v0/repositories/qa/app/pushMirroringPolicies/"+id,
		`{"enabled":false,"remoteHost":"`+e.eu.URL+`","remoteRepository":"prod/app","username":"mirror"}`, &out); code != http.StatusOK || out["hasPassword"] != true || out["enabled"] != false {
		t.Fatalf("update: %d %v", code, out)
	}
	var list []map[string]any
	e.call("admin", http.MethodGet, "/api/v0/policies", nil, &list)
	if b, _ := json.Marshal(list); len(list) != 1 || strings.Contains(string(b), secret) {
		t.Fatalf("policy list %s", b)
	}
	if code := e.call("admin", http.MethodDelete, "/api/v0/repositories/qa/app/pushMirroringPolicies/"+id, nil, nil); code != http.StatusNoContent {
		t.Fatalf("delete: %d", code)
	}
	if _, err := e.store.Get(context.Background(), "secrets/"+id); err == nil || !strings.Contains(err.Error(), state.ErrNotFound.Error()) {
		t.Fatalf("the secret outlived its policy: %v", err)
	}
}

func TestJobsAPI(t *testing.T) {
	e := newEnv(t, envOptions{})
	id := e.create("dev/app", "promotionPolicies", false, `{"enabled":true,"targetRepository":"qa/app"}`)
	push(t, e.us, "dev/app:1", 1)
	push(t, e.us, "dev/app:2", 2)
	var run struct{ Jobs []jobs.Job }
	if code := e.call("alice", http.MethodPost, "/api/v0/jobs", `{"action":"promote","parameters":{"policyID":"`+id+`"}}`, &run); code != http.StatusAccepted || len(run.Jobs) != 2 {
		t.Fatalf("run now: %d %+v", code, run)
	}
	e.jobsOf(id, 2)
	var list struct{ Jobs []jobs.Job }
	if code := e.call("alice", http.MethodGet, "/api/v0/jobs?policy="+id+"&state=done", nil, &list); code != http.StatusOK || len(list.Jobs) != 2 {
		t.Fatalf("list: %d %+v", code, list)
	}
	var one jobs.Job
	if code := e.call("alice", http.MethodGet, "/api/v0/jobs/"+list.Jobs[0].ID, nil, &one); code != http.StatusOK || len(one.Log) == 0 {
		t.Fatalf("get: %d %+v", code, one)
	}
	var bobs struct{ Jobs []jobs.Job }
	e.call("bob", http.MethodGet, "/api/v0/jobs", nil, &bobs)
	if len(bobs.Jobs) != 0 {
		t.Fatalf("bob sees %d jobs of a policy he does not manage", len(bobs.Jobs))
	}
	var out regError
	if code := e.call("alice", http.MethodDelete, "/api/v0/jobs/"+one.ID, nil, &out); code != http.StatusConflict {
		t.Fatalf("cancel a finished job: %d %+v", code, out)
	}
	if code := e.call("alice", http.MethodGet, "/api/v0/jobs?state=bogus", nil, &out); code != http.StatusBadRequest {
		t.Fatalf("bad state filter: %d", code)
	}
	if code := e.call("alice", http.MethodPost, "/api/v0/jobs", `{"action":"reboot"}`, &out); code != http.StatusBadRequest {
		t.Fatalf("unknown action: %d", code)
	}
	var plan []map[string]any
	if code := e.call("alice", http.MethodGet, "/api/v0/policies/plan?policy="+id, nil, &plan); code != http.StatusOK || len(plan) != 1 {
		t.Fatalf("plan: %d %+v", code, plan)
	}
	items := plan[0]["items"].([]any)
	if len(items) != 2 || items[0].(map[string]any)["action"] != "up-to-date" {
		t.Fatalf("plan after both tags were promoted: %+v", items)
	}
}

// TestPolicyNamesAreUnique: a name is taken once (a conditional write in
// the store, so two replicas cannot both take it), freed by a rename or a
// delete.
func TestPolicyNamesAreUnique(t *testing.T) {
	e := newEnv(t, envOptions{})
	base := "/api/v0/repositories/dev/app/promotionPolicies"
	var first map[string]any
	if code := e.call("admin", http.MethodPost, base, `{"name":"nightly","enabled":true,"targetRepository":"qa/app"}`, &first); code != http.StatusCreated {
		t.Fatalf("create: %d %v", code, first)
	}
	var out regError
	if code := e.call("admin", http.MethodPost, base, `{"name":"nightly","enabled":true,"targetRepository":"qa/b"}`, &out); code != http.StatusConflict {
		t.Fatalf("a second policy named nightly: %d %+v, want 409", code, out)
	}
	id := first["id"].(string)
	if code := e.call("admin", http.MethodPut, base+"/"+id, `{"name":"weekly","enabled":true,"targetRepository":"qa/app"}`, nil); code != http.StatusOK {
		t.Fatalf("rename: %d", code)
	}
	if code := e.call("admin", http.MethodPost, base, `{"name":"nightly","enabled":true,"targetRepository":"qa/b"}`, nil); code != http.StatusCreated {
		t.Fatalf("nightly after the rename freed it: %d", code)
	}
	if code := e.call("admin", http.MethodDelete, base+"/"+id, nil, nil); code != http.StatusNoContent {
		t.Fatalf("delete: %d", code)
	}
	if code := e.call("admin", http.MethodPost, base, `{"name":"weekly","enabled":true,"targetRepository":"qa/c"}`, nil); code != http.StatusCreated {
		t.Fatalf("weekly after the delete freed it: %d", code)
	}
}
