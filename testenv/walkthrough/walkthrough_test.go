// Package walkthrough runs the README's walkthroughs as written: the
// shell blocks in order, the YAML blocks written where the README says,
// with the walkthroughs' addresses and /etc, /var/lib and /tmp paths
// moved into the test's own ports and directory.
//
// What the test reads from README.md:
//   - a ```sh block runs with bash -euo pipefail from the repository's
//     root; `bin/dtrcache` is the binary the test builds. A line ending in
//     `&` starts a server: the test waits until its address answers (its
//     --addr, or the http.addr of its --config file) before the next
//     block, and stops it at the end.
//   - `<!-- file: PATH -->` (or `<!-- append: PATH -->`) before a fenced
//     block writes (or appends) the block to PATH; other YAML blocks are
//     examples and are not run.
//   - `<!-- restart: PATH -->` stops the server started with
//     `--config PATH` and starts it again, as the README tells the reader.
package walkthrough

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// walkthroughs are the README sections the test runs, in order (the
// second continues the first).
var walkthroughs = []string{
	"## Walkthrough: an origin and one cache",
	"### Running policies: dev → qa → prod across two origins",
}

// step is one thing the README asks for.
type step struct {
	kind string // "sh", "file", "append", "restart"
	path string // file, append, restart
	body string
	line int // in README.md
}

func TestREADMEWalkthroughs(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the README's walkthroughs (a minute): not in -short")
	}
	for _, tool := range []string{"bash", "skopeo", "curl", "timeout"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed (testenv/scripts/install-deps.sh installs it)", tool)
		}
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var steps []step
	for _, heading := range walkthroughs {
		s, err := parseSection(string(readme), heading)
		if err != nil {
			t.Fatal(err)
		}
		steps = append(steps, s...)
	}

	r := newRunner(t, root)
	r.build(t)
	for _, s := range steps {
		s.body, s.path = r.subst(s.body), r.subst(s.path)
		t.Logf("README.md:%d: %s %s", s.line, s.kind, s.path)
		switch s.kind {
		case "file", "append":
			r.write(t, s)
		case "restart":
			r.restart(t, s)
		case "sh":
			r.run(t, s)
		}
	}
}

var (
	fenceRE  = regexp.MustCompile("^```([a-z]*)\\s*$")
	markerRE = regexp.MustCompile(`^<!-- (file|append|restart): (\S+) -->\s*$`)
)

// parseSection returns the steps of the README section under heading (to
// the next heading of its level or above).
func parseSection(readme, heading string) ([]step, error) {
	lines := strings.Split(readme, "\n")
	level := strings.Index(heading, " ")
	start := -1
	for i, l := range lines {
		if l == heading {
			start = i
			break
		}
	}
	if start < 0 {
		return nil, fmt.Errorf("README.md has no heading %q", heading)
	}
	var steps []step
	var pending *step // a file or append marker waiting for its block
	for i := start + 1; i < len(lines); i++ {
		l := lines[i]
		if h := strings.Index(l, " "); strings.HasPrefix(l, "#") && h > 0 && h <= level && strings.Trim(l[:h], "#") == "" {
			break
		}
		if m := markerRE.FindStringSubmatch(l); m != nil {
			if m[1] == "restart" {
				steps = append(steps, step{kind: "restart", path: m[2], line: i + 1})
			} else {
				pending = &step{kind: m[1], path: m[2], line: i + 1}
			}
			continue
		}
		m := fenceRE.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		j := i + 1
		for j < len(lines) && !strings.HasPrefix(lines[j], "```") {
			j++
		}
		if j == len(lines) {
			return nil, fmt.Errorf("README.md:%d: unclosed code block", i+1)
		}
		body := strings.Join(lines[i+1:j], "\n") + "\n"
		switch {
		case pending != nil:
			pending.body = body
			steps = append(steps, *pending)
			pending = nil
		case m[1] == "sh":
			steps = append(steps, step{kind: "sh", body: body, line: i + 1})
		}
		i = j
	}
	if pending != nil {
		return nil, fmt.Errorf("README.md:%d: a %s marker without a code block", pending.line, pending.kind)
	}
	return steps, nil
}

// runner runs the steps in a directory of its own.
type runner struct {
	root, dir string
	repl      *strings.Replacer
	servers   map[string]*server // by --config path, and by --addr
	all       []*server
}

// server is a block's background process group.
type server struct {
	pgid int
	line string // the command line that starts it
	logs string
}

// addrRE finds the walkthroughs' addresses; each gets a free port.
var addrRE = regexp.MustCompile(`127\.0\.0\.1:(\d{4,5})`)

func newRunner(t *testing.T, root string) *runner {
	dir := t.TempDir()
	r := &runner{root: root, dir: dir, servers: map[string]*server{}}
	t.Cleanup(r.stopAll)
	return r
}

// build makes bin/dtrcache and the address and path substitutions.
func (r *runner) build(t *testing.T) {
	t.Helper()
	cmd := exec.Command("go", "build", "-o", filepath.Join(r.dir, "bin", "dtrcache"), "./cmd/dtrcache")
	cmd.Dir = r.root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	readme, _ := os.ReadFile(filepath.Join(r.root, "README.md"))
	ports := map[string]bool{}
	for _, m := range addrRE.FindAllStringSubmatch(string(readme), -1) {
		ports[m[1]] = true
	}
	var pairs []string
	for _, p := range sortedKeys(ports) {
		pairs = append(pairs, "127.0.0.1:"+p, freeAddr(t))
	}
	for _, prefix := range []string{"/etc/dtrcache", "/var/lib/dtrcache", "/tmp/"} {
		pairs = append(pairs, prefix, r.dir+prefix)
	}
	for _, d := range []string{"etc", "var/lib", "tmp"} {
		if err := os.MkdirAll(filepath.Join(r.dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	pairs = append(pairs, "bin/dtrcache", filepath.Join(r.dir, "bin", "dtrcache"))
	r.repl = strings.NewReplacer(pairs...)
}

func (r *runner) subst(s string) string { return r.repl.Replace(s) }

func (r *runner) write(t *testing.T, s step) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(s.path), 0o755); err != nil {
		t.Fatal(err)
	}
	flag := os.O_CREATE | os.O_WRONLY | os.O_TRUNC
	if s.kind == "append" {
		flag = os.O_CREATE | os.O_WRONLY | os.O_APPEND
	}
	f, err := os.OpenFile(s.path, flag, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s.body); err != nil {
		t.Fatal(err)
	}
}

// run runs a shell block, then waits for the servers it started.
func (r *runner) run(t *testing.T, s step) {
	t.Helper()
	script := filepath.Join(r.dir, fmt.Sprintf("block-%d.sh", s.line))
	os.WriteFile(script, []byte(s.body), 0o600)
	logs := filepath.Join(r.dir, fmt.Sprintf("block-%d.log", s.line))
	out, err := os.Create(logs)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd := exec.Command("bash", "-euo", "pipefail", script)
	cmd.Dir, cmd.Stdout, cmd.Stderr = r.root, out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var bg []string
	for _, l := range strings.Split(s.body, "\n") {
		if strings.HasSuffix(strings.TrimSpace(l), "&") {
			bg = append(bg, strings.TrimSuffix(strings.TrimSpace(l), "&"))
		}
	}
	if len(bg) > 0 {
		// The block's process group outlives it: its servers.
		srv := &server{pgid: cmd.Process.Pid, logs: logs}
		r.all = append(r.all, srv)
		for _, l := range bg {
			srv := &server{pgid: srv.pgid, line: l, logs: logs}
			for _, key := range serverKeys(l) {
				r.servers[key] = srv
			}
		}
	}
	err = cmd.Wait()
	if err != nil {
		t.Fatalf("README.md:%d: the block failed (%v):\n%s\n--- output:\n%s", s.line, err, s.body, readFile(logs))
	}
	for _, l := range bg {
		r.waitServing(t, l, logs, s.line)
	}
}

// serverKeys are the names a background command is found by: its
// --config file and its --addr.
func serverKeys(line string) []string {
	var keys []string
	f := strings.Fields(line)
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "--config" || f[i] == "--addr" {
			keys = append(keys, f[i+1])
		}
	}
	return keys
}

// waitServing waits until the server a background line started answers
// HTTP at its address (go run compiles first: up to two minutes).
func (r *runner) waitServing(t *testing.T, line, logs string, readmeLine int) {
	t.Helper()
	addr := ""
	f := strings.Fields(line)
	for i := 0; i+1 < len(f); i++ {
		switch f[i] {
		case "--addr":
			addr = f[i+1]
		case "--config":
			var c struct {
				HTTP struct {
					Addr string `yaml:"addr"`
				} `yaml:"http"`
			}
			b, err := os.ReadFile(f[i+1])
			if err == nil {
				err = yaml.Unmarshal(b, &c)
			}
			if err != nil {
				t.Fatalf("README.md:%d: %s: %v", readmeLine, f[i+1], err)
			}
			addr = c.HTTP.Addr
		}
	}
	if addr == "" {
		t.Fatalf("README.md:%d: cannot tell where %q listens", readmeLine, line)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		resp, err := http.Get("http://" + addr + "/")
		if err == nil {
			resp.Body.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("README.md:%d: %q does not answer at %s:\n%s", readmeLine, line, addr, readFile(logs))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// restart stops the server started with --config path and runs its
// command line again.
func (r *runner) restart(t *testing.T, s step) {
	t.Helper()
	srv := r.servers[s.path]
	if srv == nil {
		t.Fatalf("README.md:%d: no server was started with --config %s", s.line, s.path)
	}
	stopGroup(srv.pgid)
	r.run(t, step{kind: "sh", body: srv.line + " &\n", line: s.line})
}

func (r *runner) stopAll() {
	for _, s := range r.all {
		stopGroup(s.pgid)
	}
}

// stopGroup ends a process group the test started (SIGTERM, then SIGKILL
// after 10 s) and waits until it is gone.
func stopGroup(pgid int) {
	syscall.Kill(-pgid, syscall.SIGTERM)
	deadline := time.Now().Add(10 * time.Second)
	for syscall.Kill(-pgid, 0) == nil {
		if time.Now().After(deadline) {
			syscall.Kill(-pgid, syscall.SIGKILL)
			deadline = time.Now().Add(time.Hour)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func sortedKeys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func readFile(path string) string {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return ""
	}
	var tail []string
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		tail = append(tail, sc.Text())
		if len(tail) > 60 {
			tail = tail[1:]
		}
	}
	return strings.Join(tail, "\n")
}
