//go:build !linux

package casstore

import "os"

// startWriteback is a no-op where sync_file_range(2) does not exist; the
// fsync at commit writes everything.
func startWriteback(*os.File, int64, int64) {}
