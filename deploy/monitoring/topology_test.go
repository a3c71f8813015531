// Package monitoring holds the tests of dtrcache's monitoring artefacts:
// the Prometheus rules (deploy/prometheus) and the Grafana dashboard
// (deploy/grafana) against what the real binaries export, and a real
// Prometheus scraping a running origin and cache.
package monitoring

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dtrcache/dtrcache/policy"
	"github.com/dtrcache/dtrcache/testenv"
)

// topology is a backend registry (in process), `dtrcache origin` and
// `dtrcache cache` (the asia cache, redirect mode) as processes of the
// production binary, on loopback.
type topology struct {
	registry              *testenv.Registry
	originAddr, cacheAddr string
	password              string
	blobs                 int // blob GETs of one pull of image: config and layers
	image                 string
}

const cacheName = "asia"

// startTopology starts the parts and registers the cache for alice; the
// test's cleanup stops them.
func startTopology(t *testing.T, ctx context.Context) *topology {
	t.Helper()
	bin := dtrcacheBinary(t)
	dir := t.TempDir()
	reg, err := testenv.StartRegistry(ctx, testenv.RegistryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	tp := &topology{registry: reg, originAddr: freeAddr(t), cacheAddr: freeAddr(t), password: "dtrcache-test-pw", blobs: 4, image: "website/ui:1"}

	var htpasswd strings.Builder
	for _, u := range []string{"admin", "alice", "cache-asia"} {
		h, err := policy.HashPassword(tp.password, 4)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&htpasswd, "%s:%s\n", u, h)
	}
	k, err := policy.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := policy.WriteKeyPair(filepath.Join(dir, "keys"), k, time.Now()); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"htpasswd": htpasswd.String(),
		"policy.yml": `admins: [admin]
teams: [{name: caches, members: [cache-asia]}]
repositories:
  - {pattern: "**", grants: [{user: alice, actions: [pull]}, {team: caches, actions: [pull]}]}
`,
		"origin.yml": fmt.Sprintf(`http: {addr: %q}
backend: {url: %q}
auth: {htpasswd: %s/htpasswd}
policy: %s/policy.yml
data_dir: %s/origin
keys: {dir: %s/keys, issuer: dtrcache-test}
caches: {health_interval: 500ms}
shutdown_grace: 2s
`, tp.originAddr, reg.URL, dir, dir, dir, dir),
		"cache-password": tp.password,
		// Prefetching off: a cold pull is then all misses, a warm one all hits.
		"cache.yml": fmt.Sprintf(`name: %s
http: {addr: %q}
storage: {root: %s/store, max_size: 1GiB}
redirect:
  upstreams: [http://%s]
  username: cache-asia
  password_file: %s/cache-password
  issuer: dtrcache-test
fill: {prefetch: 0}
shutdown_grace: 2s
`, cacheName, tp.cacheAddr, dir, tp.originAddr, dir),
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	startProcess(t, dir, "origin", bin, "origin", "--config", filepath.Join(dir, "origin.yml"))
	waitReady(t, ctx, "http://"+tp.originAddr+"/readyz")
	startProcess(t, dir, "cache", bin, "cache", "--config", filepath.Join(dir, "cache.yml"))
	waitReady(t, ctx, "http://"+tp.cacheAddr+"/readyz")

	tp.api(t, ctx, "admin", http.MethodPost, "/api/v0/content_caches",
		map[string]string{"name": cacheName, "host": "http://" + tp.cacheAddr, "account": "cache-asia"})
	tp.api(t, ctx, "alice", http.MethodPatch, "/api/v0/accounts/alice/settings", map[string]string{"contentCache": cacheName})
	waitFor(t, ctx, "the origin finds the cache healthy", func() bool {
		var c struct{ Healthy bool }
		return tp.apiGet(ctx, "/api/v0/content_caches/"+cacheName, &c) == nil && c.Healthy
	})
	tp.seed(t, ctx, 18)
	return tp
}

// seed pushes a generated image (tp.blobs - 1 layers and a config) as
// tp.image to the backend registry.
func (tp *topology) seed(t *testing.T, ctx context.Context, seed uint64) {
	t.Helper()
	img, err := testenv.GenerateImage(testenv.ImageSpec{Layers: tp.blobs - 1, LayerSize: 256 << 10, Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	if err := testenv.Push(ctx, tp.registry.Host+"/"+tp.image, img, testenv.RemoteOptions{}); err != nil {
		t.Fatal(err)
	}
}

// pull pulls the image through the origin as alice.
func (tp *topology) pull(t *testing.T, ctx context.Context) {
	t.Helper()
	if _, err := testenv.Pull(ctx, tp.originAddr+"/"+tp.image, testenv.RemoteOptions{Username: "alice", Password: tp.password}, nil); err != nil {
		t.Fatal(err)
	}
}

// promote runs a policy job: a promotion policy of the image's
// repository, evaluated on the tags it has, copies the image within the
// backend; it waits until the origin counts the job done.
func (tp *topology) promote(t *testing.T, ctx context.Context) {
	t.Helper()
	repo, _, _ := strings.Cut(tp.image, ":")
	tp.api(t, ctx, "admin", http.MethodPost, "/api/v0/repositories/"+repo+"/promotionPolicies?initialEvaluation=true",
		map[string]any{"enabled": true, "targetRepository": repo + "-promoted"})
	var done float64
	waitFor(t, ctx, "the promotion job is done", func() bool {
		done = 0
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+tp.originAddr+"/metrics", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "dtrcache_jobs_transitions_total{") && strings.Contains(l, `state="done"`) {
				fmt.Sscan(l[strings.LastIndex(l, " ")+1:], &done)
			}
		}
		return done >= 1
	})
}

// waitStored waits until the cache's store holds n blobs and no fill is
// running: a client has the last byte of a blob before the fill commits
// it, so a pull right after a cold one would join fills, not hit.
func (tp *topology) waitStored(t *testing.T, ctx context.Context, n int) {
	t.Helper()
	var blobs, fills float64
	waitFor(t, ctx, fmt.Sprintf("the cache stores %d blobs", n), func() bool {
		m := scrape(t, ctx, "http://"+tp.cacheAddr+"/metrics")
		blobs, fills = m["dtrcache_store_blobs"], m["dtrcache_store_fills_in_flight"]
		return blobs == float64(n) && fills == 0
	}, func() string { return fmt.Sprintf("%v blobs, %v fills in flight", blobs, fills) })
}

func (tp *topology) api(t *testing.T, ctx context.Context, user, method, path string, body any) {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequestWithContext(ctx, method, "http://"+tp.originAddr+path, bytes.NewReader(b))
	req.SetBasicAuth(user, tp.password)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		msg, _ := io.ReadAll(resp.Body)
		t.Fatalf("%s %s: %s %s", method, path, resp.Status, msg)
	}
}

func (tp *topology) apiGet(ctx context.Context, path string, out any) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+tp.originAddr+path, nil)
	req.SetBasicAuth("admin", tp.password)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(out)
}

// startProcess runs a command until the test ends (SIGTERM, then waits),
// its output in dir/<name>.log, shown if the test fails.
func startProcess(t *testing.T, dir, name, bin string, args ...string) {
	t.Helper()
	logPath := filepath.Join(dir, name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("--- %s log (last 4 kB):\n%s", name, tail(b, 4096))
		}
	})
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// freeAddr returns a loopback address with a port free at the time.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func waitReady(t *testing.T, ctx context.Context, url string) {
	t.Helper()
	waitFor(t, ctx, url+" answers 200", func() bool {
		resp, err := http.Get(url)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// waitFor polls cond until it holds, for at most 30 seconds; state, if
// given, describes what was seen instead.
func waitFor(t *testing.T, ctx context.Context, what string, cond func() bool, state ...func() string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) || ctx.Err() != nil {
			seen := ""
			for _, s := range state {
				seen += "; " + s()
			}
			t.Fatalf("timed out waiting until %s%s", what, seen)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// dtrcacheBinary builds cmd/dtrcache once per test binary: the tests look
// at what the program operators run exports.
func dtrcacheBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		if buildDir, buildErr = os.MkdirTemp("", "dtrcache-monitoring-test-"); buildErr != nil {
			return
		}
		out, err := exec.Command("go", "build", "-o", filepath.Join(buildDir, "dtrcache"), "../../cmd/dtrcache").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(buildDir, "dtrcache")
}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}
