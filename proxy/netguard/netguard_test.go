package netguard

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
)

// mapResolver answers from a map; names not in it do not exist.
type mapResolver map[string][]string

func (m mapResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	ss, ok := m[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out, nil
}

func TestResolve(t *testing.T) {
	res := mapResolver{
		"public.test":   {"93.184.216.34"},
		"metadata.test": {"169.254.169.254"},
		"mixed.test":    {"93.184.216.34", "10.0.0.1"},
		"corp.test":     {"10.20.1.2"},
		"nat64.test":    {"64:ff9b::a9fe:a9fe"},
		"mapped.test":   {"::ffff:127.0.0.1"},
	}
	d, err := New(Config{Resolver: res, AllowPrivate: []string{"10.20.0.0/16"}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		host   string
		denied string // reason substring, "" if allowed
	}{
		{"public.test", ""},
		{"corp.test", ""},
		{"metadata.test", "link-local"},
		{"mixed.test", "private"},
		{"nat64.test", "NAT64 of a link-local"},
		{"mapped.test", "loopback"},
		{"127.0.0.1", "loopback"},
		{"::1", "loopback"},
		{"0.0.0.0", "unspecified"},
		{"0.1.2.3", "\"this network\""},
		{"100.64.1.1", "carrier-grade"},
		{"224.0.0.1", "multicast"},
	}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			addrs, err := d.Resolve(context.Background(), tt.host, 443)
			var denied *DeniedError
			if tt.denied == "" {
				if err != nil || len(addrs) == 0 {
					t.Fatalf("Resolve = %v, %v; want allowed", addrs, err)
				}
				return
			}
			if !errors.As(err, &denied) || !strings.Contains(denied.Reason, tt.denied) {
				t.Fatalf("Resolve = %v, %v; want refused (%s)", addrs, err, tt.denied)
			}
		})
	}
	if _, err := d.Resolve(context.Background(), "nxdomain.test", 443); err == nil {
		t.Fatal("unknown name resolved")
	}
}

func TestNewErrors(t *testing.T) {
	_, err := New(Config{AllowPrivate: []string{"10.0.0.0/8", "nonsense", "fe80::1%eth0"}})
	if err == nil || !strings.Contains(err.Error(), "allow_private[1]") || !strings.Contains(err.Error(), "allow_private[2]") {
		t.Fatalf("err = %v, want both bad entries named", err)
	}
}

// TestDialThroughTransport: an HTTP client whose transport dials through
// the guard reaches loopback only when it is allowed, and the refusal is a
// *DeniedError the caller can tell apart.
func TestDialThroughTransport(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	defer srv.Close()
	for _, tt := range []struct {
		allow []string
		ok    bool
	}{{nil, false}, {[]string{"127.0.0.0/8"}, true}} {
		d, err := New(Config{AllowPrivate: tt.allow})
		if err != nil {
			t.Fatal(err)
		}
		hc := &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
		resp, err := hc.Get(srv.URL)
		if tt.ok {
			if err != nil || resp.StatusCode != http.StatusNoContent {
				t.Fatalf("allowed: %v, %v", resp, err)
			}
			resp.Body.Close()
			continue
		}
		var denied *DeniedError
		if !errors.As(err, &denied) || denied.Reason != "loopback address" {
			t.Fatalf("not allowed: err = %v, want a *DeniedError", err)
		}
	}
}
