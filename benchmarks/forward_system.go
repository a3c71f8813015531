package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os/exec"
	"path/filepath"

	"github.com/dtrcache/dtrcache/testenv"
	"github.com/dtrcache/dtrcache/testenv/wan"
)

// --- dtrcache as the office's HTTPS_PROXY (forward_proxy): the client
// pulls from the registry by its own address with the proxy configured,
// and the proxy intercepts the registry's plain-HTTP requests (the
// benchmark backend speaks plain HTTP; over HTTPS the proxy's work is the
// same plus TLS). Every blob is authorized by the registry, across the
// WAN, before the store answers: a HEAD per blob, or the manifest's
// vouching (forward_proxy.manifest_vouching).

type forwardSys struct {
	*procSys
	proxyPort int
}

// newDtrcacheForward is dtrcache's forward proxy in front of the WAN,
// with manifest vouching on (label dtrcache-forward) or off
// (dtrcache-forward-head: the per-blob HEAD of before).
func newDtrcacheForward(ctx context.Context, e *env, l *wan.Link, vouching bool) (*forwardSys, error) {
	label := "dtrcache-forward"
	if !vouching {
		label = "dtrcache-forward-head"
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	pport, err := freePort()
	if err != nil {
		return nil, err
	}
	caDir := filepath.Join(e.dir, label+"-ca")
	if out, err := exec.CommandContext(ctx, e.dtrcache, "ca", "init", "--dir", caDir).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("ca init: %v\n%s", err, out)
	}
	s := &forwardSys{procSys: &procSys{e: e, label: label, port: port, cacheDir: filepath.Join(e.dir, label), l: l, health: "/healthz"}, proxyPort: pport}
	cfg := filepath.Join(e.dir, label+".yml")
	if err := writeFile(cfg, fmt.Sprintf(`
log: {level: warn}
http: {addr: "127.0.0.1:%d"}
storage: {root: %q}
forward_proxy:
  addr: "127.0.0.1:%d"
  ca_dir: %q
  intercept: [%q]
  allow_private: [127.0.0.0/8]
  manifest_vouching: %t
%s`, port, s.cacheDir, pport, caDir, l.Addr(), vouching, e.fillYAML())); err != nil {
		return nil, err
	}
	s.args = func() []string { return []string{e.dtrcache, "cache", "--config", cfg} }
	return s, nil
}

func (s *forwardSys) cold(ctx context.Context) error {
	if err := s.procSys.cold(ctx); err != nil {
		return err
	}
	return waitHTTP(ctx, fmt.Sprintf("http://127.0.0.1:%d/healthz", s.proxyPort))
}

func (s *forwardSys) host() string { return s.l.Addr() }

func (s *forwardSys) remote() testenv.RemoteOptions {
	return testenv.RemoteOptions{Transport: s.transport()}
}

func (s *forwardSys) transport() *http.Transport {
	return &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", s.proxyPort)}), MaxIdleConnsPerHost: 16}
}

func (s *forwardSys) blobURL(_ context.Context, repo, d string) (string, error) {
	return "http://" + s.l.Addr() + "/v2/" + repo + "/blobs/" + d, nil
}

// pullsOnly reports whether s is measured by whole pulls only: the
// forward proxy is reached through the client's proxy setting, which the
// range, resume and load tests (plain URLs, wrk) do not use.
func pullsOnly(s system) bool {
	_, ok := s.(*forwardSys)
	return ok
}

// authForgetter is a system that remembers authorizations in memory; the
// warm pull is measured after it forgot them, as a pull the next day is.
type authForgetter interface {
	forgetAuth(ctx context.Context) error
}

// forgetAuth restarts the proxy on the same store: the blobs stay, the
// remembered authorizations go.
func (s *forwardSys) forgetAuth(ctx context.Context) error {
	s.stop()
	p, err := s.e.startProc(s.label, s.args()...)
	if err != nil {
		return err
	}
	s.p = p
	if err := waitHTTP(ctx, "http://"+s.procSys.host()+s.health); err != nil {
		return err
	}
	return waitHTTP(ctx, fmt.Sprintf("http://127.0.0.1:%d/healthz", s.proxyPort))
}
