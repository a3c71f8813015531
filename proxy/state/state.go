// Package state is the origin's durable state: registered caches, user
// settings, policies, jobs and the webhook outbox, kept in a small ordered
// key-value store with conditional writes, watches and leased claims.
//
// Store is the whole contract. Two implementations pass one test suite
// (package statetest): badgerstate, embedded, for a single origin process,
// and etcdstate, for several origin replicas sharing one etcd cluster. The
// typed stores above it (caches, settings, jobs, events) are written once,
// against Store.
//
// Revisions: every write gets a revision from one counter that only grows,
// store-wide (etcd's revision; badgerstate keeps its own). A key's Rev is
// the revision of its last write. Conditional writes compare revisions, so
// a read-modify-write is safe across goroutines and replicas: read a KV,
// change it, write it with Cond{Key, Rev}; ErrConflict means somebody else
// wrote in between, so read again. Revisions may skip numbers (etcd counts
// the writes of claims and of other users of the cluster too).
//
// Limits, the same for every implementation so that code which works on
// the embedded store works on etcd: a key is non-empty; a transaction has
// at most MaxTxnOps conditions and MaxTxnOps writes, writes a key at most
// once, and carries at most MaxTxnBytes of keys and values (etcd's default
// --max-txn-ops and, with room for framing, --max-request-bytes). A Txn
// beyond them fails with ErrInvalid and writes nothing.
package state

import (
	"context"
	"errors"
	"time"
)

// Errors of a Store. Implementations wrap them; check with errors.Is.
var (
	// ErrNotFound: no such key.
	ErrNotFound = errors.New("state: not found")
	// ErrConflict: a condition of a transaction did not hold.
	ErrConflict = errors.New("state: conflict")
	// ErrClaimed: another holder has the claim.
	ErrClaimed = errors.New("state: claimed by another holder")
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("state: closed")
	// ErrInvalid: a request outside the store's limits (see the package
	// doc): an empty key, too many or too large writes, a key written
	// twice in one transaction, a ttl that is not positive.
	ErrInvalid = errors.New("state: invalid request")
)

// The limits of one transaction (see the package doc).
const (
	MaxTxnOps   = 128
	MaxTxnBytes = 1 << 20
)

// KV is one key with its value and the revision of its last write.
type KV struct {
	Key   string
	Value []byte
	Rev   int64
}

// Cond is a condition of a transaction on one key: Rev 0 means the key
// must not exist; Rev > 0 that its last write had exactly that revision.
type Cond struct {
	Key string
	Rev int64
}

// Op is one write of a transaction: a put of Value, or a delete.
type Op struct {
	Key    string
	Value  []byte
	Delete bool
}

// Put returns the Op that sets key to value.
func Put(key string, value []byte) Op { return Op{Key: key, Value: value} }

// Delete returns the Op that removes key (a no-op if it does not exist).
func Delete(key string) Op { return Op{Key: key, Delete: true} }

// EventType says what happened to a key.
type EventType int

// The event types.
const (
	EventPut EventType = iota + 1
	EventDelete
)

// Event is one change seen by a watch. Rev is the revision of the write;
// Value is empty for a delete.
type Event struct {
	Type  EventType
	Key   string
	Value []byte
	Rev   int64
}

// Store is the origin's durable state. Implementations are safe for
// concurrent use. Keys are UTF-8 strings; List and Watch select by prefix
// and return keys in byte order.
type Store interface {
	// Get returns one key, or ErrNotFound.
	Get(ctx context.Context, key string) (KV, error)
	// List returns the keys under prefix that sort after after, at most
	// limit of them (0: all), in key order. An after that sorts before
	// every key under prefix ("" among them) lists from the start.
	List(ctx context.Context, prefix, after string, limit int) ([]KV, error)
	// Txn applies ops atomically if every cond holds, else returns
	// ErrConflict and writes nothing. It returns the revision of the
	// writes (with no change made, a deleted key that did not exist, the
	// store's current revision). Past the limits of the package doc it
	// returns ErrInvalid.
	Txn(ctx context.Context, conds []Cond, ops ...Op) (int64, error)
	// Watch streams the changes under prefix made after it returns, in
	// revision order, until ctx ends. The channel is closed when ctx ends
	// or the watch breaks (a slow reader, a lost connection); a reader
	// whose ctx is still live lists again and watches again (View does).
	Watch(ctx context.Context, prefix string) (<-chan Event, error)
	// Claim takes key for this holder until Release, ctx's end, or, if
	// the holder dies, ttl after its last sign of life (etcd: a lease kept
	// alive while the process runs; its ttl is whole seconds, rounded up,
	// and at least etcd's minimum). ErrClaimed if another holder (or this
	// one, through an earlier Claim) has it; ErrInvalid for a ttl ≤ 0.
	// Claims are a namespace of their own: a claimed key is not a key that
	// Get, List or Watch see, and a key of theirs may be claimed.
	Claim(ctx context.Context, key string, ttl time.Duration) (Claim, error)
	// Close releases the store's resources: watches end (their channels
	// close), claims are released (their Lost closes), later calls return
	// ErrClosed.
	Close() error
}

// Claim is a held claim on a key (a job being run, a webhook endpoint
// being delivered to).
type Claim interface {
	// Lost is closed when the claim is no longer held: released, its
	// context ended, or its lease expired (etcd: this replica lost touch
	// with the cluster for longer than the ttl). Work done under the claim
	// stops at once.
	Lost() <-chan struct{}
	// Release gives the claim up.
	Release(ctx context.Context) error
}
