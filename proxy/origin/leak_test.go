package origin_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/dtrcache/dtrcache/proxy/regapi"
	"go.uber.org/goleak"
)

// TestCloseWaitsForHints: a prefetch hint goes out on a goroutine the
// origin server owns. Close cancels one stuck on a cache that does not
// answer, and returns once it has ended; when everything is closed no
// goroutine is left.
func TestCloseWaitsForHints(t *testing.T) {
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() {
		goleak.VerifyNone(t, before, goleak.IgnoreTopFunction("github.com/docker/go-events.(*Broadcaster).run")) // distribution's, never stopped
	})
	tp := newTopology(t)
	tp.push(t, "website/ui:9", 9)
	hinted := make(chan struct{}, 1)
	stuck := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == regapi.PrefetchPath {
			io.Copy(io.Discard, r.Body) // so the server notices when the origin hangs up
			select {
			case hinted <- struct{}{}:
			default:
			}
			<-r.Context().Done() // never answers: the origin gives up
			return
		}
		w.WriteHeader(http.StatusOK) // /healthz
	}))
	t.Cleanup(stuck.Close)
	tp.api(t, "admin", "POST", "/api/v0/content_caches", map[string]string{"name": "stuck", "host": stuck.URL})
	tp.api(t, "alice", "PATCH", "/api/v0/accounts/alice/settings", map[string]string{"contentCache": "stuck"})
	tp.getManifest(t, "alice", "website/ui", "9")
	select {
	case <-hinted:
	case <-time.After(10 * time.Second):
		t.Fatal("no hint reached the cache")
	}
	start := time.Now()
	tp.srv.Close()
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("Close took %s: it did not cancel the hint (which times out after 5s)", took)
	}
	buf := make([]byte, 1<<20)
	if stacks := string(buf[:runtime.Stack(buf, true)]); strings.Contains(stacks, "origin.(*Server).hint(") {
		t.Fatalf("Close returned while a hint runs:\n%s", stacks)
	}
}
