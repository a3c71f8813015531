// Package casstore is dtrcache's content-addressed blob store on local disk.
//
// # Layout
//
// A complete blob lives at <root>/blobs/<alg>/<first two hex>/<hex> (a new
// store creates the 256 sha256 directories at Open; any other is created by
// the first commit that needs it). Fills in progress are temp files under
// <root>/tmp. The index is a Badger
// database under <root>/index holding one record per blob (size, created,
// last access) and an LRU key per blob ("a:" + access time + digest, whose
// ascending order is least-recently-used order).
//
// # Verified content
//
// A blob becomes visible only after its bytes hashed to its digest, the
// file was fsynced and renamed into blobs/, and the index was updated.
// Because nothing unverified ever reaches blobs/, the hit path (Stat, Open)
// looks at the file alone and never reads the index. A mismatch publishes
// nothing and fails every reader.
//
// # Fills
//
// Fill coalesces all requests for one digest into one fill that runs on its
// own context (detached from the first caller, bounded by FillTimeout). The
// fill opens its Source once; readers attach at any time, read what is
// already on disk at once and wait, honouring their own context, for the
// rest. The last byte is held back until the digest is verified, so a
// reader can never see a clean end of a corrupt blob.
//
// A broken source stream is reopened at the offset already written, with
// bounded retries and backoff, and the same hash continues. With
// FillOptions.Parallel > 1 and a source that honours ranges, the blob is cut
// into chunks fetched by several streams at once; chunks land at their
// offsets out of order while a hasher follows the contiguous prefix through
// small memory-mapped windows.
//
// A read that starts far ahead of a running fill (FarAhead bytes beyond the
// write position) gets its own source range instead of waiting. If the disk
// fails (full, EIO) the fill stops publishing and its readers take the rest
// from their own source streams; a reader of the whole blob still verifies
// the digest before its last byte.
//
// # Eviction and TTL
//
// Reads are recorded in memory and written to the index in batches
// (AccessFlushInterval), so LRU order survives restarts without one index
// write per hit. When the bytes of complete blobs plus fills in flight
// cross MaxBytes × HighWatermark, the least recently used blobs are removed
// down to the low watermark; an idle TTL removes blobs not read for TTL.
// Removal drops the index entry first and then unlinks the file; readers
// holding the file keep reading it.
//
// # Crash safety
//
// A clean Close writes the totals and a clean-shutdown marker. Open removes
// the marker; without it (a crash) Open moves the partial fills aside and
// returns at once, and reconciles in the background (recovery.go): partial
// fills are deleted, index entries without a file of the right size are
// dropped, files without an index entry are re-hashed and adopted or
// removed, stray LRU keys are dropped and the totals are rebuilt. Until it
// ends, a blob is served only when the index has it with its file's size
// (an entry whose file is missing or has another size is dropped: a miss),
// so nothing the reconciliation would reject is served.
//
// The package knows nothing of HTTP: callers get io.Reader/io.ReaderAt
// values and, for complete blobs, the *os.File for zero-copy serving.
package casstore
