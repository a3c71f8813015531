package origin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/dtrcache/dtrcache/proxy/origin"
	"github.com/dtrcache/dtrcache/testenv"
)

// TestPushNotRecordedIsRefused: the backend took a manifest, but one of
// the origin's Pushed callbacks (policy jobs, events) fails. The origin
// tries that one again, without repeating those that already succeeded
// (an event log that failed once must not queue the policy jobs twice, a
// policy engine that failed once must not record the events twice), and
// when it cannot record the push within RecordTimeout the client gets a
// 503 UNAVAILABLE instead of a 201, so that it pushes again (a 201 would
// lose the push's jobs and events). The store being down is a fault made
// by hand: a callback returns an error.
func TestPushNotRecordedIsRefused(t *testing.T) {
	const never = 1 << 30
	tests := []struct {
		name      string
		failures  []int // callback i fails failures[i] times, then succeeds
		timeout   time.Duration
		want      int
		wantCalls []int // calls of each callback; nil: retried, then 503
	}{
		{name: "recorded at once", failures: []int{0}, timeout: 5 * time.Second, want: http.StatusCreated, wantCalls: []int{1}},
		{name: "recorded at the third attempt", failures: []int{2}, timeout: 10 * time.Second, want: http.StatusCreated, wantCalls: []int{3}},
		{name: "the second fails once: the first is not repeated", failures: []int{0, 1}, timeout: 10 * time.Second, want: http.StatusCreated, wantCalls: []int{1, 2}},
		{name: "the first fails once: the second runs once", failures: []int{1, 0}, timeout: 10 * time.Second, want: http.StatusCreated, wantCalls: []int{2, 1}},
		{name: "never recorded", failures: []int{never}, timeout: 600 * time.Millisecond, want: http.StatusServiceUnavailable},
		{name: "the second never recorded", failures: []int{0, never}, timeout: 600 * time.Millisecond, want: http.StatusServiceUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var mu sync.Mutex
			calls := make([][]origin.Push, len(tt.failures))
			tp := newTopology(t, func(c *origin.Config) {
				c.RecordTimeout = tt.timeout
				for i, failures := range tt.failures {
					c.Pushed = append(c.Pushed, func(_ context.Context, p origin.Push) error {
						mu.Lock()
						defer mu.Unlock()
						calls[i] = append(calls[i], p)
						if len(calls[i]) <= failures {
							return errors.New("state store unavailable")
						}
						return nil
					})
				}
			})
			img, err := testenv.GenerateImage(testenv.ImageSpec{Layers: 1, LayerSize: 4 << 10, Seed: 7})
			if err != nil {
				t.Fatal(err)
			}
			// The blobs go straight to the backend; the manifest through
			// the origin.
			if err := testenv.Push(context.Background(), tp.reg.Host+"/website/ui:base", img, testenv.RemoteOptions{}); err != nil {
				t.Fatal(err)
			}
			raw, _ := img.RawManifest()
			mt, _ := img.MediaType()
			want, _ := img.Digest()
			code, body := putManifest(t, tp, "admin", "website/ui", "2.0", raw, string(mt))
			if code != tt.want {
				t.Fatalf("manifest PUT: %d %s, want %d", code, body, tt.want)
			}
			mu.Lock()
			defer mu.Unlock()
			n := make([]int, len(calls))
			for i := range calls {
				n[i] = len(calls[i])
			}
			if tt.want == http.StatusServiceUnavailable {
				var e struct {
					Errors []struct{ Code, Message string } `json:"errors"`
				}
				if err := json.Unmarshal(body, &e); err != nil || len(e.Errors) != 1 || e.Errors[0].Code != "UNAVAILABLE" {
					t.Fatalf("503 body %s: want one UNAVAILABLE error (%v)", body, err)
				}
				last := len(n) - 1
				if n[last] < 2 {
					t.Fatalf("the failing callback was called %d times before giving up, want retries", n[last])
				}
				for i := range last {
					if n[i] != 1 {
						t.Fatalf("callback %d, which succeeded, was called %d times, want 1 (calls %v)", i, n[i], n)
					}
				}
			} else if !slices.Equal(n, tt.wantCalls) {
				t.Fatalf("callbacks called %v times, want %v", n, tt.wantCalls)
			}
			for i := range calls {
				last := calls[i][len(calls[i])-1]
				if last.Repository != "website/ui" || last.Tag != "2.0" || last.Digest != want.String() || !bytes.Equal(last.Manifest, raw) {
					t.Fatalf("callback %d told of %s:%s@%s (%d bytes), want website/ui:2.0@%s", i, last.Repository, last.Tag, last.Digest, len(last.Manifest), want)
				}
			}
		})
	}
}

// TestDeleteNotRecordedIsRefused: a manifest delete the backend accepted
// whose event cannot be recorded answers 503, as a push does.
func TestDeleteNotRecordedIsRefused(t *testing.T) {
	var mu sync.Mutex
	calls := 0
	tp := newTopology(t, func(c *origin.Config) {
		c.RecordTimeout = 600 * time.Millisecond
		c.Deleted = func(context.Context, origin.Operation) error {
			mu.Lock()
			defer mu.Unlock()
			calls++
			return errors.New("state store unavailable")
		}
	})
	img := tp.push(t, "website/ui:gone", 3)
	d, _ := img.Digest()
	req, _ := http.NewRequest(http.MethodDelete, tp.origin.URL+"/v2/website/ui/manifests/"+d.String(), nil)
	req.SetBasicAuth("admin", password)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("DELETE: %d, want 503", resp.StatusCode)
	}
	mu.Lock()
	defer mu.Unlock()
	if calls < 2 {
		t.Fatalf("Deleted called %d times, want retries", calls)
	}
}

func putManifest(t *testing.T, tp *topology, user, repo, ref string, body []byte, mediaType string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPut, tp.origin.URL+"/v2/"+repo+"/manifests/"+ref, bytes.NewReader(body))
	req.Header.Set("Content-Type", mediaType)
	req.SetBasicAuth(user, password)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out bytes.Buffer
	_, _ = out.ReadFrom(resp.Body)
	return resp.StatusCode, out.Bytes()
}

// TestLinkChecksNameTheOrigin: the HEADs the origin sends the backend to
// check that a blob is in a repository carry Config.UserAgent, so the
// backend's log tells them from clients' requests.
func TestLinkChecksNameTheOrigin(t *testing.T) {
	tp := newTopology(t, func(c *origin.Config) { c.UserAgent = "dtrcache/test" })
	img := tp.push(t, "website/ui:ua", 11)
	tp.mu.Lock()
	tp.blobHeads = nil // the push's own HEADs
	tp.mu.Unlock()
	if code, body := tp.api(t, "admin", "POST", "/api/v0/content_caches", map[string]string{"name": "asia", "host": tp.cache.URL, "account": "cache-asia"}); code != http.StatusCreated {
		t.Fatalf("register asia: %d %s", code, body)
	}
	if code, body := tp.api(t, "alice", "PATCH", "/api/v0/accounts/alice/settings", map[string]string{"contentCache": "asia"}); code != http.StatusOK {
		t.Fatalf("alice settings: %d %s", code, body)
	}
	want, _ := img.Digest()
	if res, err := tp.pull("alice", "website/ui:ua"); err != nil || res.Digest != want {
		t.Fatalf("alice pull: %v %v", res.Digest, err)
	}
	tp.mu.Lock()
	defer tp.mu.Unlock()
	if len(tp.blobHeads) == 0 {
		t.Fatal("the origin checked no blob at the backend")
	}
	for _, ua := range tp.blobHeads {
		if ua != "dtrcache/test" {
			t.Fatalf("a link check at the backend had User-Agent %q, want dtrcache/test (all: %q)", ua, tp.blobHeads)
		}
	}
}
