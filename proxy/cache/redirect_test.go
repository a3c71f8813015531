package cache_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dtrcache/dtrcache/casstore"
	"github.com/dtrcache/dtrcache/policy"
	"github.com/dtrcache/dtrcache/testenv"
	"github.com/dtrcache/dtrcache/testenv/wan"
)

func b64(v any) string {
	b, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(b)
}

func errorCode(t *testing.T, body []byte) string {
	t.Helper()
	var eb struct {
		Errors []struct{ Code string } `json:"errors"`
	}
	if err := json.Unmarshal(body, &eb); err != nil || len(eb.Errors) == 0 {
		t.Fatalf("not a registry error body: %q", body)
	}
	return eb.Errors[0].Code
}

func TestRedirectTokens(t *testing.T) {
	e := newEnv(t, envOptions{noMirror: true, audiences: []string{"asia"}})
	img := e.push(t, "website/ui:1", testenv.ImageSpec{Layers: 2, LayerSize: 64 << 10, Seed: 5})
	d, data := layerBytes(t, img, 0)
	other, _ := layerBytes(t, img, 1)
	now := time.Now()
	claims := func(mut func(m map[string]any)) map[string]any {
		m := map[string]any{"iss": "origin-test", "sub": "alice", "aud": "asia", "repo": "website/ui", "digest": d.String(),
			"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Minute).Unix(), "jti": "x"}
		if mut != nil {
			mut(m)
		}
		return m
	}
	sign := func(k *policy.PrivateKey, c map[string]any) string {
		s := policy.NewSigner(k, "origin-test", time.Minute)
		s.Now = func() time.Time { return time.Unix(int64(c["iat"].(int64)), 0) }
		tok, _, err := s.Sign(c["sub"].(string), c["aud"].(string), c["repo"].(string), c["digest"].(string))
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	otherKey, _ := policy.GenerateKey(rand.Reader)
	forged := sign(&policy.PrivateKey{Kid: e.key.Kid, Key: otherKey.Key}, claims(nil))
	hsHeader := b64(map[string]any{"alg": "HS256", "typ": "JWT", "kid": e.key.Kid})
	hsPayload := b64(claims(nil))
	mac := hmac.New(sha256.New, []byte(e.key.Key.Public().(ed25519.PublicKey)))
	mac.Write([]byte(hsHeader + "." + hsPayload))
	hsToken := hsHeader + "." + hsPayload + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
	noneToken := b64(map[string]any{"alg": "none", "typ": "JWT", "kid": e.key.Kid}) + "." + b64(claims(nil)) + "."

	expiredSigner := policy.NewSigner(e.key, "origin-test", time.Minute)
	expiredSigner.Now = func() time.Time { return now.Add(-10 * time.Minute) }
	expired, _, _ := expiredSigner.Sign("alice", "asia", "website/ui", d.String())
	wrongRepo, _, _ := e.signer.Sign("alice", "asia", "website/other", d.String())
	wrongDigest, _, _ := e.signer.Sign("alice", "asia", "website/ui", other.String())
	wrongAud, _, _ := e.signer.Sign("alice", "europe", "website/ui", d.String())
	valid := e.token(t, "website/ui", d)

	tests := []struct {
		name   string
		query  string
		header string
		status int
		code   string
	}{
		{"valid", "?token=" + valid, "", 200, ""},
		{"valid in header", "", valid, 200, ""},
		{"missing", "", "", 401, "UNAUTHORIZED"},
		{"expired", "?token=" + expired, "", 401, "UNAUTHORIZED"},
		{"forged signature", "?token=" + forged, "", 401, "UNAUTHORIZED"},
		{"alg none", "?token=" + noneToken, "", 401, "UNAUTHORIZED"},
		{"HMAC with the public key", "?token=" + hsToken, "", 401, "UNAUTHORIZED"},
		{"garbage", "?token=not.a.jwt", "", 401, "UNAUTHORIZED"},
		{"wrong repo", "?token=" + wrongRepo, "", 403, "DENIED"},
		{"wrong digest", "?token=" + wrongDigest, "", 403, "DENIED"},
		{"wrong cache", "?token=" + wrongAud, "", 403, "DENIED"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hdr := map[string]string{}
			if tt.header != "" {
				hdr["X-Dtrcache-Token"] = tt.header
			}
			resp, body, err := e.get(t, "/v2/website/ui/blobs/"+d.String()+tt.query, hdr)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d (%s)", resp.StatusCode, tt.status, body)
			}
			if tt.status == 200 {
				if !bytes.Equal(body, data) {
					t.Fatal("bytes differ")
				}
				return
			}
			if got := errorCode(t, body); got != tt.code {
				t.Fatalf("code %s, want %s", got, tt.code)
			}
		})
	}
	// Only the valid requests reached the upstream, and only once.
	if n := e.reg.Counter.BlobGets(d.String()); n != 1 {
		t.Fatalf("registry saw %d GETs, want 1", n)
	}
	if n := e.reg.Counter.BlobGets(other.String()); n != 0 {
		t.Fatalf("a refused token caused %d upstream GETs", n)
	}
}

func TestBlobHeadersAndStatuses(t *testing.T) {
	e := newEnv(t, envOptions{noMirror: true})
	img := e.push(t, "a/b:1", testenv.ImageSpec{Layers: 1, LayerSize: 10000, Seed: 6})
	d, data := layerBytes(t, img, 0)
	q := "?token=" + e.token(t, "a/b", d)
	path := "/v2/a/b/blobs/" + d.String() + q

	// HEAD before anything is cached asks the upstream, fills nothing.
	req, _ := http.NewRequest(http.MethodHead, e.srv.URL+path, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.ContentLength != int64(len(data)) {
		t.Fatalf("HEAD miss: %d, length %d", resp.StatusCode, resp.ContentLength)
	}
	if _, err := e.store.Stat(casstore.MustParseDigest(d.String())); err == nil {
		t.Fatal("HEAD started a fill")
	}

	tests := []struct {
		name        string
		hdr         map[string]string
		status      int
		body        []byte
		contentRng  string
		contentLen  int
		wantHeaders bool
	}{
		{"full", nil, 200, data, "", len(data), true},
		{"range", map[string]string{"Range": "bytes=100-199"}, 206, data[100:200], "bytes 100-199/10000", 100, true},
		{"suffix", map[string]string{"Range": "bytes=-10"}, 206, data[len(data)-10:], "bytes 9990-9999/10000", 10, true},
		{"unsatisfiable", map[string]string{"Range": "bytes=10000-"}, 416, nil, "bytes */10000", -1, false},
		{"not modified", map[string]string{"If-None-Match": `"` + d.String() + `"`}, 304, nil, "", -1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body, err := e.get(t, path, tt.hdr)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.status)
			}
			if tt.body != nil && !bytes.Equal(body, tt.body) {
				t.Fatalf("body differs (%d bytes)", len(body))
			}
			if resp.Header.Get("Content-Range") != tt.contentRng {
				t.Fatalf("Content-Range %q, want %q", resp.Header.Get("Content-Range"), tt.contentRng)
			}
			if tt.contentLen >= 0 && resp.Header.Get("Content-Length") != strconv.Itoa(tt.contentLen) {
				t.Fatalf("Content-Length %q, want %d", resp.Header.Get("Content-Length"), tt.contentLen)
			}
			if tt.wantHeaders {
				if resp.Header.Get("Docker-Content-Digest") != d.String() || resp.Header.Get("ETag") != `"`+d.String()+`"` ||
					resp.Header.Get("Accept-Ranges") != "bytes" || resp.Header.Get("Content-Type") == "" {
					t.Fatalf("headers %v", resp.Header)
				}
			}
			if tt.status == 416 && errorCode(t, body) != "RANGE_INVALID" {
				t.Fatalf("416 body %s", body)
			}
		})
	}
	if n := e.reg.Counter.BlobGets(d.String()); n != 1 {
		t.Fatalf("registry saw %d GETs, want 1", n)
	}
	// Writes are refused: the cache is read-only.
	req, _ = http.NewRequest(http.MethodPut, e.srv.URL+path, strings.NewReader("x"))
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("PUT: %d", resp.StatusCode)
	}
}

func TestBadPathsAre400(t *testing.T) {
	e := newEnv(t, envOptions{})
	d := "sha256:" + strings.Repeat("a", 64)
	for _, p := range []string{
		"/v2/../../etc/passwd/blobs/" + d,
		"/v2/a/..%2f..%2fetc/blobs/" + d,
		"/v2/a/blobs/sha256:..%2f..%2f" + strings.Repeat("a", 58),
		"/v2/a/blobs/sha256:" + strings.Repeat("A", 64),
		"/v2/a/blobs/md5:abc",
		"/v2/UPPER/blobs/" + d,
		"/v2/a/manifests/..",
	} {
		t.Run(p, func(t *testing.T) {
			// Send the path raw, as an attacker would.
			conn, err := net.Dial("tcp", e.host)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			io.WriteString(conn, "GET "+p+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
			resp, err := http.ReadResponse(newReader(conn), nil)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("status %d, want 400 (%s)", resp.StatusCode, body)
			}
			errorCode(t, body)
		})
	}
	if n := e.reg.Counter.TotalBlobGets(); n != 0 {
		t.Fatalf("bad paths reached the upstream %d times", n)
	}
}

func TestUpstreamCutResumesWithRange(t *testing.T) {
	reg, err := testenv.StartRegistry(t.Context(), testenv.RegistryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	// A WAN link that cuts the first connection after 300 KB downstream.
	link, err := wan.Listen(t.Context(), "127.0.0.1:0", reg.Host, wan.Config{CutAfter: 300_000, CutOnce: true})
	if err != nil {
		t.Fatal(err)
	}
	defer link.Close()
	e := newEnv(t, envOptions{noMirror: true, upstreamURL: "http://" + link.Addr()})
	e.reg = reg
	img := e.push(t, "a/b:1", testenv.ImageSpec{Layers: 1, LayerSize: 1 << 20, Seed: 7})
	d, data := layerBytes(t, img, 0)
	resp, body, err := e.get(t, "/v2/a/b/blobs/"+d.String()+"?token="+e.token(t, "a/b", d), nil)
	if err != nil || resp.StatusCode != 200 || !bytes.Equal(body, data) {
		t.Fatalf("status %d, err %v, %d bytes (want %d)", resp.StatusCode, err, len(body), len(data))
	}
	if link.Stats().Cuts != 1 {
		t.Fatalf("link cut %d times, want 1", link.Stats().Cuts)
	}
	if n := reg.Counter.RangeGets(d.String()); n != 1 {
		t.Fatalf("registry saw %d range GETs, want 1 resume", n)
	}
	if n := reg.Counter.BlobGets(d.String()); n != 2 {
		t.Fatalf("registry saw %d GETs, want 2 (the cut one and the resume)", n)
	}
}

// corrupting flips one byte in every blob response body: a fault that a
// real registry cannot be made to produce on demand.
func corrupting(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.URL.Path, "/blobs/sha256:") || r.Method != http.MethodGet {
			next.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r)
		b := rec.Body.Bytes()
		if len(b) > 100 {
			b[100] ^= 0xff
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		w.Write(b)
	})
}

func TestCorruptUpstreamIsNeverServedClean(t *testing.T) {
	e := newEnv(t, envOptions{noMirror: true, regOpts: testenv.RegistryOptions{Wrap: corrupting}})
	img := e.push(t, "a/b:1", testenv.ImageSpec{Layers: 1, LayerSize: 512 << 10, Seed: 8})
	d, _ := layerBytes(t, img, 0)
	resp, body, err := e.get(t, "/v2/a/b/blobs/"+d.String()+"?token="+e.token(t, "a/b", d), nil)
	if err == nil {
		t.Fatalf("corrupt blob arrived cleanly: status %d, %d bytes", resp.StatusCode, len(body))
	}
	if _, err := e.store.Stat(casstore.MustParseDigest(d.String())); err == nil {
		t.Fatal("a corrupt blob was stored")
	}
	if st := e.store.Stats(); st.VerifyErrors != 1 || st.Blobs != 0 {
		t.Fatalf("store stats %+v", st)
	}
}

func TestParallelRangeFill(t *testing.T) {
	e := newEnv(t, envOptions{noMirror: true, fill: casstore.FillOptions{Parallel: 4, ChunkSize: 256 << 10}})
	img := e.push(t, "big/blob:1", testenv.ImageSpec{Layers: 1, LayerSize: 2<<20 + 5, Seed: 9})
	d, data := layerBytes(t, img, 0)
	resp, body, err := e.get(t, "/v2/big/blob/blobs/"+d.String()+"?token="+e.token(t, "big/blob", d), nil)
	if err != nil || resp.StatusCode != 200 || !bytes.Equal(body, data) {
		t.Fatalf("status %d, err %v", resp.StatusCode, err)
	}
	// 2 MiB + 5 in 256 KiB chunks: 9 range requests, no overlap.
	if n := e.reg.Counter.RangeGets(d.String()); n != 9 {
		t.Fatalf("registry saw %d range GETs, want 9", n)
	}
}

func TestFarRangeOfUncachedBlobGoesStraightUpstream(t *testing.T) {
	e := newEnv(t, envOptions{noMirror: true})
	e.server.Prefetch = 1
	img := e.push(t, "big/range:1", testenv.ImageSpec{Layers: 1, LayerSize: 12 << 20, Seed: 31})
	d, data := layerBytes(t, img, 0)
	off := int64(len(data)) * 9 / 10
	resp, body, err := e.get(t, "/v2/big/range/blobs/"+d.String()+"?token="+e.token(t, "big/range", d), map[string]string{"Range": fmt.Sprintf("bytes=%d-", off)})
	if err != nil || resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, data[off:]) {
		t.Fatalf("status %d, %d bytes, %v", resp.StatusCode, len(body), err)
	}
	if want := fmt.Sprintf("bytes %d-%d/%d", off, len(data)-1, len(data)); resp.Header.Get("Content-Range") != want {
		t.Fatalf("Content-Range %q, want %q", resp.Header.Get("Content-Range"), want)
	}
	// The whole blob is filled in the background, once.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := e.store.Stat(casstore.MustParseDigest(d.String())); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the blob was not filled in the background")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n := e.reg.Counter.RangeGets(d.String()); n != 1 {
		t.Fatalf("registry saw %d range GETs, want 1 (the client's range)", n)
	}
}
