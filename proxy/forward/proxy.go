package forward

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/dtrcache/dtrcache/casstore"
	"github.com/dtrcache/dtrcache/proxy/forward/ca"
	"github.com/dtrcache/dtrcache/proxy/regapi"
	"github.com/dtrcache/dtrcache/proxy/upstream"
	"github.com/elazarl/goproxy"
	"go.uber.org/zap"
)

// Options configure New.
type Options struct {
	// Rules decide what is intercepted, tunnelled or refused, and guard
	// every outgoing connection. Required.
	Rules *Rules
	// Leaves issues the certificates of intercepted hosts. Required. If its
	// OnIssue is nil, New sets it to count and log issued leaves.
	Leaves *ca.Leaves
	// Store holds the blobs. It must be the proxy's own: every read from
	// it is confirmed with the registry first, which the redirect and
	// mirror stores' reads are not (and a proxied pull that the origin
	// redirects to this cache would wait on its own fill in a shared
	// store). Required.
	Store *casstore.Store
	// Fill tunes fills (parallel range streams and their size).
	Fill casstore.FillOptions
	// BlobMirror, if set, is the office's mirror fleet (a pull-through
	// mirror, or the load balancer in front of several): a miss is filled
	// from <BlobMirror>/v2/<repo>/blobs/<digest>?ns=<registry>, without
	// the client's credentials, so a blob crosses the WAN once per office
	// however many proxy nodes there are. Authorization does not change:
	// the registry still confirms every client before the store answers.
	// When the mirror fails, the fill goes to the registry. It is the
	// operator's address, so it is dialled without the destination rules.
	BlobMirror *url.URL
	// MirrorTLS verifies the blob mirror (nil: the system roots).
	MirrorTLS *tls.Config
	// TLS verifies registries (system roots plus the configured CAs). nil
	// means the system roots.
	TLS *tls.Config
	// AuthTTL is how long a positive authorization answer is remembered:
	// 0 means MaxAuthTTL, negative means never; at most MaxAuthTTL.
	AuthTTL time.Duration
	// NoManifestVouching turns off manifest vouching: by default a 200 for
	// GET /v2/<repo>/manifests/<ref> authorizes, for the same AuthTTL,
	// that client's credential to read the blobs and child manifests the
	// manifest lists through <repo>, so the blob requests of a pull need
	// no HEAD each. That trusts the registry to refuse manifests whose
	// blobs are not in the repository (as distribution does); turn it off
	// for a registry that does not.
	NoManifestVouching bool
	// IdleTimeout closes client connections and tunnels idle that long,
	// and client connections that stop reading. 0 means
	// DefaultIdleTimeout.
	IdleTimeout time.Duration
	// Grace is how long shutdown waits for requests and tunnels in flight.
	// 0 means DefaultGrace.
	Grace time.Duration
	// Logger receives the access log (one line per request) and errors.
	// nil means none.
	Logger *zap.Logger
	// Metrics, if set, counts requests, CONNECTs, authorization checks,
	// bytes and leaf certificates.
	Metrics *Metrics
	// Now is the clock of the authorization cache. nil means time.Now.
	Now func() time.Time
}

// The proxy's timings when Options leave them 0.
const (
	// DefaultIdleTimeout is Options.IdleTimeout's default.
	DefaultIdleTimeout = 2 * time.Minute
	// DefaultGrace is Options.Grace's default.
	DefaultGrace = 30 * time.Second
)

// Proxy is the forward proxy. Create it with New and run it with Serve
// (once).
type Proxy struct {
	rules         *Rules
	leaves        *ca.Leaves
	store         *casstore.Store
	fill          casstore.FillOptions
	auth          *authCache
	vouching      bool // manifests vouch for what they list
	log           *zap.Logger
	stdLog        *log.Logger
	metrics       *Metrics
	idle          time.Duration
	grace         time.Duration
	headerTimeout time.Duration
	probeTimeout  time.Duration

	gp        *goproxy.ProxyHttpServer
	transport *http.Transport
	probes    *http.Client // redirects not followed
	fetches   *http.Client // redirects followed, credentials dropped
	mirror    *blobMirror  // nil: fills go to the registry
	tunnels   *tunnels
	queue     *connQueue
	handler   http.Handler
	serveOnce sync.Once
}

// New builds a proxy from o.
func New(o Options) (*Proxy, error) {
	if o.Rules == nil || o.Leaves == nil || o.Store == nil {
		return nil, errors.New("forward: Rules, Leaves and Store are required")
	}
	if o.AuthTTL > MaxAuthTTL {
		return nil, fmt.Errorf("forward: AuthTTL %s is longer than %s", o.AuthTTL, MaxAuthTTL)
	}
	if o.AuthTTL == 0 {
		o.AuthTTL = MaxAuthTTL
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = DefaultIdleTimeout
	}
	if o.Grace <= 0 {
		o.Grace = DefaultGrace
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	p := &Proxy{
		rules: o.Rules, leaves: o.Leaves, store: o.Store, fill: o.Fill,
		auth: newAuthCache(o.AuthTTL, o.Now), vouching: !o.NoManifestVouching, log: o.Logger, metrics: o.Metrics,
		stdLog: zap.NewStdLog(o.Logger.Named("http")),
		idle:   o.IdleTimeout, grace: o.Grace, headerTimeout: 30 * time.Second, probeTimeout: defaultProbeTimeout,
		queue: newConnQueue(&net.TCPAddr{IP: net.IPv4zero}),
	}
	if p.leaves.OnIssue == nil {
		p.leaves.OnIssue = func(host string, took time.Duration) {
			p.metrics.leafIssued()
			p.log.Debug("leaf certificate issued", zap.String("host", host), zap.Duration("took", took))
		}
	}
	p.tunnels = &tunnels{onClose: func(n int64) { p.metrics.sent("tunnel", n) }}
	p.transport = upstream.NewTransport(o.TLS)
	p.transport.DialContext = p.rules.DialContext
	p.transport.DisableCompression = true // forward Accept-Encoding as the client sent it
	p.probes = &http.Client{Transport: p.transport, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	p.fetches = &http.Client{Transport: p.transport, CheckRedirect: upstream.CheckRedirect}
	if o.BlobMirror != nil {
		var err error
		if p.mirror, err = newBlobMirror(o.BlobMirror, o.MirrorTLS); err != nil {
			return nil, err
		}
	}
	p.gp = p.newGoproxy()
	p.handler = p.logRequests(http.HandlerFunc(p.serveProxy))
	return p, nil
}

// newGoproxy configures goproxy: CONNECT decisions, tunnels through the
// guarded dialer, forwarding through the registry transport.
func (p *Proxy) newGoproxy() *goproxy.ProxyHttpServer {
	gp := goproxy.NewProxyHttpServer()
	gp.Logger = p.stdLog
	gp.Tr = p.transport
	gp.ConnectDial = nil // not the proxy's own HTTPS_PROXY
	gp.ConnectDialWithReq = p.dialTunnel
	gp.ConnectionErrHandler = p.connectFailed
	gp.KeepAcceptEncoding = true
	gp.NonproxyHandler = http.HandlerFunc(p.serveNonProxy)
	gp.OnRequest().HandleConnectFunc(p.decideConnect)
	gp.OnRequest().DoFunc(addVia)
	gp.OnResponse().DoFunc(p.upstreamFailed)
	return gp
}

// Serve serves the proxy on ln until ctx ends, then stops accepting and
// waits up to Grace for requests in flight, intercepted connections and
// tunnels (tunnels are closed as soon as they are idle for a second). It
// returns nil after a clean shutdown.
func (p *Proxy) Serve(ctx context.Context, ln net.Listener) error {
	err := errors.New("forward: Serve called twice")
	p.serveOnce.Do(func() { err = p.serve(ctx, ln) })
	return err
}

func (p *Proxy) serve(ctx context.Context, ln net.Listener) error {
	base := context.WithoutCancel(ctx)
	p.queue.addr = ln.Addr()
	outer := &http.Server{
		Handler:           p.handler,
		ReadHeaderTimeout: p.headerTimeout,
		IdleTimeout:       p.idle,
		ErrorLog:          p.stdLog,
		BaseContext:       func(net.Listener) context.Context { return base },
	}
	mitm := p.newMITMServer(base)
	errc := make(chan error, 2)
	go func() { errc <- outer.Serve(stallListener{Listener: ln, timeout: p.idle}) }()
	go func() { errc <- mitm.Serve(p.queue) }()
	p.log.Info("serving", zap.String("server", "forward"), zap.String("addr", ln.Addr().String()))
	var err error
	select {
	case err = <-errc:
		err = fmt.Errorf("forward proxy: %w", err)
	case <-ctx.Done():
	}
	p.log.Info("shutting down; waiting for requests and tunnels in flight", zap.String("server", "forward"), zap.Duration("grace", p.grace))
	sctx, cancel := context.WithTimeout(context.Background(), p.grace)
	defer cancel()
	var wg sync.WaitGroup
	for _, s := range []*http.Server{outer, mitm} {
		wg.Go(func() {
			if err := s.Shutdown(sctx); err != nil {
				s.Close()
			}
		})
	}
	wg.Go(func() { p.tunnels.drain(sctx, time.Second) })
	wg.Wait()
	p.transport.CloseIdleConnections()
	if sctx.Err() != nil {
		p.log.Warn("grace period over; closed remaining connections", zap.String("server", "forward"))
	}
	return err
}

// serveProxy is the handler of the proxy port.
func (p *Proxy) serveProxy(w http.ResponseWriter, r *http.Request) {
	f := fieldsFrom(r.Context())
	f.host = r.Host
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err != nil || !p.rules.ClientAllowed(ap.Addr()) {
		p.deny(w, r, "client address not allowed")
		return
	}
	switch {
	case r.Method == http.MethodConnect:
		p.gp.ServeHTTP(w, r) // decideConnect decides
	case !r.URL.IsAbs():
		p.serveNonProxy(w, r)
	case r.URL.Scheme != "http":
		p.deny(w, r, "only http:// URLs can be proxied; https goes through CONNECT")
	default:
		d := p.rules.PlainHTTP(r.URL.Host)
		if d.Host != "" {
			f.host = d.Target()
		}
		if d.Action != Intercept {
			p.deny(w, r, d.Reason)
			return
		}
		if _, err := p.rules.Resolve(r.Context(), d.Host, d.Port); err != nil {
			p.refuseDestination(w, r, err)
			return
		}
		p.serveIntercepted(w, r, target{host: d.Host, port: d.Port})
	}
}

// upstreamFailed turns a failed forward (goproxy's OnResponse with no
// response) into a registry error: 403 for a refused destination, 502
// otherwise.
func (p *Proxy) upstreamFailed(resp *http.Response, ctx *goproxy.ProxyCtx) *http.Response {
	if resp != nil || ctx.Error == nil {
		return resp
	}
	f := fieldsFrom(ctx.Req.Context())
	status, code, msg := http.StatusBadGateway, regapi.CodeUnavailable, "registry unreachable through the proxy"
	var denied *DeniedError
	if errors.As(ctx.Error, &denied) {
		status, code, msg = http.StatusForbidden, regapi.CodeDenied, "destination refused by the proxy: "+denied.Reason
		f.result, f.reason = "denied", denied.Reason
	} else {
		f.result, f.err = "error", upstream.RedactURL(ctx.Error)
	}
	body, _ := json.Marshal(map[string]any{"errors": []map[string]string{{"code": code, "message": msg}}})
	return &http.Response{
		StatusCode: status, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Request: ctx.Req,
		Header:        http.Header{"Content-Type": {"application/json; charset=utf-8"}},
		Body:          io.NopCloser(strings.NewReader(string(body))),
		ContentLength: int64(len(body)),
	}
}

// deny answers 403 for a request the rules refuse.
func (p *Proxy) deny(w http.ResponseWriter, r *http.Request, reason string) {
	f := fieldsFrom(r.Context())
	f.result, f.reason = "denied", reason
	http.Error(w, "dtrcache forward proxy: "+reason, http.StatusForbidden)
}

// refuseDestination answers a plain-HTTP request whose destination cannot
// be used.
func (p *Proxy) refuseDestination(w http.ResponseWriter, r *http.Request, err error) {
	status, msg := refusal(fieldsFrom(r.Context()), err)
	http.Error(w, strings.TrimSuffix(msg, "\n"), status)
}

// serveNonProxy answers requests for the proxy itself (not proxy
// requests): /healthz, and a hint for anything else.
func (p *Proxy) serveNonProxy(w http.ResponseWriter, r *http.Request) {
	f := fieldsFrom(r.Context())
	if r.URL.Path == "/healthz" && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		f.result = "health"
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"status":"ok"}`+"\n")
		return
	}
	f.result, f.reason = "denied", "not a proxy request"
	http.Error(w, "dtrcache forward proxy: not a proxy request (set HTTPS_PROXY=http://<this host>:<port>)", http.StatusBadRequest)
}
