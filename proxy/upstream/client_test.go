package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dtrcache/dtrcache/casstore"
	"github.com/dtrcache/dtrcache/proxy/regapi"
)

// blobServer is a tiny registry blob endpoint honouring Range, used to test
// the client's HTTP behaviour (auth, failover, ranges) in isolation; the
// cache's integration tests use a real registry.
type blobServer struct {
	data     []byte
	ranges   bool
	requests atomic.Int64
	auth     func(w http.ResponseWriter, r *http.Request) bool
	status   int // forced status, if non-zero
}

func (s *blobServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	if s.auth != nil && !s.auth(w, r) {
		return
	}
	if s.status != 0 {
		w.WriteHeader(s.status)
		fmt.Fprint(w, `{"errors":[{"code":"BLOB_UNKNOWN","message":"nope"}]}`)
		return
	}
	if rh := r.Header.Get("Range"); rh != "" && s.ranges {
		var a, b int64 = 0, int64(len(s.data)) - 1
		spec := strings.TrimPrefix(rh, "bytes=")
		x, y, _ := strings.Cut(spec, "-")
		a, _ = strconv.ParseInt(x, 10, 64)
		if y != "" {
			b, _ = strconv.ParseInt(y, 10, 64)
		}
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", a, b, len(s.data)))
		w.Header().Set("Content-Length", strconv.FormatInt(b-a+1, 10))
		w.WriteHeader(http.StatusPartialContent)
		w.Write(s.data[a : b+1])
		return
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(s.data)))
	w.Write(s.data)
}

func readStream(t *testing.T, st casstore.Stream) []byte {
	t.Helper()
	defer st.Body.Close()
	b, err := io.ReadAll(st.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestFetchBlobRanges(t *testing.T) {
	data := []byte("0123456789abcdefghijklmnopqrstuvwxyz")
	d := casstore.FromBytes(data)
	for _, ranges := range []bool{true, false} {
		t.Run(fmt.Sprintf("ranges=%v", ranges), func(t *testing.T) {
			srv := httptest.NewServer(&blobServer{data: data, ranges: ranges})
			defer srv.Close()
			c, err := New(Config{URLs: []string{srv.URL}})
			if err != nil {
				t.Fatal(err)
			}
			tests := []struct {
				off, length int64
				want        string
				wantLen     int64
			}{
				{0, -1, string(data), int64(len(data))},
				{10, 5, "abcde", 5},
				{30, -1, "uvwxyz", 6},
			}
			for _, tt := range tests {
				st, err := c.FetchBlob(context.Background(), "a/b", d, tt.off, tt.length, nil)
				if err != nil {
					t.Fatal(err)
				}
				if st.Size != int64(len(data)) {
					t.Fatalf("Size = %d", st.Size)
				}
				got := readStream(t, st)
				if ranges || tt.length < 0 {
					if string(got) != tt.want || st.Len != tt.wantLen {
						t.Fatalf("FetchBlob(%d, %d) = %q (Len %d), want %q", tt.off, tt.length, got, st.Len, tt.want)
					}
				} else if !strings.HasPrefix(string(got), tt.want) || st.Len != int64(len(data))-tt.off {
					// A server without ranges sends everything from off on.
					t.Fatalf("FetchBlob(%d, %d) without ranges = %q (Len %d)", tt.off, tt.length, got, st.Len)
				}
			}
		})
	}
}

func TestFailoverAndRoundRobin(t *testing.T) {
	data := []byte("hello")
	d := casstore.FromBytes(data)
	a := &blobServer{data: data}
	b := &blobServer{data: data}
	sa, sb := httptest.NewServer(a), httptest.NewServer(b)
	defer sa.Close()
	defer sb.Close()
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close() // connection refused
	broken := httptest.NewServer(&blobServer{status: http.StatusBadGateway})
	defer broken.Close()

	c, err := New(Config{URLs: []string{sa.URL, dead.URL, sb.URL, broken.URL}})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 8; i++ {
		st, err := c.FetchBlob(context.Background(), "x", d, 0, -1, nil)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if got := readStream(t, st); string(got) != "hello" {
			t.Fatalf("got %q", got)
		}
	}
	// Round-robin spreads the 8 requests: each live server got some.
	if a.requests.Load() == 0 || b.requests.Load() == 0 || a.requests.Load()+b.requests.Load() != 8 {
		t.Fatalf("requests a=%d b=%d", a.requests.Load(), b.requests.Load())
	}
}

func TestStatusErrors(t *testing.T) {
	d := casstore.FromBytes([]byte("x"))
	tests := []struct {
		status    int
		permanent bool
	}{
		{http.StatusNotFound, true},
		{http.StatusUnauthorized, true},
		{http.StatusForbidden, true},
		{http.StatusServiceUnavailable, false},
		{http.StatusTooManyRequests, false},
	}
	for _, tt := range tests {
		t.Run(strconv.Itoa(tt.status), func(t *testing.T) {
			srv := httptest.NewServer(&blobServer{status: tt.status})
			defer srv.Close()
			c, _ := New(Config{URLs: []string{srv.URL}})
			_, err := c.FetchBlob(context.Background(), "x", d, 0, -1, nil)
			var se *StatusError
			if !errors.As(err, &se) || se.Status != tt.status || casstore.IsPermanent(err) != tt.permanent {
				t.Fatalf("err = %v (permanent %v), want status %d permanent %v", err, casstore.IsPermanent(err), tt.status, tt.permanent)
			}
			if tt.status == http.StatusNotFound && se.Code != "BLOB_UNKNOWN" {
				t.Fatalf("code %q not parsed from the body", se.Code)
			}
		})
	}
}

func TestBasicChallenge(t *testing.T) {
	data := []byte("secret layer")
	d := casstore.FromBytes(data)
	var unauth atomic.Int64
	bs := &blobServer{data: data, auth: func(w http.ResponseWriter, r *http.Request) bool {
		if u, p, ok := r.BasicAuth(); ok && u == "cache" && p == "pw" {
			return true
		}
		unauth.Add(1)
		w.Header().Set("WWW-Authenticate", `Basic realm="registry"`)
		w.WriteHeader(http.StatusUnauthorized)
		return false
	}}
	srv := httptest.NewServer(bs)
	defer srv.Close()
	c, _ := New(Config{URLs: []string{srv.URL}, Username: "cache", Password: "pw"})
	for i := 0; i < 3; i++ {
		st, err := c.FetchBlob(context.Background(), "x", d, 0, -1, nil)
		if err != nil {
			t.Fatal(err)
		}
		readStream(t, st)
	}
	if n := unauth.Load(); n != 0 {
		t.Fatalf("%d unauthenticated attempts, want 0 (configured credentials are sent up front)", n)
	}
	// Wrong credentials: the 401 comes back as a permanent error.
	c2, _ := New(Config{URLs: []string{srv.URL}, Username: "cache", Password: "wrong"})
	if _, err := c2.FetchBlob(context.Background(), "x", d, 0, -1, nil); !casstore.IsPermanent(err) {
		t.Fatalf("err = %v", err)
	}
}

func TestBearerHandshake(t *testing.T) {
	data := []byte("layer")
	d := casstore.FromBytes(data)
	var tokenRequests atomic.Int64
	tokenSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tokenRequests.Add(1)
		u, p, _ := r.BasicAuth()
		if u != "cache" || p != "pw" || r.URL.Query().Get("service") != "reg" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"token": "tok-" + r.URL.Query().Get("scope"), "expires_in": 300})
	}))
	defer tokenSrv.Close()
	bs := &blobServer{data: data}
	bs.auth = func(w http.ResponseWriter, r *http.Request) bool {
		scope := "repository:" + strings.Split(strings.TrimPrefix(r.URL.Path, "/v2/"), "/blobs/")[0] + ":pull"
		if r.Header.Get("Authorization") == "Bearer tok-"+scope {
			return true
		}
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm=%q,service="reg",scope=%q`, tokenSrv.URL+"/token", scope))
		w.WriteHeader(http.StatusUnauthorized)
		return false
	}
	srv := httptest.NewServer(bs)
	defer srv.Close()
	c, _ := New(Config{URLs: []string{srv.URL}, Username: "cache", Password: "pw"})
	for _, repo := range []string{"a", "a", "b", "a"} {
		st, err := c.FetchBlob(context.Background(), repo, d, 0, -1, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := readStream(t, st); string(got) != "layer" {
			t.Fatalf("got %q", got)
		}
	}
	if n := tokenRequests.Load(); n != 2 {
		t.Fatalf("%d token requests, want 2 (one per scope, then cached)", n)
	}
}

// TestConcurrentRequestsShareOneTokenFetch: requests that meet the same
// bearer challenge at once wait for one token fetch (singleflight), and
// one that gives up (its 401 then stands) does not fail the others.
func TestConcurrentRequestsShareOneTokenFetch(t *testing.T) {
	data := []byte("layer")
	d := casstore.FromBytes(data)
	var tokenRequests atomic.Int64
	release := make(chan struct{})
	tokenSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tokenRequests.Add(1)
		select { // hold the fetch until every client waits on it
		case <-release:
		case <-time.After(10 * time.Second):
		}
		json.NewEncoder(w).Encode(map[string]any{"token": "tok", "expires_in": 300})
	}))
	defer tokenSrv.Close()
	var challenged atomic.Int64
	bs := &blobServer{data: data, auth: func(w http.ResponseWriter, r *http.Request) bool {
		if r.Header.Get("Authorization") == "Bearer tok" {
			return true
		}
		challenged.Add(1)
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm=%q,service="reg"`, tokenSrv.URL+"/token"))
		w.WriteHeader(http.StatusUnauthorized)
		return false
	}}
	srv := httptest.NewServer(bs)
	defer srv.Close()
	c, _ := New(Config{URLs: []string{srv.URL}})
	const n = 8
	errs := make(chan error, n)
	quitter, quit := context.WithCancel(context.Background())
	for i := range n {
		ctx := context.Background()
		if i == 0 {
			ctx = quitter // gives up while the fetch runs
		}
		go func() {
			st, err := c.FetchBlob(ctx, "a", d, 0, -1, nil)
			if err == nil {
				st.Body.Close()
			}
			errs <- err
		}()
	}
	for challenged.Load() < n {
		runtime.Gosched() // every request has met the challenge
	}
	quit()
	if err := <-errs; err == nil {
		t.Fatal("the request that gave up succeeded") // its 401 stands
	}
	close(release)
	for range n - 1 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if got := tokenRequests.Load(); got != 1 {
		t.Fatalf("%d token requests for %d concurrent requests, want 1", got, n)
	}
}

func TestRedirectDropsAuthorization(t *testing.T) {
	data := []byte("from object storage")
	d := casstore.FromBytes(data)
	var sawAuth atomic.Bool
	storage := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" {
			sawAuth.Store(true)
		}
		(&blobServer{data: data, ranges: true}).ServeHTTP(w, r)
	}))
	defer storage.Close()
	reg := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, _, ok := r.BasicAuth(); !ok || u != "cache" {
			w.Header().Set("WWW-Authenticate", `Basic realm="r"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		// Redirect to a different host (localhost vs 127.0.0.1).
		http.Redirect(w, r, strings.Replace(storage.URL, "127.0.0.1", "localhost", 1)+"/bucket/blob", http.StatusTemporaryRedirect)
	}))
	defer reg.Close()
	c, _ := New(Config{URLs: []string{reg.URL}, Username: "cache", Password: "pw"})
	st, err := c.FetchBlob(context.Background(), "x", d, 5, 6, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := readStream(t, st); string(got) != "object" {
		t.Fatalf("got %q (the Range must survive the redirect)", got)
	}
	if sawAuth.Load() {
		t.Fatal("credentials leaked to the redirect target")
	}
}

func TestParseChallenges(t *testing.T) {
	chs := ParseChallenges(`Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push", Basic realm="x y"`)
	if len(chs) != 2 || chs[0].Scheme != "bearer" || chs[0].Params["realm"] != "https://auth.example/token" ||
		chs[0].Params["scope"] != "repository:a/b:pull,push" || chs[1].Scheme != "basic" || chs[1].Params["realm"] != "x y" {
		t.Fatalf("ParseChallenges = %+v", chs)
	}
	if chs := ParseChallenges(`Basic`); len(chs) != 1 || chs[0].Scheme != "basic" {
		t.Fatalf("bare scheme: %+v", chs)
	}
}

func FuzzParseChallenges(f *testing.F) {
	f.Add(`Bearer realm="https://a/token",service="s",scope="repository:x:pull"`)
	f.Add(`Basic realm="a\"b", Bearer realm=x`)
	f.Add(`,,, =`)
	f.Fuzz(func(t *testing.T, h string) {
		for _, c := range ParseChallenges(h) {
			if c.Scheme == "" || c.Params == nil {
				t.Fatalf("empty challenge from %q", h)
			}
		}
	})
}

// TestRedactURL: the query and user information of a URL in an error
// never reach its message, whether the *url.Error is the error or wrapped
// in it, and the caller's error is left as it was.
func TestRedactURL(t *testing.T) {
	const raw = "https://user:pw@storage.test/bucket/x?X-Amz-Signature=secret"
	orig := &url.Error{Op: "Get", URL: raw, Err: io.ErrUnexpectedEOF}
	wrapped := fmt.Errorf("fetch: %w", orig)
	for name, err := range map[string]error{"url.Error": orig, "wrapped": wrapped} {
		t.Run(name, func(t *testing.T) {
			red := RedactURL(err)
			if s := red.Error(); strings.Contains(s, "secret") || strings.Contains(s, "pw") || !strings.Contains(s, "storage.test/bucket/x?REDACTED") {
				t.Fatalf("redacted error %q", s)
			}
			if !errors.Is(red, io.ErrUnexpectedEOF) {
				t.Fatal("the redacted error lost its cause")
			}
			if orig.URL != raw {
				t.Fatalf("the caller's error was modified: %q", orig.URL)
			}
		})
	}
	plain := errors.New("no URL here")
	if RedactURL(plain) != plain || RedactURL(nil) != nil {
		t.Fatal("errors without a URL must pass unchanged")
	}
	for in, want := range map[string]string{
		"https://r.test/v2/": "https://r.test/v2/", "https://r.test/t?x=1": "https://r.test/t?REDACTED",
		"http://u:p@r.test/a": "http://r.test/a", "%zz?secret": "%zz?REDACTED",
	} {
		if got := RedactedURL(in); got != want {
			t.Errorf("RedactedURL(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestCheckRedirect: credentials follow a redirect on the same scheme and
// host only.
func TestCheckRedirect(t *testing.T) {
	first, _ := http.NewRequest(http.MethodGet, "https://r.test/v2/a/blobs/sha256:x", nil)
	for target, keep := range map[string]bool{
		"https://r.test/other": true, "https://storage.test/b": false, "http://r.test/v2/a": false, "https://r.test:8443/x": false,
	} {
		t.Run(target, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, target, nil)
			for _, h := range []string{"Authorization", "Cookie", regapi.TokenHeader} {
				req.Header.Set(h, "secret")
			}
			if err := CheckRedirect(req, []*http.Request{first}); err != nil {
				t.Fatal(err)
			}
			for _, h := range []string{"Authorization", "Cookie", regapi.TokenHeader} {
				if got := req.Header.Get(h) != ""; got != keep {
					t.Errorf("%s kept %v, want %v", h, got, keep)
				}
			}
		})
	}
	if CheckRedirect(first, make([]*http.Request, 10)) == nil {
		t.Fatal("an 11th redirect was followed")
	}
}
