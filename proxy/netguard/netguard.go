// Package netguard dials outbound connections made on a user's behalf
// (mirroring remotes, webhook endpoints) only to addresses that are safe to
// reach: a host name is resolved once, every address it resolves to is
// checked, and only a checked address is dialled, never the name again, so
// a second DNS answer cannot smuggle in an internal address (DNS
// rebinding). Loopback, private, link-local (cloud metadata services),
// multicast and the other special ranges are refused unless an allow list
// names them.
//
// It imports only the standard library; the forward proxy's rules share
// its address checks.
package netguard

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"time"
)

// Resolver looks host names up. *net.Resolver implements it.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Config configures New.
type Config struct {
	// AllowPrivate are CIDRs (or single addresses) that may be dialled even
	// though they are loopback, private, link-local or otherwise special,
	// e.g. "10.20.0.0/16" for registries on the company network.
	AllowPrivate []string
	// Resolver looks names up. nil means net.DefaultResolver.
	Resolver Resolver
	// Timeout bounds each TCP connect. 0 means 10s.
	Timeout time.Duration
}

// Dialer dials checked addresses only. It is safe for concurrent use; its
// DialContext fits http.Transport.DialContext.
type Dialer struct {
	allow    []netip.Prefix
	resolver Resolver
	dialer   net.Dialer
}

// DeniedError is a destination the Dialer refuses.
type DeniedError struct {
	Host   string
	Addr   netip.Addr // the refused address
	Reason string
}

func (e *DeniedError) Error() string {
	return fmt.Sprintf("netguard: destination %s (%s) refused: %s", e.Host, e.Addr, e.Reason)
}

// New returns a Dialer for c. An invalid allow-list entry is an error that
// names it (all of them at once).
func New(c Config) (*Dialer, error) {
	allow, err := ParsePrefixes("allow_private", c.AllowPrivate)
	if err != nil {
		return nil, err
	}
	d := &Dialer{allow: allow, resolver: c.Resolver, dialer: net.Dialer{Timeout: c.Timeout, KeepAlive: 30 * time.Second}}
	if d.resolver == nil {
		d.resolver = net.DefaultResolver
	}
	if d.dialer.Timeout == 0 {
		d.dialer.Timeout = 10 * time.Second
	}
	return d, nil
}

// Check returns a *DeniedError if ip may not be dialled.
func (d *Dialer) Check(host string, ip netip.Addr) error {
	ip = ip.Unmap().WithZone("")
	if slices.ContainsFunc(d.allow, func(p netip.Prefix) bool { return p.Contains(ip) }) {
		return nil
	}
	if why := SpecialAddress(ip); why != "" {
		return &DeniedError{Host: host, Addr: ip, Reason: why}
	}
	return nil
}

// Resolve returns the checked addresses of host:port. If any address the
// name resolves to is refused, the whole name is: a name that resolves to
// one public and one private address is refused.
func (d *Dialer) Resolve(ctx context.Context, host string, port int) ([]netip.AddrPort, error) {
	var ips []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		ips = []netip.Addr{ip}
	} else {
		if ips, err = d.resolver.LookupNetIP(ctx, "ip", host); err != nil {
			return nil, fmt.Errorf("netguard: resolve %s: %w", host, err)
		}
		if len(ips) == 0 {
			return nil, fmt.Errorf("netguard: resolve %s: no addresses", host)
		}
	}
	out := make([]netip.AddrPort, 0, len(ips))
	for _, ip := range ips {
		if err := d.Check(host, ip); err != nil {
			return nil, err
		}
		out = append(out, netip.AddrPortFrom(ip.Unmap().WithZone(""), uint16(port)))
	}
	return out, nil
}

// DialContext connects to addr ("host:port") after Resolve, trying the
// checked addresses in turn.
func (d *Dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("netguard: %w", err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 1 || port > 65535 {
		return nil, fmt.Errorf("netguard: invalid port in %q", addr)
	}
	addrs, err := d.Resolve(ctx, host, port)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, a := range addrs {
		c, err := d.dialer.DialContext(ctx, network, a.String())
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("netguard: dial %s: %w", addr, errors.Join(errs...))
}

// ParsePrefixes parses CIDRs or single addresses (IPv4-mapped IPv6
// unmapped, no zones). Errors name key and the entry's index.
func ParsePrefixes(key string, ss []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	var errs []error
	for i, s := range ss {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil || a.Zone() != "" {
				errs = append(errs, fmt.Errorf("%s[%d]: invalid address or CIDR %q", key, i, s))
				continue
			}
			p = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
		}
		if p.Addr().Is4In6() {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		out = append(out, p.Masked())
	}
	return out, errors.Join(errs...)
}

// special are address ranges that are not the public internet, beyond
// what netip's predicates cover.
var special = []struct {
	p    netip.Prefix
	what string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "\"this network\" address"},
	{netip.MustParsePrefix("100.64.0.0/10"), "shared (carrier-grade NAT) address"},
	{netip.MustParsePrefix("192.0.0.0/24"), "IETF protocol assignment"},
	{netip.MustParsePrefix("198.18.0.0/15"), "benchmarking address"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved address"},
	{netip.MustParsePrefix("100::/64"), "discard-only address"},
}

// nat64 embeds IPv4 addresses in IPv6 (RFC 6052); the embedded address
// is what is reached.
var nat64 = netip.MustParsePrefix("64:ff9b::/96")

// SpecialAddress says why ip is not a public unicast address, or "".
func SpecialAddress(ip netip.Addr) string {
	switch {
	case !ip.IsValid():
		return "invalid address"
	case ip.IsLoopback():
		return "loopback address"
	case ip.IsPrivate():
		return "private address"
	case ip.IsLinkLocalUnicast():
		return "link-local address (metadata services live here)"
	case ip.IsUnspecified():
		return "unspecified address"
	case ip.IsMulticast():
		return "multicast address"
	}
	for _, s := range special {
		if s.p.Contains(ip) {
			return s.what
		}
	}
	if nat64.Contains(ip) {
		b := ip.As16()
		if why := SpecialAddress(netip.AddrFrom4([4]byte(b[12:]))); why != "" {
			return "NAT64 of a " + why
		}
	}
	return ""
}
