package origin

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Cache is a registered content cache.
type Cache struct {
	// Name identifies the cache: the audience of its tokens.
	Name string `json:"name"`
	// Host is the cache's base URL, e.g. https://cache-asia.example.org.
	Host string `json:"host"`
	// ProbeHost, if set, is where the origin probes the cache's health
	// when that differs from the clients' URL (NAT, containers).
	ProbeHost string `json:"probeHost,omitempty"`
	// Account, if set, is the user the cache authenticates as; its
	// requests are served, never redirected.
	Account string    `json:"account,omitempty"`
	Created time.Time `json:"created"`
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

// DB stores caches and user settings durably. It is safe for concurrent
// use.
type DB struct {
	db *badger.DB
}

// OpenDB opens (creating) the database in dir.
func OpenDB(dir string) (*DB, error) {
	opt := badger.DefaultOptions(dir).WithLogger(nil).WithMemTableSize(8 << 20).WithValueThreshold(64 << 10).WithNumMemtables(2).
		WithBlockCacheSize(4 << 20).WithValueLogFileSize(16 << 20).WithSyncWrites(true).WithMetricsEnabled(false)
	db, err := badger.Open(opt)
	if err != nil {
		return nil, fmt.Errorf("origin: open database %s: %w", dir, err)
	}
	return &DB{db: db}, nil
}

// Close closes the database.
func (d *DB) Close() error { return d.db.Close() }

func (d *DB) get(key string, v any) error {
	return d.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte(key))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		return item.Value(func(b []byte) error { return json.Unmarshal(b, v) })
	})
}

// AddCache registers a cache; ErrExists if the name is taken.
func (d *DB) AddCache(c Cache) error {
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	return d.db.Update(func(txn *badger.Txn) error {
		if _, err := txn.Get([]byte("cache/" + c.Name)); err == nil {
			return ErrExists
		}
		return txn.Set([]byte("cache/"+c.Name), b)
	})
}

// DeleteCache removes a cache; users pointing at it fall back to the origin.
func (d *DB) DeleteCache(name string) error {
	return d.db.Update(func(txn *badger.Txn) error {
		if _, err := txn.Get([]byte("cache/" + name)); errors.Is(err, badger.ErrKeyNotFound) {
			return ErrNotFound
		}
		return txn.Delete([]byte("cache/" + name))
	})
}

// Cache returns one cache.
func (d *DB) Cache(name string) (Cache, error) {
	var c Cache
	return c, d.get("cache/"+name, &c)
}

// Caches lists the registered caches by name.
func (d *DB) Caches() ([]Cache, error) {
	var out []Cache
	err := d.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte("cache/"), PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var c Cache
			if err := it.Item().Value(func(b []byte) error { return json.Unmarshal(b, &c) }); err != nil {
				return err
			}
			out = append(out, c)
		}
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, err
}

// Settings returns a user's settings (zero value if never set).
func (d *DB) Settings(user string) (Settings, error) {
	var s Settings
	err := d.get("settings/"+user, &s)
	if errors.Is(err, ErrNotFound) {
		return Settings{}, nil
	}
	return s, err
}

// SetSettings stores a user's settings.
func (d *DB) SetSettings(user string, s Settings) error {
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	return d.db.Update(func(txn *badger.Txn) error { return txn.Set([]byte("settings/"+user), b) })
}
