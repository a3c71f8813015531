//go:build !linux

package casstore

import (
	"io"
	"os"
)

// The portable fallbacks of platform_linux.go: the store works the same
// on other systems (macOS for development, Windows), only without the
// free-space check, the memory-mapped hashing and the early writeback.

// allocate sizes the temp file (sparse). A full disk shows when a write
// fails.
func allocate(file fillFile, size int64) error { return file.Truncate(size) }

// hashMapped is not available: the hasher reads with pread.
func hashMapped(io.Writer, *os.File, int64, int64) (int64, bool) { return 0, false }

// startWriteback is a no-op where sync_file_range(2) does not exist; the
// fsync at commit writes everything.
func startWriteback(*os.File, int64, int64) {}

// reopen is not available: a reader of a running fill copies through a
// buffer.
func reopen(fdFile) *os.File { return nil }
