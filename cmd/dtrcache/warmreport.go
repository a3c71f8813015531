package main

import (
	"fmt"
	"io"
	"net/http"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dtrcache/dtrcache/cmd/dtrcache/progress"
)

// What `dtrcache warm` tells the operator. On a terminal: a progress bar
// per image (bytes, rate) labelled with the image's and the total blob
// counts. Otherwise (a cron job's log): one line per blob with its size,
// time and what the cache did. Both end each image with a line and the
// run with a summary: the bytes the cache filled and those it already
// had, from each blob response's Cache-Status (proxy/cache).

// cacheStatuses is the warm command's transport: it remembers, per blob
// digest, the Cache-Status of the response that served the blob (after
// the origin's redirect, the cache's). It is safe for concurrent use.
type cacheStatuses struct {
	next http.RoundTripper

	// mu guards byDigest.
	mu       sync.Mutex
	byDigest map[string]string
}

func (c *cacheStatuses) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := c.next.RoundTrip(req)
	if err == nil && req.Method == http.MethodGet && resp.StatusCode/100 == 2 && strings.Contains(req.URL.Path, "/blobs/") {
		c.mu.Lock()
		if c.byDigest == nil {
			c.byDigest = map[string]string{}
		}
		c.byDigest[path.Base(req.URL.Path)] = resp.Header.Get("Cache-Status")
		c.mu.Unlock()
	}
	return resp, err
}

// The ways a blob was served, by what its Cache-Status says.
const (
	servedFilled = "filled by the cache"
	servedCached = "already cached"
	servedOther  = "not from a dtrcache cache"
)

// served says how the response for digest was served.
func (c *cacheStatuses) served(digest string) string {
	c.mu.Lock()
	st := c.byDigest[digest]
	c.mu.Unlock()
	switch {
	case !strings.HasPrefix(st, "dtrcache"):
		return servedOther
	case strings.Contains(st, "; hit"):
		return servedCached
	}
	return servedFilled
}

// warmReport reports a warm run.
type warmReport struct {
	out      io.Writer
	tty      bool
	statuses *cacheStatuses
	start    time.Time
	images   int
	blobs    int
	bytes    int64

	read atomic.Int64 // bytes read so far, all images

	// mu guards the fields below.
	mu          sync.Mutex
	claimed     map[string]bool
	blobsDone   int
	by          map[string]int64 // bytes by how they were served
	bar         *progress.Bar    // the current image's, on a terminal
	img         imageTally
	imagesTotal int
}

// imageTally counts one image's blobs.
type imageTally struct {
	blobs, done int
	bytes       int64
	start       time.Time
	by          map[string]int64
}

// newWarmReport reports on out: a bar per image if tty, else lines.
func newWarmReport(out io.Writer, tty bool, images []warmImage, statuses *cacheStatuses) *warmReport {
	r := &warmReport{out: out, tty: tty, statuses: statuses, start: time.Now(),
		images: len(images), claimed: map[string]bool{}, by: map[string]int64{}}
	seen := map[string]bool{}
	for _, im := range images {
		for _, b := range im.blobs {
			if !seen[b.digest] {
				seen[b.digest] = true
				r.blobs++
				r.bytes += b.size
			}
		}
	}
	if len(images) > 0 {
		fmt.Fprintf(out, "warming %d image(s): %d blobs, %s\n", r.images, r.blobs, progress.Human(r.bytes, "B"))
	}
	return r
}

// claim reports whether digest is still to be read, and takes it.
func (r *warmReport) claim(digest string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.claimed[digest] {
		return false
	}
	r.claimed[digest] = true
	r.img.blobs++
	return true
}

func (r *warmReport) startImage(im warmImage) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.imagesTotal++
	var size int64
	n := 0
	for _, b := range im.blobs {
		if !r.claimed[b.digest] {
			size += b.size
			n++
		}
	}
	r.img = imageTally{start: time.Now(), by: map[string]int64{}, bytes: size}
	if r.tty {
		r.bar = progress.NewBarFor(size, r.labelLocked(im, n), r.out, true)
	} else {
		fmt.Fprintf(r.out, "%s: %d blobs to read, %s\n", im.ref, n, progress.Human(size, "B"))
	}
}

// labelLocked is the bar's label: the image, its blobs and the total.
func (r *warmReport) labelLocked(im warmImage, blobs int) string {
	return fmt.Sprintf("%s  %d/%d blobs · total %d/%d blobs, %s/%s", im.ref, r.img.done, blobs,
		r.blobsDone, r.blobs, progress.Human(r.read.Load(), "B"), progress.Human(r.bytes, "B"))
}

// counter returns the writer a blob's bytes are copied to.
func (r *warmReport) counter() io.Writer {
	return writerFunc(func(p []byte) (int, error) {
		r.read.Add(int64(len(p)))
		r.mu.Lock()
		bar := r.bar
		r.mu.Unlock()
		if bar != nil {
			bar.Add64(int64(len(p)))
		}
		return len(p), nil
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// blobDone records a blob read (n bytes, err if it failed).
func (r *warmReport) blobDone(im warmImage, b warmBlob, n int64, err error) {
	how := r.statuses.served(b.digest)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err == nil {
		r.blobsDone++
		r.img.done++
		r.by[how] += n
		r.img.by[how] += n
	}
	if r.bar != nil {
		r.bar.Describe(r.labelLocked(im, r.img.blobs))
		return
	}
	short := b.digest
	if len(short) > 19 {
		short = short[:19]
	}
	if err != nil {
		fmt.Fprintf(r.out, "  %s  %s  failed after %s: %v\n", im.ref, short, progress.Human(n, "B"), err)
		return
	}
	fmt.Fprintf(r.out, "  %s  %s  %s: %s\n", im.ref, short, progress.Human(n, "B"), how)
}

func (r *warmReport) finishImage(im warmImage, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.bar != nil {
		r.bar.Finish()
		r.bar = nil
	}
	state := "warm"
	if err != nil {
		state = "incomplete"
	}
	fmt.Fprintf(r.out, "%s: %s, %d/%d blobs in %.1fs: %s\n", im.ref, state, r.img.done, r.img.blobs,
		time.Since(r.img.start).Seconds(), servedLine(r.img.by))
}

// summary prints the run's totals.
func (r *warmReport) summary() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.images == 0 {
		return
	}
	el := time.Since(r.start)
	read := r.read.Load()
	fmt.Fprintf(r.out, "warmed %d image(s), %d/%d blobs, %s in %.1fs (%s): %s\n", r.imagesTotal, r.blobsDone, r.blobs,
		progress.Human(read, "B"), el.Seconds(), progress.Human(int64(float64(read)/max(el.Seconds(), 1e-3)), "B/s"), servedLine(r.by))
	if r.by[servedOther] > 0 {
		fmt.Fprintln(r.out, "Some blobs came without a dtrcache Cache-Status: through the origin, the user's profile must name a healthy cache (PATCH /api/v0/accounts/<user>/settings).")
	}
}

// servedLine says how many bytes were filled, were cached, or came from
// elsewhere.
func servedLine(by map[string]int64) string {
	s := fmt.Sprintf("%s %s, %s %s", progress.Human(by[servedFilled], "B"), servedFilled, progress.Human(by[servedCached], "B"), servedCached)
	if n := by[servedOther]; n > 0 {
		s += fmt.Sprintf(", %s %s", progress.Human(n, "B"), servedOther)
	}
	return s
}
