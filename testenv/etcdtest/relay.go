package etcdtest

import (
	"io"
	"net"
	"strings"
	"sync"
	"testing"
)

// Relay is a TCP relay in front of a member that can be cut: Cut closes
// every connection through it and refuses new ones until Heal. A client
// that reaches the cluster only through relays is then cut off, as a
// replica behind a broken link is; loopback gives no other way to make
// that fault. It stops when the test ends.
type Relay struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	cut   bool
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// NewRelay relays to the member at url (http://host:port).
func NewRelay(tb testing.TB, url string) *Relay {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	r := &Relay{ln: ln, target: strings.TrimPrefix(url, "http://"), conns: map[net.Conn]struct{}{}}
	r.wg.Add(1)
	go r.accept()
	tb.Cleanup(func() {
		ln.Close()
		r.Cut()
		r.wg.Wait()
	})
	return r
}

// URL is the client URL to give instead of the member's.
func (r *Relay) URL() string { return "http://" + r.ln.Addr().String() }

// Cut closes every connection and refuses new ones.
func (r *Relay) Cut() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cut = true
	for c := range r.conns {
		c.Close()
	}
}

// Heal accepts connections again.
func (r *Relay) Heal() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cut = false
}

func (r *Relay) accept() {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		r.wg.Add(1)
		go r.relay(c)
	}
}

// add registers conns, unless the relay is cut.
func (r *Relay) add(conns ...net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cut {
		return false
	}
	for _, c := range conns {
		r.conns[c] = struct{}{}
	}
	return true
}

func (r *Relay) drop(conns ...net.Conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range conns {
		delete(r.conns, c)
		c.Close()
	}
}

func (r *Relay) relay(client net.Conn) {
	defer r.wg.Done()
	upstream, err := net.Dial("tcp", r.target)
	if err != nil {
		client.Close()
		return
	}
	if !r.add(client, upstream) {
		client.Close()
		upstream.Close()
		return
	}
	defer r.drop(client, upstream)
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		io.Copy(dst, src)
		done <- struct{}{}
	}
	go pipe(upstream, client)
	go pipe(client, upstream)
	<-done // one side ended: close both, which ends the other copy
	r.drop(client, upstream)
	<-done
}
