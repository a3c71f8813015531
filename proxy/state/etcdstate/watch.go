package etcdstate

import (
	"context"
	"errors"

	"github.com/dtrcache/dtrcache/proxy/state"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// watchBuffer is how many events a watcher may fall behind before its
// watch is broken (it then lists again), as in badgerstate.
const watchBuffer = 4096

// Watch implements state.Store. It returns once etcd has created the
// watch, so every write after it returns is in the stream. The client
// resumes a watch across a lost connection or a stopped member from the
// last revision it delivered; the channel closes when that is impossible
// (the revision was compacted), when the member loses its leader (the
// watch requires one, so a partitioned member does not leave it silent),
// when the reader falls watchBuffer events behind, and when ctx ends or
// the store closes. The reader then lists again (state.View does).
func (s *Store) Watch(ctx context.Context, prefix string) (<-chan state.Event, error) {
	if err := s.begin(ctx); err != nil {
		return nil, err
	}
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	stop := context.AfterFunc(s.ctx, cancel) // Close ends the watch
	wch := s.client.Watch(wctx, s.data+prefix, clientv3.WithPrefix(), clientv3.WithCreatedNotify())
	fail := func(err error) (<-chan state.Event, error) {
		stop()
		cancel()
		return nil, s.wrap(ctx, "watch "+prefix, err)
	}
	select {
	case resp, ok := <-wch:
		switch {
		case !ok:
			return fail(context.Cause(wctx))
		case resp.Err() != nil:
			return fail(resp.Err())
		case !resp.Created:
			return fail(errors.New("no created notice"))
		}
	case <-wctx.Done():
		return fail(wctx.Err())
	}
	if !s.track() {
		return fail(state.ErrClosed)
	}
	out := make(chan state.Event, watchBuffer)
	go func() {
		defer s.wg.Done()
		defer close(out)
		defer cancel()
		defer stop()
		for resp := range wch {
			if resp.Canceled || resp.Err() != nil {
				if ctx.Err() == nil && !s.isClosed() {
					s.log.Warn("etcd watch ended; the reader lists again", zap.String("prefix", prefix), zap.Error(resp.Err()))
				}
				return
			}
			for _, ev := range resp.Events {
				e := state.Event{Key: string(ev.Kv.Key[len(s.data):]), Rev: ev.Kv.ModRevision}
				switch ev.Type {
				case mvccpb.PUT:
					e.Type, e.Value = state.EventPut, ev.Kv.Value
				case mvccpb.DELETE:
					e.Type = state.EventDelete
				default:
					continue
				}
				select {
				case out <- e:
				default:
					s.log.Warn("etcd watch reader too slow; it lists again", zap.String("prefix", prefix), zap.Int("buffer", watchBuffer))
					return
				}
			}
		}
	}()
	return out, nil
}
