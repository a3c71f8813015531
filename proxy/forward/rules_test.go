package forward

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
)

// fakeResolver answers from a map; names not in it do not exist.
type fakeResolver struct {
	addrs   map[string][]string
	lookups atomic.Int64
}

func (f *fakeResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	f.lookups.Add(1)
	ss, ok := f.addrs[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out, nil
}

func mustRules(t *testing.T, c RulesConfig) *Rules {
	t.Helper()
	r, err := NewRules(c)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestConnectDecisions(t *testing.T) {
	r := mustRules(t, RulesConfig{
		Intercept: []string{"registry.test", "Other.Registry.test.", "plain.test:80", "odd.test:5000", "[2001:db8::1]", "203.0.113.7"},
		Tunnel:    []string{"auth.test", "storage.test:9000"},
		Ports:     []int{443, 8443},
	})
	tests := []struct {
		target string
		want   Action
		reason string
	}{
		{"registry.test:443", Intercept, ""},
		{"REGISTRY.test.:443", Intercept, ""},
		{"registry.test:8443", Intercept, ""},
		{"registry.test:80", Deny, "port 80"},
		{"registry.test:22", Deny, "port 22"},
		{"other.registry.test:443", Intercept, ""},
		{"odd.test:5000", Intercept, ""},
		{"odd.test:443", Deny, "port 443"}, // an entry with a port allows only that port
		{"plain.test:443", Deny, "port 443"},
		{"[2001:db8::1]:443", Intercept, ""},
		{"203.0.113.7:443", Intercept, ""},
		{"auth.test:443", Tunnel, ""},
		{"auth.test:80", Deny, "port 80"},
		{"storage.test:9000", Tunnel, ""},
		{"storage.test:443", Deny, "port 443"},
		{"evil.test:443", Deny, "not in the intercept or tunnel list"},
		{"169.254.169.254:80", Deny, "not in the intercept or tunnel list"},
		{"sub.registry.test:443", Deny, "not in the intercept or tunnel list"}, // exact names only
		{"registry.test", Deny, "port required"},
		{"registry.test:0", Deny, "port out of range"},
		{"registry.test:65536", Deny, "port out of range"},
		{"registry.test:+443", Deny, "invalid port"},
		{"::1:443", Deny, "brackets"},
		{"registry.test/x:443", Deny, "invalid character"},
		{"", Deny, ""},
	}
	for _, tt := range tests {
		t.Run(tt.target, func(t *testing.T) {
			d := r.Connect(tt.target)
			if d.Action != tt.want || !strings.Contains(d.Reason, tt.reason) {
				t.Fatalf("Connect(%q) = %v %q, want %v %q", tt.target, d.Action, d.Reason, tt.want, tt.reason)
			}
		})
	}
}

func TestPlainHTTPDecisions(t *testing.T) {
	tests := []struct {
		name  string
		rules RulesConfig
		host  string
		want  Action
	}{
		{"intercepted host listed with :80", RulesConfig{Intercept: []string{"plain.test:80"}}, "plain.test", Intercept},
		{"explicit :80 in the URL", RulesConfig{Intercept: []string{"plain.test:80"}}, "plain.test:80", Intercept},
		{"port 80 not allowed by default", RulesConfig{Intercept: []string{"plain.test"}}, "plain.test", Deny},
		{"port 80 in ports is still not plain HTTP", RulesConfig{Intercept: []string{"plain.test"}, Ports: []int{443, 80}}, "plain.test", Deny},
		{"default TLS port over plain HTTP", RulesConfig{Intercept: []string{"registry.test"}}, "registry.test:443", Deny},
		{"plain HTTP to a tunnel host", RulesConfig{Tunnel: []string{"auth.test"}, Ports: []int{80}}, "auth.test", Deny},
		{"unlisted host", RulesConfig{Intercept: []string{"plain.test:80"}}, "example.test", Deny},
		{"other port", RulesConfig{Intercept: []string{"plain.test:80"}}, "plain.test:8080", Deny},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if d := mustRules(t, tt.rules).PlainHTTP(tt.host); d.Action != tt.want {
				t.Fatalf("PlainHTTP(%q) = %v (%s), want %v", tt.host, d.Action, d.Reason, tt.want)
			}
		})
	}
}

func TestClientAllowListDecisions(t *testing.T) {
	def := mustRules(t, RulesConfig{})
	listed := mustRules(t, RulesConfig{Clients: []string{"203.0.113.0/24", "2001:db8::5"}})
	tests := []struct {
		addr          string
		byDef, listed bool
	}{
		{"127.0.0.1", true, false},
		{"::1", true, false},
		{"10.1.2.3", true, false},
		{"172.16.9.9", true, false},
		{"192.168.0.10", true, false},
		{"fd12::1", true, false},
		{"::ffff:10.0.0.1", true, false},
		{"8.8.8.8", false, false},
		{"169.254.10.10", false, false},
		{"100.64.0.1", false, false},
		{"203.0.113.9", false, true},
		{"::ffff:203.0.113.9", false, true},
		{"2001:db8::5", false, true},
		{"2001:db8::6", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			a := netip.MustParseAddr(tt.addr)
			if got := def.ClientAllowed(a); got != tt.byDef {
				t.Errorf("default list: %v, want %v", got, tt.byDef)
			}
			if got := listed.ClientAllowed(a); got != tt.listed {
				t.Errorf("configured list: %v, want %v", got, tt.listed)
			}
		})
	}
}

func TestResolveRefusesSpecialAddresses(t *testing.T) {
	res := &fakeResolver{addrs: map[string][]string{
		"public.test":   {"93.184.216.34", "2606:2800:220:1::1"},
		"mixed.test":    {"93.184.216.34", "10.0.0.8"},
		"loop.test":     {"127.0.0.1"},
		"meta.test":     {"169.254.169.254"},
		"mapped.test":   {"::ffff:169.254.169.254"},
		"nat64.test":    {"64:ff9b::a9fe:a9fe"},
		"imds6.test":    {"fd00:ec2::254"},
		"cgnat.test":    {"100.64.1.1"},
		"zero.test":     {"0.0.0.0"},
		"bcast.test":    {"255.255.255.255"},
		"lla6.test":     {"fe80::1"},
		"mcast.test":    {"224.0.0.1"},
		"registry.test": {"93.184.216.34"}, // what public DNS says; the host map wins
	}}
	strict := mustRules(t, RulesConfig{Resolver: res, Hosts: map[string]string{"registry.test": "127.0.0.1:5000", "alias.test": "public.test"}})
	allowed := mustRules(t, RulesConfig{Resolver: res, AllowPrivate: []string{"127.0.0.0/8", "10.0.0.8"},
		Hosts: map[string]string{"registry.test": "127.0.0.1:5000", "registry.test:8443": "127.0.0.2", "alias.test": "public.test"}})
	tests := []struct {
		name     string
		r        *Rules
		host     string
		port     int
		want     string // first address, or "" when refused
		notFound bool
	}{
		{"public", strict, "public.test", 443, "93.184.216.34:443", false},
		{"one private among public", strict, "mixed.test", 443, "", false},
		{"one private among public, allowed", allowed, "mixed.test", 443, "93.184.216.34:443", false},
		{"loopback", strict, "loop.test", 443, "", false},
		{"loopback allowed", allowed, "loop.test", 443, "127.0.0.1:443", false},
		{"metadata service", allowed, "meta.test", 80, "", false},
		{"metadata service literal", allowed, "169.254.169.254", 80, "", false},
		{"IPv4-mapped metadata", allowed, "mapped.test", 80, "", false},
		{"NAT64 metadata", allowed, "nat64.test", 80, "", false},
		{"IPv6 metadata (ULA)", allowed, "imds6.test", 80, "", false},
		{"carrier-grade NAT", strict, "cgnat.test", 443, "", false},
		{"unspecified", allowed, "zero.test", 443, "", false},
		{"broadcast", strict, "bcast.test", 443, "", false},
		{"IPv6 link-local", strict, "lla6.test", 443, "", false},
		{"multicast", strict, "mcast.test", 443, "", false},
		{"private literal", strict, "192.168.1.1", 443, "", false},
		{"host map checked too", strict, "registry.test", 443, "", false},
		{"host map, allowed", allowed, "registry.test", 443, "127.0.0.1:5000", false},
		{"host map by host:port", allowed, "registry.test", 8443, "127.0.0.2:8443", false},
		{"host map to a name", strict, "alias.test", 443, "93.184.216.34:443", false},
		{"unknown name", strict, "nx.test", 443, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addrs, err := tt.r.Resolve(context.Background(), tt.host, tt.port)
			var denied *DeniedError
			switch {
			case tt.want != "":
				if err != nil || addrs[0].String() != tt.want {
					t.Fatalf("Resolve = %v, %v; want %s", addrs, err, tt.want)
				}
			case tt.notFound:
				if err == nil || errors.As(err, &denied) {
					t.Fatalf("Resolve = %v, %v; want a lookup error", addrs, err)
				}
			default:
				if !errors.As(err, &denied) {
					t.Fatalf("Resolve = %v, %v; want a *DeniedError", addrs, err)
				}
			}
		})
	}
}

// TestDialUsesTheCheckedAddress: the dialer looks the name up once and
// dials what it checked; a second DNS answer (rebinding to the metadata
// service) is never consulted.
func TestDialUsesTheCheckedAddress(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	res := &rebindingResolver{first: netip.MustParseAddr("127.0.0.1"), then: netip.MustParseAddr("169.254.169.254")}
	r := mustRules(t, RulesConfig{Resolver: res, AllowPrivate: []string{"127.0.0.0/8"}})
	c, err := r.DialContext(context.Background(), "tcp", JoinHostPort("rebind.test", port))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.RemoteAddr().String(); got != ln.Addr().String() {
		t.Fatalf("dialled %s, want %s", got, ln.Addr())
	}
	c.Close()
	if n := res.calls.Load(); n != 1 {
		t.Fatalf("%d lookups for one dial, want 1", n)
	}
	// The next dial sees the rebound answer and refuses it.
	_, err = r.DialContext(context.Background(), "tcp", JoinHostPort("rebind.test", port))
	var denied *DeniedError
	if !errors.As(err, &denied) || denied.Addr.String() != "169.254.169.254" {
		t.Fatalf("second dial: %v, want refused 169.254.169.254", err)
	}
}

type rebindingResolver struct {
	first, then netip.Addr
	calls       atomic.Int64
}

func (r *rebindingResolver) LookupNetIP(context.Context, string, string) ([]netip.Addr, error) {
	if r.calls.Add(1) == 1 {
		return []netip.Addr{r.first}, nil
	}
	return []netip.Addr{r.then}, nil
}

func TestNewRulesNamesBadEntries(t *testing.T) {
	_, err := NewRules(RulesConfig{
		Intercept:    []string{"ok.test", "bad host"},
		Tunnel:       []string{"ok.test", "x.test:99999"},
		Clients:      []string{"10.0.0.0/8", "nonsense"},
		AllowPrivate: []string{"127.0.0.1/33"},
		Hosts:        map[string]string{"a.test": "[::1"},
		Ports:        []int{443, 0, 70000},
	})
	for _, want := range []string{`intercept[1]: invalid entry "bad host"`, "tunnel[1]", "tunnel[0]: ok.test is listed in both", "clients[1]", "allow_private[0]",
		`hosts[a.test]: invalid address "[::1"`, "ports[1]: invalid port 0", "ports[2]: invalid port 70000"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not name %s", err, want)
		}
	}
}

func TestParseHostPort(t *testing.T) {
	tests := []struct {
		in       string
		def      int
		host     string
		port     int
		badMatch string
	}{
		{"registry.test:443", 0, "registry.test", 443, ""},
		{"Registry.Test.:5000", 0, "registry.test", 5000, ""},
		{"registry.test", 80, "registry.test", 80, ""},
		{"[::1]:443", 0, "::1", 443, ""},
		{"[::ffff:10.0.0.1]:443", 0, "10.0.0.1", 443, ""},
		{"[::1]", 443, "::1", 443, ""},
		{"10.0.0.1:8080", 0, "10.0.0.1", 8080, ""},
		{"under_score.test:443", 0, "under_score.test", 443, ""},
		{"registry.test", 0, "", 0, "port required"},
		{"registry.test:", 0, "", 0, "empty port"},
		{"[fe80::1%eth0]:443", 0, "", 0, "IPv6"},
		{"[10.0.0.1]:443", 0, "", 0, "IPv6"},
		{"-bad.test:443", 0, "", 0, "'-'"},
		{"a..b:443", 0, "", 0, "empty"},
		{"1.2.3:443", 0, "", 0, "numeric"},
		{"999.1.1.1:443", 0, "", 0, "numeric"},
		{"exämple.test:443", 0, "", 0, "invalid character"},
		{"host:44a", 0, "", 0, "invalid port"},
		{"[::1]x", 443, "", 0, "junk"},
		{strings.Repeat("a", 64) + ".test:443", 0, "", 0, "too long"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			host, port, err := ParseHostPort(tt.in, tt.def)
			if tt.badMatch != "" {
				if !errors.Is(err, ErrBadTarget) || !strings.Contains(err.Error(), tt.badMatch) {
					t.Fatalf("ParseHostPort(%q) = %q %d %v, want error with %q", tt.in, host, port, err, tt.badMatch)
				}
				return
			}
			if err != nil || host != tt.host || port != tt.port {
				t.Fatalf("ParseHostPort(%q) = %q %d %v, want %q %d", tt.in, host, port, err, tt.host, tt.port)
			}
		})
	}
}

// FuzzParseHostPort: whatever parses is canonical (formatting and parsing
// again gives the same host and port), and a parsed host is a plain name
// or address with nothing a URL or a header could be smuggled through.
func FuzzParseHostPort(f *testing.F) {
	for _, s := range []string{"registry.test:443", "[::1]:443", "10.0.0.1:80", "a:0", "[::ffff:1.2.3.4]:1", "x.test.:65535",
		"169.254.169.254:80", "host:443\r\nX: y", "[::1%25eth0]:1", "a@b:443", "a b:1", "0x7f.1:80", "[]:1", ":443"} {
		f.Add(s, 0)
		f.Add(s, 443)
	}
	f.Fuzz(func(t *testing.T, s string, def int) {
		host, port, err := ParseHostPort(s, def)
		if err != nil {
			if !errors.Is(err, ErrBadTarget) {
				t.Fatalf("error %v does not wrap ErrBadTarget", err)
			}
			return
		}
		if def == 0 && (port < 1 || port > 65535) {
			t.Fatalf("%q: port %d", s, port)
		}
		if host == "" || strings.ContainsAny(host, "/@?#%[] \t\r\n\\") {
			t.Fatalf("%q: host %q", s, host)
		}
		if port < 1 || port > 65535 {
			return // the caller's default, returned as given
		}
		h2, p2, err := ParseHostPort(JoinHostPort(host, port), 0)
		if err != nil || h2 != host || p2 != port {
			t.Fatalf("%q → %q %d → %q %d %v: not canonical", s, host, port, h2, p2, err)
		}
	})
}
