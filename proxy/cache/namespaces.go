package cache

import (
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/dtrcache/dtrcache/proxy/ttlcache"
	"go.uber.org/zap"
)

// Which mirror upstream a request is for. containerd names the registry
// of the image in ?ns= (docker.io, ghcr.io…); a value no upstream takes is
// refused with NAME_UNKNOWN — and containerd, seeing that, pulls from the
// registry itself, so nobody notices the cache is not used. The refusal
// is therefore logged (once per value, not per request) and counted.

// dockerHubHosts are the registry host of Docker Hub and the name
// containerd sends for it.
var dockerHubHosts = []string{"registry-1.docker.io", "index.docker.io"}

// serves reports whether ns names this upstream: one of its hosts, the
// host of one of its URLs, or docker.io for Docker Hub's registry host.
func (up *MirrorUpstream) serves(ns string) bool {
	for _, h := range up.Hosts {
		if strings.EqualFold(h, ns) {
			return true
		}
	}
	if up.Client == nil {
		return false
	}
	for _, raw := range up.Client.URLs() {
		u, err := url.Parse(raw)
		if err != nil {
			continue
		}
		if strings.EqualFold(u.Host, ns) {
			return true
		}
		for _, h := range dockerHubHosts {
			if strings.EqualFold(u.Hostname(), h) && strings.EqualFold(ns, "docker.io") {
				return true
			}
		}
	}
	return false
}

// nsWarnings remembers the unknown ?ns= values already logged: at most
// maxNSWarnings of them, each for nsWarnEvery (so a misconfiguration that
// lasts is logged again each day).
type nsWarnings struct {
	once sync.Once
	seen *ttlcache.Cache[string, struct{}]
}

const (
	maxNSWarnings = 1000
	nsWarnEvery   = 24 * time.Hour
	maxNSLogged   = 255 // bytes of an ns value in the log
)

// first reports whether ns was not warned about recently, and remembers it.
func (w *nsWarnings) first(ns string) bool {
	w.once.Do(func() { w.seen = ttlcache.New[string, struct{}](maxNSWarnings, nil) })
	if _, ok := w.seen.Get(ns); ok {
		return false
	}
	w.seen.Set(ns, struct{}{}, w.seen.Now().Add(nsWarnEvery))
	return true
}

// pickMirror returns the mirror upstream for a request's ?ns=, warning
// about and counting a value no upstream takes.
func (s *Server) pickMirror(r *http.Request) (*MirrorUpstream, error) {
	ns := r.URL.Query().Get("ns")
	up, err := s.Mirror.pick(ns)
	if err == nil || ns == "" {
		return up, err
	}
	s.Metrics.unknownNS()
	if s.Logger != nil && s.Mirror.unknown.first(ns) {
		var known []string
		for _, u := range s.Mirror.Upstreams {
			known = append(known, u.Name+"="+strings.Join(append(append([]string(nil), u.Hosts...), u.Client.URLs()...), ","))
		}
		s.Logger.Warn("mirror: refused requests for a registry no upstream mirrors (containerd then pulls from it directly, past this cache); "+
			"add the name to an upstream's hosts, or fix the upstream's url",
			zap.String("ns", truncate(ns, maxNSLogged)), zap.Strings("upstreams", known))
	}
	return nil, err
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
