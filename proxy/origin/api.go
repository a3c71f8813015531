package origin

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/dtrcache/dtrcache/policy"
	"github.com/dtrcache/dtrcache/proxy/health"
	"github.com/dtrcache/dtrcache/proxy/regapi"
	"github.com/dtrcache/dtrcache/proxy/serve"
	"go.uber.org/zap"
)

// cacheView is a cache as the API shows it.
type cacheView struct {
	Cache
	Healthy   bool      `json:"healthy"`
	LastCheck time.Time `json:"lastCheck,omitzero"`
	Reason    string    `json:"reason,omitempty"`
	// RTTMillis is how long the cache took to answer the origin's last
	// probe, in milliseconds (a distance hint; absent without an answer).
	RTTMillis float64 `json:"rttMs,omitempty"`
	// Mode is how the origin learns the cache's health: probe (it probes
	// each node's /readyz), heartbeat (the nodes post heartbeats), or
	// mixed (some nodes each way).
	Mode string `json:"mode"`
	// NodeHealth is the verdict on each node.
	NodeHealth []nodeView `json:"nodeHealth"`
}

// nodeView is one node's health as the API shows it.
type nodeView struct {
	URL       string    `json:"url"`
	Healthy   bool      `json:"healthy"`
	Mode      string    `json:"mode"`
	Reason    string    `json:"reason,omitempty"`
	Since     time.Time `json:"since,omitzero"`
	LastCheck time.Time `json:"lastCheck,omitzero"`
	RTTMillis float64   `json:"rttMs,omitempty"`
	// Version, StoreBytes and StoreBlobs come from the node's last
	// heartbeat (heartbeat mode).
	Version    string `json:"version,omitempty"`
	StoreBytes int64  `json:"storeBytes,omitempty"`
	StoreBlobs int64  `json:"storeBlobs,omitempty"`
}

// apiHandler serves the DTR-style JSON API:
//
//	GET    /api/v0/content_caches              list (any user)
//	POST   /api/v0/content_caches              register {name, host | hosts, probeHost | probeHosts, account} (admin)
//	GET    /api/v0/content_caches/{name}       one cache (any user)
//	PATCH  /api/v0/content_caches/{name}       change {host | hosts, probeHost | probeHosts, account} (admin)
//	DELETE /api/v0/content_caches/{name}       remove (admin)
//	POST   /api/v0/content_caches/{name}/heartbeat  a node's heartbeat (the cache's own account; serveHeartbeat)
//	GET    /api/v0/accounts/{user}/settings    a user's settings (the user, or an admin)
//	PATCH  /api/v0/accounts/{user}/settings    set {contentCache} (the user, or an admin)
func (s *Server) apiHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v0/content_caches", s.withUser(false, s.listCaches))
	mux.HandleFunc("POST /api/v0/content_caches", s.withUser(true, s.addCache))
	mux.HandleFunc("GET /api/v0/content_caches/{name}", s.withUser(false, s.getCache))
	mux.HandleFunc("PATCH /api/v0/content_caches/{name}", s.withUser(true, s.patchCache))
	mux.HandleFunc("DELETE /api/v0/content_caches/{name}", s.withUser(true, s.deleteCache))
	mux.HandleFunc("POST /api/v0/content_caches/{name}/heartbeat", s.serveHeartbeat)
	mux.HandleFunc("GET /api/v0/accounts/{user}/settings", s.withUser(false, s.getSettings))
	for _, m := range []string{"PATCH", "PUT", "POST"} {
		mux.HandleFunc(m+" /api/v0/accounts/{user}/settings", s.withUser(false, s.setSettings))
	}
	mux.HandleFunc("/api/v0/", func(w http.ResponseWriter, r *http.Request) {
		if s.c.API != nil {
			s.c.API.ServeHTTP(w, r)
			return
		}
		s.fail(w, r, regapi.NewError(http.StatusNotFound, "NOT_FOUND", "unknown API endpoint"))
	})
	return mux
}

// withUser requires a logged-in user (and an admin when admin is set).
func (s *Server) withUser(admin bool, h func(w http.ResponseWriter, r *http.Request, user string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := s.identify(r)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		if id.user == "" {
			s.fail(w, r, s.challenge(regapi.NewError(http.StatusUnauthorized, regapi.CodeUnauthorized, "authentication required")))
			return
		}
		if admin && !s.c.Access.IsAdmin(id.user) {
			s.c.Audit.Info("authorization", zap.String("user", id.user), zap.String("action", "admin"), zap.String("api", r.Method+" "+r.URL.Path),
				zap.Bool("allowed", false), zap.String("reason", "not an admin"), zap.String("remote", r.RemoteAddr))
			s.c.Metrics.decision("admin", "denied")
			s.fail(w, r, regapi.NewError(http.StatusForbidden, regapi.CodeDenied, "administrators only"))
			return
		}
		h(w, r, id.user)
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func (s *Server) view(c Cache) cacheView {
	h, _ := s.c.Prober.cacheHealth(c)
	v := cacheView{Cache: c, Healthy: h.Healthy, LastCheck: h.Checked, Reason: h.Reason, RTTMillis: millis(h.RTT), NodeHealth: []nodeView{}}
	modes := map[string]bool{}
	for _, n := range h.Nodes {
		nv := nodeView{URL: n.URL, Healthy: n.Up, Mode: string(n.Mode), Reason: n.Reason, Since: n.Since, LastCheck: n.Checked, RTTMillis: millis(n.RTT)}
		if b := n.Beat; b != nil && n.Mode == health.ModeHeartbeat {
			nv.Version, nv.StoreBytes, nv.StoreBlobs = b.Version, b.StoreBytes, b.StoreBlobs
		}
		modes[nv.Mode] = true
		v.NodeHealth = append(v.NodeHealth, nv)
	}
	switch {
	case len(modes) > 1:
		v.Mode = "mixed"
	case modes[string(health.ModeHeartbeat)]:
		v.Mode = string(health.ModeHeartbeat)
	default:
		v.Mode = string(health.ModeProbe)
	}
	return v
}

func millis(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func (s *Server) listCaches(w http.ResponseWriter, r *http.Request, _ string) {
	caches, err := s.c.DB.Caches()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := make([]cacheView, 0, len(caches))
	for _, c := range caches {
		out = append(out, s.view(c))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) getCache(w http.ResponseWriter, r *http.Request, _ string) {
	c, err := s.c.DB.Cache(r.PathValue("name"))
	if errors.Is(err, ErrNotFound) {
		s.fail(w, r, regapi.NewError(http.StatusNotFound, "NOT_FOUND", "no such cache"))
		return
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, s.view(c))
}

// decodeBody reads a small JSON body, refusing unknown fields.
func decodeBody(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return regapi.Errorf(http.StatusBadRequest, "INVALID_JSON", "invalid request body: "+err.Error(), err)
	}
	return nil
}

func (s *Server) addCache(w http.ResponseWriter, r *http.Request, user string) {
	var c Cache
	if err := decodeBody(r, &c); err != nil {
		s.fail(w, r, err)
		return
	}
	if !policy.ValidName(c.Name) {
		s.fail(w, r, regapi.NewError(http.StatusBadRequest, "INVALID_NAME", "name: "+policy.NameSyntax))
		return
	}
	if err := s.checkCache(&c); err != nil {
		s.fail(w, r, err)
		return
	}
	c.Created = time.Now().UTC()
	if err := s.c.DB.AddCache(c); errors.Is(err, ErrExists) {
		s.fail(w, r, regapi.NewError(http.StatusConflict, "ALREADY_EXISTS", "a cache with this name exists"))
		return
	} else if err != nil {
		s.fail(w, r, err)
		return
	}
	s.c.Audit.Info("cache registered", zap.String("user", user), zap.String("cache", c.Name), zap.String("host", c.Host))
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 3*time.Second)
	defer cancel()
	s.c.Prober.Probe(ctx, c)
	serve.FieldsFrom(r.Context()).Result = "created"
	writeJSON(w, http.StatusCreated, s.view(c))
}

// checkCache checks and normalises the addresses (normalizeNodes) and the
// account of a cache being registered or changed.
func (s *Server) checkCache(c *Cache) error {
	if err := normalizeNodes(c); err != nil {
		return err
	}
	if c.Account != "" && !s.c.Users.Has(c.Account) {
		return regapi.NewError(http.StatusBadRequest, "INVALID_ACCOUNT", "account: no such user")
	}
	return nil
}

// cachePatch is the body of PATCH /api/v0/content_caches/{name}: the
// fields to change (absent ones are kept; "" clears probeHost or account).
// host makes the cache a single node and hosts replaces a fleet's nodes
// (one of them, not both); probeHosts goes with hosts.
type cachePatch struct {
	Host       *string   `json:"host"`
	Hosts      *[]string `json:"hosts"`
	ProbeHost  *string   `json:"probeHost"`
	ProbeHosts *[]string `json:"probeHosts"`
	Account    *string   `json:"account"`
}

func (s *Server) patchCache(w http.ResponseWriter, r *http.Request, user string) {
	var p cachePatch
	if err := decodeBody(r, &p); err != nil {
		s.fail(w, r, err)
		return
	}
	c, err := s.c.DB.Cache(r.PathValue("name"))
	if errors.Is(err, ErrNotFound) {
		s.fail(w, r, regapi.NewError(http.StatusNotFound, "NOT_FOUND", "no such cache"))
		return
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if p.Host != nil && p.Hosts != nil {
		s.fail(w, r, regapi.NewError(http.StatusBadRequest, "INVALID_HOST", "host: give host for one node or hosts for several, not both"))
		return
	}
	switch {
	case p.Hosts != nil:
		c.Host, c.Hosts, c.ProbeHost = "", *p.Hosts, ""
		if p.ProbeHosts == nil {
			c.ProbeHosts = nil
		}
	case p.Host != nil:
		c.Host, c.Hosts, c.ProbeHosts = *p.Host, nil, nil
	}
	for _, f := range []struct {
		dst *string
		v   *string
	}{{&c.ProbeHost, p.ProbeHost}, {&c.Account, p.Account}} {
		if f.v != nil {
			*f.dst = *f.v
		}
	}
	if p.ProbeHosts != nil {
		c.ProbeHosts = *p.ProbeHosts
	}
	if err := s.checkCache(&c); err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.c.DB.UpdateCache(c); errors.Is(err, ErrNotFound) {
		s.fail(w, r, regapi.NewError(http.StatusNotFound, "NOT_FOUND", "no such cache"))
		return
	} else if err != nil {
		s.fail(w, r, err)
		return
	}
	s.c.Audit.Info("cache changed", zap.String("user", user), zap.String("cache", c.Name), zap.String("host", c.Host))
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 3*time.Second)
	defer cancel()
	s.c.Prober.Probe(ctx, c)
	writeJSON(w, http.StatusOK, s.view(c))
}

func (s *Server) deleteCache(w http.ResponseWriter, r *http.Request, user string) {
	name := r.PathValue("name")
	if err := s.c.DB.DeleteCache(name); errors.Is(err, ErrNotFound) {
		s.fail(w, r, regapi.NewError(http.StatusNotFound, "NOT_FOUND", "no such cache"))
		return
	} else if err != nil {
		s.fail(w, r, err)
		return
	}
	s.c.Prober.Forget(name)
	s.c.Audit.Info("cache removed", zap.String("user", user), zap.String("cache", name))
	w.WriteHeader(http.StatusNoContent)
}

// settingsAccess checks that user may see or change target's settings.
func (s *Server) settingsAccess(w http.ResponseWriter, r *http.Request, user string) (string, bool) {
	target := r.PathValue("user")
	if target != user && !s.c.Access.IsAdmin(user) {
		s.fail(w, r, regapi.NewError(http.StatusForbidden, regapi.CodeDenied, "only the user or an administrator"))
		return "", false
	}
	if !s.c.Users.Has(target) {
		s.fail(w, r, regapi.NewError(http.StatusNotFound, "NOT_FOUND", "no such user"))
		return "", false
	}
	return target, true
}

func (s *Server) getSettings(w http.ResponseWriter, r *http.Request, user string) {
	target, ok := s.settingsAccess(w, r, user)
	if !ok {
		return
	}
	st, err := s.c.DB.Settings(target)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) setSettings(w http.ResponseWriter, r *http.Request, user string) {
	target, ok := s.settingsAccess(w, r, user)
	if !ok {
		return
	}
	var st Settings
	if err := decodeBody(r, &st); err != nil {
		s.fail(w, r, err)
		return
	}
	if st.ContentCache != "" {
		if _, err := s.c.DB.Cache(st.ContentCache); err != nil {
			s.fail(w, r, regapi.NewError(http.StatusBadRequest, "INVALID_CACHE", "contentCache: no such cache"))
			return
		}
	}
	if err := s.c.DB.SetSettings(target, st); err != nil {
		s.fail(w, r, err)
		return
	}
	s.c.Audit.Info("settings changed", zap.String("user", user), zap.String("account", target), zap.String("contentCache", st.ContentCache))
	writeJSON(w, http.StatusOK, st)
}

// serveCatalog lists only the repositories the user may pull.
func (s *Server) serveCatalog(w http.ResponseWriter, r *http.Request, id identity) {
	if id.user == "" {
		s.fail(w, r, s.challenge(regapi.NewError(http.StatusUnauthorized, regapi.CodeUnauthorized, "authentication required")))
		return
	}
	rec := &bufferedResponse{header: http.Header{}}
	s.proxy.ServeHTTP(rec, r)
	if rec.status != http.StatusOK {
		for k, v := range rec.header {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.status)
		w.Write(rec.body)
		return
	}
	var cat struct {
		Repositories []string `json:"repositories"`
	}
	if err := json.Unmarshal(rec.body, &cat); err != nil {
		s.fail(w, r, regapi.Errorf(http.StatusBadGateway, regapi.CodeUnavailable, "backend catalog unreadable", err))
		return
	}
	visible := []string{}
	for _, repo := range cat.Repositories {
		if s.c.Access.Decide(id.user, repo, "pull").Allowed {
			visible = append(visible, repo)
		}
	}
	if l := rec.header.Get("Link"); l != "" {
		w.Header().Set("Link", l)
	}
	writeJSON(w, http.StatusOK, map[string][]string{"repositories": visible})
}

// bufferedResponse captures a small response (the catalog page).
type bufferedResponse struct {
	header http.Header
	status int
	body   []byte
}

func (b *bufferedResponse) Header() http.Header { return b.header }
func (b *bufferedResponse) WriteHeader(code int) {
	if b.status == 0 {
		b.status = code
	}
}
func (b *bufferedResponse) Write(p []byte) (int, error) {
	if b.status == 0 {
		b.status = http.StatusOK
	}
	if len(b.body)+len(p) > 16<<20 {
		return 0, errors.New("origin: catalog page too large")
	}
	b.body = append(b.body, p...)
	return len(p), nil
}
