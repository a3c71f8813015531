package forward

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// ErrBadTarget wraps every host:port parsing error.
var ErrBadTarget = errors.New("forward: invalid host or port")

// ParseHostPort parses a CONNECT target, a proxy request's URL host or a
// configuration entry: "host:port", "[v6]:port", or — when defaultPort is
// not 0 — "host" and "[v6]" alone. The host is a DNS name (ASCII letters,
// digits, '-', '_' and dots, at most 253 bytes; returned in lower case
// without a trailing dot) or an IP address (returned in canonical form,
// IPv4-mapped IPv6 unmapped; no zones). The port is 1–65535 in decimal.
func ParseHostPort(s string, defaultPort int) (host string, port int, err error) {
	bad := func(why string) (string, int, error) {
		return "", 0, fmt.Errorf("%w: %q: %s", ErrBadTarget, truncate(s, 80), why)
	}
	var portStr string
	switch {
	case strings.HasPrefix(s, "["):
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return bad("missing ']'")
		}
		host = s[1:end]
		rest := s[end+1:]
		switch {
		case rest == "":
		case rest[0] == ':':
			portStr = rest[1:]
			if portStr == "" {
				return bad("empty port")
			}
		default:
			return bad("junk after ']'")
		}
		ip, err := netip.ParseAddr(host)
		if err != nil || !ip.Is6() || ip.Zone() != "" {
			return bad("not an IPv6 address in brackets")
		}
		host = ip.Unmap().String()
	default:
		if i := strings.LastIndexByte(s, ':'); i >= 0 {
			host, portStr = s[:i], s[i+1:]
			if strings.ContainsRune(host, ':') {
				return bad("IPv6 addresses need brackets")
			}
			if portStr == "" {
				return bad("empty port")
			}
		} else {
			host = s
		}
		if host, err = canonicalHost(host); err != nil {
			return bad(err.Error())
		}
	}
	if portStr == "" {
		if defaultPort == 0 {
			return bad("port required")
		}
		return host, defaultPort, nil
	}
	if len(portStr) > 5 || strings.TrimLeft(portStr, "0123456789") != "" {
		return bad("invalid port")
	}
	port, _ = strconv.Atoi(portStr)
	if port < 1 || port > 65535 {
		return bad("port out of range")
	}
	return host, port, nil
}

// JoinHostPort is the inverse of ParseHostPort.
func JoinHostPort(host string, port int) string {
	if strings.ContainsRune(host, ':') {
		return "[" + host + "]:" + strconv.Itoa(port)
	}
	return host + ":" + strconv.Itoa(port)
}

// canonicalHost checks a host name or IPv4 address (no brackets) and
// returns its canonical form.
func canonicalHost(h string) (string, error) {
	if ip, err := netip.ParseAddr(h); err == nil {
		if ip.Is6() && !ip.Is4In6() {
			return "", errors.New("IPv6 addresses need brackets")
		}
		return ip.Unmap().String(), nil
	}
	h = strings.ToLower(strings.TrimSuffix(h, "."))
	if h == "" || len(h) > 253 {
		return "", errors.New("empty or too long host name")
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 {
			return "", errors.New("empty or too long label in host name")
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return "", errors.New("label starts or ends with '-'")
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return "", fmt.Errorf("invalid character %q in host name", c)
			}
		}
	}
	// All-numeric dotted names that are not valid IPv4 addresses ("1.2.3",
	// "999.1.1.1") are refused: resolvers read some of them as addresses.
	if strings.Trim(h, "0123456789.") == "" {
		return "", errors.New("numeric host name that is not an IPv4 address")
	}
	return h, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
