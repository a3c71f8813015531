package wan

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Delay-line bounds, in bytes per connection direction.
const (
	minQueue = 256 << 10
	maxQueue = 32 << 20
	// assumedRate sizes the queue of an unlimited link: 1 Gbit/s. With
	// latency, one connection can then move at least 2 Gbit/s.
	assumedRate = 1e9 / 8
	// readSize is the largest read from a socket.
	readSize = 64 << 10
	// ackTimeout bounds the wait for the client to acknowledge the bytes
	// before a cut.
	ackTimeout = 2 * time.Second
)

// pair is one client connection and its connection to the target.
type pair struct {
	link   *Link
	client *net.TCPConn
	target *net.TCPConn
	ctx    context.Context // cancelled to tear the pair down
	cancel context.CancelFunc
}

func newPair(l *Link, client, target *net.TCPConn) *pair {
	p := &pair{link: l, client: client, target: target}
	p.ctx, p.cancel = context.WithCancel(l.ctx)
	return p
}

// run relays both directions and returns when both have finished, or when
// either failed and the pair was torn down.
func (p *pair) run() {
	// Tearing down closes both sockets, which unblocks any pending read or
	// write; the delay lines and token waits watch p.ctx.
	stop := context.AfterFunc(p.ctx, func() {
		_ = p.client.Close()
		_ = p.target.Close()
	})
	defer stop()
	defer p.cancel()

	up := &direction{pair: p, src: p.client, dst: p.target, counter: &p.link.bytesUp, shared: &p.link.up}
	down := &direction{pair: p, src: p.target, dst: p.client, counter: &p.link.bytesDown, shared: &p.link.down, downstream: true}
	var wg sync.WaitGroup
	for _, d := range []*direction{up, down} {
		d.queue = newDelayLine()
		wg.Go(d.readLoop)
		wg.Go(d.writeLoop)
	}
	wg.Wait()
	_ = p.client.Close()
	_ = p.target.Close()
}

// abort tears the pair down. With reset, both sockets are closed with
// linger 0 so each peer sees a reset rather than a clean end of stream.
func (p *pair) abort(reset bool) {
	if reset {
		_ = p.client.SetLinger(0)
		_ = p.target.SetLinger(0)
	}
	p.cancel()
}

// direction relays bytes one way: readLoop reads src, charges the bytes to
// the token buckets and queues them with their due time; writeLoop writes
// each chunk to dst when it is due.
type direction struct {
	pair       *pair
	src, dst   *net.TCPConn
	counter    *atomic.Int64 // the link's byte counter for this direction
	shared     *bucket       // the link's bucket for this direction
	own        bucket        // the PerConnBandwidth bucket
	queue      *delayLine
	downstream bool // target → client: subject to CutAfter

	read   int64 // bytes read so far; used by readLoop only
	exempt bool  // CutOnce was used by another connection; readLoop only
}

// readLoop reads src until end of stream, then closes the queue.
func (d *direction) readLoop() {
	buf := make([]byte, readSize)
	for {
		n, err := d.src.Read(buf)
		if n > 0 {
			if !d.forward(buf[:n]) {
				return
			}
		}
		if errors.Is(err, io.EOF) {
			d.queue.close()
			return
		}
		if err != nil {
			d.pair.abort(false)
			return
		}
	}
}

// forward charges b to the buckets piece by piece and queues each piece.
// It reports false when the direction must stop reading.
func (d *direction) forward(b []byte) bool {
	ctx := d.pair.ctx
	for len(b) > 0 {
		cfg := d.pair.link.config()
		n := min(len(b), pieceFor(effectiveRate(cfg)))
		cut := false
		if d.downstream {
			n, cut = d.checkCut(cfg, n)
		} else {
			n, cut = d.checkUpCut(cfg, n)
		}
		now := time.Now()
		at := d.shared.reserve(now, n, cfg.Bandwidth)
		if t := d.own.reserve(now, n, cfg.PerConnBandwidth); t.After(at) {
			at = t
		}
		if err := sleepUntil(ctx, at); err != nil {
			return false
		}
		c := chunk{data: append([]byte(nil), b[:n]...), due: at.Add(cfg.Latency), cut: cut}
		if err := d.queue.push(ctx, c, queueLimit(cfg)); err != nil {
			return false
		}
		if cut {
			return false
		}
		d.read += int64(n)
		b = b[n:]
	}
	return true
}

// checkCut decides whether n more bytes would cross CutAtLinkBytes (for
// the link) or CutAfter (for this connection). If so, it returns how many
// of them may still pass before the cut, and true.
func (d *direction) checkCut(cfg *Config, n int) (int, bool) {
	if lim := cfg.CutAtLinkBytes; lim > 0 && !d.pair.link.linkCutUsed.Load() {
		l := d.pair.link
		if total := l.sinceCfg.Add(int64(n)); total > lim && l.linkCutUsed.CompareAndSwap(false, true) {
			return int(max(int64(n)-(total-lim), 0)), true
		}
	}
	if cfg.CutAfter <= 0 || d.exempt || d.read+int64(n) <= cfg.CutAfter {
		return n, false
	}
	if cfg.CutOnce && !d.pair.link.cutUsed.CompareAndSwap(false, true) {
		d.exempt = true
		return n, false
	}
	return int(max(cfg.CutAfter-d.read, 0)), true
}

// checkUpCut is checkCut for the client→target direction and
// CutUpAtLinkBytes.
func (d *direction) checkUpCut(cfg *Config, n int) (int, bool) {
	l := d.pair.link
	if lim := cfg.CutUpAtLinkBytes; lim > 0 && !l.upCutUsed.Load() {
		if total := l.upSinceCfg.Add(int64(n)); total > lim && l.upCutUsed.CompareAndSwap(false, true) {
			return int(max(int64(n)-(total-lim), 0)), true
		}
	}
	return n, false
}

// writeLoop writes queued chunks to dst as they fall due. After the last
// one it closes dst for writing, passing the end of stream along.
func (d *direction) writeLoop() {
	ctx := d.pair.ctx
	for {
		c, ok, err := d.queue.pop(ctx)
		if err != nil {
			return
		}
		if !ok {
			if d.dst.CloseWrite() != nil {
				d.pair.abort(false)
			}
			return
		}
		if sleepUntil(ctx, c.due) != nil {
			return
		}
		if len(c.data) > 0 {
			n, err := d.dst.Write(c.data)
			d.counter.Add(int64(n))
			if err != nil {
				d.pair.abort(false)
				return
			}
		}
		if c.cut {
			d.cut(ctx)
			return
		}
	}
}

// cut ends the connection abruptly once the client has received every byte
// written to it, so it sees exactly CutAfter bytes and then a reset.
func (d *direction) cut(ctx context.Context) {
	waitCtx, cancel := context.WithTimeout(ctx, ackTimeout)
	defer cancel()
	_ = waitAcked(waitCtx, d.dst)
	d.pair.link.cuts.Add(1)
	d.pair.abort(true)
}

// effectiveRate is the lowest rate limit in force for one connection
// direction, or 0 if it is unlimited.
func effectiveRate(cfg *Config) int64 {
	switch {
	case cfg.Bandwidth <= 0:
		return max(cfg.PerConnBandwidth, 0)
	case cfg.PerConnBandwidth <= 0:
		return cfg.Bandwidth
	default:
		return min(cfg.Bandwidth, cfg.PerConnBandwidth)
	}
}

// queueLimit bounds the bytes waiting in one direction's delay line: twice
// the bytes the link holds in flight (rate × latency), within fixed bounds.
func queueLimit(cfg *Config) int {
	rate := float64(effectiveRate(cfg))
	if rate == 0 {
		rate = assumedRate
	}
	inFlight := rate * cfg.Latency.Seconds()
	return int(min(max(2*inFlight, minQueue), maxQueue))
}
