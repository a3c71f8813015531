// Package etcdtest runs real etcd members in the test process
// (go.etcd.io/etcd/server/v3/embed): one member or a cluster of several,
// on free loopback ports, data in the test's temporary directory, stopped
// when the test ends. It is for tests and benchmarks only; the production
// binary links the etcd client, never the server.
package etcdtest

import (
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// Options tune a cluster. The zero value is etcd's defaults with fast
// elections.
type Options struct {
	// NoFsync skips fsync of the write-ahead log (etcd's
	// --unsafe-no-fsync): faster tests, no durability. Benchmarks leave
	// it off to measure what a deployment pays.
	NoFsync bool
	// TLS, if set, makes the members serve clients over TLS with these
	// files and require a client certificate signed by its CA.
	TLS *TLSFiles
}

// Cluster is a running set of embedded members.
type Cluster struct {
	Members []*Member
}

// Member is one embedded etcd member.
type Member struct {
	Name string
	// ClientURL is where clients reach it (http://127.0.0.1:PORT, or
	// https:// with Options.TLS).
	ClientURL string

	mu   sync.Mutex
	etcd *embed.Etcd // nil once stopped
}

// startTimeout bounds the cluster's start and its first election.
const startTimeout = 60 * time.Second

// Start runs an n-member cluster until the test ends. Ports are picked
// free and then bound by etcd, so another process may take one in
// between: a start that fails to listen is tried again on new ports.
func Start(tb testing.TB, n int, opt Options) *Cluster {
	tb.Helper()
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		var c *Cluster
		if c, err = start(tb, n, opt); err == nil {
			tb.Cleanup(c.stop)
			return c
		}
	}
	tb.Fatalf("etcdtest: start %d members: %v", n, err)
	return nil
}

func start(tb testing.TB, n int, opt Options) (*Cluster, error) {
	ports, err := freePorts(2 * n)
	if err != nil {
		return nil, err
	}
	token := fmt.Sprintf("etcdtest-%d", time.Now().UnixNano())
	var initial []string
	for i := range n {
		initial = append(initial, fmt.Sprintf("m%d=http://127.0.0.1:%d", i, ports[2*i+1]))
	}
	c := &Cluster{}
	for i := range n {
		cfg := embed.NewConfig()
		cfg.Name = fmt.Sprintf("m%d", i)
		cfg.Dir = tb.TempDir()
		client := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", ports[2*i])}
		if opt.TLS != nil {
			client.Scheme = "https"
			cfg.ClientTLSInfo = transport.TLSInfo{CertFile: opt.TLS.ServerCert, KeyFile: opt.TLS.ServerKey,
				TrustedCAFile: opt.TLS.CA, ClientCertAuth: true}
		}
		peer := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", ports[2*i+1])}
		cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
		cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
		cfg.InitialCluster = strings.Join(initial, ",")
		cfg.InitialClusterToken = token
		cfg.TickMs, cfg.ElectionMs = 50, 500
		cfg.UnsafeNoFsync = opt.NoFsync
		cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
		e, err := embed.StartEtcd(cfg)
		if err != nil {
			c.stop()
			return nil, err
		}
		c.Members = append(c.Members, &Member{Name: cfg.Name, ClientURL: client.String(), etcd: e})
	}
	deadline := time.After(startTimeout)
	for _, m := range c.Members {
		select {
		case <-m.etcd.Server.ReadyNotify():
		case err := <-m.etcd.Err():
			c.stop()
			return nil, fmt.Errorf("member %s: %w", m.Name, err)
		case <-deadline:
			c.stop()
			return nil, fmt.Errorf("not ready within %s", startTimeout)
		}
	}
	return c, nil
}

// freePorts returns n distinct loopback ports that were free a moment ago.
func freePorts(n int) ([]int, error) {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// Endpoints returns every member's client URL (stopped ones too: a client
// given them all fails over).
func (c *Cluster) Endpoints() []string {
	out := make([]string, len(c.Members))
	for i, m := range c.Members {
		out[i] = m.ClientURL
	}
	return out
}

// Leader waits until the running members agree on a leader among them and
// returns its index.
func (c *Cluster) Leader(tb testing.TB) int {
	tb.Helper()
	deadline := time.Now().Add(startTimeout)
	for {
		lead, agreed := uint64(0), true
		for _, m := range c.Members {
			e := m.running()
			if e == nil {
				continue
			}
			switch l := e.Server.Lead(); {
			case l == 0 || (lead != 0 && l != lead):
				agreed = false
			default:
				lead = l
			}
		}
		if agreed && lead != 0 {
			for i, m := range c.Members {
				if e := m.running(); e != nil && uint64(e.Server.MemberID()) == lead {
					return i
				}
			}
		}
		if time.Now().After(deadline) {
			tb.Fatalf("etcdtest: no leader within %s", startTimeout)
		}
		time.Sleep(20 * time.Millisecond) // polling a condition
	}
}

func (m *Member) running() *embed.Etcd {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.etcd
}

// Stop stops the member (its listeners close, its clients' connections
// break); the rest of the cluster goes on if it keeps a quorum.
func (m *Member) Stop() {
	m.mu.Lock()
	e := m.etcd
	m.etcd = nil
	m.mu.Unlock()
	if e != nil {
		e.Close()
	}
}

func (c *Cluster) stop() {
	var wg sync.WaitGroup
	for _, m := range c.Members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.Stop()
		}()
	}
	wg.Wait()
}
