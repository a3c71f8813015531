package forward

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"

	"github.com/elazarl/goproxy"
)

// target is the registry an intercepted request is for.
type target struct {
	host string // canonical host name or IP
	port int
}

func (t target) String() string { return JoinHostPort(t.host, t.port) }

type targetKey struct{}

// mitmConn is a hijacked client connection with the CONNECT target it
// was opened for; the MITM server's ConnContext reads the target from it.
type mitmConn struct {
	net.Conn
	target target
}

// hijack returns the goproxy action that intercepts a CONNECT to t: it
// answers 200, wraps the connection in TLS with t's leaf certificate and
// hands it to the MITM server. The handshake happens in that server,
// under its timeouts.
//
// Bytes a client sent after the CONNECT before reading the 200 would be
// lost here (goproxy passes ConnectHijack the raw connection, not its
// read buffer); clients wait for the 200 before starting TLS.
func (p *Proxy) hijack(t target) *goproxy.ConnectAction {
	return &goproxy.ConnectAction{Action: goproxy.ConnectHijack, Hijack: func(req *http.Request, client net.Conn, _ *goproxy.ProxyCtx) {
		if _, err := client.Write([]byte("HTTP/1.1 200 Connection established\r\n\r\n")); err != nil {
			client.Close()
			return
		}
		conf := &tls.Config{
			MinVersion: tls.VersionTLS12,
			NextProtos: []string{"http/1.1"},
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
				// The CONNECT target names the certificate, not SNI: the
				// requests inside must be for that host anyway.
				return p.leaves.Get(t.host)
			},
		}
		if !p.queue.push(tls.Server(&mitmConn{Conn: client, target: t}, conf)) {
			client.Close() // shutting down
		}
	}}
}

// newMITMServer returns the server for intercepted connections.
func (p *Proxy) newMITMServer(base context.Context) *http.Server {
	return &http.Server{
		Handler:           p.logRequests(http.HandlerFunc(p.serveMITM)),
		ReadHeaderTimeout: p.headerTimeout,
		IdleTimeout:       p.idle,
		ErrorLog:          p.stdLog,
		TLSNextProto:      map[string]func(*http.Server, *tls.Conn, http.Handler){}, // HTTP/1.1 only
		BaseContext:       func(net.Listener) context.Context { return base },
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if tc, ok := c.(*tls.Conn); ok {
				if mc, ok := tc.NetConn().(*mitmConn); ok {
					return context.WithValue(ctx, targetKey{}, mc.target)
				}
			}
			return ctx
		},
	}
}

// serveMITM serves one request inside an intercepted connection.
func (p *Proxy) serveMITM(w http.ResponseWriter, r *http.Request) {
	f := fieldsFrom(r.Context())
	t, _ := r.Context().Value(targetKey{}).(target)
	f.host = t.String()
	if r.Method == http.MethodConnect {
		f.result, f.reason = "denied", "CONNECT inside an intercepted connection"
		http.Error(w, "dtrcache forward proxy: "+f.reason, http.StatusMethodNotAllowed)
		return
	}
	// The request must be for the host the connection was opened to: a
	// Host header naming another server would otherwise reach it through a
	// connection that was checked for this one.
	host, port, err := ParseHostPort(r.Host, 443)
	if err != nil || host != t.host || port != t.port {
		f.result, f.reason = "denied", "Host "+r.Host+" is not the CONNECT target"
		http.Error(w, "dtrcache forward proxy: "+f.reason, http.StatusMisdirectedRequest)
		return
	}
	r.URL.Scheme, r.URL.Host = "https", r.Host
	p.serveIntercepted(w, r, t)
}
