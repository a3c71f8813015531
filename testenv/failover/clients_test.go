package failover_test

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// client is one way of pulling an image, as a real client does it.
type client struct {
	name string
	// retries: the client retries what failed (the whole pull, or the
	// failed layer from the origin's URL), so it must never fail.
	retries bool
	pull    func(ctx context.Context, s *stack, dir string) error
}

// The clients of the loops, and Docker where an engine answers
// (loopClients). "docker-like" is go-containerregistry with what
// Docker's puller adds on top of one request: a failed layer download is
// tried again from the registry's URL (the origin) after a pause.
var baseClients = []client{
	{"skopeo --retry-times 3", true, skopeoPull(3)},
	{"skopeo", false, skopeoPull(0)},
	{"go-containerregistry (its retry transport)", false, ggcrPull(true, 0)},
	{"go-containerregistry (no retries)", false, ggcrPull(false, 0)},
	{"docker-like (config and layers retried)", true, ggcrPull(true, 3)},
}

// loopClients are the clients of the loops on this machine: the base ones
// and Docker where an engine answers (one worker: the engine pulls one
// image at a time and the pull is undone after each).
func loopClients(t *testing.T, s *stack) []client {
	cs := append([]client(nil), baseClients...)
	if exec.Command("docker", "info").Run() != nil {
		t.Log("no Docker engine answers 'docker info': Docker is not among the clients")
		return cs
	}
	cfg := s.path("docker")
	login := exec.Command("docker", "login", s.origin, "-u", "alice", "--password-stdin")
	login.Env = append(os.Environ(), "DOCKER_CONFIG="+cfg)
	login.Stdin = strings.NewReader(password)
	if out, err := login.CombinedOutput(); err != nil {
		t.Logf("docker login failed (%v: %s): Docker is not among the clients", err, out)
		return cs
	}
	return append(cs, client{"docker (its own retries)", true, dockerPull(cfg)})
}

// dockerPull pulls with the Docker engine, checks the image's digest and
// removes the image again (so the next pull downloads every layer).
func dockerPull(cfg string) func(ctx context.Context, s *stack, dir string) error {
	return func(ctx context.Context, s *stack, dir string) error {
		docker := func(args ...string) (string, error) {
			cmd := exec.CommandContext(ctx, "docker", args...)
			cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+cfg)
			out, err := cmd.CombinedOutput()
			return strings.TrimSpace(string(out)), err
		}
		if out, err := docker("image", "pull", "--quiet", s.ref); err != nil {
			return fmt.Errorf("docker pull: %v: %s", err, out)
		}
		defer docker("image", "rm", s.ref)
		out, err := docker("image", "inspect", "--format", "{{join .RepoDigests \" \"}}", s.ref)
		if err != nil {
			return fmt.Errorf("docker inspect: %v: %s", err, out)
		}
		if !strings.Contains(out, s.manifest.String()) {
			return fmt.Errorf("docker pulled %s, want %s", out, s.manifest)
		}
		return nil
	}
}

func skopeoPull(retries int) func(ctx context.Context, s *stack, dir string) error {
	return func(ctx context.Context, s *stack, dir string) error {
		args := []string{"copy", "--quiet", "--src-tls-verify=false", "--src-creds", "alice:" + password}
		if retries > 0 {
			args = append(args, "--retry-times", fmt.Sprint(retries))
		}
		args = append(args, "docker://"+s.ref, "dir:"+dir)
		cmd := exec.CommandContext(ctx, "skopeo", args...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("skopeo: %v: %s", err, strings.TrimSpace(string(out)))
		}
		return verifyDir(dir, s.manifest)
	}
}

// ggcrPull pulls with go-containerregistry: the manifest, the config and
// every layer read to its end (each digest verified as it is read).
// transportRetry keeps the library's retry transport (it retries a
// request that failed, to the same URL: after a redirect, the cache's);
// layerRetries tries a failed layer again from the origin, as Docker does.
func ggcrPull(transportRetry bool, layerRetries int) func(ctx context.Context, s *stack, dir string) error {
	return func(ctx context.Context, s *stack, dir string) error {
		ref, err := name.ParseReference(s.ref, name.Insecure)
		if err != nil {
			return err
		}
		opts := []remote.Option{remote.WithContext(ctx), remote.WithAuth(&authn.Basic{Username: "alice", Password: password})}
		if !transportRetry {
			opts = append(opts, remote.WithRetryBackoff(remote.Backoff{Steps: 1}))
		}
		img, err := remote.Image(ref, opts...)
		if err != nil {
			return err
		}
		d, err := img.Digest()
		if err != nil {
			return err
		}
		if d != s.manifest {
			return fmt.Errorf("manifest %s, want %s", d, s.manifest)
		}
		// Docker fetches the config with up to 5 attempts, 250 ms
		// apart and doubling (pullSchema2Config).
		backoff := 250 * time.Millisecond
		for try := 0; ; try++ {
			_, err := img.RawConfigFile()
			if err == nil {
				break
			}
			if layerRetries == 0 || try == 4 {
				return err
			}
			time.Sleep(backoff)
			backoff *= 2
		}
		layers, err := img.Layers()
		if err != nil {
			return err
		}
		for _, l := range layers {
			var err error
			for try := 0; try <= layerRetries; try++ {
				if try > 0 {
					time.Sleep(time.Second)
				}
				if err = readLayer(l); err == nil {
					break
				}
			}
			if err != nil {
				return err
			}
		}
		return nil
	}
}

func readLayer(l v1.Layer) error {
	rc, err := l.Compressed()
	if err != nil {
		return err
	}
	defer rc.Close()
	_, err = io.Copy(io.Discard, rc) // the digest is verified at EOF
	return err
}

// pull is one pull of the loop.
type pull struct {
	client     int
	start, end time.Time
	err        error
}

// pullLoop runs every client (eight workers in all, each client's in
// turn) pulling in a loop until each client has made perClient pulls or
// stop is closed, and returns the pulls.
func pullLoop(ctx context.Context, s *stack, perClient int, stop <-chan struct{}) []pull {
	var workers []int
	for len(workers) < 8 {
		workers = append(workers, len(workers)%len(s.clients))
	}
	var mu sync.Mutex
	counts := make([]int, len(s.clients))
	var pulls []pull
	var wg sync.WaitGroup
	for w, ci := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				mu.Lock()
				more := counts[ci] < perClient
				counts[ci]++
				mu.Unlock()
				if !more {
					return
				}
				dir := filepath.Join(s.dir, fmt.Sprintf("pull-%d-%d", w, n))
				p := pull{client: ci, start: time.Now()}
				pctx, cancel := context.WithTimeout(ctx, 60*time.Second)
				p.err = s.clients[ci].pull(pctx, s, dir)
				cancel()
				p.end = time.Now()
				os.RemoveAll(dir)
				mu.Lock()
				pulls = append(pulls, p)
				mu.Unlock()
				// A pause between pulls, as between a user's or a CI
				// job's, so the pulls spread over the stops.
				select {
				case <-stop:
					return
				case <-time.After(time.Duration(100+rand.IntN(300)) * time.Millisecond):
				}
			}
		}()
	}
	wg.Wait()
	return pulls
}

// getManifest GETs the image's manifest as alice (which makes the origin
// hint alice's cache).
func getManifest(s *stack) error {
	ref, err := name.ParseReference(s.ref, name.Insecure)
	if err != nil {
		return err
	}
	_, err = remote.Get(ref, remote.WithAuth(&authn.Basic{Username: "alice", Password: password}))
	return err
}
