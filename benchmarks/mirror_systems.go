package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"go/build"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/dtrcache/dtrcache/policy"
)

// systems returns the mirroring systems the options ask for.
func (m *mirrorEnv) systems(o options) ([]mirrorSystem, error) {
	want := func(name string) bool {
		return o.systems == "" || strings.Contains(","+o.systems+",", ","+name+",")
	}
	var out []mirrorSystem
	if want("dtrcache-push") {
		s, err := newDtrcachePush(m, o.policies)
		if err != nil {
			return out, err
		}
		out = append(out, s)
	}
	for _, p := range []struct {
		name, tool string
		make       func(tool string) mirrorSystem
	}{
		{"skopeo-sync", "skopeo", func(t string) mirrorSystem { return &skopeoSync{m: m, tool: t} }},
		{"regsync", "regsync", func(t string) mirrorSystem { return &regsync{m: m, tool: t} }},
		{"crane-copy", "crane", func(t string) mirrorSystem { return &craneCopy{m: m, tool: t} }},
	} {
		if !want(p.name) {
			continue
		}
		tool, err := findTool(p.tool)
		if err != nil {
			return out, fmt.Errorf("%s: %w (make deps installs it)", p.name, err)
		}
		out = append(out, p.make(tool))
	}
	return out, nil
}

// findTool finds a program on PATH or in GOPATH/bin (go install's).
func findTool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	p := filepath.Join(build.Default.GOPATH, "bin", name)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("%s is not installed", name)
	}
	return p, nil
}

// runTool runs a peer's command, its output appended to the harness log;
// a failure carries the output's last lines.
func (m *mirrorEnv) runTool(ctx context.Context, args ...string) error {
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Stdout = io.MultiWriter(&out, m.e.log)
	cmd.Stderr = cmd.Stdout
	fmt.Fprintf(m.e.log, "$ %s\n", strings.Join(args, " "))
	err := cmd.Run()
	if st := cmd.ProcessState; st != nil {
		m.toolCPU += (st.UserTime() + st.SystemTime()).Seconds()
	}
	if err != nil {
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		if len(lines) > 5 {
			lines = lines[len(lines)-5:]
		}
		return fmt.Errorf("%s: %w: %s", filepath.Base(args[0]), err, strings.Join(lines, " | "))
	}
	return nil
}

// --- dtrcache: a real `dtrcache origin` in front of the US registry; one
// push-mirroring policy per repository, created with initialEvaluation,
// timed until every job it queued is done.

type dtrcachePush struct {
	m        *mirrorEnv
	port     int
	dir      string
	policies string // extra policies: settings (YAML flow map entries)
	pw       string
	p        *proc
}

func newDtrcachePush(m *mirrorEnv, extra string) (*dtrcachePush, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	s := &dtrcachePush{m: m, port: port, dir: filepath.Join(m.dir, "origin"), pw: "bench-pw", policies: extra}
	h, err := policy.HashPassword(s.pw, 4)
	if err != nil {
		return nil, err
	}
	if err := writeFile(filepath.Join(s.dir, "htpasswd"), "admin:"+h+"\n"); err != nil {
		return nil, err
	}
	if err := writeFile(filepath.Join(s.dir, "access.yml"), "admins: [admin]\n"); err != nil {
		return nil, err
	}
	pol := `allow_private: ["127.0.0.0/8"]`
	if extra != "" {
		pol += ", " + strings.Trim(strings.TrimSpace(extra), "{}")
	}
	return s, writeFile(filepath.Join(s.dir, "origin.yml"), fmt.Sprintf(`
log: {level: warn}
http: {addr: "127.0.0.1:%d"}
backend: {url: %q}
auth: {htpasswd: %q}
policy: %q
data_dir: %q
keys: {dir: %q, issuer: bench, generate: true}
policies: {%s}
`, port, m.us.URL, filepath.Join(s.dir, "htpasswd"), filepath.Join(s.dir, "access.yml"), filepath.Join(s.dir, "data"), filepath.Join(s.dir, "keys"), pol))
}

func (s *dtrcachePush) name() string { return "dtrcache-push" }

// cpu is the origin's CPU time so far.
func (s *dtrcachePush) cpu() float64 {
	return cpuSeconds(s.p.pids())
}
func (s *dtrcachePush) peer() bool { return false }
func (s *dtrcachePush) stop()      { s.p.stop(); s.p = nil }

// prepare restarts the origin with an empty data directory: no policies,
// no jobs, nothing known about any remote.
func (s *dtrcachePush) prepare(ctx context.Context) error {
	s.stop()
	if err := os.RemoveAll(filepath.Join(s.dir, "data")); err != nil {
		return err
	}
	p, err := s.m.e.startProc("origin", s.m.e.dtrcache, "origin", "--config", filepath.Join(s.dir, "origin.yml"))
	if err != nil {
		return err
	}
	s.p = p
	return waitHTTP(ctx, fmt.Sprintf("http://127.0.0.1:%d/readyz", s.port))
}

func (s *dtrcachePush) mirror(ctx context.Context, dst string) error {
	var ids []string
	for _, im := range s.m.images {
		js, err := s.create(ctx, im.repo, "pushMirroringPolicies", map[string]any{
			"enabled": true, "remoteHost": "http://" + dst, "remoteRepository": im.target(),
		})
		if err != nil {
			return err
		}
		ids = append(ids, js...)
	}
	return s.wait(ctx, ids)
}

func (s *dtrcachePush) promote(ctx context.Context, repo string) error {
	ids, err := s.create(ctx, s.m.images[0].repo, "promotionPolicies", map[string]any{"enabled": true, "targetRepository": repo})
	if err != nil {
		return err
	}
	return s.wait(ctx, ids)
}

// create makes a policy with initialEvaluation=true and returns the jobs
// it queued.
func (s *dtrcachePush) create(ctx context.Context, repo, kind string, body any) ([]string, error) {
	var out struct {
		Jobs  []string `json:"jobs"`
		Error string   `json:"initialEvaluationError"`
	}
	if err := s.call(ctx, http.MethodPost, "/api/v0/repositories/"+repo+"/"+kind+"?initialEvaluation=true", body, &out); err != nil {
		return nil, err
	}
	if out.Error != "" || len(out.Jobs) == 0 {
		return nil, fmt.Errorf("policy on %s queued no job: %s", repo, out.Error)
	}
	return out.Jobs, nil
}

// wait polls the jobs until every one has ended; it fails unless all are
// done.
func (s *dtrcachePush) wait(ctx context.Context, ids []string) error {
	pending := append([]string(nil), ids...)
	for len(pending) > 0 {
		var next []string
		for _, id := range pending {
			var j struct {
				State, LastError string
			}
			if err := s.call(ctx, http.MethodGet, "/api/v0/jobs/"+id, nil, &j); err != nil {
				return err
			}
			switch j.State {
			case "done":
			case "error", "cancelled":
				return fmt.Errorf("job %s ended %s: %s", id, j.State, j.LastError)
			default:
				next = append(next, id)
			}
		}
		if pending = next; len(pending) == 0 {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

func (s *dtrcachePush) call(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, fmt.Sprintf("http://127.0.0.1:%d%s", s.port, path), rd)
	if err != nil {
		return err
	}
	req.SetBasicAuth("admin", s.pw)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: %s %s", method, path, resp.Status, bytes.TrimSpace(data))
	}
	return json.Unmarshal(data, out)
}

// --- skopeo sync (Debian's skopeo) of the ten repositories, listed in
// its YAML source, into <dst>/mirror, digests preserved, 3 retries.

type skopeoSync struct {
	m    *mirrorEnv
	tool string
}

func (s *skopeoSync) name() string                  { return "skopeo-sync" }
func (s *skopeoSync) peer() bool                    { return true }
func (s *skopeoSync) prepare(context.Context) error { return nil }
func (s *skopeoSync) stop()                         {}

func (s *skopeoSync) mirror(ctx context.Context, dst string) error {
	var y strings.Builder
	fmt.Fprintf(&y, "%s:\n  tls-verify: false\n  images:\n", s.m.us.Host)
	for _, im := range s.m.images {
		fmt.Fprintf(&y, "    %s: [%q]\n", im.repo, im.tag)
	}
	cfg := filepath.Join(s.m.dir, "skopeo-sync.yml")
	if err := writeFile(cfg, y.String()); err != nil {
		return err
	}
	return s.m.runTool(ctx, s.tool, "sync", "--src", "yaml", "--dest", "docker", "--dest-tls-verify=false", "--preserve-digests",
		"--retry-times", "3", cfg, dst+"/mirror")
}

func (s *skopeoSync) promote(ctx context.Context, repo string) error {
	im := s.m.images[0]
	return s.m.runTool(ctx, s.tool, "copy", "--src-tls-verify=false", "--dest-tls-verify=false", "--preserve-digests", "--retry-times", "3",
		"docker://"+s.m.us.Host+"/"+im.repo+":"+im.tag, "docker://"+s.m.us.Host+"/"+repo+":"+im.tag)
}

// --- regsync once (regclient), one image entry per repository, 4 at a
// time (regsync's defaults.parallel, as dtrcache runs 4 jobs at once).

type regsync struct {
	m    *mirrorEnv
	tool string
}

func (s *regsync) name() string                  { return "regsync" }
func (s *regsync) peer() bool                    { return true }
func (s *regsync) prepare(context.Context) error { return nil }
func (s *regsync) stop()                         {}

func (s *regsync) run(ctx context.Context, dst string, pairs [][2]string) error {
	var y strings.Builder
	fmt.Fprintf(&y, "version: 1\ncreds:\n  - registry: %s\n    tls: disabled\n", s.m.us.Host)
	if dst != s.m.us.Host {
		fmt.Fprintf(&y, "  - registry: %s\n    tls: disabled\n", dst)
	}
	fmt.Fprintf(&y, "defaults:\n  parallel: 4\n  skipDockerConfig: true\nsync:\n")
	for _, p := range pairs {
		fmt.Fprintf(&y, "  - source: %s\n    target: %s\n    type: image\n", p[0], p[1])
	}
	cfg := filepath.Join(s.m.dir, "regsync.yml")
	if err := writeFile(cfg, y.String()); err != nil {
		return err
	}
	return s.m.runTool(ctx, s.tool, "once", "--config", cfg)
}

func (s *regsync) mirror(ctx context.Context, dst string) error {
	var pairs [][2]string
	for _, im := range s.m.images {
		pairs = append(pairs, [2]string{s.m.us.Host + "/" + im.repo + ":" + im.tag, dst + "/" + im.target() + ":" + im.tag})
	}
	return s.run(ctx, dst, pairs)
}

func (s *regsync) promote(ctx context.Context, repo string) error {
	im := s.m.images[0]
	return s.run(ctx, s.m.us.Host, [][2]string{{s.m.us.Host + "/" + im.repo + ":" + im.tag, s.m.us.Host + "/" + repo + ":" + im.tag}})
}

// --- crane copy (go-containerregistry) in a loop, one image after the
// other.

type craneCopy struct {
	m    *mirrorEnv
	tool string
}

func (s *craneCopy) name() string                  { return "crane-copy" }
func (s *craneCopy) peer() bool                    { return true }
func (s *craneCopy) prepare(context.Context) error { return nil }
func (s *craneCopy) stop()                         {}

func (s *craneCopy) mirror(ctx context.Context, dst string) error {
	var errs []error
	for _, im := range s.m.images {
		if err := s.m.runTool(ctx, s.tool, "copy", "--insecure", s.m.us.Host+"/"+im.repo+":"+im.tag, dst+"/"+im.target()+":"+im.tag); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (s *craneCopy) promote(ctx context.Context, repo string) error {
	im := s.m.images[0]
	return s.m.runTool(ctx, s.tool, "copy", "--insecure", s.m.us.Host+"/"+im.repo+":"+im.tag, s.m.us.Host+"/"+repo+":"+im.tag)
}
