package cache

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/dtrcache/dtrcache/casstore"
	"github.com/dtrcache/dtrcache/proxy/regapi"
)

// TagStore remembers, per mirrored upstream, repository and tag, the last
// manifest digest the upstream gave, so the mirror can serve a tag while
// the upstream is unreachable. Entries are small JSON files written
// atomically under one directory.
type TagStore struct {
	dir string
}

// NewTagStore returns a TagStore in dir (created if needed).
func NewTagStore(dir string) (*TagStore, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("cache: tag store: %w", err)
	}
	return &TagStore{dir: dir}, nil
}

// TagEntry is what the mirror last saw for a tag.
type TagEntry struct {
	Digest    string    `json:"digest"`
	MediaType string    `json:"mediaType"`
	Seen      time.Time `json:"seen"`
}

// path validates every part before it becomes a file name: upstream names
// are configuration, repositories and tags follow the OCI grammar (no "/"
// in a tag, no ".." anywhere).
func (t *TagStore) path(upstreamName, repo, tag string) (string, error) {
	if !regapi.ValidName(repo) || !regapi.ValidTag(tag) || !regapi.ValidName(upstreamName) {
		return "", fmt.Errorf("cache: invalid tag path %q %q %q", upstreamName, repo, tag)
	}
	return filepath.Join(t.dir, upstreamName, repo, "_tags", tag), nil
}

// Put records a tag's digest.
func (t *TagStore) Put(upstreamName, repo, tag string, e TagEntry) error {
	p, err := t.path(upstreamName, repo, tag)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
		return err
	}
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(p), ".tag-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), p)
}

// Get returns a tag's last known entry, or casstore.ErrNotFound.
func (t *TagStore) Get(upstreamName, repo, tag string) (TagEntry, error) {
	p, err := t.path(upstreamName, repo, tag)
	if err != nil {
		return TagEntry{}, err
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return TagEntry{}, casstore.ErrNotFound
	}
	if err != nil {
		return TagEntry{}, err
	}
	var e TagEntry
	if err := json.Unmarshal(b, &e); err != nil {
		return TagEntry{}, fmt.Errorf("cache: corrupt tag entry %s: %w", p, err)
	}
	return e, nil
}

// Delete forgets a tag (the upstream said it is gone).
func (t *TagStore) Delete(upstreamName, repo, tag string) {
	if p, err := t.path(upstreamName, repo, tag); err == nil {
		os.Remove(p)
	}
}
