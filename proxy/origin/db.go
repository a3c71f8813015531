package origin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/dtrcache/dtrcache/proxy/rendezvous"
	"github.com/dtrcache/dtrcache/proxy/state"
	"github.com/dtrcache/dtrcache/proxy/state/badgerstate"
	"go.uber.org/zap"
)

// Cache is a registered content cache.
type Cache struct {
	// Name identifies the cache: the audience of its tokens (every node
	// of a fleet has this name).
	Name string `json:"name"`
	// Host is the cache's base URL, e.g. https://cache-asia.example.org:
	// the only node of a single cache, the first of a fleet's.
	Host string `json:"host"`
	// Hosts, for a fleet, are the base URLs of its nodes; the origin
	// sends each blob to one of them (Cache.NodeFor). Empty for a single
	// node.
	Hosts []string `json:"hosts,omitempty"`
	// ProbeHost, if set, is where the origin probes the cache's health
	// when that differs from the clients' URL (NAT, containers);
	// ProbeHosts is the same per node of a fleet ("" for a node probed at
	// its URL).
	ProbeHost  string   `json:"probeHost,omitempty"`
	ProbeHosts []string `json:"probeHosts,omitempty"`
	// Account, if set, is the user the cache authenticates as; its
	// requests are served, never redirected.
	Account string    `json:"account,omitempty"`
	Created time.Time `json:"created"`

	// ring is the rendezvous set of a fleet's nodes, made when the
	// record is read (nil: made on use).
	ring *rendezvous.Set
}

// Settings are a user's settings.
type Settings struct {
	// ContentCache names the cache this user's blob pulls go to ("" for
	// none).
	ContentCache string `json:"contentCache"`
}

// Errors of the database.
var (
	ErrNotFound = errors.New("origin: not found")
	ErrExists   = errors.New("origin: already exists")
)

// Keys of the origin's records in the state store.
const (
	cachePrefix    = "cache/"
	settingsPrefix = "settings/"
)

// writeTimeout bounds one write to the state store.
const writeTimeout = 10 * time.Second

// DB stores caches and user settings in a state.Store and keeps both in
// memory (state.View), so the redirect path reads no disk and a change
// made through another origin replica is seen at once. It is safe for
// concurrent use. It owns the goroutines that keep its views current;
// Close stops and waits for them.
type DB struct {
	store    state.Store
	ownStore bool
	caches   *state.View[Cache]
	settings *state.View[Settings]

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// OpenDB opens (creating) an embedded database in dir.
func OpenDB(dir string) (*DB, error) {
	s, err := badgerstate.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("origin: open database %s: %w", dir, err)
	}
	d := NewDB(s, nil)
	d.ownStore = true
	return d, nil
}

// NewDB returns a DB on store (which the caller closes after the DB).
func NewDB(store state.Store, log *zap.Logger) *DB {
	ctx, cancel := context.WithCancel(context.Background())
	d := &DB{store: store, cancel: cancel}
	d.caches = &state.View[Cache]{Store: store, Prefix: cachePrefix, Logger: log, Decode: decodeCache}
	d.settings = &state.View[Settings]{Store: store, Prefix: settingsPrefix, Logger: log, Decode: decodeJSON[Settings]}
	for _, run := range []func(context.Context) error{d.caches.Run, d.settings.Run} {
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			run(ctx)
		}()
	}
	return d
}

func decodeJSON[T any](_ string, b []byte) (T, error) {
	var v T
	err := json.Unmarshal(b, &v)
	return v, err
}

// Store returns the state store the DB is kept in.
func (d *DB) Store() state.Store { return d.store }

// Close stops the views and, for a DB from OpenDB, closes its store.
func (d *DB) Close() error {
	d.cancel()
	d.wg.Wait()
	if d.ownStore {
		return d.store.Close()
	}
	return nil
}

// ready waits (briefly) for the views' first listing, so a read right
// after start sees what is stored.
func (d *DB) ready() error {
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	if err := d.caches.WaitReady(ctx); err != nil {
		return fmt.Errorf("origin: database not ready: %w", err)
	}
	if err := d.settings.WaitReady(ctx); err != nil {
		return fmt.Errorf("origin: database not ready: %w", err)
	}
	return nil
}

// Ready reports whether the database answers (for /readyz).
func (d *DB) Ready(ctx context.Context) error {
	if !d.caches.Ready() || !d.settings.Ready() {
		return errors.New("origin: database views not loaded yet")
	}
	_, err := d.store.Get(ctx, "readyz-probe")
	if errors.Is(err, state.ErrNotFound) {
		return nil
	}
	return err
}

// AddCache registers a cache; ErrExists if the name is taken.
func (d *DB) AddCache(c Cache) error {
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	op, err := state.PutJSON(cachePrefix+c.Name, c)
	if err != nil {
		return err
	}
	rev, err := d.store.Txn(ctx, []state.Cond{{Key: op.Key, Rev: 0}}, op)
	if errors.Is(err, state.ErrConflict) {
		return ErrExists
	}
	if err != nil {
		return fmt.Errorf("origin: register cache: %w", err)
	}
	d.caches.Observe(op.Key, op.Value, rev)
	return nil
}

// UpdateCache replaces a registered cache's record (its name and
// creation time kept); ErrNotFound if it is not registered.
func (d *DB) UpdateCache(c Cache) error {
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	kv, err := d.store.Get(ctx, cachePrefix+c.Name)
	if errors.Is(err, state.ErrNotFound) {
		return ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("origin: change cache: %w", err)
	}
	var old Cache
	if err := json.Unmarshal(kv.Value, &old); err == nil {
		c.Created = old.Created
	}
	op, err := state.PutJSON(kv.Key, c)
	if err != nil {
		return err
	}
	rev, err := d.store.Txn(ctx, []state.Cond{{Key: kv.Key, Rev: kv.Rev}}, op)
	if errors.Is(err, state.ErrConflict) {
		return fmt.Errorf("origin: change cache %s: changed meanwhile, try again: %w", c.Name, err)
	}
	if err != nil {
		return fmt.Errorf("origin: change cache: %w", err)
	}
	d.caches.Observe(op.Key, op.Value, rev)
	return nil
}

// CacheUsers counts, by cache name, the users whose settings name it.
func (d *DB) CacheUsers() (map[string]int, error) {
	if err := d.ready(); err != nil {
		return nil, err
	}
	out := map[string]int{}
	for _, s := range d.settings.All() {
		if s.ContentCache != "" {
			out[s.ContentCache]++
		}
	}
	return out, nil
}

// DeleteCache removes a cache; users pointing at it fall back to the origin.
func (d *DB) DeleteCache(name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	kv, err := d.store.Get(ctx, cachePrefix+name)
	if errors.Is(err, state.ErrNotFound) {
		return ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("origin: remove cache: %w", err)
	}
	rev, err := d.store.Txn(ctx, []state.Cond{{Key: kv.Key, Rev: kv.Rev}}, state.Delete(kv.Key))
	if errors.Is(err, state.ErrConflict) {
		return ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("origin: remove cache: %w", err)
	}
	d.caches.ObserveDelete(kv.Key, rev)
	return nil
}

// Cache returns one cache.
func (d *DB) Cache(name string) (Cache, error) {
	if err := d.ready(); err != nil {
		return Cache{}, err
	}
	c, ok := d.caches.Get(cachePrefix + name)
	if !ok {
		return Cache{}, ErrNotFound
	}
	return c, nil
}

// Caches lists the registered caches by name.
func (d *DB) Caches() ([]Cache, error) {
	if err := d.ready(); err != nil {
		return nil, err
	}
	return d.caches.All(), nil
}

// CacheByAccount returns the cache whose account user is, if any.
func (d *DB) CacheByAccount(user string) (Cache, bool) {
	if user == "" || d.ready() != nil {
		return Cache{}, false
	}
	for _, c := range d.caches.All() {
		if c.Account == user {
			return c, true
		}
	}
	return Cache{}, false
}

// Settings returns a user's settings (zero value if never set).
func (d *DB) Settings(user string) (Settings, error) {
	if err := d.ready(); err != nil {
		return Settings{}, err
	}
	s, _ := d.settings.Get(settingsPrefix + user)
	return s, nil
}

// SetSettings stores a user's settings.
func (d *DB) SetSettings(user string, s Settings) error {
	if strings.ContainsAny(user, "/") {
		return fmt.Errorf("origin: invalid user name %q", user)
	}
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	op, err := state.PutJSON(settingsPrefix+user, s)
	if err != nil {
		return err
	}
	rev, err := d.store.Txn(ctx, nil, op)
	if err != nil {
		return fmt.Errorf("origin: store settings: %w", err)
	}
	d.settings.Observe(op.Key, op.Value, rev)
	return nil
}
