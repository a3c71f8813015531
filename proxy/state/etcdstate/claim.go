package etcdstate

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/dtrcache/dtrcache/proxy/state"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// claim is a claim held by this store: the key P+"claims/"+k, created
// only if absent, bound to a lease of its own that the client keeps
// alive. Lost closes when the claim is released, its context ends, the
// store closes, etcd answers that the lease expired, or no renewal has
// come back for the lease's ttl less a margin: by then this replica may be
// cut off, and the lease ends on the cluster soon after (renewals stop at
// once), so another holder may take the key. The margin covers the round
// trip between the cluster's renewal and its answer, so Lost closes before
// the cluster can give the key to another holder.
type claim struct {
	s     *Store
	key   string
	lease clientv3.LeaseID
	lost  chan struct{}
	// stopRenewal ends the keepalive of the lease.
	stopRenewal context.CancelFunc

	// released and stop (which ends the AfterFunc of the claim's
	// context) are guarded by s.mu.
	released bool
	stop     func() bool

	once sync.Once
	err  error
}

// renewalMargin is how much sooner than the lease's ttl a claim counts as
// lost without an answer to its renewals: a sixth of the ttl (renewals go
// out every third).
func renewalMargin(ttl time.Duration) time.Duration { return ttl / 6 }

// Claim implements state.Store. A key already claimed is refused after one
// read; otherwise a lease of ttl (whole seconds, rounded up; etcd raises
// it to its minimum) is granted and the key put with it in a transaction
// that succeeds only if the key does not exist.
func (s *Store) Claim(ctx context.Context, key string, ttl time.Duration) (state.Claim, error) {
	if err := s.begin(ctx); err != nil {
		return nil, err
	}
	if err := state.CheckClaim(key, ttl); err != nil {
		return nil, err
	}
	k := s.claims + key
	if resp, err := s.client.Get(ctx, k); err != nil {
		return nil, s.wrap(ctx, "claim "+key, err)
	} else if len(resp.Kvs) > 0 {
		return nil, fmt.Errorf("%w: %s (held by %s)", state.ErrClaimed, key, resp.Kvs[0].Value)
	}
	asked := time.Now() // the cluster counts the lease from a moment after this
	lease, err := s.client.Grant(ctx, int64((ttl+time.Second-1)/time.Second))
	if err != nil {
		return nil, s.wrap(ctx, "claim "+key+": grant lease", err)
	}
	resp, err := s.client.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0)).
		Then(clientv3.OpPut(k, s.holder, clientv3.WithLease(lease.ID))).
		Else(clientv3.OpGet(k)).
		Commit()
	if err != nil || !resp.Succeeded {
		s.revokeLease(lease.ID)
		if err != nil {
			return nil, s.wrap(ctx, "claim "+key, err)
		}
		holder := "another holder"
		if r := resp.Responses[0].GetResponseRange(); r != nil && len(r.Kvs) > 0 {
			holder = string(r.Kvs[0].Value)
		}
		return nil, fmt.Errorf("%w: %s (held by %s)", state.ErrClaimed, key, holder)
	}
	granted := time.Duration(lease.TTL) * time.Second
	kctx, stopRenewal := context.WithCancel(s.ctx)
	renewals, err := s.client.KeepAlive(kctx, lease.ID)
	if err != nil || !s.track() {
		stopRenewal()
		s.revokeLease(lease.ID)
		if err == nil {
			err = state.ErrClosed
		}
		return nil, s.wrap(ctx, "claim "+key+": keep the lease alive", err)
	}
	c := &claim{s: s, key: key, lease: lease.ID, lost: make(chan struct{}), stopRenewal: stopRenewal}
	go c.watchRenewals(renewals, asked.Add(granted-renewalMargin(granted)))
	stop := context.AfterFunc(ctx, func() {
		if !s.track() {
			return // Close releases it
		}
		defer s.wg.Done()
		rctx, cancel := context.WithTimeout(s.ctx, s.timeout)
		defer cancel()
		c.release(rctx)
	})
	s.mu.Lock()
	closed := s.closed
	if !closed && !c.released {
		s.held[c] = struct{}{}
		c.stop = stop
		s.mu.Unlock()
		return c, nil
	}
	s.mu.Unlock()
	stop()
	if closed {
		c.release(context.Background())
		return nil, fmt.Errorf("etcdstate: claim %s: %w", key, state.ErrClosed)
	}
	return c, nil // ctx ended already: released, Lost closed
}

// watchRenewals closes Lost when the renewals end (released, store
// closed, the lease expired) or stop coming back before deadline, which
// each answer moves to its ttl less the margin from now.
func (c *claim) watchRenewals(renewals <-chan *clientv3.LeaseKeepAliveResponse, deadline time.Time) {
	defer c.s.wg.Done()
	defer close(c.lost)
	defer c.stopRenewal()
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	for {
		select {
		case r, ok := <-renewals:
			if !ok {
				return
			}
			ttl := time.Duration(r.TTL) * time.Second
			timer.Reset(ttl - renewalMargin(ttl))
		case <-timer.C:
			c.s.log.Warn("claim lost: no renewal of its lease came back within its ttl", zap.String("key", c.key))
			return
		}
	}
}

// revokeLease gives up a lease that no claim uses (bounded by the dial
// timeout; a lease that cannot be revoked expires after its ttl).
func (s *Store) revokeLease(id clientv3.LeaseID) {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	if _, err := s.client.Revoke(ctx, id); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		s.log.Warn("revoking an unused lease; it expires by itself", zap.Int64("lease", int64(id)), zap.Error(err))
	}
}

// Lost implements state.Claim.
func (c *claim) Lost() <-chan struct{} { return c.lost }

// Release implements state.Claim: the lease stops being renewed and is
// revoked, which deletes the key. If the revoke does not get through, the
// key goes when the lease expires, ttl later.
func (c *claim) Release(ctx context.Context) error {
	rctx, cancel := context.WithTimeout(ctx, c.s.timeout)
	defer cancel()
	return c.release(rctx)
}

func (c *claim) release(ctx context.Context) error {
	c.once.Do(func() {
		c.s.mu.Lock()
		delete(c.s.held, c)
		c.released = true
		stop := c.stop
		c.s.mu.Unlock()
		if stop != nil {
			stop()
		}
		c.stopRenewal()
		<-c.lost
		_, err := c.s.client.Revoke(ctx, c.lease)
		if err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
			c.err = fmt.Errorf("etcdstate: release %s: %w", c.key, clientv3.ContextError(ctx, err))
		}
	})
	return c.err
}

// releaseAll releases every held claim at once, each bounded by the dial
// timeout (Close).
func (s *Store) releaseAll(claims []*claim) error {
	errs := make([]error, len(claims))
	var wg sync.WaitGroup
	for i, c := range claims {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
			defer cancel()
			errs[i] = c.release(ctx)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}
