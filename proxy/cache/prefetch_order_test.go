package cache_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dtrcache/dtrcache/proxy/cache"
	"github.com/dtrcache/dtrcache/proxy/regapi"
	"github.com/dtrcache/dtrcache/testenv"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"go.uber.org/goleak"
)

// slowLink stands in for a slow WAN in front of the registry: a fault the
// tests cannot produce on loopback, so it is faked. Every blob GET's
// headers go out at once, its body only as far as the test allows
// (allow); it records the order of the GETs and how many had sent less
// than 75 % of their bytes when each arrived. A blob in holdHeaders sends
// its headers too only once some of its body is allowed: the round trip
// of a WAN, which the cache waits for to learn a size it was not told.
type slowLink struct {
	mu       sync.Mutex
	changed  chan struct{} // closed and replaced on every change
	order    []string      // digests, in the order their GETs arrived
	inFlight []int         // GETs below 75 % of their bytes when each arrived (itself included)
	allowed  map[string]int64
	sent     map[string]int64
	size     map[string]int64
	closed   bool
	// holdHeaders is set before the first GET and only read after.
	holdHeaders map[string]bool
}

func newSlowLink() *slowLink {
	return &slowLink{changed: make(chan struct{}), allowed: map[string]int64{}, sent: map[string]int64{},
		size: map[string]int64{}}
}

func (l *slowLink) notifyLocked() {
	close(l.changed)
	l.changed = make(chan struct{})
}

// wrap is the registry's Wrap: it throttles blob GETs.
func (l *slowLink) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := strings.Index(r.URL.Path, "/blobs/")
		if r.Method != http.MethodGet || i < 0 {
			h.ServeHTTP(w, r)
			return
		}
		d := r.URL.Path[i+len("/blobs/"):]
		l.mu.Lock()
		n := 1
		for _, o := range l.order {
			if size, ok := l.size[o]; !ok || 4*l.sent[o] < 3*size {
				n++
			}
		}
		l.order = append(l.order, d)
		l.inFlight = append(l.inFlight, n)
		l.notifyLocked()
		l.mu.Unlock()
		h.ServeHTTP(&throttled{ResponseWriter: w, l: l, d: d, done: r.Context().Done()}, r)
	})
}

// allow lets the first n bytes of d's body out (math.MaxInt64: all).
func (l *slowLink) allow(d string, n int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.allowed[d] = n
	l.notifyLocked()
}

// close lets every body out, so that nothing stays blocked at cleanup.
func (l *slowLink) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	l.notifyLocked()
}

// waitFor waits until cond (called with mu held) holds.
func (l *slowLink) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		l.mu.Lock()
		ok, ch := cond(), l.changed
		l.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-timeout:
			l.mu.Lock()
			defer l.mu.Unlock()
			t.Fatalf("timed out waiting for %s; blob GETs so far: %v", what, l.order)
		}
	}
}

type throttled struct {
	http.ResponseWriter
	l    *slowLink
	d    string
	done <-chan struct{}
}

func (w *throttled) WriteHeader(code int) {
	if w.l.holdHeaders[w.d] {
		for {
			w.l.mu.Lock()
			ok, ch := w.l.closed || w.l.allowed[w.d] > 0, w.l.changed
			w.l.mu.Unlock()
			if ok {
				break
			}
			select {
			case <-ch:
				continue
			case <-w.done:
			}
			break
		}
	}
	if n, err := strconv.ParseInt(w.Header().Get("Content-Length"), 10, 64); err == nil {
		w.l.mu.Lock()
		w.l.size[w.d] = n
		w.l.mu.Unlock()
	}
	w.ResponseWriter.WriteHeader(code)
	w.ResponseWriter.(http.Flusher).Flush()
}

func (w *throttled) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		l := w.l
		l.mu.Lock()
		room, ch := l.allowed[w.d]-l.sent[w.d], l.changed
		if l.closed {
			room = int64(len(p))
		}
		if room <= 0 {
			l.mu.Unlock()
			select {
			case <-ch:
				continue
			case <-w.done:
				return written, http.ErrAbortHandler
			}
		}
		n := int(min(room, int64(len(p))))
		l.sent[w.d] += int64(n) // counted before the bytes leave: no GET they allow can come first
		l.mu.Unlock()
		m, err := w.ResponseWriter.Write(p[:n])
		written += m
		if err != nil {
			return written, err
		}
		w.ResponseWriter.(http.Flusher).Flush()
		p = p[n:]
	}
	return written, nil
}

// newSlowEnv is a cache env whose registry is behind a slowLink, checked
// for leaked goroutines at the end.
func newSlowEnv(t *testing.T, o envOptions) (*env, *slowLink) {
	t.Helper()
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, before, ignoreRegistry) })
	link := newSlowLink()
	o.regOpts.Wrap = link.wrap
	e := newEnv(t, o)
	t.Cleanup(e.server.Close) // before the registry closes: nothing waits on it then
	t.Cleanup(link.close)
	return e, link
}

// TestPrefetchFillsInManifestOrder: with an upstream that sends bodies
// only as the test allows, a manifest's prefetch starts its blobs in
// manifest order, and the blob a client waits for (and its manifest's
// lead) is not starved: while such a fill has less than 75 % of its bytes
// at most PrefetchWhileAwaited other fills run; past 75 % the rest start.
func TestPrefetchFillsInManifestOrder(t *testing.T) {
	e, link := newSlowEnv(t, envOptions{noRedirect: true})
	e.server.Prefetch = 4
	e.server.PrefetchWhileAwaited = 1
	img := e.push(t, "order/img:1", testenv.ImageSpec{Layers: 6, LayerSize: 1 << 20, Seed: 41})
	info, _ := testenv.Describe(img)
	cfg := info.Config.String()
	layer := make([]string, len(info.Layers))
	for i, h := range info.Layers {
		layer[i] = h.String()
	}
	seen := func(n int) func() bool { return func() bool { return len(link.order) >= n } }

	resp, _, _ := e.get(t, "/v2/order/img/manifests/1", map[string]string{"Accept": "application/vnd.oci.image.manifest.v1+json"})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("manifest: %d", resp.StatusCode)
	}
	// The config (small: it holds nothing back), the lead (layer 0) and one
	// more start; the other four wait while the lead has none of its bytes.
	link.waitFor(t, "three blob GETs", seen(3))
	waitStats(t, e.server, "3 running, 4 waiting", func(s cache.PrefetchStats) bool { return s.Running == 3 && s.Waiting == 4 })
	link.mu.Lock()
	first := slices.Sorted(slices.Values(link.order[:3]))
	link.mu.Unlock()
	if want := slices.Sorted(slices.Values([]string{cfg, layer[0], layer[1]})); !slices.Equal(first, want) {
		t.Fatalf("first blob GETs %v, want the config, layer 0 and layer 1", first)
	}
	link.allow(cfg, math.MaxInt64)

	// A client reads layer 0: the fill it waits for has no bytes yet.
	l0, l0bytes := layerBytes(t, img, 0)
	var clientRead atomic.Int64
	clientErr := make(chan error, 1)
	go func() { clientErr <- readBlob(e.srv.URL+"/v2/order/img/blobs/"+l0.String(), l0.String(), &clientRead) }()
	waitStats(t, e.server, "the client awaiting layer 0", func(s cache.PrefetchStats) bool { return s.Awaited == 1 })

	// Layer 1 done: layer 2 takes its place, no more.
	link.allow(layer[1], math.MaxInt64)
	link.waitFor(t, "layer 2's GET", seen(4))
	waitStats(t, e.server, "2 running, 3 waiting", func(s cache.PrefetchStats) bool { return s.Running == 2 && s.Waiting == 3 })

	// Half of layer 0 (the client has it): still held back.
	half := int64(len(l0bytes)) / 2
	link.allow(layer[0], half)
	for clientRead.Load() < half-64<<10 {
		select {
		case err := <-clientErr:
			t.Fatalf("client ended early: %v", err)
		case <-time.After(time.Millisecond):
		}
	}
	if s := e.server.PrefetchStats(); s.Waiting != 3 {
		t.Fatalf("with layer 0 half done, %d prefetches wait, want 3 (%+v)", s.Waiting, s)
	}

	// Past 75 % of layer 0, layer 2 leads: one more (layer 3) starts.
	link.allow(layer[0], int64(len(l0bytes))*8/10)
	link.waitFor(t, "layer 3's GET", seen(5))
	waitStats(t, e.server, "3 running, 2 waiting", func(s cache.PrefetchStats) bool { return s.Running == 3 && s.Waiting == 2 })
	link.allow(layer[0], math.MaxInt64)
	if err := <-clientErr; err != nil {
		t.Fatal(err)
	}
	// Each layer done lets the next one start.
	for i := 2; i < len(layer); i++ {
		link.allow(layer[i], math.MaxInt64)
		if i+2 < len(layer) {
			link.waitFor(t, fmt.Sprintf("layer %d's GET", i+2), seen(i+4))
		}
	}
	waitStats(t, e.server, "every prefetch done", func(s cache.PrefetchStats) bool { return s.Running == 0 && s.Waiting == 0 })

	link.mu.Lock()
	defer link.mu.Unlock()
	if got, want := strings.Join(link.order[3:], ","), strings.Join(layer[2:], ","); got != want {
		t.Errorf("GETs from the fourth on: %s, want layers 2 to 5 in order", got)
	}
	// As each GET arrived, the wanted fill and at most one other had less
	// than 75 % of their bytes (and the config, at first).
	if got, want := fmt.Sprint(link.inFlight), "[1 2 3 2 2 2 2]"; got != want {
		t.Errorf("blob GETs below 75 %% when each arrived: %s, want %s", got, want)
	}
	if got := e.reg.Counter.TotalBlobGets(); got != 1+len(layer) {
		t.Errorf("%d blob GETs at the registry, want one per blob (%d)", got, 1+len(layer))
	}
}

// TestPrefetchDefaultLeavesTheLinkToTheLead: with the default
// PrefetchWhileAwaited (none), a manifest's prefetch runs one blob at a
// time while the lead has less than 75 % of its bytes; past 75 % the next
// blob starts, in manifest order, and no other. The config is small and
// holds nothing back: layer 0 starts beside it.
func TestPrefetchDefaultLeavesTheLinkToTheLead(t *testing.T) {
	e, link := newSlowEnv(t, envOptions{noRedirect: true})
	e.server.Prefetch = 4 // PrefetchWhileAwaited left at its default
	img := e.push(t, "order/lead:1", testenv.ImageSpec{Layers: 4, LayerSize: 1 << 20, Seed: 43})
	info, _ := testenv.Describe(img)
	blobs := []string{info.Config.String()}
	for _, h := range info.Layers {
		blobs = append(blobs, h.String())
	}
	seen := func(n int) func() bool { return func() bool { return len(link.order) >= n } }

	resp, _, _ := e.get(t, "/v2/order/lead/manifests/1", map[string]string{"Accept": "application/vnd.oci.image.manifest.v1+json"})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("manifest: %d", resp.StatusCode)
	}
	// The config is small (it holds nothing back): it and layer 0 start.
	link.waitFor(t, "the config's and layer 0's GETs", seen(2))
	waitStats(t, e.server, "2 running, 3 waiting", func(s cache.PrefetchStats) bool { return s.Running == 2 && s.Waiting == 3 })
	link.allow(blobs[0], math.MaxInt64)
	// Each layer past 75 % lets the next one start.
	for i := 1; i < len(blobs); i++ {
		_, b := layerBytes(t, img, i-1)
		link.allow(blobs[i], int64(len(b))*8/10)
		if i+1 < len(blobs) {
			link.waitFor(t, fmt.Sprintf("GET %d", i+2), seen(i+2))
		}
		link.allow(blobs[i], math.MaxInt64)
	}
	waitStats(t, e.server, "every prefetch done", func(s cache.PrefetchStats) bool { return s.Running == 0 && s.Waiting == 0 })

	link.mu.Lock()
	defer link.mu.Unlock()
	if got, want := slices.Sorted(slices.Values(link.order[:2])), slices.Sorted(slices.Values(blobs[:2])); !slices.Equal(got, want) {
		t.Errorf("first blob GETs %v, want the config and layer 0", got)
	}
	if got, want := strings.Join(link.order[2:], ","), strings.Join(blobs[2:], ","); got != want {
		t.Errorf("blob GETs from the third on %s, want the layers in manifest order", got)
	}
	// Only the config ran beside the lead.
	if got, want := fmt.Sprint(link.inFlight), "[1 2 1 1 1]"; got != want {
		t.Errorf("blob GETs below 75 %% when each arrived: %s, want %s", got, want)
	}
}

// readBlob GETs a blob, counting the bytes read in n, and checks its digest.
func readBlob(url, want string, n *atomic.Int64) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %d", url, resp.StatusCode)
	}
	h := sha256.New()
	buf := make([]byte, 32<<10)
	for {
		m, err := resp.Body.Read(buf)
		h.Write(buf[:m])
		n.Add(int64(m))
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	if got := fmt.Sprintf("sha256:%x", h.Sum(nil)); got != want {
		return fmt.Errorf("client read %s, want %s", got, want)
	}
	return nil
}

// waitStats waits until the server's prefetch state satisfies cond.
func waitStats(t *testing.T, s *cache.Server, what string, cond func(cache.PrefetchStats) bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond(s.PrefetchStats()) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %+v", what, s.PrefetchStats())
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestPrefetchHintSizesLetTheConfigRunBeside: in redirect mode a hint's
// blobs carry their manifest sizes, so the config (small: it holds nothing
// back) and layer 0 start together, as in mirror mode; a blob whose size
// the hint leaves out still holds the link, so layer 0 of such a hint
// waits for the config.
func TestPrefetchHintSizesLetTheConfigRunBeside(t *testing.T) {
	for _, sized := range []bool{true, false} {
		t.Run("sized="+strconv.FormatBool(sized), func(t *testing.T) {
			e, link := newSlowEnv(t, envOptions{noMirror: true})
			e.server.Prefetch = 4 // PrefetchWhileAwaited left at its default
			img := e.push(t, "order/hint:1", testenv.ImageSpec{Layers: 3, LayerSize: 1 << 20, Seed: 44})
			info, _ := testenv.Describe(img)
			m, err := img.Manifest()
			if err != nil {
				t.Fatal(err)
			}
			h := regapi.PrefetchHint{Repo: "order/hint"}
			add := func(d v1.Hash, size int64) {
				b := regapi.PrefetchBlob{Digest: d.String(), Token: e.token(t, "order/hint", d)}
				if sized {
					b.Size = size
				}
				h.Blobs = append(h.Blobs, b)
			}
			add(m.Config.Digest, m.Config.Size)
			for _, l := range m.Layers {
				add(l.Digest, l.Size)
			}
			// The config's answer comes only when the test allows it: a
			// cache told no size learns it a round trip late.
			link.holdHeaders = map[string]bool{m.Config.Digest.String(): true}
			body, _ := json.Marshal(h)
			resp, err := http.Post(e.srv.URL+cache.PrefetchPath, "application/json", bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusAccepted {
				t.Fatalf("hint: %d", resp.StatusCode)
			}
			cfg, l0 := info.Config.String(), info.Layers[0].String()
			seen := func(n int) func() bool { return func() bool { return len(link.order) >= n } }
			if sized {
				link.waitFor(t, "the config's and layer 0's GETs", seen(2))
				waitStats(t, e.server, "2 running, 2 waiting", func(s cache.PrefetchStats) bool { return s.Running == 2 && s.Waiting == 2 })
			} else {
				link.waitFor(t, "the config's GET", seen(1))
				waitStats(t, e.server, "1 running, 3 waiting", func(s cache.PrefetchStats) bool { return s.Running == 1 && s.Waiting == 3 })
				link.allow(cfg, math.MaxInt64)
				link.waitFor(t, "layer 0's GET", seen(2))
			}
			link.mu.Lock()
			first := slices.Sorted(slices.Values(link.order[:2]))
			link.mu.Unlock()
			if want := slices.Sorted(slices.Values([]string{cfg, l0})); !slices.Equal(first, want) {
				t.Fatalf("first blob GETs %v, want the config and layer 0", first)
			}
			for _, b := range h.Blobs {
				link.allow(b.Digest, math.MaxInt64)
			}
			waitStats(t, e.server, "every prefetch done", func(s cache.PrefetchStats) bool { return s.Running == 0 && s.Waiting == 0 })
		})
	}
}
