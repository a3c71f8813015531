package forward

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"time"

	"github.com/dtrcache/dtrcache/proxy/netguard"
)

// Action is what the proxy does with a request for a destination.
type Action int

// The actions.
const (
	// Deny refuses the request with 403.
	Deny Action = iota
	// Intercept terminates TLS with a leaf signed by the office CA (or, for
	// plain HTTP, reads the request) and serves blob reads from the store.
	Intercept
	// Tunnel relays the bytes untouched.
	Tunnel
)

// String returns the metric label: denied, mitm or tunnel.
func (a Action) String() string {
	switch a {
	case Intercept:
		return "mitm"
	case Tunnel:
		return "tunnel"
	}
	return "denied"
}

// Decision is the verdict on a destination.
type Decision struct {
	Action Action
	// Host and Port are the parsed destination.
	Host string
	Port int
	// Reason says why a request was denied (for the log and the 403 body).
	Reason string
}

// Target returns "host:port".
func (d Decision) Target() string { return JoinHostPort(d.Host, d.Port) }

// Resolver looks host names up. *net.Resolver implements it.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// DeniedError is a destination the rules refuse to dial.
type DeniedError struct {
	Host   string
	Addr   netip.Addr // the refused address, if the refusal is about one
	Reason string
}

func (e *DeniedError) Error() string {
	if e.Addr.IsValid() {
		return fmt.Sprintf("forward: destination %s (%s) refused: %s", e.Host, e.Addr, e.Reason)
	}
	return fmt.Sprintf("forward: destination %s refused: %s", e.Host, e.Reason)
}

// RulesConfig configures NewRules. Host entries are "host" (any port in
// Ports) or "host:port" (that port only).
type RulesConfig struct {
	// Intercept lists the registry hosts to intercept.
	Intercept []string
	// Tunnel lists the hosts to tunnel untouched (token services, object
	// storage the registries redirect to).
	Tunnel []string
	// Ports are the destination ports allowed for entries without a port.
	// Empty means 443.
	Ports []int
	// Clients are the client addresses (CIDRs or single addresses) allowed
	// to use the proxy. Empty means loopback and private networks
	// (10/8, 172.16/12, 192.168/16, fc00::/7).
	Clients []string
	// AllowPrivate are destination CIDRs allowed even though they are
	// loopback, private, link-local or otherwise special.
	AllowPrivate []string
	// Hosts maps host names (or host:port) to addresses ("ip", "ip:port",
	// or another name) for split-horizon DNS. Mapped addresses are checked
	// like resolved ones.
	Hosts map[string]string
	// Resolver looks names up. nil means net.DefaultResolver.
	Resolver Resolver
	// DialTimeout bounds each TCP connect. 0 means 10s.
	DialTimeout time.Duration
}

// Rules decide which destinations the proxy intercepts, tunnels or
// refuses, which clients may use it, and which addresses it may dial. They
// are safe for concurrent use.
type Rules struct {
	intercept, tunnel map[string][]int // host → explicit ports (nil: any of ports)
	ports             []int
	clients, allow    []netip.Prefix
	hosts             map[string]hostMapping
	resolver          Resolver
	dialer            net.Dialer
}

type hostMapping struct {
	host string
	port int // 0: keep the requested port
}

// NewRules parses and checks c: it is the one place the entries' rules
// are written. It reports every bad entry at once (errors.Join), each
// error beginning with the entry's key as a configuration section would
// spell it ("intercept[1]: …", "tunnel[0]: …", "ports[2]: …",
// "clients[1]: …", "allow_private[0]: …", "hosts[name]: …"). A host in
// both the intercept and the tunnel list is an error.
func NewRules(c RulesConfig) (*Rules, error) {
	r := &Rules{
		intercept: map[string][]int{}, tunnel: map[string][]int{},
		ports: c.Ports, hosts: map[string]hostMapping{}, resolver: c.Resolver,
		dialer: net.Dialer{Timeout: c.DialTimeout, KeepAlive: 30 * time.Second},
	}
	if len(r.ports) == 0 {
		r.ports = []int{443}
	}
	if r.resolver == nil {
		r.resolver = net.DefaultResolver
	}
	if r.dialer.Timeout == 0 {
		r.dialer.Timeout = 10 * time.Second
	}
	var errs []error
	for _, l := range []struct {
		name    string
		entries []string
		into    map[string][]int
	}{{"intercept", c.Intercept, r.intercept}, {"tunnel", c.Tunnel, r.tunnel}} {
		for i, e := range l.entries {
			host, port, err := ParseHostPort(e, -1)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s[%d]: invalid entry %q (want host or host:port): %w", l.name, i, e, err))
				continue
			}
			if port == -1 {
				l.into[host] = nil
			} else if ports, ok := l.into[host]; !ok || ports != nil {
				l.into[host] = append(ports, port)
			}
		}
	}
	for i, e := range c.Tunnel {
		if h, _, err := ParseHostPort(e, -1); err == nil {
			if _, ok := r.intercept[h]; ok {
				errs = append(errs, fmt.Errorf("tunnel[%d]: %s is listed in both intercept and tunnel", i, h))
			}
		}
	}
	for i, port := range c.Ports {
		if port < 1 || port > 65535 {
			errs = append(errs, fmt.Errorf("ports[%d]: invalid port %d", i, port))
		}
	}
	var err error
	if r.clients, err = parsePrefixes("clients", c.Clients); err != nil {
		errs = append(errs, err)
	}
	if r.allow, err = parsePrefixes("allow_private", c.AllowPrivate); err != nil {
		errs = append(errs, err)
	}
	for k, v := range c.Hosts {
		host, port, err := ParseHostPort(k, -1)
		if err != nil {
			errs = append(errs, fmt.Errorf("hosts[%s]: invalid host name %q: %w", k, k, err))
			continue
		}
		to, toPort, err := ParseHostPort(v, -1)
		if err != nil {
			errs = append(errs, fmt.Errorf("hosts[%s]: invalid address %q (want ip, ip:port, name or name:port): %w", k, v, err))
			continue
		}
		key := host
		if port != -1 {
			key = JoinHostPort(host, port)
		}
		if toPort == -1 {
			toPort = 0
		}
		r.hosts[key] = hostMapping{host: to, port: toPort}
	}
	return r, errors.Join(errs...)
}

func parsePrefixes(key string, ss []string) ([]netip.Prefix, error) {
	return netguard.ParsePrefixes(key, ss)
}

// ClientAllowed reports whether a client at addr may use the proxy.
func (r *Rules) ClientAllowed(addr netip.Addr) bool {
	addr = addr.Unmap()
	if len(r.clients) == 0 {
		return addr.IsLoopback() || addr.IsPrivate()
	}
	return slices.ContainsFunc(r.clients, func(p netip.Prefix) bool { return p.Contains(addr) })
}

// Connect decides a CONNECT to target ("host:port").
func (r *Rules) Connect(target string) Decision {
	host, port, err := ParseHostPort(target, 0)
	if err != nil {
		return Decision{Reason: err.Error()}
	}
	return r.decide(host, port, false)
}

// PlainHTTP decides a plain-HTTP proxy request for urlHost (the URL's
// host, with or without a port): allowed only for intercepted hosts listed
// with an explicit port (a plain-HTTP registry), never on the default
// ports meant for TLS.
func (r *Rules) PlainHTTP(urlHost string) Decision {
	host, port, err := ParseHostPort(urlHost, 80)
	if err != nil {
		return Decision{Reason: err.Error()}
	}
	return r.decide(host, port, true)
}

func (r *Rules) decide(host string, port int, plain bool) Decision {
	d := Decision{Host: host, Port: port}
	ports, inIntercept := r.intercept[host]
	if !inIntercept {
		if plain {
			d.Reason = "plain-HTTP requests are allowed only for intercepted registries"
			return d
		}
		var inTunnel bool
		if ports, inTunnel = r.tunnel[host]; !inTunnel {
			d.Reason = "not in the intercept or tunnel list"
			return d
		}
		d.Action = Tunnel
	} else {
		d.Action = Intercept
	}
	if ports == nil {
		if plain {
			d.Action, d.Reason = Deny, "plain HTTP only for registries listed as host:port"
			return d
		}
		ports = r.ports
	}
	if !slices.Contains(ports, port) {
		d.Action, d.Reason = Deny, "port "+strconv.Itoa(port)+" not allowed"
	}
	return d
}

// Resolve returns the addresses to dial for host:port: the host map's
// entry, or the name looked up. Every address must be allowed (public, or
// in AllowPrivate), or Resolve returns a *DeniedError: a name that
// resolves to one public and one private address is refused.
func (r *Rules) Resolve(ctx context.Context, host string, port int) ([]netip.AddrPort, error) {
	name := host
	if m, ok := r.hosts[JoinHostPort(host, port)]; ok {
		name, port = m.host, orPort(m.port, port)
	} else if m, ok := r.hosts[host]; ok {
		name, port = m.host, orPort(m.port, port)
	}
	var ips []netip.Addr
	if ip, err := netip.ParseAddr(name); err == nil {
		ips = []netip.Addr{ip}
	} else {
		var err error
		if ips, err = r.resolver.LookupNetIP(ctx, "ip", name); err != nil {
			return nil, fmt.Errorf("forward: resolve %s: %w", name, err)
		}
		if len(ips) == 0 {
			return nil, fmt.Errorf("forward: resolve %s: no addresses", name)
		}
	}
	out := make([]netip.AddrPort, 0, len(ips))
	for _, ip := range ips {
		ip = ip.Unmap().WithZone("")
		if why := r.refusal(ip); why != "" {
			return nil, &DeniedError{Host: host, Addr: ip, Reason: why}
		}
		out = append(out, netip.AddrPortFrom(ip, uint16(port)))
	}
	return out, nil
}

func orPort(a, b int) int {
	if a != 0 {
		return a
	}
	return b
}

// refusal says why ip may not be dialled, or "".
func (r *Rules) refusal(ip netip.Addr) string {
	if slices.ContainsFunc(r.allow, func(p netip.Prefix) bool { return p.Contains(ip) }) {
		return ""
	}
	return specialAddress(ip)
}

// specialAddress says why ip is not a public unicast address, or "" (the
// checks every guarded dialer shares).
func specialAddress(ip netip.Addr) string { return netguard.SpecialAddress(ip) }

// DialContext connects to addr ("host:port") after Resolve: it dials the
// checked addresses in turn, never the name again, so a second DNS answer
// cannot smuggle in an address that was not checked.
func (r *Rules) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := ParseHostPort(addr, 0)
	if err != nil {
		return nil, err
	}
	addrs, err := r.Resolve(ctx, host, port)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, a := range addrs {
		c, err := r.dialer.DialContext(ctx, network, a.String())
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("forward: dial %s: %w", addr, errors.Join(errs...))
}
