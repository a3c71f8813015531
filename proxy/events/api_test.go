package events

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/dtrcache/dtrcache/proxy/regapi"
)

// basicIdentifier takes the Basic user name as the identity (the origin
// checks passwords; that is its business, not this package's).
type basicIdentifier struct{}

func (basicIdentifier) Identify(r *http.Request) (string, error) {
	user, _, ok := r.BasicAuth()
	if !ok {
		return "", regapi.NewError(http.StatusUnauthorized, regapi.CodeUnauthorized, "authentication required").WithHeader("WWW-Authenticate", `Basic realm="test"`)
	}
	return user, nil
}

// tableAuthority: admin administers everything; the others the scopes
// listed; repositories exist when listed.
type tableAuthority struct {
	scopes map[string][]string
	repos  map[string]bool
}

func (a tableAuthority) CanAdmin(user, scope string) bool {
	if user == "admin" {
		return true
	}
	for _, s := range a.scopes[user] {
		if s == scope || (!strings.Contains(s, "/") && strings.HasPrefix(scope, s+"/")) {
			return true
		}
	}
	return false
}

func (a tableAuthority) RepositoryExists(_ context.Context, repo string) (bool, error) {
	return a.repos[repo], nil
}

var testAuthority = tableAuthority{
	scopes: map[string][]string{"alice": {"team/app"}, "nina": {"team"}},
	repos:  map[string]bool{"team/app": true, "team/other": true},
}

func apiServer(t *testing.T, guard Guard) (*Service, *httptest.Server) {
	t.Helper()
	d := fastDelivery(t)
	d.Guard = guard
	s := startService(t, newStore(t), Config{Delivery: d, Host: "dtr.example.org"})
	srv := httptest.NewServer(s.API(basicIdentifier{}, testAuthority))
	t.Cleanup(srv.Close)
	return s, srv
}

// call sends a JSON request as user ("" for none) and decodes the answer
// into out (if set).
func call(t *testing.T, srv *httptest.Server, user, method, path string, body any, out any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		switch b := body.(type) {
		case string:
			rd = strings.NewReader(b)
		default:
			j, _ := json.Marshal(b)
			rd = bytes.NewReader(j)
		}
	}
	req, err := http.NewRequest(method, srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		req.SetBasicAuth(user, "pw")
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
	return resp.StatusCode, b
}

type apiError struct {
	Errors []struct {
		Code    string            `json:"code"`
		Message string            `json:"message"`
		Detail  map[string]string `json:"detail"`
	} `json:"errors"`
}

// TestAPIBadSubscriptions: malformed subscriptions are refused with 400
// and an error that names the field.
func TestAPIBadSubscriptions(t *testing.T) {
	_, srv := apiServer(t, loopbackGuard(t))
	_, strict := apiServer(t, strictGuard(t))
	rc := newReceiver(t)
	tests := []struct {
		name  string
		srv   *httptest.Server
		body  any
		field string
	}{
		{"unknown type", srv, CreateRequest{Type: "TAG_SHOVE", Key: "team/app", Endpoint: rc.url()}, "type"},
		{"no type", srv, CreateRequest{Key: "team/app", Endpoint: rc.url()}, "type"},
		{"not a URL", srv, CreateRequest{Type: TagPush, Key: "team/app", Endpoint: "::"}, "endpoint"},
		{"not http", srv, CreateRequest{Type: TagPush, Key: "team/app", Endpoint: "ftp://ci.example.org/x"}, "endpoint"},
		{"no host", srv, CreateRequest{Type: TagPush, Key: "team/app", Endpoint: "https:///x"}, "endpoint"},
		{"credentials in the URL", srv, CreateRequest{Type: TagPush, Key: "team/app", Endpoint: "https://u:p@ci.example.org/x"}, "endpoint"},
		{"bad port", srv, CreateRequest{Type: TagPush, Key: "team/app", Endpoint: "https://ci.example.org:99999/x"}, "endpoint"},
		{"refused address", strict, CreateRequest{Type: TagPush, Key: "team/app", Endpoint: rc.url()}, "endpoint"},
		{"link-local address", srv, CreateRequest{Type: TagPush, Key: "team/app", Endpoint: "http://169.254.169.254/latest/meta-data"}, "endpoint"},
		{"no such repository", srv, CreateRequest{Type: TagPush, Key: "team/nope", Endpoint: rc.url()}, "key"},
		{"invalid key", srv, CreateRequest{Type: TagPush, Key: "Team//App", Endpoint: rc.url()}, "key"},
		{"key on a global type", srv, CreateRequest{Type: CacheDown, Key: "team", Endpoint: rc.url()}, "key"},
		{"repository key on REPO_EVENT", srv, CreateRequest{Type: RepoEvent, Key: "team/app", Endpoint: rc.url()}, "key"},
		{"not a certificate", srv, CreateRequest{Type: TagPush, Key: "team/app", Endpoint: rc.url(), TLSCert: "hello"}, "tlsCert"},
		{"unknown field", srv, `{"type":"TAG_PUSH","key":"team/app","endpoint":"` + rc.url() + `","secret":"mine"}`, "secret"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := call(t, tt.srv, "admin", "POST", "/api/v0/webhooks", tt.body, nil)
			if status != http.StatusBadRequest {
				t.Fatalf("status %d, want 400: %s", status, body)
			}
			var e apiError
			if err := json.Unmarshal(body, &e); err != nil || len(e.Errors) != 1 {
				t.Fatalf("not a registry-style error: %s", body)
			}
			if f := e.Errors[0].Detail["field"]; f != "" && f != tt.field {
				t.Errorf("detail.field = %q, want %q", f, tt.field)
			}
			if !strings.Contains(e.Errors[0].Message, tt.field) {
				t.Errorf("message %q does not name %q", e.Errors[0].Message, tt.field)
			}
		})
	}
	if status, body := call(t, srv, "admin", "GET", "/api/v0/webhooks", nil, nil); status != 200 || strings.TrimSpace(string(body)) != "[]" {
		t.Fatalf("refused subscriptions were stored: %d %s", status, body)
	}
}

// TestAPIPermissions: administrators anything; repository and namespace
// administrators their own; the secret is shown once.
func TestAPIPermissions(t *testing.T) {
	s, srv := apiServer(t, loopbackGuard(t))
	rc := newReceiver(t)
	create := func(user string, req CreateRequest) (int, View) {
		var v View
		status, body := call(t, srv, user, "POST", "/api/v0/webhooks", req, &v)
		if status >= 300 && status != http.StatusForbidden && status != http.StatusUnauthorized {
			t.Fatalf("create as %s: %d %s", user, status, body)
		}
		return status, v
	}
	tests := []struct {
		user string
		req  CreateRequest
		want int
	}{
		{"", CreateRequest{Type: TagPush, Key: "team/app", Endpoint: rc.url()}, http.StatusUnauthorized},
		{"bob", CreateRequest{Type: TagPush, Key: "team/app", Endpoint: rc.url()}, http.StatusForbidden},
		{"alice", CreateRequest{Type: TagPush, Key: "team/other", Endpoint: rc.url()}, http.StatusForbidden},
		{"alice", CreateRequest{Type: TagPush, Key: "", Endpoint: rc.url()}, http.StatusForbidden},
		{"alice", CreateRequest{Type: RepoEvent, Key: "team", Endpoint: rc.url()}, http.StatusForbidden},
		{"alice", CreateRequest{Type: CacheDown, Endpoint: rc.url()}, http.StatusForbidden},
		{"alice", CreateRequest{Type: TagPush, Key: "team/app", Endpoint: rc.url()}, http.StatusCreated},
		{"nina", CreateRequest{Type: RepoEvent, Key: "team", Endpoint: rc.url()}, http.StatusCreated},
		{"nina", CreateRequest{Type: TagDelete, Key: "team/other", Endpoint: rc.url()}, http.StatusCreated},
		{"admin", CreateRequest{Type: CacheDown, Endpoint: rc.url()}, http.StatusCreated},
	}
	made := map[string]View{}
	for _, tt := range tests {
		status, v := create(tt.user, tt.req)
		if status != tt.want {
			t.Errorf("%s creating %s on %q: %d, want %d", tt.user, tt.req.Type, tt.req.Key, status, tt.want)
			continue
		}
		if status == http.StatusCreated {
			if len(v.Secret) != 64 || v.ID == "" || v.AuthorID != tt.user || v.Inactive || !v.LastSuccessfulAt.IsZero() {
				t.Errorf("created view %+v", v)
			}
			made[tt.user+" "+string(tt.req.Type)] = v
		}
	}
	alices := made["alice TAG_PUSH"]
	var got View
	if status, body := call(t, srv, "alice", "GET", "/api/v0/webhooks/"+alices.ID, nil, &got); status != 200 || got.Secret != "" || strings.Contains(string(body), alices.Secret) {
		t.Fatalf("GET shows the secret or fails: %d %s", status, body)
	}
	lists := []struct {
		user, path string
		want       int // webhooks listed; -1: refused
	}{
		{"admin", "/api/v0/webhooks", 4},
		{"alice", "/api/v0/webhooks", 1},
		{"bob", "/api/v0/webhooks", 0},
		{"alice", "/api/v0/repositories/team/app/webhooks", 1},
		{"bob", "/api/v0/repositories/team/app/webhooks", -1},
		{"nina", "/api/v0/repositories/team/app/webhooks", 1},
		{"nina", "/api/v0/repositories/team/webhooks", 1},
		{"nina", "/api/v0/namespaces/team/webhooks", 1},
		{"alice", "/api/v0/namespaces/team/webhooks", -1},
	}
	for _, l := range lists {
		var vs []View
		status, body := call(t, srv, l.user, "GET", l.path, nil, &vs)
		switch {
		case l.want < 0 && status != http.StatusForbidden:
			t.Errorf("%s GET %s: %d, want 403", l.user, l.path, status)
		case l.want >= 0 && (status != 200 || len(vs) != l.want):
			t.Errorf("%s GET %s: %d with %d webhooks, want %d: %s", l.user, l.path, status, len(vs), l.want, body)
		}
		for _, v := range vs {
			if v.Secret != "" {
				t.Errorf("%s lists a secret", l.path)
			}
		}
	}
	for _, c := range []struct {
		user, method string
		body         any
		want         int
	}{
		{"bob", "GET", nil, http.StatusForbidden},
		{"bob", "DELETE", nil, http.StatusForbidden},
		{"bob", "PATCH", map[string]bool{"inactive": true}, http.StatusForbidden},
		{"nina", "PATCH", map[string]bool{"inactive": true}, http.StatusOK},
		{"alice", "PATCH", map[string]any{}, http.StatusBadRequest},
		{"alice", "PATCH", map[string]bool{"inactive": false}, http.StatusOK},
		{"alice", "DELETE", nil, http.StatusNoContent},
		{"alice", "GET", nil, http.StatusNotFound},
	} {
		if status, body := call(t, srv, c.user, c.method, "/api/v0/webhooks/"+alices.ID, c.body, nil); status != c.want {
			t.Errorf("%s %s: %d, want %d: %s", c.user, c.method, status, c.want, body)
		}
	}
	if _, ok := s.Subscriptions.Get(alices.ID); ok {
		t.Fatal("deleted webhook still stored")
	}
}

// TestAPIPauseAndHistory: a paused webhook shows inactive; its history
// lists attempts newest first.
func TestAPIPauseAndHistory(t *testing.T) {
	s, srv := apiServer(t, loopbackGuard(t))
	rc := newReceiver(t)
	rc.set(func(n int, _ Event) int {
		if n == 0 {
			return http.StatusBadGateway
		}
		return http.StatusOK
	}, nil)
	var v View
	if status, body := call(t, srv, "alice", "POST", "/api/v0/webhooks", CreateRequest{Type: TagPush, Key: "team/app", Endpoint: rc.url()}, &v); status != 201 {
		t.Fatalf("%d %s", status, body)
	}
	if _, err := s.Outbox.Emit(ctxT(t), tagPush(t, "team/app", "1")); err != nil {
		t.Fatal(err)
	}
	rc.waitFor(t, "the retry", func(d []delivery) bool { return len(accepted(d)) == 1 })
	var h Deliveries
	waitUntil(t, "the history", func() bool {
		call(t, srv, "alice", "GET", "/api/v0/webhooks/"+v.ID+"/deliveries", nil, &h)
		return len(h.Attempts) == 2
	})
	if !h.Attempts[0].Success || h.Attempts[0].Status != 200 || h.Attempts[1].Success || h.Attempts[1].Status != 502 || h.Attempts[0].Attempt != 2 {
		t.Errorf("history %+v", h.Attempts)
	}
	var after View
	call(t, srv, "alice", "GET", "/api/v0/webhooks/"+v.ID, nil, &after)
	if after.LastSuccessfulAt.IsZero() {
		t.Error("lastSuccessfulAt not set after a delivery")
	}
	call(t, srv, "alice", "PATCH", "/api/v0/webhooks/"+v.ID, map[string]bool{"inactive": true}, &after)
	if !after.Inactive || !strings.Contains(after.InactiveReason, "alice") {
		t.Errorf("paused view %+v", after)
	}
}

// TestAPITestDelivery: the test endpoint sends a signed sample and
// returns the receiver's answer.
func TestAPITestDelivery(t *testing.T) {
	_, srv := apiServer(t, loopbackGuard(t))
	rc := newReceiver(t)
	rc.set(func(int, Event) int { return http.StatusAccepted }, nil)
	var res TestResult
	status, body := call(t, srv, "alice", "POST", "/api/v0/webhooks/test", TestRequest{Type: TagPush, Key: "team/app", Endpoint: rc.url()}, &res)
	if status != 200 || !res.Success || res.Status != http.StatusAccepted {
		t.Fatalf("%d %s", status, body)
	}
	got := rc.all()
	if len(got) != 1 || got[0].event.ID != res.EventID || got[0].event.Type != TagPush {
		t.Fatalf("receiver got %+v", got)
	}
	if !Verify(res.Secret, got[0].body, got[0].header.Get(HeaderSignature)) {
		t.Fatal("the sample's signature does not verify with the secret returned")
	}
	var c ImageContents
	json.Unmarshal(got[0].event.Contents, &c)
	if c.Namespace != "foo" || c.Repository != "bar" || c.Tag != "latest" || c.ImageName != "dtr.example.org/foo/bar:latest" {
		t.Errorf("sample contents %+v", c)
	}
	if status, _ := call(t, srv, "alice", "POST", "/api/v0/webhooks/test", TestRequest{Type: TagPush, Endpoint: rc.url()}, nil); status != http.StatusForbidden {
		t.Errorf("alice tested without a key: %d", status)
	}
	rc.srv.Close()
	status, body = call(t, srv, "admin", "POST", "/api/v0/webhooks/test", TestRequest{Type: CacheUp, Endpoint: rc.url()}, &res)
	if status != 200 || res.Success || res.Error == "" || strings.Contains(res.Error, rc.srv.URL) {
		t.Fatalf("closed receiver: %d %s", status, body)
	}
}
