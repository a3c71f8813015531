package main

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
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dtrcache/dtrcache/policy"
	"github.com/dtrcache/dtrcache/proxy/jobs"
	"github.com/dtrcache/dtrcache/testenv"
	"github.com/dtrcache/dtrcache/testenv/wan"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"go.uber.org/zap/zaptest"
)

// The accounts of the policy tests' origins; every password is "dtrcache".
const testPasswordHash = "$2a$10$N3N0cxJHa5KfodDks9hHNOpix3AsPJZTDpfG1HT8CfF1Pu2k673gC"

// originFiles writes an origin's configuration under dir: users admin,
// alice, bob and mirror; access rules; keys made at start; extra is
// appended to origin.yml. It returns the path of origin.yml.
func originFiles(t testing.TB, dir, backend, access, extra string) string {
	t.Helper()
	var htpasswd strings.Builder
	for _, u := range []string{"admin", "alice", "bob", "mirror"} {
		fmt.Fprintf(&htpasswd, "%s:%s\n", u, testPasswordHash)
	}
	files := map[string]string{"htpasswd": htpasswd.String(), "access.yml": access}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	yml := fmt.Sprintf(`backend: {url: '%s'}
auth: {htpasswd: %s}
policy: %s
data_dir: %s
keys: {dir: %s, generate: true}
shutdown_grace: 1s
%s`, backend, filepath.Join(dir, "htpasswd"), filepath.Join(dir, "access.yml"), filepath.Join(dir, "data"), filepath.Join(dir, "keys"), extra)
	path := filepath.Join(dir, "origin.yml")
	if err := os.WriteFile(path, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// inProcessOrigin serves an origin in this process at addr until stop.
type inProcessOrigin struct {
	addr string
	stop func()
}

func startOriginAt(t testing.TB, path, addr string) *inProcessOrigin {
	t.Helper()
	cfg, err := loadOriginConfig(path, "", "", "")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serveOrigin(ctx, cfg, zaptest.NewLogger(t).Named("eu"), ln) }()
	o := &inProcessOrigin{addr: ln.Addr().String()}
	var once sync.Once
	o.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("origin at %s: %v", o.addr, err)
			}
		})
	}
	t.Cleanup(o.stop)
	waitHTTP(t, "http://"+o.addr+"/readyz")
	return o
}

// childOrigin runs `dtrcache origin` in a child process (this test binary,
// re-executed into TestOriginChildProcess), so that a test can SIGKILL it.
type childOrigin struct {
	cmd  *exec.Cmd
	addr string
	log  *bytes.Buffer
	done chan struct{}
}

func startChildOrigin(t *testing.T, path, addr string) *childOrigin {
	t.Helper()
	c := &childOrigin{addr: addr, log: &bytes.Buffer{}, done: make(chan struct{})}
	c.cmd = exec.Command(os.Args[0], "-test.run=^TestOriginChildProcess$")
	c.cmd.Env = append(os.Environ(), "DTRCACHE_TEST_ORIGIN_CONFIG="+path, "DTRCACHE_TEST_ORIGIN_ADDR="+addr)
	c.cmd.Stdout, c.cmd.Stderr = c.log, c.log
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		c.cmd.Wait()
		close(c.done)
	}()
	t.Cleanup(func() {
		c.cmd.Process.Signal(syscall.SIGTERM)
		<-c.done
		if t.Failed() {
			t.Logf("child origin log:\n%s", tail(c.log.String(), 60))
		}
	})
	waitHTTP(t, "http://"+addr+"/readyz")
	return c
}

func (c *childOrigin) kill(t *testing.T) {
	t.Helper()
	c.cmd.Process.Signal(syscall.SIGKILL)
	<-c.done
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// TestOriginChildProcess is the child of startChildOrigin; it does nothing
// in a normal test run.
func TestOriginChildProcess(t *testing.T) {
	path := os.Getenv("DTRCACHE_TEST_ORIGIN_CONFIG")
	if path == "" {
		t.Skip("runs only as the child of a test")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	os.Exit(run(ctx, []string{"origin", "--config", path, "--addr", os.Getenv("DTRCACHE_TEST_ORIGIN_ADDR"), "--log-format", "console"}, os.Stdout, os.Stderr))
}

func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func waitHTTP(t testing.TB, url string) {
	t.Helper()
	waitUntil(t, 30*time.Second, "ready: "+url, func() bool {
		resp, err := http.Get(url)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

func waitUntil(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not %s within %s", what, d)
		}
		time.Sleep(20 * time.Millisecond) // polling a condition
	}
}

// api calls an origin's API as user (password "dtrcache").
func api(t testing.TB, base, user, method, path, body string, out any) int {
	t.Helper()
	req, err := http.NewRequest(method, base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		req.SetBasicAuth(user, "dtrcache")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %d %s: %v", method, path, resp.StatusCode, b, err)
		}
	}
	return resp.StatusCode
}

func jobsOfPolicy(t *testing.T, base, policyID string) []jobs.Job {
	t.Helper()
	var out struct{ Jobs []jobs.Job }
	if code := api(t, base, "admin", http.MethodGet, "/api/v0/jobs?policy="+policyID+"&limit=1000", "", &out); code != http.StatusOK {
		t.Fatalf("jobs: %d", code)
	}
	return out.Jobs
}

// waitPolicyJobs waits until policyID has n jobs, all ended, and returns them.
func waitPolicyJobs(t *testing.T, base, policyID string, n int, d time.Duration) []jobs.Job {
	t.Helper()
	var js []jobs.Job
	waitUntil(t, d, fmt.Sprintf("%d jobs of %s ended", n, policyID), func() bool {
		js = jobsOfPolicy(t, base, policyID)
		if len(js) < n {
			return false
		}
		for _, j := range js {
			if !j.State.Terminal() {
				return false
			}
		}
		return true
	})
	return js
}

// waitMirrored waits until the image src names is at dst, whole, and every
// job of the policies has ended; it returns the policies' jobs.
func waitMirrored(t *testing.T, base string, src string, so testenv.RemoteOptions, dst string, do testenv.RemoteOptions, d time.Duration, policyIDs ...string) []jobs.Job {
	t.Helper()
	waitUntil(t, d, dst+" mirrored", func() bool {
		return testenv.SameImage(context.Background(), src, so, dst, do) == nil
	})
	var all []jobs.Job
	for _, id := range policyIDs {
		all = append(all, waitPolicyJobs(t, base, id, 1, d)...)
	}
	return all
}

func allDone(t *testing.T, js []jobs.Job) {
	t.Helper()
	for _, j := range js {
		if j.State != jobs.Done {
			var lines []string
			for _, l := range j.Log {
				lines = append(lines, l.Message)
			}
			t.Fatalf("job %s (%s) ended %s: %s\n%s", j.ID, j.Action, j.State, j.LastError, strings.Join(lines, "\n"))
		}
	}
}

// poller reads every tag of a repository through an origin, over and
// over, and records any image it finds incomplete: a target must never
// show a manifest whose blobs are missing.
type poller struct {
	stop   chan struct{}
	done   chan struct{}
	mu     sync.Mutex
	broken []string
	seen   map[string]bool
}

func startPoller(t *testing.T, host, repo string) *poller {
	p := &poller{stop: make(chan struct{}), done: make(chan struct{}), seen: map[string]bool{}}
	o := testenv.RemoteOptions{Username: "admin", Password: "dtrcache"}
	go func() {
		defer close(p.done)
		for {
			select {
			case <-p.stop:
				return
			default:
			}
			req, _ := http.NewRequest(http.MethodGet, "http://"+host+"/v2/"+repo+"/tags/list", nil)
			req.SetBasicAuth("admin", "dtrcache")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				time.Sleep(20 * time.Millisecond) // the origin may be down on purpose
				continue
			}
			var tl struct{ Tags []string }
			json.NewDecoder(resp.Body).Decode(&tl)
			resp.Body.Close()
			for _, tag := range tl.Tags {
				// A tag being written may be listed before it resolves
				// (distribution lists the tag's directory first): only a
				// manifest that resolves counts.
				raw, _, err := testenv.ManifestOf(context.Background(), host+"/"+repo+":"+tag, o)
				if err != nil {
					continue
				}
				digest := "sha256:" + sha256Hex(raw)
				if err := testenv.CompleteImage(context.Background(), host+"/"+repo+"@"+digest, o); err != nil && !isDown(err) {
					p.mu.Lock()
					p.broken = append(p.broken, tag+": "+err.Error())
					p.mu.Unlock()
				}
				p.mu.Lock()
				p.seen[tag] = true
				p.mu.Unlock()
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	return p
}

func sha256Hex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func isDown(err error) bool {
	return strings.Contains(err.Error(), "connection refused") || strings.Contains(err.Error(), "connection reset") || strings.Contains(err.Error(), "EOF")
}

func (p *poller) finish(t *testing.T) {
	t.Helper()
	close(p.stop)
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.broken) > 0 {
		t.Fatalf("a reader at the target saw incomplete images: %v", p.broken)
	}
	if len(p.seen) == 0 {
		t.Fatal("the poller never saw a tag: it proved nothing")
	}
}

// TestPoliciesAcrossOrigins is issue 11's acceptance test with real
// origins: US and EU, each in front of its own distribution backend, a
// WAN link between them, and a remote registry with Bearer-token auth.
// Pushes through the US origin are promoted dev → qa and mirrored to EU's
// prod; a poll mirror follows the remote. Faults: EU down while
// mirroring, the WAN cut in the middle of a 256 MiB layer, the US origin
// SIGKILLed with a job running. Throughout, a reader at EU never sees an
// image whose blobs are missing.
func TestPoliciesAcrossOrigins(t *testing.T) {
	if testing.Short() {
		t.Skip("moves a few hundred MiB")
	}
	ctx := context.Background()
	usBackend, err := testenv.StartRegistry(ctx, testenv.RegistryOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer usBackend.Close()
	euBackend, err := testenv.StartRegistry(ctx, testenv.RegistryOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer euBackend.Close()
	// The remote of the poll mirror: Bearer tokens from a token server.
	tokDir := t.TempDir()
	remoteAccess, _ := policy.NewAccess(policy.AccessConfig{Repositories: []policy.RepoRule{{Pattern: "**", Grants: []policy.Grant{{User: "puller", Actions: []policy.Action{policy.ActionPush}}}}}})
	ts, err := testenv.StartTokenServer(testenv.TokenServerOptions{Dir: tokDir, Users: map[string]string{"puller": "pull-secret"}, Access: remoteAccess})
	if err != nil {
		t.Fatal(err)
	}
	defer ts.Close()
	remoteReg, err := testenv.StartRegistry(ctx, testenv.RegistryOptions{Token: ts})
	if err != nil {
		t.Fatal(err)
	}
	defer remoteReg.Close()
	remoteOpts := testenv.RemoteOptions{Username: "puller", Password: "pull-secret"}

	euDir := t.TempDir()
	euAddr := freeAddr(t)
	euPath := originFiles(t, euDir, euBackend.URL, "admins: [admin]\nrepositories:\n  - {pattern: 'prod/**', grants: [{user: mirror, actions: [push]}]}\n", "")
	eu := startOriginAt(t, euPath, euAddr)
	link, err := wan.Listen(ctx, "127.0.0.1:0", euAddr, wan.Config{Latency: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer link.Close()

	usDir := t.TempDir()
	usAddr := freeAddr(t)
	usAccess := `admins: [admin]
teams: [{name: devs, members: [alice]}]
repositories:
  - {pattern: 'dev/**', grants: [{team: devs, actions: [admin]}, {user: bob, actions: [push]}]}
  - {pattern: 'qa/**', grants: [{team: devs, actions: [push]}]}
  - {pattern: '**', grants: [{user: bob, actions: [pull]}]}
`
	usPath := originFiles(t, usDir, usBackend.URL, usAccess, "policies: {allow_private: [127.0.0.0/8], workers: 4}\n")
	us := startChildOrigin(t, usPath, usAddr)
	usURL := "http://" + us.addr
	alice := testenv.RemoteOptions{Username: "alice", Password: "dtrcache"}
	admin := testenv.RemoteOptions{Username: "admin", Password: "dtrcache"}

	// Policies: alice (admin of dev/app) promotes; the administrator
	// mirrors qa/app to EU with EU's mirror account; bob may not.
	var created map[string]any
	if code := api(t, usURL, "alice", http.MethodPost, "/api/v0/repositories/dev/app/promotionPolicies",
		`{"enabled":true,"targetRepository":"qa/app","rules":[{"field":"tag","operator":"semver","values":[">=1.0.0"]}],"tagTemplate":"%n-%Y%m%d"}`, &created); code != http.StatusCreated {
		t.Fatalf("create the promotion: %d %v", code, created)
	}
	promotion := created["id"].(string)
	if code := api(t, usURL, "admin", http.MethodPost, "/api/v0/repositories/qa/app/pushMirroringPolicies",
		`{"enabled":true,"remoteHost":"http://`+link.Addr()+`","remoteRepository":"prod/app","username":"mirror","password":"dtrcache"}`, &created); code != http.StatusCreated {
		t.Fatalf("create the push mirror: %d %v", code, created)
	}
	mirror := created["id"].(string)
	var denied struct {
		Errors []struct{ Code, Message string }
	}
	if code := api(t, usURL, "bob", http.MethodPost, "/api/v0/repositories/dev/app/promotionPolicies", `{"enabled":true,"targetRepository":"qa/x"}`, &denied); code != http.StatusForbidden ||
		len(denied.Errors) != 1 || denied.Errors[0].Code != "DENIED" {
		t.Fatalf("bob creating a policy: %d %+v, want 403 DENIED", code, denied)
	}
	if code := api(t, usURL, "admin", http.MethodPost, "/api/v0/repositories/mirror/x/pollMirroringPolicies",
		`{"enabled":true,"remoteHost":"http://169.254.169.254","remoteRepository":"x"}`, &denied); code != http.StatusBadRequest ||
		!strings.Contains(denied.Errors[0].Message, "link-local") {
		t.Fatalf("a remote on the metadata address: %d %+v, want 400", code, denied)
	}

	reader := startPoller(t, eu.addr, "prod/app")
	top := t
	date := time.Now().UTC().Format("20060102")

	t.Run("push, promote by semver, mirror", func(t *testing.T) {
		img := pushImage(t, usAddr+"/dev/app:1.2.0", alice, 2, 512<<10, 1)
		pushImage(t, usAddr+"/dev/app:1.3.0-rc1", alice, 2, 512<<10, 2)
		allDone(t, waitMirrored(t, usURL, usAddr+"/dev/app:1.2.0", alice, eu.addr+"/prod/app:1.2.0-"+date, admin, time.Minute, promotion, mirror))
		if tags := tagList(t, usAddr, "qa/app", admin); strings.Join(tags, ",") != "1.2.0-"+date {
			t.Fatalf("qa/app has %v, want only 1.2.0-%s", tags, date)
		}
		d, _ := img.Digest()
		if err := testenv.SameImage(ctx, usAddr+"/dev/app@"+d.String(), alice, eu.addr+"/prod/app:1.2.0-"+date, admin); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("a multi-platform index with its signature arrives whole", func(t *testing.T) {
		idx, err := testenv.MultiPlatformIndex(7, 256<<10)
		if err != nil {
			t.Fatal(err)
		}
		if err := testenv.PushIndex(ctx, usAddr+"/dev/app:1.4.0", idx, alice); err != nil {
			t.Fatal(err)
		}
		digest, _ := idx.Digest()
		mt, _ := idx.MediaType()
		size, _ := idx.Size()
		sig, _ := testenv.Signature(v1.Descriptor{MediaType: mt, Digest: digest, Size: size}, []byte(`{"critical":{"image":{"docker-manifest-digest":"`+digest.String()+`"}}}`))
		sigDigest, _ := sig.Digest()
		waitUntil(t, time.Minute, "1.4.0 at EU", func() bool {
			return testenv.SameImage(ctx, usAddr+"/dev/app:1.4.0", alice, eu.addr+"/prod/app:1.4.0-"+date, admin) == nil
		})
		// The signature comes after the image (cosign signs what was
		// pushed): it follows the image to qa and to EU.
		if err := testenv.Push(ctx, usAddr+"/dev/app@"+sigDigest.String(), sig, alice); err != nil {
			t.Fatal(err)
		}
		// The signature is there, found as a client finds referrers
		// (the API, or the tag scheme where the registry has none).
		subject, err := name.NewDigest(eu.addr+"/prod/app@"+digest.String(), name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		waitUntil(t, time.Minute, "the signature listed at EU", func() bool {
			refs, err := remote.Referrers(subject, remote.WithAuth(&authn.Basic{Username: "admin", Password: "dtrcache"}))
			if err != nil {
				return false
			}
			rm, _ := refs.IndexManifest()
			for _, d := range rm.Manifests {
				if d.Digest == sigDigest {
					return true
				}
			}
			return false
		})
		allDone(t, waitPolicyJobs(t, usURL, promotion, 1, time.Minute))
		allDone(t, waitPolicyJobs(t, usURL, mirror, 1, time.Minute))
	})

	t.Run("poll mirroring with Bearer auth", func(t *testing.T) {
		pushImage(t, remoteReg.Host+"/library/alpine:3.20", remoteOpts, 1, 256<<10, 20)
		if code := api(t, usURL, "admin", http.MethodPost, "/api/v0/repositories/mirror/alpine/pollMirroringPolicies?initialEvaluation=true",
			`{"enabled":true,"remoteHost":"`+remoteReg.URL+`","remoteRepository":"library/alpine","username":"puller","password":"pull-secret","interval":"1h"}`, &created); code != http.StatusCreated {
			t.Fatalf("create the poll mirror: %d %v", code, created)
		}
		poll := created["id"].(string)
		allDone(t, waitPolicyJobs(t, usURL, poll, 2, time.Minute))
		pushImage(t, remoteReg.Host+"/library/alpine:3.21", remoteOpts, 1, 256<<10, 21)
		var run struct{ Jobs []jobs.Job }
		if code := api(t, usURL, "admin", http.MethodPost, "/api/v0/jobs", `{"action":"poll_mirror"}`, &run); code != http.StatusAccepted || len(run.Jobs) != 1 {
			t.Fatalf("poll now: %d %+v", code, run)
		}
		allDone(t, waitPolicyJobs(t, usURL, poll, 4, time.Minute))
		for _, tag := range []string{"3.20", "3.21"} {
			if err := testenv.SameImage(ctx, remoteReg.Host+"/library/alpine:"+tag, remoteOpts, usAddr+"/mirror/alpine:"+tag, admin); err != nil {
				t.Fatal(err)
			}
		}
	})

	t.Run("EU down while mirroring", func(t *testing.T) {
		eu.stop()
		pushImage(t, usAddr+"/dev/app:2.0.0", alice, 2, 512<<10, 3)
		var failing jobs.Job
		waitUntil(t, time.Minute, "the mirror job failing while EU is down", func() bool {
			for _, j := range jobsOfPolicy(t, usURL, mirror) {
				if j.State == jobs.Waiting && j.Attempts >= 1 && j.LastError != "" {
					failing = j
					return true
				}
			}
			return false
		})
		t.Logf("while EU is down: attempt %d failed: %s", failing.Attempts, failing.LastError)
		eu = startOriginAt(top, euPath, euAddr)
		allDone(t, waitMirrored(t, usURL, usAddr+"/dev/app:2.0.0", alice, eu.addr+"/prod/app:2.0.0-"+date, admin, 2*time.Minute, mirror))
	})

	t.Run("WAN cut in the middle of a 256 MiB layer", func(t *testing.T) {
		const layer = 256 << 20
		img, err := testenv.GenerateImage(testenv.ImageSpec{Layers: 1, LayerSize: layer, Seed: 40})
		if err != nil {
			t.Fatal(err)
		}
		if err := testenv.Push(ctx, usAddr+"/dev/app:3.0.0-big", img, alice); err != nil { // not promoted: a pre-release
			t.Fatal(err)
		}
		link.ResetStats()
		link.SetConfig(wan.Config{Latency: 5 * time.Millisecond, CutUpAtLinkBytes: layer / 2})
		if err := testenv.Push(ctx, usAddr+"/dev/app:3.0.0", img, alice); err != nil {
			t.Fatal(err)
		}
		allDone(t, waitMirrored(t, usURL, usAddr+"/dev/app:3.0.0", alice, eu.addr+"/prod/app:3.0.0-"+date, admin, 3*time.Minute, mirror))
		st := link.Stats()
		if st.Cuts != 1 {
			t.Fatalf("%d cuts: the test cut nothing", st.Cuts)
		}
		if ratio := float64(st.BytesUp) / layer; ratio > 1.05 {
			t.Fatalf("%d bytes over the WAN for a %d-byte layer cut half way: %.3f×, want ≤ 1.05×", st.BytesUp, layer, ratio)
		} else {
			t.Logf("WAN bytes for the 256 MiB layer cut at 50 %%: %.4f× the layer", ratio)
		}
	})

	t.Run("SIGKILL of the US origin with a job running", func(t *testing.T) {
		const layer = 64 << 20
		link.SetConfig(wan.Config{Latency: 5 * time.Millisecond, Bandwidth: 24 << 20})
		img, err := testenv.GenerateImage(testenv.ImageSpec{Layers: 1, LayerSize: layer, Seed: 50})
		if err != nil {
			t.Fatal(err)
		}
		if err := testenv.Push(ctx, usAddr+"/dev/app:4.0.0", img, alice); err != nil {
			t.Fatal(err)
		}
		var running jobs.Job
		waitUntil(t, time.Minute, "the mirror of 4.0.0 running with bytes sent", func() bool {
			for _, j := range jobsOfPolicy(t, usURL, mirror) {
				if j.State == jobs.Running && j.Progress.BytesDone > 8<<20 {
					running = j
					return true
				}
			}
			return false
		})
		us.kill(t)
		t.Logf("killed the US origin with job %s at %d bytes", running.ID, running.Progress.BytesDone)
		us = startChildOrigin(top, usPath, usAddr)
		allDone(t, waitMirrored(t, usURL, usAddr+"/dev/app:4.0.0", alice, eu.addr+"/prod/app:4.0.0-"+date, admin, 3*time.Minute, mirror))
		var j jobs.Job
		api(t, usURL, "admin", http.MethodGet, "/api/v0/jobs/"+running.ID, "", &j)
		if j.State != jobs.Done || j.Attempts < 2 {
			t.Fatalf("the killed job: %s after %d attempts, want done after a second", j.State, j.Attempts)
		}
	})
	reader.finish(t)
}

func pushImage(t testing.TB, ref string, o testenv.RemoteOptions, layers int, size int64, seed uint64) v1.Image {
	t.Helper()
	img, err := testenv.GenerateImage(testenv.ImageSpec{Layers: layers, LayerSize: size, Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	if err := testenv.Push(context.Background(), ref, img, o); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	return img
}

func tagList(t *testing.T, host, repo string, o testenv.RemoteOptions) []string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+host+"/v2/"+repo+"/tags/list", nil)
	req.SetBasicAuth(o.Username, o.Password)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tl struct{ Tags []string }
	json.NewDecoder(resp.Body).Decode(&tl)
	return tl.Tags
}

// TestPolicyFile: the origin applies its policy file at start (the API
// cannot change those policies), refuses to start with every problem of
// a bad file named by file, line, policy and key, and removes a policy
// taken out of the file.
func TestPolicyFile(t *testing.T) {
	ctx := context.Background()
	backend, err := testenv.StartRegistry(ctx, testenv.RegistryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer backend.Close()
	dir := t.TempDir()
	polFile := filepath.Join(dir, "policies.yml")
	write := func(body string) {
		if err := os.WriteFile(polFile, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	path := originFiles(t, dir, backend.URL, "admins: [admin]\n", "policies: {file: "+polFile+"}\n")
	serve := func() (string, func(), error) {
		cfg, err := loadOriginConfig(path, "", "", "")
		if err != nil {
			return "", nil, err
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- serveOrigin(ctx, cfg, zaptest.NewLogger(t), ln) }()
		url := "http://" + ln.Addr().String()
		ready := make(chan struct{})
		go func() {
			defer close(ready)
			for i := 0; i < 500; i++ {
				if resp, err := http.Get(url + "/readyz"); err == nil {
					resp.Body.Close()
					if resp.StatusCode == http.StatusOK {
						return
					}
				}
				select {
				case <-done:
					return
				case <-time.After(20 * time.Millisecond):
				}
			}
		}()
		select {
		case err := <-done:
			cancel()
			return "", nil, err
		case <-ready:
		}
		return url, func() { cancel(); <-done }, nil
	}

	write(`promotion:
  - name: dev-to-qa
    sourceRepository: dev/app
    targetRepository: qa/app
    rules: [{field: tag, operator: semver, values: [">=1.0.0"]}]
    tagTemplate: "%n-%Y%m%d"
  - name: off
    enabled: false
    sourceRepository: dev/b
    targetRepository: qa/b
`)
	url, stop, err := serve()
	if err != nil {
		t.Fatal(err)
	}
	var list []map[string]any
	api(t, url, "admin", http.MethodGet, "/api/v0/policies", "", &list)
	if len(list) != 2 || list[0]["id"] != "file-dev-to-qa" || list[0]["source"] != "file" || list[0]["enabled"] != true || list[1]["enabled"] != false {
		t.Fatalf("policies from the file: %v", list)
	}
	var e struct {
		Errors []struct{ Code, Message string }
	}
	if code := api(t, url, "admin", http.MethodDelete, "/api/v0/repositories/dev/app/promotionPolicies/file-dev-to-qa", "", &e); code != http.StatusConflict || e.Errors[0].Code != "MANAGED" {
		t.Fatalf("deleting a file policy through the API: %d %+v", code, e)
	}
	stop()

	// A bad file: the origin does not start, and says everything at once.
	write(`promotion:
  - name: loop
    sourceRepository: dev/app
    targetRepository: dev/app
  - name: fine
    sourceRepository: dev/c
    targetRepository: qa/c
    tagTemplate: "%n-%q"
pollMirroring:
  - name: inside
    localRepository: mirror/x
    remoteHost: http://169.254.169.254
    remoteRepository: x
    colour: blue
`)
	_, _, err = serve()
	if err == nil || !strings.Contains(err.Error(), `field colour not found`) {
		t.Fatalf("unknown key: %v", err)
	}
	write(`promotion:
  - name: loop
    sourceRepository: dev/app
    targetRepository: dev/app
  - name: fine
    sourceRepository: dev/c
    targetRepository: qa/c
    tagTemplate: "%n-%q"
pollMirroring:
  - name: inside
    localRepository: mirror/x
    remoteHost: http://169.254.169.254
    remoteRepository: x
`)
	_, _, err = serve()
	for _, want := range []string{
		polFile + `:2: promotion policy "loop": targetRepository: "dev/app" is the source repository`,
		polFile + `:5: promotion policy "fine": tagTemplate:`,
		polFile + `:10: pollMirroring policy "inside": remoteHost: 169.254.169.254 resolves to 169.254.169.254, link-local address`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v\nlacks %q", err, want)
		}
	}

	// Taken out of the file: gone at the next start.
	write("promotion:\n  - {name: off, enabled: false, sourceRepository: dev/b, targetRepository: qa/b}\n")
	url, stop, err = serve()
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	list = nil
	api(t, url, "admin", http.MethodGet, "/api/v0/policies", "", &list)
	if len(list) != 1 || list[0]["id"] != "file-off" {
		t.Fatalf("after removing dev-to-qa from the file: %v", list)
	}
}
