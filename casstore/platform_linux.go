package casstore

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// The Linux fast paths of a fill: a free-space check before the temp file
// is sized, hashing through memory-mapped windows, and writeback started
// behind the hasher. platform_other.go has the portable fallbacks.

// allocate sizes the temp file (sparse) after checking that the file
// system has room for it, so a full disk shows at once instead of part way.
// (fallocate would reserve the blocks, but on tmpfs it zero-fills every
// page, which costs more than the check saves.)
func allocate(file fillFile, size int64) error {
	if osf, ok := file.(*os.File); ok {
		var st syscall.Statfs_t
		if err := syscall.Fstatfs(int(osf.Fd()), &st); err == nil && int64(st.Bavail)*st.Bsize < size {
			return fmt.Errorf("%d bytes free: %w", int64(st.Bavail)*st.Bsize, syscall.ENOSPC)
		}
	}
	return file.Truncate(size)
}

// hashMapped writes the bytes [from, to) of f to h through a read-only
// mapping (whole pages: the window starts at the page boundary at or
// before from) and reports how many; ok is false when the mapping failed
// and the caller should read instead.
func hashMapped(h io.Writer, f *os.File, from, to int64) (n int64, ok bool) {
	page := int64(os.Getpagesize())
	start := from &^ (page - 1)
	m, err := syscall.Mmap(int(f.Fd()), start, int(to-start), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return 0, false
	}
	h.Write(m[from-start:])
	syscall.Munmap(m)
	return to - from, true
}

// reopen opens the file f again, read-only, with a position of its own
// (through /proc/self/fd, so it is the same file whatever its name is
// now: a fill's temp file is renamed at commit), or returns nil.
func reopen(f fdFile) *os.File {
	r, err := os.Open("/proc/self/fd/" + strconv.Itoa(int(f.Fd())))
	if err != nil {
		return nil
	}
	return r
}

// startWriteback asks the kernel to begin writing [off, off+n) of f to disk
// without waiting for it. Doing this behind the hasher keeps the dirty
// pages of a large fill few, so the fsync at commit is short and the blob
// becomes a plain hit (served with sendfile) soon after its last byte.
// Errors are ignored: the fsync at commit is what makes the blob durable.
func startWriteback(f *os.File, off, n int64) {
	_ = unix.SyncFileRange(int(f.Fd()), off, n, unix.SYNC_FILE_RANGE_WRITE)
}
