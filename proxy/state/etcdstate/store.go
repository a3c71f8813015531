// Package etcdstate is the state.Store of several origin replicas sharing
// one etcd cluster (the v3 API, through go.etcd.io/etcd/client/v3).
//
// Layout under the configured prefix P (default "/dtrcache/"): a key k of
// the state is stored at P+"data/"+k, its Rev is the etcd ModRevision, and
// a claim of k is the key P+"claims/"+k, bound to a lease. etcd gives
// everything the contract asks for: one revision counter for the cluster,
// in commit order; multi-key transactions with revision comparisons;
// watches that resume across a lost connection from the last revision
// seen; and leases that expire when their holder stops renewing them.
//
// Reads are linearizable (they go through the leader's read index), so a
// replica reads every write another replica's Txn has returned from.
package etcdstate

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/dtrcache/dtrcache/proxy/state"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// DefaultPrefix is where the state lives when Config.Prefix is empty.
const DefaultPrefix = "/dtrcache/"

// DefaultDialTimeout bounds connecting when Config.DialTimeout is zero.
const DefaultDialTimeout = 5 * time.Second

// Sub-prefixes of the layout (see the package doc).
const (
	dataDir   = "data/"
	claimsDir = "claims/"
)

// Config says how to reach the cluster.
type Config struct {
	// Endpoints are the members' client URLs (http://host:2379 or
	// https://…); the client balances over them and fails over when one
	// stops answering.
	Endpoints []string
	// TLS, if set, is used for every connection (see ClientTLS).
	TLS *tls.Config
	// Username and Password authenticate with etcd's auth, if enabled.
	Username, Password string
	// Prefix is prepended to every key (DefaultPrefix if empty), so
	// several deployments can share a cluster.
	Prefix string
	// DialTimeout bounds connecting and the first round trip
	// (DefaultDialTimeout if zero).
	DialTimeout time.Duration
	// Holder names this process in claims (shown to the holders it
	// refuses); empty means host name and process id.
	Holder string
	// Logger receives the client's warnings; nil means none.
	Logger *zap.Logger
}

// Store is a state.Store on etcd. It is safe for concurrent use.
type Store struct {
	client  *clientv3.Client
	prefix  string // Config.Prefix
	data    string // prefix + dataDir
	claims  string // prefix + claimsDir
	holder  string
	timeout time.Duration // Config.DialTimeout
	log     *zap.Logger

	// ctx ends at Close; every goroutine of the store watches it.
	ctx    context.Context
	cancel context.CancelFunc
	// mu guards closed, held and the adds to wg.
	mu     sync.Mutex
	closed bool
	held   map[*claim]struct{}
	wg     sync.WaitGroup
}

// Open connects to the cluster and checks that it answers within the dial
// timeout.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("etcdstate: no endpoints")
	}
	prefix := cfg.Prefix
	if prefix == "" {
		prefix = DefaultPrefix
	}
	timeout := cfg.DialTimeout
	if timeout <= 0 {
		timeout = DefaultDialTimeout
	}
	log := cfg.Logger
	if log == nil {
		log = zap.NewNop()
	}
	holder := cfg.Holder
	if holder == "" {
		host, _ := os.Hostname()
		var b [3]byte
		rand.Read(b[:])
		holder = fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(b[:]))
	}
	client, err := clientv3.New(clientv3.Config{
		Endpoints:   cfg.Endpoints,
		DialTimeout: timeout,
		// Find a dead connection (a member behind a cut link sends no
		// reset) within seconds, so watches and lease renewals move to
		// another member. Pings go only while a stream is open: etcd's
		// servers answer pings on an idle connection with GOAWAY
		// (too_many_pings).
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 3 * time.Second,
		TLS:                  cfg.TLS,
		Username:             cfg.Username,
		Password:             cfg.Password,
		Logger:               log.WithOptions(zap.IncreaseLevel(zap.WarnLevel)),
	})
	if err != nil {
		return nil, fmt.Errorf("etcdstate: connect to %s: %w", strings.Join(cfg.Endpoints, ","), err)
	}
	sctx, cancel := context.WithCancel(context.Background())
	s := &Store{
		client: client, prefix: prefix, data: prefix + dataDir, claims: prefix + claimsDir, holder: holder, timeout: timeout,
		log: log, ctx: sctx, cancel: cancel, held: map[*claim]struct{}{},
	}
	pctx, pcancel := context.WithTimeout(ctx, timeout)
	defer pcancel()
	if _, err := client.Get(pctx, s.data, clientv3.WithCountOnly()); err != nil {
		cancel()
		client.Close()
		return nil, fmt.Errorf("etcdstate: %s did not answer within %s: %w", strings.Join(cfg.Endpoints, ","), timeout, err)
	}
	return s, nil
}

// Prefix returns the prefix the store's keys live under.
func (s *Store) Prefix() string { return s.prefix }

// Client returns the etcd client (for tools such as the migration, which
// check and compact the keyspace).
func (s *Store) Client() *clientv3.Client { return s.client }

// track counts a goroutine of the store in wg, unless the store is closed.
func (s *Store) track() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Add(1)
	return true
}

func (s *Store) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// wrap maps a client error: ErrClosed once the store is closed, the
// caller's context error when that ended the call, else the etcd error,
// each wrapped with what was being done.
func (s *Store) wrap(ctx context.Context, what string, err error) error {
	switch {
	case s.isClosed():
		return fmt.Errorf("etcdstate: %s: %w", what, state.ErrClosed)
	case ctx.Err() != nil:
		return fmt.Errorf("etcdstate: %s: %w", what, ctx.Err())
	}
	return fmt.Errorf("etcdstate: %s: %w", what, clientv3.ContextError(ctx, err))
}

// begin refuses a call on a closed store or with an ended context.
func (s *Store) begin(ctx context.Context) error {
	if s.isClosed() {
		return fmt.Errorf("etcdstate: %w", state.ErrClosed)
	}
	return ctx.Err()
}

// Get implements state.Store.
func (s *Store) Get(ctx context.Context, key string) (state.KV, error) {
	if err := s.begin(ctx); err != nil {
		return state.KV{}, err
	}
	resp, err := s.client.Get(ctx, s.data+key)
	if err != nil {
		return state.KV{}, s.wrap(ctx, "get "+key, err)
	}
	if len(resp.Kvs) == 0 {
		return state.KV{}, fmt.Errorf("%w: %s", state.ErrNotFound, key)
	}
	kv := resp.Kvs[0]
	return state.KV{Key: key, Value: kv.Value, Rev: kv.ModRevision}, nil
}

// List implements state.Store: one range read from the smallest key after
// after (or the prefix's start) to the prefix's end, in key order.
func (s *Store) List(ctx context.Context, prefix, after string, limit int) ([]state.KV, error) {
	if err := s.begin(ctx); err != nil {
		return nil, err
	}
	start := s.data + prefix
	if after >= prefix {
		start = s.data + after + "\x00" // the smallest key greater than after
	}
	end := s.data + prefix
	if e := state.PrefixEnd(end); e != "" {
		end = e
	} else {
		end = "\x00" // the prefix is all 0xff bytes: to the end of the keyspace
	}
	if end != "\x00" && start >= end {
		return nil, nil
	}
	opts := []clientv3.OpOption{clientv3.WithRange(end)}
	if limit > 0 {
		opts = append(opts, clientv3.WithLimit(int64(limit)))
	}
	resp, err := s.client.Get(ctx, start, opts...)
	if err != nil {
		return nil, s.wrap(ctx, "list "+prefix, err)
	}
	out := make([]state.KV, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		out = append(out, state.KV{Key: string(kv.Key[len(s.data):]), Value: kv.Value, Rev: kv.ModRevision})
	}
	return out, nil
}

// Txn implements state.Store: one etcd transaction whose comparisons are
// the conditions (Rev 0: CreateRevision 0, the key does not exist; else
// ModRevision equal) and whose success branch is the writes.
func (s *Store) Txn(ctx context.Context, conds []state.Cond, ops ...state.Op) (int64, error) {
	if err := s.begin(ctx); err != nil {
		return 0, err
	}
	if err := state.CheckTxn(conds, ops); err != nil {
		return 0, err
	}
	cmps := make([]clientv3.Cmp, len(conds))
	for i, c := range conds {
		if c.Rev == 0 {
			cmps[i] = clientv3.Compare(clientv3.CreateRevision(s.data+c.Key), "=", 0)
		} else {
			cmps[i] = clientv3.Compare(clientv3.ModRevision(s.data+c.Key), "=", c.Rev)
		}
	}
	writes := make([]clientv3.Op, len(ops))
	for i, op := range ops {
		if op.Delete {
			writes[i] = clientv3.OpDelete(s.data + op.Key)
		} else {
			writes[i] = clientv3.OpPut(s.data+op.Key, string(op.Value))
		}
	}
	resp, err := s.client.Txn(ctx).If(cmps...).Then(writes...).Commit()
	if err != nil {
		return 0, s.wrap(ctx, "txn", err)
	}
	if !resp.Succeeded {
		return 0, fmt.Errorf("etcdstate: txn: %w", state.ErrConflict)
	}
	return resp.Header.Revision, nil
}

// Close implements state.Store: claims are released (their leases
// revoked, bounded by the dial timeout), watches end, every goroutine of
// the store is waited for, and the client is closed.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	held := make([]*claim, 0, len(s.held))
	for c := range s.held {
		held = append(held, c)
	}
	s.mu.Unlock()
	var errs []error
	if err := s.releaseAll(held); err != nil {
		errs = append(errs, err)
	}
	s.cancel()
	s.wg.Wait()
	if err := s.client.Close(); err != nil && !errors.Is(err, context.Canceled) {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("etcdstate: close: %w", err)
	}
	return nil
}

// KeyCount returns how many etcd keys live under the store's prefix:
// the state's keys and the claims of running replicas.
func (s *Store) KeyCount(ctx context.Context) (int64, error) {
	if err := s.begin(ctx); err != nil {
		return 0, err
	}
	resp, err := s.client.Get(ctx, s.prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return 0, s.wrap(ctx, "count keys", err)
	}
	return resp.Count, nil
}
