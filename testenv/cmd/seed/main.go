// Command seed pushes a generated image to a registry, for the test
// environment, the compose stack and the shell tests:
//
//	seed --registry 127.0.0.1:5000 --image website/ui:3-stable --layers 4 --size 8MiB
//
// It prints the manifest digest and the digests of the config and layers.
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/dtrcache/dtrcache/proxy/units"
	"github.com/dtrcache/dtrcache/testenv"
)

func main() {
	registry := flag.String("registry", "127.0.0.1:5000", "registry host:port")
	image := flag.String("image", "website/ui:3-stable", "repository:tag to push")
	layers := flag.Int("layers", 4, "number of layers")
	size := flag.String("size", "8MiB", "size of each layer")
	seed := flag.Uint64("seed", 1, "content seed (same seed, same digests)")
	realistic := flag.Bool("realistic", false, "gzipped tar layers instead of random bytes")
	user := flag.String("user", os.Getenv("SEED_USER"), "username (env SEED_USER)")
	pass := flag.String("password", os.Getenv("SEED_PASSWORD"), "password (env SEED_PASSWORD)")
	insecureTLS := flag.Bool("insecure-tls", false, "do not verify the registry's TLS certificate")
	wait := flag.Duration("wait", 30*time.Second, "how long to wait for the registry to answer")
	api := flag.String("api", "", "origin base URL: after the push, register a cache and set users' settings through its API (as --user)")
	cacheName := flag.String("cache", "", "with --api: cache name to register")
	cacheHost := flag.String("cache-host", "", "with --api: the cache URL clients use")
	cacheProbe := flag.String("cache-probe-host", "", "with --api: the cache URL the origin probes, if different")
	cacheAccount := flag.String("cache-account", "", "with --api: the cache's account at the origin")
	cacheUsers := flag.String("cache-users", "", "with --api: comma-separated users whose profile points at the cache")
	flag.Parse()

	sz, err := units.ParseSize(*size)
	if err != nil {
		fail(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	o := testenv.RemoteOptions{Username: *user, Password: *pass}
	if *insecureTLS {
		o.Transport = &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} // test registries only
	}
	if err := waitFor(ctx, *registry, *wait, o.Transport); err != nil {
		fail(err)
	}
	img, err := testenv.GenerateImage(testenv.ImageSpec{Layers: *layers, LayerSize: int64(sz), Seed: *seed, Realistic: *realistic})
	if err != nil {
		fail(err)
	}
	if err := testenv.Push(ctx, *registry+"/"+*image, img, o); err != nil {
		fail(err)
	}
	d, _ := img.Digest()
	cfg, _ := img.ConfigName()
	ls, _ := img.Layers()
	var digests []string
	for _, l := range ls {
		ld, _ := l.Digest()
		digests = append(digests, ld.String())
	}
	fmt.Printf("manifest %s\nconfig %s\nlayers %s\n", d, cfg, strings.Join(digests, " "))
	if *api == "" {
		return
	}
	c := apiClient{base: strings.TrimRight(*api, "/"), user: *user, pass: *pass, rt: o.Transport}
	if *cacheName != "" {
		body := map[string]string{"name": *cacheName, "host": *cacheHost, "probeHost": *cacheProbe, "account": *cacheAccount}
		if err := c.call(ctx, http.MethodPost, "/api/v0/content_caches", body, http.StatusCreated, http.StatusConflict); err != nil {
			fail(err)
		}
		fmt.Printf("cache %s registered at %s\n", *cacheName, *cacheHost)
	}
	for _, u := range strings.Split(*cacheUsers, ",") {
		if u = strings.TrimSpace(u); u == "" {
			continue
		}
		if err := c.call(ctx, http.MethodPatch, "/api/v0/accounts/"+u+"/settings", map[string]string{"contentCache": *cacheName}, http.StatusOK); err != nil {
			fail(err)
		}
		fmt.Printf("user %s pulls through cache %s\n", u, *cacheName)
	}
}

// apiClient calls the origin's JSON API.
type apiClient struct {
	base, user, pass string
	rt               http.RoundTripper
}

func (c apiClient) call(ctx context.Context, method, path string, body any, ok ...int) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.SetBasicAuth(c.user, c.pass)
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Transport: c.rt, Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	for _, code := range ok {
		if resp.StatusCode == code {
			return nil
		}
	}
	return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(msg))
}

// waitFor polls the registry's /v2/ until it answers.
func waitFor(ctx context.Context, registry string, d time.Duration, rt http.RoundTripper) error {
	hc := &http.Client{Transport: rt, Timeout: 2 * time.Second}
	deadline := time.Now().Add(d)
	for {
		for _, scheme := range []string{"http", "https"} {
			resp, err := hc.Get(scheme + "://" + registry + "/v2/")
			if err == nil {
				resp.Body.Close()
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("registry %s did not answer within %s", registry, d)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "seed:", err)
	os.Exit(1)
}
