package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// env is what every system shares: the tools, the backend registry and
// the WAN in front of it.
type env struct {
	dir      string // scratch directory
	bin      string // built tools
	dtrcache string // the dtrcache binary
	registry string // the backend registry program
	fill     string // extra `fill:` settings for the dtrcache caches (YAML flow map)
	log      *os.File
}

// buildTools compiles the dtrcache binary and the registry program.
func buildTools(ctx context.Context, e *env) error {
	e.bin = filepath.Join(e.dir, "bin")
	for _, t := range []struct{ out, pkg string }{
		{"dtrcache", "./cmd/dtrcache"},
		{"registry", "./testenv/cmd/registry"},
	} {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(e.bin, t.out), t.pkg)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("build %s: %v\n%s", t.pkg, err, out)
		}
	}
	e.dtrcache = filepath.Join(e.bin, "dtrcache")
	e.registry = filepath.Join(e.bin, "registry")
	return nil
}

// freePort returns a free loopback port.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// proc is a child process of the harness.
type proc struct {
	name string
	cmd  *exec.Cmd
}

// startProc starts a program with its output in the harness log.
func (e *env) startProc(name string, args ...string) (*proc, error) {
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = e.log, e.log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	return &proc{name: name, cmd: cmd}, nil
}

// stop terminates the process group and waits.
func (p *proc) stop() {
	if p == nil || p.cmd.Process == nil {
		return
	}
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	done := make(chan struct{})
	go func() { p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
}

// pids returns the process group's PIDs (nginx runs workers).
func (p *proc) pids() []int {
	if p == nil || p.cmd.Process == nil {
		return nil
	}
	pgid := p.cmd.Process.Pid
	var out []int
	entries, _ := os.ReadDir("/proc")
	for _, ent := range entries {
		var pid int
		if _, err := fmt.Sscanf(ent.Name(), "%d", &pid); err != nil {
			continue
		}
		if g, err := syscall.Getpgid(pid); err == nil && g == pgid {
			out = append(out, pid)
		}
	}
	return out
}

// waitHTTP waits until url answers any HTTP status.
func waitHTTP(ctx context.Context, url string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		if err := httpGetStatus(ctx, url); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not answer within 30s", url)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// writeFile writes a config file.
func writeFile(path, content string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(strings.TrimLeft(content, "\n")), 0o600)
}
