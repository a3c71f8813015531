package policies

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/dtrcache/dtrcache/policy"
	"github.com/dtrcache/dtrcache/proxy/netguard"
	"github.com/dtrcache/dtrcache/proxy/replicate"
	"github.com/dtrcache/dtrcache/proxy/upstream"
)

// remoteClient is a client for a policy's remote, valid while the policy
// is unchanged.
type remoteClient struct {
	updated time.Time
	client  *upstream.Client
	key     string // remoteKey
	// blobs remembers what this remote has, shared by the copies of every
	// policy that reaches it with the same account (remoteKey).
	blobs *replicate.BlobIndex
}

// remoteKey names a remote registry and the account a policy uses there:
// policies with one key share a blob index, so images of several
// repositories that share layers send each layer to the remote once and
// mount it elsewhere. The account is part of the key because a mount needs
// read rights on the repository mounted from.
func remoteKey(r policy.Remote) string {
	return strings.TrimRight(strings.ToLower(r.RemoteHost), "/") + " " + r.Username
}

// remoteBlobsLocked returns the blob index of a remote, made on first
// use. s.mu must be held.
func (s *Service) remoteBlobsLocked(key string) *replicate.BlobIndex {
	x, ok := s.remoteBlobs[key]
	if !ok {
		x = replicate.NewBlobIndex(blobIndexSize)
		s.remoteBlobs[key] = x
	}
	return x
}

// blobIndexSize bounds each target registry's index of known blobs.
const blobIndexSize = 100000

// blobsFor returns the blob index of a copy's target registry.
func (s *Service) blobsFor(c *upstream.Client) *replicate.BlobIndex {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c == s.c.Local {
		return s.localBlobs
	}
	for _, rc := range s.remotes {
		if rc.client == c {
			return rc.blobs
		}
	}
	return nil
}

// RemoteHosts is the allow list of remote registries a mirroring policy
// may name: host names, "*.example.org" patterns, or host:port. Empty
// allows every host whose addresses the guard allows.
type RemoteHosts []string

// Allows reports whether host (host or host:port of a remote URL) is on the
// list.
func (l RemoteHosts) Allows(hostport string) bool {
	if len(l) == 0 {
		return true
	}
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.ToLower(host)
	for _, p := range l {
		p = strings.ToLower(p)
		if p == strings.ToLower(hostport) || p == host {
			return true
		}
		if strings.HasPrefix(p, "*.") {
			if ok, _ := path.Match(p, host); ok && strings.Count(host, ".") >= strings.Count(p, ".") {
				return true
			}
		}
	}
	return false
}

// checkRemote refuses a remote host that is not on the allow list or that
// resolves to an address the guard refuses (loopback, private, link-local
// — the origin must not become a way into the internal network). The
// error says which and how to allow it.
func (s *Service) checkRemote(ctx context.Context, r policy.Remote) error {
	u, err := url.Parse(r.RemoteHost)
	if err != nil || u.Host == "" {
		return fmt.Errorf("remoteHost: %q is not a URL", r.RemoteHost)
	}
	if !s.c.RemoteHosts.Allows(u.Host) {
		return fmt.Errorf("remoteHost: %s is not in the origin's allowed remotes (policies.allowed_remotes)", u.Host)
	}
	port := 443
	if u.Scheme == "http" {
		port = 80
	}
	if p := u.Port(); p != "" {
		if port, err = strconv.Atoi(p); err != nil {
			return fmt.Errorf("remoteHost: bad port %q", p)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := s.c.Guard.Resolve(ctx, u.Hostname(), port); err != nil {
		var denied *netguard.DeniedError
		if errors.As(err, &denied) {
			return fmt.Errorf("remoteHost: %s resolves to %s, %s; allowed only if listed in policies.allow_private", u.Hostname(), denied.Addr, denied.Reason)
		}
		return fmt.Errorf("remoteHost: %w", err)
	}
	return nil
}

// remoteFor returns a client for the remote of a mirroring policy: its
// credentials, its CA, every connection through the guard.
func (s *Service) remoteFor(ctx context.Context, rec Record) (*upstream.Client, error) {
	s.mu.Lock()
	rc, ok := s.remotes[rec.ID()]
	s.mu.Unlock()
	if ok && rc.updated.Equal(rec.UpdatedAt) {
		return rc.client, nil
	}
	r, _ := rec.Remote()
	if err := s.checkRemote(ctx, r); err != nil {
		return nil, permanentError{err}
	}
	pass := ""
	switch {
	case r.PasswordFile != "":
		b, err := os.ReadFile(r.PasswordFile)
		if err != nil {
			return nil, permanentf("passwordFile: %v", err)
		}
		pass = strings.TrimRight(string(b), "\r\n")
	case rec.HasPassword:
		var err error
		if pass, err = s.secrets.Get(ctx, rec.ID()); err != nil {
			return nil, permanentError{err}
		}
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if r.RemoteCA != "" {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(r.RemoteCA)) {
			return nil, permanentf("remoteCA: no PEM certificate")
		}
		tc.RootCAs = pool
	}
	if r.SkipTLSVerification {
		tc.InsecureSkipVerify = true
	}
	tr := replicate.GuardedTransport(tc, s.c.Guard)
	tr.ResponseHeaderTimeout = 5 * time.Minute // a registry may take long to answer the end of a big upload
	c, err := upstream.New(upstream.Config{URLs: []string{r.RemoteHost}, Username: r.Username, Password: pass,
		Transport: tr, UserAgent: s.c.UserAgent})
	if err != nil {
		return nil, permanentError{err}
	}
	s.mu.Lock()
	s.remotes[rec.ID()] = remoteClient{updated: rec.UpdatedAt, client: c, key: remoteKey(r), blobs: s.remoteBlobsLocked(remoteKey(r))}
	s.mu.Unlock()
	return c, nil
}

// forgetRemote drops the client of a policy that changed or went, and
// the remote's blob index once no cached client uses it.
func (s *Service) forgetRemote(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rc, ok := s.remotes[id]
	if !ok {
		return
	}
	delete(s.remotes, id)
	for _, o := range s.remotes {
		if o.key == rc.key {
			return
		}
	}
	delete(s.remoteBlobs, rc.key)
}
