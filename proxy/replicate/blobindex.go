package replicate

import (
	"container/list"
	"context"
	"sync"
)

// BlobIndex remembers, across copies, which repositories of a target
// registry hold which blobs, and which blobs are being uploaded there
// right now. Copies that share one (say, all jobs of the mirroring
// policies towards one registry) mount a blob another copy already put
// into the registry instead of sending it again, and wait for an upload in
// flight rather than start a second one, so images that share a base
// layer send it over the WAN once. It is safe for concurrent use and
// bounded: the least recently used entries are forgotten. The zero value
// is not usable; call NewBlobIndex.
type BlobIndex struct {
	max int

	// mu guards everything below.
	mu       sync.Mutex
	entries  map[string]*list.Element // key → element whose Value is *blobEntry
	lru      *list.List               // front: most recently used
	inflight map[string]chan struct{} // key → closed when the upload ends
}

type blobEntry struct{ key, repo string }

// NewBlobIndex returns an index of at most max blobs (0 means 100,000).
func NewBlobIndex(max int) *BlobIndex {
	if max <= 0 {
		max = 100_000
	}
	return &BlobIndex{max: max, entries: map[string]*list.Element{}, lru: list.New(), inflight: map[string]chan struct{}{}}
}

// acquire returns a repository known to hold the blob key ("" if none),
// having made the caller the blob's one uploader; or, if another copy is
// uploading it, waits for that to end and looks again. release must follow
// every successful acquire.
func (x *BlobIndex) acquire(ctx context.Context, key string) (string, error) {
	for {
		x.mu.Lock()
		wait, busy := x.inflight[key]
		if !busy {
			x.inflight[key] = make(chan struct{})
			repo := ""
			if e, ok := x.entries[key]; ok {
				x.lru.MoveToFront(e)
				repo = e.Value.(*blobEntry).repo
			}
			x.mu.Unlock()
			return repo, nil
		}
		x.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}

// release ends the caller's turn on key; repo, if not "", now holds the
// blob.
func (x *BlobIndex) release(key, repo string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if ch, ok := x.inflight[key]; ok {
		close(ch)
		delete(x.inflight, key)
	}
	if repo == "" {
		return
	}
	if e, ok := x.entries[key]; ok {
		e.Value.(*blobEntry).repo = repo
		x.lru.MoveToFront(e)
		return
	}
	x.entries[key] = x.lru.PushFront(&blobEntry{key: key, repo: repo})
	for x.lru.Len() > x.max {
		old := x.lru.Back()
		x.lru.Remove(old)
		delete(x.entries, old.Value.(*blobEntry).key)
	}
}

// forget drops key (a repository that turned out not to hold it).
func (x *BlobIndex) forget(key string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if e, ok := x.entries[key]; ok {
		x.lru.Remove(e)
		delete(x.entries, key)
	}
}
