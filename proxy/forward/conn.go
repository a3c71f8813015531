package forward

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// halfCloser is a connection that can shut down one direction (TCP).
type halfCloser interface {
	CloseRead() error
	CloseWrite() error
}

// stallListener wraps accepted client connections in stallConn.
type stallListener struct {
	net.Listener
	timeout time.Duration
}

func (l stallListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &stallConn{Conn: c, timeout: l.timeout}, nil
}

// stallConn gives every write to a client a deadline: a client that stops
// reading for timeout loses its connection instead of holding a goroutine
// and a fill reader forever. It stays with the connection after a CONNECT
// hijacks it (tunnels and intercepted TLS write through it too). Reads get
// no deadline here: http.Server bounds them, and a tunnel's client may be
// silent while it downloads.
type stallConn struct {
	net.Conn
	timeout time.Duration
}

func (c *stallConn) Write(p []byte) (int, error) {
	c.Conn.SetWriteDeadline(time.Now().Add(c.timeout))
	return c.Conn.Write(p)
}

// CloseRead and CloseWrite let goproxy half-close tunnels.
func (c *stallConn) CloseRead() error  { return closeRead(c.Conn) }
func (c *stallConn) CloseWrite() error { return closeWrite(c.Conn) }

func closeRead(c net.Conn) error {
	if h, ok := c.(halfCloser); ok {
		return h.CloseRead()
	}
	return c.Close()
}

func closeWrite(c net.Conn) error {
	if h, ok := c.(halfCloser); ok {
		return h.CloseWrite()
	}
	return c.Close()
}

// tunnelConn is the target side of a tunnel. Every byte of the tunnel
// passes through it in one direction or the other, so it closes an idle
// tunnel: a read times out only when nothing was read or written for
// idle. It counts the bytes and leaves the tunnel set on Close.
type tunnelConn struct {
	net.Conn
	idle  time.Duration
	set   *tunnels
	last  atomic.Int64 // unix nanoseconds of the last read or write
	bytes atomic.Int64
	once  sync.Once
}

func (c *tunnelConn) touch(n int) {
	if n > 0 {
		c.last.Store(time.Now().UnixNano())
		c.bytes.Add(int64(n))
	}
}

func (c *tunnelConn) lastActive() time.Time { return time.Unix(0, c.last.Load()) }

func (c *tunnelConn) Read(p []byte) (int, error) {
	for {
		c.Conn.SetReadDeadline(c.lastActive().Add(c.idle))
		n, err := c.Conn.Read(p)
		c.touch(n)
		var ne net.Error
		if n == 0 && errors.As(err, &ne) && ne.Timeout() && time.Until(c.lastActive().Add(c.idle)) > 0 {
			continue // the other direction was busy meanwhile
		}
		return n, err
	}
}

func (c *tunnelConn) Write(p []byte) (int, error) {
	c.Conn.SetWriteDeadline(time.Now().Add(c.idle))
	n, err := c.Conn.Write(p)
	c.touch(n)
	return n, err
}

func (c *tunnelConn) CloseRead() error  { return closeRead(c.Conn) }
func (c *tunnelConn) CloseWrite() error { return closeWrite(c.Conn) }

func (c *tunnelConn) Close() error {
	c.once.Do(func() { c.set.remove(c) })
	return c.Conn.Close()
}

// tunnels tracks open tunnels for graceful shutdown.
type tunnels struct {
	onClose func(bytes int64)

	// mu guards open.
	mu   sync.Mutex
	open map[*tunnelConn]struct{}
}

func (t *tunnels) add(c net.Conn, idle time.Duration) *tunnelConn {
	tc := &tunnelConn{Conn: c, idle: idle, set: t}
	tc.last.Store(time.Now().UnixNano())
	t.mu.Lock()
	if t.open == nil {
		t.open = map[*tunnelConn]struct{}{}
	}
	t.open[tc] = struct{}{}
	t.mu.Unlock()
	return tc
}

func (t *tunnels) remove(c *tunnelConn) {
	t.mu.Lock()
	delete(t.open, c)
	t.mu.Unlock()
	if t.onClose != nil {
		t.onClose(c.bytes.Load())
	}
}

// drain closes tunnels as they fall quiet (no byte for quiet) until none
// is left, and closes the rest when ctx ends.
func (t *tunnels) drain(ctx context.Context, quiet time.Duration) {
	tick := time.NewTicker(quiet / 2)
	defer tick.Stop()
	for {
		t.mu.Lock()
		var idle, all []*tunnelConn
		for c := range t.open {
			all = append(all, c)
			if time.Since(c.lastActive()) >= quiet {
				idle = append(idle, c)
			}
		}
		t.mu.Unlock()
		if ctx.Err() != nil {
			idle = all
		}
		for _, c := range idle {
			c.Close()
		}
		if len(all) == len(idle) {
			return
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
		}
	}
}

// connQueue is a net.Listener fed by hijacked CONNECTs: each intercepted
// client connection is handed to the MITM http.Server through it.
type connQueue struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
	addr  net.Addr
}

func newConnQueue(addr net.Addr) *connQueue {
	return &connQueue{conns: make(chan net.Conn), done: make(chan struct{}), addr: addr}
}

// push hands c to the server; false if the queue is closed.
func (q *connQueue) push(c net.Conn) bool {
	select {
	case q.conns <- c:
		return true
	case <-q.done:
		return false
	}
}

func (q *connQueue) Accept() (net.Conn, error) {
	select {
	case c := <-q.conns:
		return c, nil
	case <-q.done:
		return nil, net.ErrClosed
	}
}

func (q *connQueue) Close() error {
	q.once.Do(func() { close(q.done) })
	return nil
}

func (q *connQueue) Addr() net.Addr { return q.addr }
