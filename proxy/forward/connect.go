package forward

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/elazarl/goproxy"
)

// decideConnect is goproxy's CONNECT handler.
func (p *Proxy) decideConnect(host string, ctx *goproxy.ProxyCtx) (*goproxy.ConnectAction, string) {
	f := fieldsFrom(ctx.Req.Context())
	d := p.rules.Connect(host)
	if d.Host != "" {
		f.host = d.Target()
	}
	switch d.Action {
	case Intercept:
		if _, err := p.rules.Resolve(ctx.Req.Context(), d.Host, d.Port); err != nil {
			return p.rejectConnect(ctx, f, err)
		}
		f.result = "mitm"
		return p.hijack(target{host: d.Host, port: d.Port}), host
	case Tunnel:
		f.result = "tunnel" // dialTunnel checks the addresses
		return &goproxy.ConnectAction{Action: goproxy.ConnectAccept}, d.Target()
	}
	return p.rejectConnect(ctx, f, &DeniedError{Host: host, Reason: d.Reason})
}

// rejectConnect answers a CONNECT with 403 (a refused destination) or 502
// (one that could not be resolved).
func (p *Proxy) rejectConnect(ctx *goproxy.ProxyCtx, f *fields, err error) (*goproxy.ConnectAction, string) {
	status, msg := refusal(f, err)
	ctx.Resp = &http.Response{
		StatusCode: status, Status: strconv.Itoa(status) + " " + http.StatusText(status),
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Request: ctx.Req, Close: true,
		Header:        http.Header{"Content-Type": {"text/plain; charset=utf-8"}},
		Body:          io.NopCloser(strings.NewReader(msg)),
		ContentLength: int64(len(msg)),
	}
	return &goproxy.ConnectAction{Action: goproxy.ConnectReject}, ""
}

// refusal records why err refused a request and returns the status and
// body to answer with.
func refusal(f *fields, err error) (int, string) {
	var denied *DeniedError
	if errors.As(err, &denied) {
		f.result, f.status, f.reason = "denied", http.StatusForbidden, denied.Reason
		return f.status, "dtrcache forward proxy: " + denied.Error() + "\n"
	}
	f.result, f.status, f.err = "error", http.StatusBadGateway, err
	return f.status, "dtrcache forward proxy: " + err.Error() + "\n"
}

// dialTunnel connects a tunnel through the guarded dialer.
func (p *Proxy) dialTunnel(req *http.Request, network, addr string) (net.Conn, error) {
	c, err := p.rules.DialContext(req.Context(), network, addr)
	if err != nil {
		return nil, err
	}
	fieldsFrom(req.Context()).tunnelUp.Store(true)
	return p.tunnels.add(c, p.idle), nil
}

// connectFailed writes the answer to a CONNECT whose tunnel could not be
// connected (goproxy's ConnectionErrHandler).
func (p *Proxy) connectFailed(w io.Writer, ctx *goproxy.ProxyCtx, err error) {
	f := fieldsFrom(ctx.Req.Context())
	if f.tunnelUp.Load() {
		return // a copy error in an established tunnel: nothing to answer
	}
	status, msg := refusal(f, err)
	fmt.Fprintf(w, "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
		status, http.StatusText(status), len(msg), msg)
}
