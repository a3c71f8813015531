package casstore

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/dgraph-io/badger/v4"
	"go.uber.org/zap"
)

// removeTemps deletes every partial fill left in tmp/.
func (s *Store) removeTemps() error {
	entries, err := os.ReadDir(s.tmpDir())
	if err != nil {
		return fmt.Errorf("casstore: list %s: %w", s.tmpDir(), err)
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(s.tmpDir(), e.Name())); err != nil {
			return fmt.Errorf("casstore: remove stray %s: %w", e.Name(), err)
		}
	}
	if len(entries) > 0 {
		s.log.Info("removed partial fills", zap.Int("files", len(entries)))
	}
	return nil
}

// reconcile makes the index and the files agree after an unclean shutdown:
// index entries without a (right-sized) file are dropped, files without an
// entry are re-verified and indexed or removed, and orphaned LRU keys are
// dropped. It runs while the store serves (recovery.go): what it reads is
// a snapshot, commits and removals may happen meanwhile, and it stops
// when the store closes.
func (s *Store) reconcile() error {
	start := time.Now()
	indexed := make(map[Digest]int64)
	var drop []Digest
	var orphans [][]byte
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 256})
		defer it.Close()
		n := 0
		for it.Rewind(); it.Valid(); it.Next() {
			if n++; n%4096 == 0 && s.ctx.Err() != nil {
				return s.ctx.Err()
			}
			item := it.Item()
			k := item.KeyCopy(nil)
			switch {
			case hasPrefix(k, prefixBlob):
				d, err := ParseDigest(string(k[len(prefixBlob):]))
				if err != nil {
					orphans = append(orphans, k)
					continue
				}
				var rec record
				if err := item.Value(func(v []byte) error { rec, err = unmarshalRecord(v); return err }); err != nil {
					drop = append(drop, d)
					continue
				}
				fi, err := os.Stat(s.blobPath(d))
				if err != nil || fi.Size() != rec.Size {
					drop = append(drop, d)
					continue
				}
				indexed[d] = rec.Size
			case hasPrefix(k, prefixAccess):
				t, d, err := parseAccessKey(k)
				if err != nil {
					orphans = append(orphans, k)
					continue
				}
				rec, err := getRecord(txn, d)
				if err != nil || !rec.Access.Equal(t) {
					orphans = append(orphans, k)
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("casstore: reconcile index: %w", err)
	}
	for _, d := range drop {
		os.Remove(s.blobPath(d))
	}
	err = update(s.db, func(txn *badger.Txn) error {
		for _, d := range drop {
			if _, err := deleteRecord(txn, d); err != nil && !errors.Is(err, ErrNotFound) {
				// A corrupt record: remove its keys directly.
				if err := txn.Delete(blobKey(d)); err != nil {
					return err
				}
			}
		}
		for _, k := range orphans {
			if err := txn.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("casstore: reconcile drop: %w", err)
	}
	adopted, removed, err := s.adoptFiles(indexed)
	if err != nil {
		return err
	}
	s.log.Info("reconciled index and files",
		zap.Int("indexed", len(indexed)), zap.Int("dropped_entries", len(drop)),
		zap.Int("orphan_keys", len(orphans)), zap.Int("adopted_files", adopted), zap.Int("removed_files", removed),
		zap.Duration("took", time.Since(start)))
	return nil
}

// adoptFiles walks blobs/: files that are not indexed are hashed; a file
// whose content matches its name is indexed (added to indexed), any other
// file is removed.
func (s *Store) adoptFiles(indexed map[Digest]int64) (adopted, removed int, err error) {
	root := filepath.Join(s.root, "blobs")
	err = filepath.WalkDir(root, func(path string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := s.ctx.Err(); err != nil {
			return err
		}
		if de.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(root, path)
		d, ok := digestFromPath(rel)
		if ok {
			if _, known := indexed[d]; known {
				return nil
			}
			if s.committedSince(d, path) {
				return nil // a fill committed it after the index was read
			}
			if size, good := verifyFile(path, d); good {
				now := s.opt.Now()
				if fi, err := os.Stat(path); err == nil {
					now = fi.ModTime()
				}
				err := update(s.db, func(txn *badger.Txn) error {
					_, err := putRecord(txn, d, record{Size: size, Created: now, Access: now})
					return err
				})
				if err != nil {
					return fmt.Errorf("casstore: index adopted %s: %w", d, err)
				}
				indexed[d] = size
				adopted++
				return nil
			}
		}
		removed++
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("casstore: remove unverified %s: %w", path, err)
		}
		return nil
	})
	if err != nil {
		return adopted, removed, fmt.Errorf("casstore: reconcile files: %w", err)
	}
	return adopted, removed, nil
}

// committedSince reports whether the index has d with the size of its
// file at path: a blob a fill committed while the reconciliation ran.
func (s *Store) committedSince(d Digest, path string) bool {
	fi, err := os.Stat(path)
	if err != nil {
		return false
	}
	var rec record
	err = s.db.View(func(txn *badger.Txn) error {
		var err error
		rec, err = getRecord(txn, d)
		return err
	})
	return err == nil && rec.Size == fi.Size()
}

// digestFromPath maps "<alg>/<xx>/<hex>" to its digest.
func digestFromPath(rel string) (Digest, bool) {
	dir, hx := filepath.Split(rel)
	alg, pre := filepath.Split(filepath.Clean(dir))
	d, err := ParseDigest(filepath.Clean(alg) + ":" + hx)
	if err != nil || len(pre) != 2 || hx[:2] != pre {
		return Digest{}, false
	}
	return d, true
}

// verifyFile hashes a file and reports its size and whether it matches d.
func verifyFile(path string, d Digest) (int64, bool) {
	f, err := os.Open(path)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	h := d.NewHash()
	n, err := io.Copy(h, f)
	return n, err == nil && d.matches(h.Sum(nil))
}

func hasPrefix(k []byte, p string) bool {
	return len(k) >= len(p) && string(k[:len(p)]) == p
}
