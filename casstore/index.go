package casstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
	"go.uber.org/zap"
)

// The index lives in Badger with three key spaces:
//
//	"b:" + digest            -> record (size, created, last access, media type)
//	"a:" + atime(8, BE) + digest -> size (8, BE); ascending order is LRU order
//	"m:totals"               -> blob count and bytes, written on clean close
const (
	prefixBlob   = "b:"
	prefixAccess = "a:"
	keyTotals    = "m:totals"
)

// record is the index entry of one complete, verified blob.
type record struct {
	Size    int64
	Created time.Time
	Access  time.Time
}

func blobKey(d Digest) []byte { return []byte(prefixBlob + d.String()) }

func accessKey(t time.Time, d Digest) []byte {
	k := make([]byte, 0, len(prefixAccess)+8+len(d.alg)+1+len(d.hex))
	k = append(k, prefixAccess...)
	k = binary.BigEndian.AppendUint64(k, uint64(t.UnixNano()))
	return append(k, d.String()...)
}

// parseAccessKey splits an "a:" key into its time and digest.
func parseAccessKey(k []byte) (time.Time, Digest, error) {
	if len(k) < len(prefixAccess)+8 {
		return time.Time{}, Digest{}, fmt.Errorf("casstore: short access key")
	}
	ns := binary.BigEndian.Uint64(k[len(prefixAccess):])
	d, err := ParseDigest(string(k[len(prefixAccess)+8:]))
	return time.Unix(0, int64(ns)), d, err
}

// sizeValue is the value of an access key: the blob's size, so eviction
// can count bytes without reading the record.
func sizeValue(size int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(size)) }

func (r record) marshal() []byte {
	b := make([]byte, 0, 1+3*8)
	b = append(b, 1) // format version
	b = binary.BigEndian.AppendUint64(b, uint64(r.Size))
	b = binary.BigEndian.AppendUint64(b, uint64(r.Created.UnixNano()))
	b = binary.BigEndian.AppendUint64(b, uint64(r.Access.UnixNano()))
	return b
}

func unmarshalRecord(b []byte) (record, error) {
	if len(b) < 25 || b[0] != 1 {
		return record{}, fmt.Errorf("casstore: corrupt index record (%d bytes)", len(b))
	}
	return record{
		Size:    int64(binary.BigEndian.Uint64(b[1:])),
		Created: time.Unix(0, int64(binary.BigEndian.Uint64(b[9:]))),
		Access:  time.Unix(0, int64(binary.BigEndian.Uint64(b[17:]))),
	}, nil
}

// getRecord reads the record of d; ErrNotFound when absent.
func getRecord(txn *badger.Txn, d Digest) (record, error) {
	item, err := txn.Get(blobKey(d))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return record{}, ErrNotFound
	}
	if err != nil {
		return record{}, fmt.Errorf("casstore: index read %s: %w", d, err)
	}
	var rec record
	err = item.Value(func(v []byte) error {
		var err error
		rec, err = unmarshalRecord(v)
		return err
	})
	return rec, err
}

// putRecord writes the record and its access key in txn, removing the
// previous access key if the record existed.
func putRecord(txn *badger.Txn, d Digest, rec record) (existed bool, err error) {
	old, err := getRecord(txn, d)
	switch {
	case err == nil:
		existed = true
		if err := txn.Delete(accessKey(old.Access, d)); err != nil {
			return existed, err
		}
	case !errors.Is(err, ErrNotFound):
		return false, err
	}
	if err := txn.Set(blobKey(d), rec.marshal()); err != nil {
		return existed, err
	}
	return existed, txn.Set(accessKey(rec.Access, d), sizeValue(rec.Size))
}

// deleteRecord removes the record and its access key; it reports the removed
// record, or ErrNotFound.
func deleteRecord(txn *badger.Txn, d Digest) (record, error) {
	rec, err := getRecord(txn, d)
	if err != nil {
		return rec, err
	}
	if err := txn.Delete(blobKey(d)); err != nil {
		return rec, err
	}
	return rec, txn.Delete(accessKey(rec.Access, d))
}

// update runs fn in a read-write transaction, retrying on conflicts.
func update(db *badger.DB, fn func(txn *badger.Txn) error) error {
	var err error
	for attempt := 0; attempt < 10; attempt++ {
		err = db.Update(fn)
		if !errors.Is(err, badger.ErrConflict) {
			return err
		}
	}
	return err
}

func marshalTotals(blobs, bytes int64) []byte {
	b := binary.BigEndian.AppendUint64(nil, uint64(blobs))
	return binary.BigEndian.AppendUint64(b, uint64(bytes))
}

func unmarshalTotals(b []byte) (blobs, bytes int64, err error) {
	if len(b) != 16 {
		return 0, 0, fmt.Errorf("casstore: corrupt totals record")
	}
	return int64(binary.BigEndian.Uint64(b)), int64(binary.BigEndian.Uint64(b[8:])), nil
}

// badgerLogger routes Badger's log lines to zap; its chatty info lines go to
// debug level.
type badgerLogger struct{ s *zap.SugaredLogger }

func (l badgerLogger) Errorf(f string, a ...any)   { l.s.Errorf("badger: "+f, a...) }
func (l badgerLogger) Warningf(f string, a ...any) { l.s.Warnf("badger: "+f, a...) }
func (l badgerLogger) Infof(f string, a ...any)    { l.s.Debugf("badger: "+f, a...) }
func (l badgerLogger) Debugf(f string, a ...any)   {}
