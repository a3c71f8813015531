package badgerstate_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/dgraph-io/badger/v4"
	"github.com/dtrcache/dtrcache/proxy/state"
	"github.com/dtrcache/dtrcache/proxy/state/badgerstate"
	"github.com/dtrcache/dtrcache/proxy/state/statetest"
)

func TestSuite(t *testing.T) {
	statetest.Run(t, statetest.Factory{
		New: func(t *testing.T) state.Store {
			s, err := badgerstate.Open(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		Peer: func(_ *testing.T, s state.Store) state.Store { return s },
	})
}

func TestReopenKeepsDataAndRevisions(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s, err := badgerstate.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	rev, err := s.Txn(ctx, nil, state.Put("k", []byte("v")))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = badgerstate.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	kv, err := s.Get(ctx, "k")
	if err != nil || string(kv.Value) != "v" || kv.Rev != rev {
		t.Fatalf("after reopen: %+v %v", kv, err)
	}
	rev2, err := s.Txn(ctx, nil, state.Put("k2", nil))
	if err != nil || rev2 <= rev {
		t.Fatalf("revision after reopen %d, before %d (%v): must keep growing", rev2, rev, err)
	}
}

// TestMigratesLegacyDatabase opens a database written by the origin before
// the state layer (plain JSON under cache/… and settings/…).
func TestMigratesLegacyDatabase(t *testing.T) {
	dir := t.TempDir()
	db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	legacy := map[string]string{
		"cache/asia":       `{"name":"asia","host":"http://127.0.0.1:5001"}`,
		"settings/alice":   `{"contentCache":"asia"}`,
		"settings/bob":     `{"contentCache":""}`,
		"cache/europe-old": `{"name":"europe-old","host":"https://eu.example.org"}`,
	}
	err = db.Update(func(txn *badger.Txn) error {
		for k, v := range legacy {
			if err := txn.Set([]byte(k), []byte(v)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()

	for round := range 2 { // the second open must not migrate again
		s, err := badgerstate.Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		for k, v := range legacy {
			kv, err := s.Get(ctx, k)
			if err != nil {
				t.Fatalf("round %d: %s: %v", round, k, err)
			}
			var a, b any
			json.Unmarshal(kv.Value, &a)
			json.Unmarshal([]byte(v), &b)
			if ab, _ := json.Marshal(a); string(ab) != mustJSON(b) || kv.Rev <= 0 {
				t.Fatalf("round %d: %s = %s at %d, want %s", round, k, kv.Value, kv.Rev, v)
			}
		}
		all, err := s.List(ctx, "", "", 0)
		if err != nil || len(all) != len(legacy) {
			t.Fatalf("round %d: %d keys (%v), want %d", round, len(all), err, len(legacy))
		}
		s.Close()
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestOpenLockedDirectory(t *testing.T) {
	dir := t.TempDir()
	s, err := badgerstate.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := badgerstate.Open(dir); !errors.Is(err, badgerstate.ErrLocked) {
		t.Fatalf("second open of %s: %v, want ErrLocked", dir, err)
	}
}
