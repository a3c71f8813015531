package replicate

import (
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/time/rate"
)

// Options tune a copy. The zero value is a sensible default.
type Options struct {
	// Concurrency is how many blobs are copied at once. 0 means 4.
	Concurrency int
	// BandwidthLimit caps the copy's blob bytes per second, shared by its
	// streams (a token bucket). 0 means no cap.
	BandwidthLimit int64
	// Limiter, if set, is used instead of BandwidthLimit, so that several
	// copies (all jobs of one policy) share one cap. NewLimiter makes one.
	Limiter *rate.Limiter
	// ChunkSize, if > 0, uploads blobs larger than it in PATCH requests of
	// at most this many bytes (for registries or proxies in front of them
	// that limit request sizes). 0 means one streamed PATCH for the rest
	// of each large blob: on distribution a cut upload resumes at the byte
	// the registry stored, so chunks only add round trips there.
	ChunkSize int64
	// Retries is how many times one blob is resumed after transient
	// errors before the copy fails. 0 means 5; < 0 means none.
	Retries int
	// SkipReferrers copies the image without its referrers (signatures,
	// SBOMs, attestations) and without cosign's sha256-<hex>.sig/.att/.sbom
	// tags.
	SkipReferrers bool
	// Blobs, if set, is shared with other copies to the same target
	// registry: a blob one of them put there is mounted into this copy's
	// repository instead of sent again, and one in flight is waited for.
	Blobs *BlobIndex
	// Progress, if set, is updated while the copy runs.
	Progress *Progress
	// Checkpoint, if set, is called with the state of each blob upload at
	// safe points: when its upload session opens, every CheckpointEvery
	// bytes sent, and after each accepted PATCH. A job that stores the
	// latest checkpoint per blob can hand them back in Resume after a
	// crash. It is called from the copy's goroutines, possibly at once,
	// and must not block.
	Checkpoint func(Checkpoint)
	// CheckpointEvery is the byte interval of checkpoints within one
	// upload. 0 means 16 MiB.
	CheckpointEvery int64
	// Resume continues the uploads these checkpoints describe instead of
	// starting new ones; an upload the registry no longer knows starts
	// over.
	Resume []Checkpoint
	// Logger receives debug logs. nil means none.
	Logger *zap.Logger

	// sleep waits between retries (tests make it instant). nil: a timer.
	sleep func(d time.Duration) <-chan time.Time
}

// NewLimiter returns a token bucket for bytesPerSecond to share between
// copies (Options.Limiter), with a burst of 1/10 s of bytes (at least
// 64 KiB).
func NewLimiter(bytesPerSecond int64) *rate.Limiter {
	return rate.NewLimiter(rate.Limit(bytesPerSecond), int(max(bytesPerSecond/10, 64<<10)))
}

// Checkpoint is the state of one blob upload to a target, enough for a
// later process to continue it.
type Checkpoint struct {
	// Repository is the target repository.
	Repository string `json:"repository"`
	// Digest and Size name the blob.
	Digest string `json:"digest"`
	Size   int64  `json:"size"`
	// Location is the upload's URL at the target registry. It is a
	// capability for this one upload (treat it like a short-lived secret:
	// store it, do not log it).
	Location string `json:"location"`
	// Offset is how many bytes had been sent (or, after an accepted PATCH,
	// stored). On resume the registry's own count decides.
	Offset int64 `json:"offset"`
}

// Progress is a running copy's state, safe to read at any time from any
// goroutine (Snapshot) while the copy updates it.
type Progress struct {
	bytesCopied, bytesSkipped atomic.Int64
	blobsDone, blobsTotal     atomic.Int64

	// mu guards current.
	mu      sync.Mutex
	current map[string]int64 // digest → bytes sent in this attempt
}

// ProgressSnapshot is Progress at one moment.
type ProgressSnapshot struct {
	// BytesCopied is the blob bytes sent to the target so far (resent
	// bytes count again: it is the traffic).
	BytesCopied int64
	// BytesSkipped is the size of the blobs the target had or mounted.
	BytesSkipped int64
	// BlobsDone of BlobsTotal are finished (copied, mounted or skipped).
	BlobsDone, BlobsTotal int64
	// Current lists the blobs being uploaded and the bytes sent of each.
	Current map[string]int64
}

// Snapshot returns the current counts.
func (p *Progress) Snapshot() ProgressSnapshot {
	s := ProgressSnapshot{
		BytesCopied: p.bytesCopied.Load(), BytesSkipped: p.bytesSkipped.Load(),
		BlobsDone: p.blobsDone.Load(), BlobsTotal: p.blobsTotal.Load(),
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.current) > 0 {
		s.Current = make(map[string]int64, len(p.current))
		for d, n := range p.current {
			s.Current[d] = n
		}
	}
	return s
}

func (p *Progress) setCurrent(digest string, n int64) {
	p.mu.Lock()
	if p.current == nil {
		p.current = map[string]int64{}
	}
	p.current[digest] = n
	p.mu.Unlock()
}

func (p *Progress) done(digest string) {
	p.blobsDone.Add(1)
	p.mu.Lock()
	delete(p.current, digest)
	p.mu.Unlock()
}

// Result reports a finished copy.
type Result struct {
	// Digest and MediaType are the copied image's manifest or index.
	Digest, MediaType string
	// BytesCopied is the blob bytes sent to the target, resent bytes
	// included; BytesSkipped the size of the blobs it had or mounted.
	BytesCopied, BytesSkipped int64
	// BlobsCopied were uploaded, BlobsMounted mounted from the source
	// repository, BlobsSkipped already present.
	BlobsCopied, BlobsMounted, BlobsSkipped int
	// Resumes counts uploads continued after a transient error.
	Resumes int
	// ManifestsPushed were written to the target (tags included);
	// ManifestsSkipped it had already.
	ManifestsPushed, ManifestsSkipped int
	// ReferrersCopied counts the referrer manifests (signatures, SBOMs,
	// attestations, cosign tags) the copy carried.
	ReferrersCopied int
	// Duration is the copy's wall time.
	Duration time.Duration
}
