package serve

import (
	"context"
	"sync"
)

// Background owns the goroutines a server starts outside any request
// (prefetch fills, hints to caches): they run with a context that Close
// cancels, and Close waits for them. The zero value is ready to use; it is
// safe for concurrent use.
type Background struct {
	// mu guards ctx, cancel and closed, and orders wg.Add before Wait.
	mu     sync.Mutex
	ctx    context.Context
	cancel context.CancelFunc
	closed bool
	wg     sync.WaitGroup
}

// Go runs f on a new goroutine with the background context. After Close
// it runs nothing and reports false.
func (b *Background) Go(f func(ctx context.Context)) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return false
	}
	if b.ctx == nil {
		b.ctx, b.cancel = context.WithCancel(context.Background())
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		f(b.ctx)
	}()
	return true
}

// Close cancels the context of the goroutines started by Go and waits
// until every one has returned. Later calls to Go run nothing; Close may
// be called more than once.
func (b *Background) Close() {
	b.mu.Lock()
	b.closed = true
	if b.cancel != nil {
		b.cancel()
	}
	b.mu.Unlock()
	b.wg.Wait()
}
