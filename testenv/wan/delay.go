package wan

import (
	"context"
	"sync"
	"time"
)

// chunk is a run of bytes in flight on one direction of a connection.
type chunk struct {
	data []byte
	due  time.Time // when the far end may see the bytes
	cut  bool      // after writing data, cut the connection
}

// delayLine is the queue between a direction's reader and its writer: the
// reader appends timestamped chunks and the writer takes them in order and
// holds each until it is due. Because the writer does not wait for one chunk
// to arrive before the next is sent, latency adds delay without lowering
// throughput. The queue is bounded in bytes so that a fast sender is slowed
// down by TCP flow control instead of filling memory.
//
// A delayLine has exactly one producer and one consumer.
type delayLine struct {
	// mu guards the fields below.
	mu     sync.Mutex
	queue  []chunk
	bytes  int  // sum of len(data) over queue
	closed bool // the producer saw end of stream; no more pushes

	ready chan struct{} // signalled after a push or close; capacity 1
	space chan struct{} // signalled after a pop; capacity 1
}

func newDelayLine() *delayLine {
	return &delayLine{
		ready: make(chan struct{}, 1),
		space: make(chan struct{}, 1),
	}
}

// push appends c, first waiting while the queue holds more than limit bytes.
// A chunk is always accepted into an empty queue, whatever its size.
func (d *delayLine) push(ctx context.Context, c chunk, limit int) error {
	for {
		d.mu.Lock()
		if d.bytes == 0 || d.bytes+len(c.data) <= limit {
			d.queue = append(d.queue, c)
			d.bytes += len(c.data)
			d.mu.Unlock()
			signal(d.ready)
			return nil
		}
		d.mu.Unlock()
		select {
		case <-d.space:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}

// close marks the end of the stream; pop reports it once the queue is empty.
func (d *delayLine) close() {
	d.mu.Lock()
	d.closed = true
	d.mu.Unlock()
	signal(d.ready)
}

// pop removes and returns the oldest chunk, waiting for one if the queue is
// empty. It returns ok == false once the queue is closed and empty.
func (d *delayLine) pop(ctx context.Context) (c chunk, ok bool, err error) {
	for {
		d.mu.Lock()
		if len(d.queue) > 0 {
			c = d.queue[0]
			d.queue[0] = chunk{}
			d.queue = d.queue[1:]
			d.bytes -= len(c.data)
			d.mu.Unlock()
			signal(d.space)
			return c, true, nil
		}
		closed := d.closed
		d.mu.Unlock()
		if closed {
			return chunk{}, false, nil
		}
		select {
		case <-d.ready:
		case <-ctx.Done():
			return chunk{}, false, context.Cause(ctx)
		}
	}
}

// signal wakes the waiter on ch, if any, without blocking.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}
