package origin

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/dtrcache/dtrcache/proxy/regapi"
	"github.com/dtrcache/dtrcache/proxy/rendezvous"
)

// MaxNodes bounds the nodes of one registered cache.
const MaxNodes = 64

// Node is one node of a registered cache: where users reach it, and where
// the origin probes it and posts prefetch hints when that differs.
type Node struct {
	URL   string
	Probe string
}

// ProbeBase is where the origin reaches the node.
func (n Node) ProbeBase() string {
	if n.Probe != "" {
		return n.Probe
	}
	return n.URL
}

// Nodes returns the cache's nodes: one per entry of Hosts for a fleet
// (with ProbeHosts), or Host (with ProbeHost) for a single node.
func (c Cache) Nodes() []Node {
	if len(c.Hosts) == 0 {
		if c.Host == "" {
			return nil
		}
		return []Node{{URL: c.Host, Probe: c.ProbeHost}}
	}
	out := make([]Node, len(c.Hosts))
	for i, h := range c.Hosts {
		out[i] = Node{URL: h}
		if i < len(c.ProbeHosts) {
			out[i].Probe = c.ProbeHosts[i]
		}
	}
	return out
}

// Node returns the cache's node with URL u, if it has one.
func (c Cache) Node(u string) (Node, bool) {
	for _, n := range c.Nodes() {
		if n.URL == u {
			return n, true
		}
	}
	return Node{}, false
}

// NodeFor returns the node that serves digest: the highest-weighted node
// for it by rendezvous hashing over the node URLs (package rendezvous),
// among those up says may take users. Every origin replica makes the same
// choice from the same registration and verdicts, each blob lives on one
// node of the fleet, and a node that is down hands only its own blobs to
// the others. ok is false when no node is up.
func (c Cache) NodeFor(digest string, up func(Node) bool) (Node, bool) {
	nodes := c.Nodes()
	if len(nodes) == 1 {
		return nodes[0], up == nil || up(nodes[0])
	}
	set := c.ring
	if set == nil {
		set = c.newRing()
	}
	byURL := make(map[string]Node, len(nodes))
	for _, n := range nodes {
		byURL[n.URL] = n
	}
	u, ok := set.Pick(digest, func(u string) bool { return up == nil || up(byURL[u]) })
	return byURL[u], ok
}

func (c Cache) newRing() *rendezvous.Set {
	var urls []string
	for _, n := range c.Nodes() {
		urls = append(urls, n.URL)
	}
	return rendezvous.New(urls...)
}

// decodeCache reads a stored cache record and prepares its nodes'
// rendezvous set once, so a redirect computes only the weights.
func decodeCache(key string, b []byte) (Cache, error) {
	c, err := decodeJSON[Cache](key, b)
	if err == nil && len(c.Hosts) > 1 {
		c.ring = c.newRing()
	}
	return c, err
}

// normalizeNodes checks and normalises a cache's addresses: host or
// hosts (not both), each http(s)://host[:port] without a query, no node
// twice, at most MaxNodes; probeHost with host, probeHosts (as many as
// hosts) with hosts. A list of one node is stored as host. Host is set to
// the first node either way, for clients of DTR's API that read host.
func normalizeNodes(c *Cache) error {
	bad := func(key, msg string) error {
		return regapi.NewError(http.StatusBadRequest, "INVALID_HOST", key+": "+msg)
	}
	if len(c.Hosts) > 0 {
		if c.Host != "" && c.Host != strings.TrimRight(c.Hosts[0], "/") {
			return bad("host", "give host for one node or hosts for several, not both")
		}
		if c.ProbeHost != "" {
			return bad("probeHost", "with hosts, give probeHosts (one per host)")
		}
		if len(c.Hosts) > MaxNodes {
			return bad("hosts", fmt.Sprintf("at most %d nodes, got %d", MaxNodes, len(c.Hosts)))
		}
		if len(c.ProbeHosts) > 0 && len(c.ProbeHosts) != len(c.Hosts) {
			return bad("probeHosts", fmt.Sprintf("one per host: %d hosts, %d probeHosts", len(c.Hosts), len(c.ProbeHosts)))
		}
		seen := map[string]bool{}
		for i := range c.Hosts {
			h, err := normalizeURL(c.Hosts[i])
			if err != nil {
				return bad(fmt.Sprintf("hosts[%d]", i), err.Error())
			}
			if seen[h] {
				return bad(fmt.Sprintf("hosts[%d]", i), h+" is listed twice")
			}
			seen[h] = true
			c.Hosts[i] = h
		}
		for i := range c.ProbeHosts {
			if c.ProbeHosts[i] == "" {
				continue // probed where users reach it
			}
			h, err := normalizeURL(c.ProbeHosts[i])
			if err != nil {
				return bad(fmt.Sprintf("probeHosts[%d]", i), err.Error())
			}
			c.ProbeHosts[i] = h
		}
		c.Host = c.Hosts[0]
		if len(c.Hosts) == 1 {
			if len(c.ProbeHosts) == 1 {
				c.ProbeHost = c.ProbeHosts[0]
			}
			c.Hosts, c.ProbeHosts = nil, nil
		}
		c.ring = nil
		return nil
	}
	if len(c.ProbeHosts) > 0 {
		return bad("probeHosts", "only with hosts")
	}
	h, err := normalizeURL(c.Host)
	if err != nil {
		return bad("host", err.Error())
	}
	c.Host = h
	if c.ProbeHost != "" {
		if c.ProbeHost, err = normalizeURL(c.ProbeHost); err != nil {
			return bad("probeHost", err.Error())
		}
	}
	return nil
}

// normalizeURL checks one node address and drops a trailing slash.
func normalizeURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", fmt.Errorf("want http(s)://host[:port], got %q", raw)
	}
	return strings.TrimRight(raw, "/"), nil
}

// nodeUp returns which of c's nodes may take users now (the shared
// verdicts of the prober).
func (s *Server) nodeUp(c Cache) func(Node) bool {
	return s.c.Prober.NodeUp(c)
}
