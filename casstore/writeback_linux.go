package casstore

import (
	"os"

	"golang.org/x/sys/unix"
)

// startWriteback asks the kernel to begin writing [off, off+n) of f to disk
// without waiting for it. Doing this behind the hasher keeps the dirty
// pages of a large fill few, so the fsync at commit is short and the blob
// becomes a plain hit (served with sendfile) soon after its last byte.
// Errors are ignored: the fsync at commit is what makes the blob durable.
func startWriteback(f *os.File, off, n int64) {
	_ = unix.SyncFileRange(int(f.Fd()), off, n, unix.SYNC_FILE_RANGE_WRITE)
}
