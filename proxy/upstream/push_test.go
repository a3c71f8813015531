package upstream

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestBodyResentAfterChallenge: a request with a body that meets a Bearer
// challenge is sent again with a fresh body and the token, and the token
// request carries one scope parameter per scope.
func TestBodyResentAfterChallenge(t *testing.T) {
	var gotScopes atomic.Value
	tokenSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotScopes.Store(r.URL.Query()["scope"])
		json.NewEncoder(w).Encode(map[string]any{"token": "tok", "expires_in": 300})
	}))
	defer tokenSrv.Close()
	var bodies []string
	reg := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.Header.Get("Authorization") != "Bearer tok" {
			w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm=%q,service="reg",scope="repository:b:pull repository:a:push,pull"`, tokenSrv.URL))
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		bodies = append(bodies, string(b))
		w.WriteHeader(http.StatusCreated)
	}))
	defer reg.Close()
	c, _ := New(Config{URLs: []string{reg.URL}})
	opened := 0
	for i := 0; i < 2; i++ {
		resp, err := c.Do(context.Background(), Request{
			Method: http.MethodPut, Path: "/v2/a/manifests/x", Scope: MountScope("a", "b"),
			Body:          func() (io.ReadCloser, error) { opened++; return io.NopCloser(strings.NewReader("hello")), nil },
			ContentLength: 5,
		})
		if err != nil || resp.StatusCode != http.StatusCreated {
			t.Fatalf("Do = %v, %v", resp, err)
		}
		resp.Body.Close()
	}
	if !slices.Equal(bodies, []string{"hello", "hello"}) || opened != 3 {
		t.Fatalf("bodies %q, opened %d times; want the body twice and 3 opens (challenge, retry, cached token)", bodies, opened)
	}
	if s, _ := gotScopes.Load().([]string); !slices.Equal(s, []string{"repository:a:pull,push", "repository:b:pull"}) {
		t.Fatalf("token request scopes %q", s)
	}
}

// TestURLRequests: an absolute URL on the upstream's host gets its
// credentials; one on another host does not.
func TestURLRequests(t *testing.T) {
	var sawAuth atomic.Int64
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, _, ok := r.BasicAuth(); ok {
			sawAuth.Add(1)
		}
		w.Header().Set("Location", "/v2/a/blobs/uploads/123?_state=x")
		w.WriteHeader(http.StatusAccepted)
	})
	reg, other := httptest.NewServer(h), httptest.NewServer(h)
	defer reg.Close()
	defer other.Close()
	c, _ := New(Config{URLs: []string{reg.URL}, Username: "u", Password: "p"})
	resp, err := c.Do(context.Background(), Request{Method: http.MethodPost, Path: "/v2/a/blobs/uploads/"})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, err := Location(resp)
	if err != nil || loc != reg.URL+"/v2/a/blobs/uploads/123?_state=x" {
		t.Fatalf("Location = %q, %v", loc, err)
	}
	for _, tt := range []struct {
		url      string
		wantAuth int64
	}{{loc, 2}, {other.URL + "/v2/a/blobs/uploads/123", 2}} {
		resp, err := c.Do(context.Background(), Request{Method: http.MethodGet, URL: tt.url})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if n := sawAuth.Load(); n != tt.wantAuth {
			t.Fatalf("GET %s: %d authenticated requests, want %d", tt.url, n, tt.wantAuth)
		}
	}
	if _, err := c.Do(context.Background(), Request{Method: http.MethodGet, URL: "ftp://x/y"}); err == nil {
		t.Fatal("ftp URL accepted")
	}
}

func TestCanonicalScope(t *testing.T) {
	for in, want := range map[string]string{
		"repository:b:push,pull repository:a:pull": "repository:a:pull repository:b:pull,push",
		"repository:a:pull  repository:a:pull":     "repository:a:pull",
		"":                                         "",
		"registry:catalog:*":                       "registry:catalog:*",
	} {
		if got := canonicalScope(in); got != want {
			t.Errorf("canonicalScope(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	for in, want := range map[string]time.Duration{
		"120":  2 * time.Minute,
		"0":    0,
		"-5":   0,
		"soon": 0,
		now.Add(time.Minute).Format(http.TimeFormat):  time.Minute,
		now.Add(-time.Minute).Format(http.TimeFormat): 0,
	} {
		if got := parseRetryAfter(in, now); got != want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", in, got, want)
		}
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "7")
		w.WriteHeader(http.StatusTooManyRequests)
		fmt.Fprint(w, `{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}`)
	}))
	defer srv.Close()
	c, _ := New(Config{URLs: []string{srv.URL}})
	resp, err := c.Do(context.Background(), Request{Method: http.MethodGet, Path: "/v2/"})
	if err != nil {
		t.Fatal(err)
	}
	if se := StatusErrorOf(resp); se.RetryAfter != 7*time.Second || se.Code != "TOOMANYREQUESTS" {
		t.Fatalf("StatusError = %+v", se)
	}
}
