package failover_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
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
	"syscall"
	"testing"
	"time"

	"github.com/dtrcache/dtrcache/testenv"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

const password = "failover-test-pw"

// buildOnce builds bin/dtrcache for the tests of this package (BIN, if
// set, is used instead: make test-shell's binary).
var buildOnce = sync.OnceValues(func() (string, error) {
	if b := os.Getenv("DTRCACHE_BIN"); b != "" {
		return b, nil
	}
	dir, err := os.MkdirTemp("", "dtrcache-failover-bin")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "dtrcache")
	out, err := exec.Command("go", "build", "-o", bin, "../../cmd/dtrcache").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

func TestMain(m *testing.M) {
	code := m.Run()
	if b, err := buildOnce(); err == nil && os.Getenv("DTRCACHE_BIN") == "" {
		os.RemoveAll(filepath.Dir(b))
	}
	os.Exit(code)
}

// proc is one dtrcache process of a test.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

func (p *proc) signal(s syscall.Signal) { p.cmd.Process.Signal(s) }

// wait waits for the process to exit, at most d.
func (p *proc) wait(d time.Duration) bool {
	select {
	case <-p.done:
		return true
	case <-time.After(d):
		return false
	}
}

// stack is an origin (a real dtrcache process) in front of a backend
// registry (distribution, in-process) with one registered cache "asia"
// (a dtrcache process that can be killed and restarted on its address),
// alice's profile pointing at it, and one image pushed.
type stack struct {
	t          *testing.T
	bin, dir   string
	origin     string // host:port
	cacheAddr  string // host:port the cache listens on
	cacheExtra string // more cache.yml
	cache      *proc
	cacheN     int
	ref        string
	manifest   v1.Hash
	clients    []client // the clients of the loops
	layers     []v1.Hash
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

type stackOptions struct {
	// cacheYAML is added to the cache's configuration.
	cacheYAML string
	// probeHost registers the cache with this probe address ("" for its
	// own address).
	probeHost string
}

func newStack(t *testing.T, opt stackOptions) *stack {
	t.Helper()
	if _, err := exec.LookPath("skopeo"); err != nil {
		t.Skip("skopeo is not installed (make deps)")
	}
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	s := &stack{t: t, bin: bin, dir: t.TempDir(), origin: freeAddr(t), cacheAddr: freeAddr(t), cacheExtra: opt.cacheYAML}
	ctx := context.Background()
	reg, err := testenv.StartRegistry(ctx, testenv.RegistryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })

	run := func(stdin string, args ...string) string {
		cmd := exec.Command(bin, args...)
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("dtrcache %v: %v", args, err)
		}
		return string(out)
	}
	run("", "keys", "generate", "--dir", filepath.Join(s.dir, "keys"))
	var htpasswd strings.Builder
	for _, u := range []string{"admin", "alice", "cache-asia"} {
		htpasswd.WriteString(run(password+"\n", "htpasswd", "--cost", "4", u))
	}
	s.write("htpasswd", htpasswd.String())
	s.write("cache-password", password+"\n")
	s.write("policy.yml", `admins: [admin]
teams:
  - {name: web, members: [alice]}
  - {name: caches, members: [cache-asia]}
repositories:
  - pattern: "website/**"
    grants: [{team: web, actions: [pull]}]
  - pattern: "**"
    grants: [{team: caches, actions: [pull]}]
`)
	s.write("origin.yml", fmt.Sprintf(`log: {level: info, format: json}
http: {addr: %s}
backend: {url: %s}
auth: {htpasswd: %s}
policy: %s
data_dir: %s
keys: {dir: %s, issuer: origin}
caches: {health_interval: 1s}
`, s.origin, reg.URL, s.path("htpasswd"), s.path("policy.yml"), s.path("origin"), s.path("keys")))
	s.start("origin", "origin", "--config", s.path("origin.yml"))
	s.waitHTTP("http://" + s.origin + "/readyz")
	s.startCache()

	host := "http://" + s.cacheAddr
	reg1 := map[string]any{"name": "asia", "host": host, "account": "cache-asia"}
	if opt.probeHost != "" {
		reg1["probeHost"] = opt.probeHost
	}
	if code, body := s.api("admin", "POST", "/api/v0/content_caches", reg1); code != http.StatusCreated {
		t.Fatalf("register asia: %d %s", code, body)
	}
	if code, body := s.api("alice", "PATCH", "/api/v0/accounts/alice/settings", map[string]string{"contentCache": "asia"}); code != http.StatusOK {
		t.Fatalf("alice's settings: %d %s", code, body)
	}
	img, err := testenv.GenerateImage(testenv.ImageSpec{Layers: 4, LayerSize: 2 << 20, Seed: 19, Realistic: true})
	if err != nil {
		t.Fatal(err)
	}
	// Pushed to the backend directly (the origin's push path is not
	// what these tests are about).
	if err := testenv.Push(ctx, reg.Host+"/website/ui:1", img, testenv.RemoteOptions{}); err != nil {
		t.Fatal(err)
	}
	s.ref = s.origin + "/website/ui:1"
	s.manifest, _ = img.Digest()
	ls, _ := img.Layers()
	for _, l := range ls {
		d, _ := l.Digest()
		s.layers = append(s.layers, d)
	}
	return s
}

func (s *stack) path(name string) string { return filepath.Join(s.dir, name) }

func (s *stack) write(name, content string) {
	s.t.Helper()
	if err := os.WriteFile(s.path(name), []byte(content), 0o600); err != nil {
		s.t.Fatal(err)
	}
}

// start runs the binary with its output in <dir>/<name>.log; the test's
// end kills it.
func (s *stack) start(name string, args ...string) *proc {
	s.t.Helper()
	logf, err := os.OpenFile(s.path(name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		s.t.Fatal(err)
	}
	cmd := exec.Command(s.bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	s.t.Cleanup(func() {
		cmd.Process.Kill()
		<-p.done
		if s.t.Failed() {
			b, _ := os.ReadFile(s.path(name + ".log"))
			if len(b) > 6000 {
				b = b[len(b)-6000:]
			}
			s.t.Logf("--- %s.log (end) ---\n%s", name, b)
		}
	})
	return p
}

// startCache starts (or restarts) the cache on its address and waits
// until it answers.
func (s *stack) startCache() {
	s.t.Helper()
	s.write("cache.yml", fmt.Sprintf(`name: asia
log: {level: info, format: json}
http: {addr: %s, host: http://%s}
storage: {root: %s}
redirect:
  upstreams: [http://%s]
  username: cache-asia
  password_file: %s
  issuer: origin
%s`, s.cacheAddr, s.cacheAddr, s.path("cache"), s.origin, s.path("cache-password"), s.cacheExtra))
	s.cacheN++
	s.cache = s.start(fmt.Sprintf("cache-%d", s.cacheN), "cache", "--config", s.path("cache.yml"))
	s.waitHTTP("http://" + s.cacheAddr + "/healthz")
}

func (s *stack) waitHTTP(url string) {
	s.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("%s does not answer: %v", url, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *stack) api(user, method, path string, body any) (int, []byte) {
	s.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, "http://"+s.origin+path, rd)
	req.SetBasicAuth(user, password)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// cacheState is the caches API's view of asia.
type cacheState struct {
	Healthy    bool   `json:"healthy"`
	Mode       string `json:"mode"`
	Reason     string `json:"reason"`
	NodeHealth []struct {
		Mode       string `json:"mode"`
		Version    string `json:"version"`
		StoreBlobs int64  `json:"storeBlobs"`
	} `json:"nodeHealth"`
}

func (s *stack) state() cacheState {
	s.t.Helper()
	code, body := s.api("alice", "GET", "/api/v0/content_caches/asia", nil)
	var st cacheState
	if code != http.StatusOK || json.Unmarshal(body, &st) != nil {
		s.t.Fatalf("GET asia: %d %s", code, body)
	}
	return st
}

// waitState waits until the API shows asia in the wanted state and
// returns it.
func (s *stack) waitState(what string, d time.Duration, ok func(cacheState) bool) cacheState {
	s.t.Helper()
	deadline := time.Now().Add(d)
	for {
		st := s.state()
		if ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("asia never became %s within %s: %+v", what, d, st)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var noFollow = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// redirected reports whether the origin sends alice's GET of the first
// layer to the cache now.
func (s *stack) redirected() bool {
	req, _ := http.NewRequest(http.MethodGet, "http://"+s.origin+"/v2/website/ui/blobs/"+s.layers[0].String(), nil)
	req.SetBasicAuth("alice", password)
	resp, err := noFollow.Do(req)
	if err != nil {
		return false
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusTemporaryRedirect
}

// metric sums the samples of a metric whose line starts with prefix.
func metric(base, prefix string) float64 {
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var sum float64
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, prefix) {
			var v float64
			if _, err := fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v); err == nil {
				sum += v
			}
		}
	}
	return sum
}

// verifyDir checks a skopeo dir: copy: the manifest is the image's, each
// blob file's bytes hash to its name.
func verifyDir(dir string, want v1.Hash) error {
	m, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		return err
	}
	if sum := sha256.Sum256(m); hex.EncodeToString(sum[:]) != want.Hex {
		return fmt.Errorf("manifest sha256:%x, want %s", sum, want)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	n := 0
	for _, e := range entries {
		if len(e.Name()) != 64 {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return err
		}
		if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != e.Name() {
			return fmt.Errorf("blob %s has the bytes of sha256:%x", e.Name(), sum)
		}
		n++
	}
	if n < 2 {
		return fmt.Errorf("%d blobs in %s", n, dir)
	}
	return nil
}
