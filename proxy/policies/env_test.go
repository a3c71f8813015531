package policies_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dtrcache/dtrcache/policy"
	"github.com/dtrcache/dtrcache/proxy/jobs"
	"github.com/dtrcache/dtrcache/proxy/netguard"
	"github.com/dtrcache/dtrcache/proxy/policies"
	"github.com/dtrcache/dtrcache/proxy/state"
	"github.com/dtrcache/dtrcache/proxy/state/badgerstate"
	"github.com/dtrcache/dtrcache/proxy/upstream"
	"github.com/dtrcache/dtrcache/testenv"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"go.uber.org/zap/zaptest"
)

// clock is a settable clock for poll schedules.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// env is a local registry ("us", what the origin's backend would be), a
// remote one ("eu"), the state store, the policy service and a job runner.
type env struct {
	t      *testing.T
	us, eu *testenv.Registry
	store  state.Store
	queue  *jobs.Queue
	svc    *policies.Service
	clock  *clock
	api    *httptest.Server
	access *policy.Access

	mu     sync.Mutex
	pushed []string // repo:tag@digest the service wrote locally
	// refusePushes is how many of the next Pushed calls fail (an event
	// store that is down: a fault the test makes by hand).
	refusePushes int
}

// onPush tells the service about a push and fails the test on an error.
func (e *env) onPush(t *testing.T, p policies.Push) []jobs.Job {
	t.Helper()
	js, err := e.svc.OnPush(context.Background(), p)
	if err != nil {
		t.Fatalf("OnPush %+v: %v", p, err)
	}
	return js
}

type envOptions struct {
	// allowPrivate lets remotes be on loopback (every test registry is).
	allowPrivate bool
	remoteHosts  []string
	// euOptions configure the remote registry.
	euOptions testenv.RegistryOptions
}

func newEnv(t *testing.T, o envOptions) *env {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	e := &env{t: t, clock: &clock{t: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)}}
	var err error
	if e.us, err = testenv.StartRegistry(ctx, testenv.RegistryOptions{}); err != nil {
		t.Fatal(err)
	}
	if e.eu, err = testenv.StartRegistry(ctx, o.euOptions); err != nil {
		t.Fatal(err)
	}
	if e.store, err = badgerstate.Open(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	local, err := upstream.New(upstream.Config{URLs: []string{e.us.URL}})
	if err != nil {
		t.Fatal(err)
	}
	var allow []string
	if o.allowPrivate {
		allow = []string{"127.0.0.0/8"}
	}
	guard, err := netguard.New(netguard.Config{AllowPrivate: allow})
	if err != nil {
		t.Fatal(err)
	}
	secrets, err := policies.NewSecrets(e.store, bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	e.access, err = policy.NewAccess(policy.AccessConfig{
		Admins: []string{"admin"},
		Teams:  []policy.Team{{Name: "devs", Members: []string{"alice"}}},
		Repositories: []policy.RepoRule{
			{Pattern: "dev/**", Grants: []policy.Grant{{Team: "devs", Actions: []policy.Action{policy.ActionAdmin}}, {User: "bob", Actions: []policy.Action{policy.ActionPush}}}},
			{Pattern: "qa/**", Grants: []policy.Grant{{Team: "devs", Actions: []policy.Action{policy.ActionPush}}}},
			{Pattern: "**", Grants: []policy.Grant{{User: "bob", Actions: []policy.Action{policy.ActionPull}}}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	log := zaptest.NewLogger(t)
	e.queue = &jobs.Queue{Store: e.store, Now: e.clock.now}
	e.svc, err = policies.New(policies.Config{
		Store: e.store, Queue: e.queue, Local: local, Secrets: secrets, Guard: guard, RemoteHosts: o.remoteHosts,
		Access: e.access, Logger: log, Now: e.clock.now, PollCheckEvery: 20 * time.Millisecond,
		Pushed: func(_ context.Context, repo, tag, digest string) error {
			e.mu.Lock()
			defer e.mu.Unlock()
			if e.refusePushes > 0 {
				e.refusePushes--
				return errors.New("event store unavailable")
			}
			e.pushed = append(e.pushed, repo+":"+tag+"@"+digest)
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	runner := &jobs.Runner{Queue: e.queue, Executors: e.svc.Executors(), Classify: policies.Classify, Replica: "test",
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, ScanEvery: 20 * time.Millisecond, Logger: log.Named("jobs")}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); e.svc.Run(ctx) }()
	go func() { defer wg.Done(); runner.Run(ctx) }()
	e.api = httptest.NewServer(e.svc.Handler(authFunc(func(r *http.Request) (string, error) {
		u, _, _ := r.BasicAuth()
		return u, nil
	}), log.Named("audit")))
	t.Cleanup(func() {
		e.api.Close()
		cancel()
		wg.Wait()
		e.store.Close()
		e.us.Close()
		e.eu.Close()
	})
	if err := e.svc.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	return e
}

// authFunc adapts a function to policies.Authenticator.
type authFunc func(r *http.Request) (string, error)

func (f authFunc) User(r *http.Request) (string, error) { return f(r) }

// call makes an API request as user and decodes the JSON answer.
func (e *env) call(user, method, path string, body any, out any) int {
	e.t.Helper()
	var rd *bytes.Reader
	if s, ok := body.(string); ok {
		rd = bytes.NewReader([]byte(s))
	} else {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, e.api.URL+path, rd)
	if user != "" {
		req.SetBasicAuth(user, "x")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil {
		json.NewDecoder(resp.Body).Decode(out)
	}
	return resp.StatusCode
}

// create makes a policy through the API as admin and returns its id.
func (e *env) create(repo string, kind policies.Kind, initial bool, body string) string {
	e.t.Helper()
	var out map[string]any
	path := "/api/v0/repositories/" + repo + "/" + string(kind)
	if initial {
		path += "?initialEvaluation=true"
	}
	if code := e.call("admin", http.MethodPost, path, body, &out); code != http.StatusCreated {
		e.t.Fatalf("create %s on %s: %d %v", kind, repo, code, out)
	}
	return out["id"].(string)
}

// push writes a generated image to reg as repo:tag.
func push(t *testing.T, reg *testenv.Registry, repoTag string, seed uint64) v1.Hash {
	t.Helper()
	img, err := testenv.GenerateImage(testenv.ImageSpec{Layers: 2, LayerSize: 256 << 10, Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	if err := testenv.Push(context.Background(), reg.Host+"/"+repoTag, img, testenv.RemoteOptions{}); err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	return d
}

// jobsOf waits until the policy has n jobs that ended and returns them.
func (e *env) jobsOf(policyID string, n int) []jobs.Job {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		js, err := e.queue.List(context.Background(), jobs.Filter{PolicyID: policyID})
		if err != nil {
			e.t.Fatal(err)
		}
		ended := 0
		for _, j := range js {
			if j.State.Terminal() {
				ended++
			}
		}
		if ended >= n && ended == len(js) {
			return js
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("policy %s: %d of %d jobs ended within 30s: %+v", policyID, ended, n, js)
		}
		time.Sleep(10 * time.Millisecond) // polling a condition
	}
}

func tagsOf(t *testing.T, reg *testenv.Registry, repo string) []string {
	t.Helper()
	resp, err := http.Get(reg.URL + "/v2/" + repo + "/tags/list")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return nil
	}
	var body struct{ Tags []string }
	json.NewDecoder(resp.Body).Decode(&body)
	return body.Tags
}

func result(t *testing.T, j jobs.Job) policies.CopyResult {
	t.Helper()
	var r policies.CopyResult
	if err := json.Unmarshal(j.Result, &r); err != nil {
		t.Fatalf("job %s result %s: %v", j.ID, j.Result, err)
	}
	return r
}

func mustState(t *testing.T, j jobs.Job, s jobs.State) {
	t.Helper()
	if j.State != s {
		var log []string
		for _, l := range j.Log {
			log = append(log, l.Message)
		}
		t.Fatalf("job %s (%s) is %s, want %s: %s\n%s", j.ID, j.Action, j.State, s, j.LastError, strings.Join(log, "\n"))
	}
}

func ref(reg *testenv.Registry, repoTag string) string { return reg.Host + "/" + repoTag }

func fmtDate(t time.Time) string { return fmt.Sprintf("%04d%02d%02d", t.Year(), t.Month(), t.Day()) }
