package wan

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// dialTimeout bounds each connection attempt to the target.
const dialTimeout = 5 * time.Second

// Config describes the emulated link. The zero value is a transparent link:
// no added delay, no rate limit, no cuts.
type Config struct {
	// Latency is the one-way delay added in each direction, so a round
	// trip grows by 2*Latency. It delays bytes without lowering throughput.
	Latency time.Duration

	// Bandwidth is the rate in bytes per second of each direction of the
	// link, shared by all connections through it. 0 means unlimited.
	Bandwidth int64

	// PerConnBandwidth caps each connection at this many bytes per second
	// in each direction, below the shared Bandwidth. It models a long fat
	// network where one TCP stream cannot fill the pipe. 0 means no cap.
	PerConnBandwidth int64

	// CutAfter, if > 0, cuts any connection whose target→client byte count
	// would exceed it: exactly CutAfter bytes reach the client, then both
	// sides are closed abruptly (the client sees a reset). 0 means never.
	CutAfter int64

	// CutOnce limits CutAfter to the first connection that reaches it, so
	// a retried or resumed request passes. SetConfig re-arms it.
	CutOnce bool

	// CutAtLinkBytes, if > 0, cuts the one connection that carries the
	// target→client byte that takes the link's total since SetConfig past
	// it: "the upstream breaks half way through a pull", whichever
	// connection is carrying it. Exactly CutAtLinkBytes bytes pass before
	// the cut; later connections and bytes pass. SetConfig re-arms it.
	CutAtLinkBytes int64

	// CutUpAtLinkBytes is CutAtLinkBytes for the client→target direction:
	// the connection carrying the link's Nth byte towards the target is
	// cut after exactly that many bytes passed (an upload, a push to a
	// remote registry, broken half way). SetConfig re-arms it.
	CutUpAtLinkBytes int64
}

// Stats counts traffic through a Link since it started or since ResetStats.
type Stats struct {
	Conns     int64 // connections accepted
	BytesUp   int64 // client → target bytes forwarded
	BytesDown int64 // target → client bytes forwarded
	Cuts      int64 // connections cut (CutAfter, CutAtLinkBytes, CutUpAtLinkBytes)
}

// Link is an emulated WAN link: a TCP proxy that forwards each connection
// accepted on its address to a target address, adding delay, rate limits and
// cuts in both directions as its Config says. It is safe for concurrent use.
type Link struct {
	ln     net.Listener
	target string
	ctx    context.Context // cancelled by Close; parent of every connection
	cancel context.CancelFunc
	wg     sync.WaitGroup // accept loop and connection handlers

	cfg     atomic.Pointer[Config]
	cutUsed atomic.Bool // a CutOnce cut has happened since the last SetConfig
	// linkCutUsed and sinceCfg serve CutAtLinkBytes: whether its cut has
	// happened, and the target→client bytes since the last SetConfig.
	linkCutUsed atomic.Bool
	sinceCfg    atomic.Int64
	// upCutUsed and upSinceCfg are the same for CutUpAtLinkBytes.
	upCutUsed  atomic.Bool
	upSinceCfg atomic.Int64

	up, down bucket // the shared Bandwidth, one bucket per direction

	conns, bytesUp, bytesDown, cuts atomic.Int64

	closeOnce sync.Once
	closeErr  error
}

// Listen starts a Link listening on addr (such as "127.0.0.1:0") that
// forwards every accepted connection to target. The link lives until Close
// is called or ctx is done; either way, call Close to wait for it to stop.
func Listen(ctx context.Context, addr, target string, cfg Config) (*Link, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("wan: listen on %s: %w", addr, err)
	}
	l := &Link{ln: ln, target: target}
	l.ctx, l.cancel = context.WithCancel(ctx)
	l.cfg.Store(&cfg)
	// Closing the listener is what stops the accept loop.
	stop := context.AfterFunc(l.ctx, func() { _ = ln.Close() })
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		defer stop()
		l.acceptLoop()
	}()
	return l, nil
}

// Addr returns the address clients dial to use the link, such as
// "127.0.0.1:41234".
func (l *Link) Addr() string { return l.ln.Addr().String() }

// Stats returns the traffic counters.
func (l *Link) Stats() Stats {
	return Stats{
		Conns:     l.conns.Load(),
		BytesUp:   l.bytesUp.Load(),
		BytesDown: l.bytesDown.Load(),
		Cuts:      l.cuts.Load(),
	}
}

// ResetStats sets all traffic counters to zero.
func (l *Link) ResetStats() {
	l.conns.Store(0)
	l.bytesUp.Store(0)
	l.bytesDown.Store(0)
	l.cuts.Store(0)
}

// SetConfig replaces the link's settings. Open connections apply them to the
// bytes they read from now on; bytes already in flight keep their timing.
// It also re-arms CutOnce.
func (l *Link) SetConfig(cfg Config) {
	l.cfg.Store(&cfg)
	l.cutUsed.Store(false)
	l.sinceCfg.Store(0)
	l.linkCutUsed.Store(false)
	l.upSinceCfg.Store(0)
	l.upCutUsed.Store(false)
}

// config returns the current settings.
func (l *Link) config() *Config { return l.cfg.Load() }

// Close stops listening, closes every open connection through the link and
// waits for all of the link's goroutines to end. Calling it again is a no-op.
func (l *Link) Close() error {
	l.closeOnce.Do(func() {
		err := l.ln.Close()
		if err != nil && !errors.Is(err, net.ErrClosed) {
			l.closeErr = fmt.Errorf("wan: close listener: %w", err)
		}
		l.cancel()
		l.wg.Wait()
	})
	return l.closeErr
}

// acceptLoop accepts client connections until the listener is closed.
func (l *Link) acceptLoop() {
	backoff := time.Millisecond
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if l.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: wait and retry.
			if sleepUntil(l.ctx, time.Now().Add(backoff)) != nil {
				return
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = time.Millisecond
		l.conns.Add(1)
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			l.handle(c.(*net.TCPConn))
		}()
	}
}

// handle dials the target for one client connection and relays between the
// two until both directions finish or the connection is torn down.
func (l *Link) handle(client *net.TCPConn) {
	d := net.Dialer{Timeout: dialTimeout}
	c, err := d.DialContext(l.ctx, "tcp", l.target)
	if err != nil {
		// Like a refused connection further along: reset the client.
		_ = client.SetLinger(0)
		_ = client.Close()
		return
	}
	newPair(l, client, c.(*net.TCPConn)).run()
}
