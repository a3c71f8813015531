package failover_test

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// lateness is how long after a kill a pull that starts must never fail.
const lateness = 1500 * time.Millisecond

// loopFor bounds each loop in time (the pulls are bounded in count too).
const loopFor = 40 * time.Second

// disrupt stops the cache the way stopCache does, at random moments while
// the clients pull, restarting it each time, until stop is closed. It
// returns when each stop happened and, for each, how long the origin
// still redirected to the cache (the failover window).
func disrupt(t *testing.T, s *stack, stopCache func(), stop <-chan struct{}) (at []time.Time, windows []time.Duration) {
	for {
		// Wait until the origin redirects to the cache again (it came
		// back: health_rise good probes).
		for !s.redirected() {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
		select {
		case <-stop:
			return
		case <-time.After(time.Duration(200+rand.IntN(800)) * time.Millisecond):
		}
		k := time.Now()
		stopCache()
		at = append(at, k)
		for s.redirected() && time.Since(k) < 10*time.Second {
			time.Sleep(5 * time.Millisecond)
		}
		windows = append(windows, time.Since(k))
		if !s.cache.wait(30 * time.Second) {
			t.Fatal("the stopped cache did not exit")
		}
		s.startCache()
	}
}

// report logs per client the pulls made and failed, and returns the
// failures by client.
func report(t *testing.T, s *stack, what string, pulls []pull, stops []time.Time, windows []time.Duration) map[int][]pull {
	failed := map[int][]pull{}
	made := map[int]int{}
	for _, p := range pulls {
		made[p.client]++
		if p.err != nil {
			failed[p.client] = append(failed[p.client], p)
		}
	}
	slices.Sort(windows)
	t.Logf("%s: %d stops; failover windows (stop → the origin no longer redirects) %v", what, len(stops), windows)
	for i, c := range s.clients {
		t.Logf("%s: %-45s %3d pulls, %2d failed", what, c.name, made[i], len(failed[i]))
		for n, p := range failed[i] {
			if n == 3 {
				t.Logf("    … %d more", len(failed[i])-n)
				break
			}
			t.Logf("    failed pull started %s: %s", since(p.start, stops), short(p.err))
		}
	}
	return failed
}

var tokenRE = regexp.MustCompile(`token=[^"&\s]+`)

// short is an error without tokens, cut to 300 characters.
func short(err error) string {
	s := tokenRE.ReplaceAllString(err.Error(), "token=REDACTED")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

// since says when t was relative to the nearest stop before it.
func since(at time.Time, stops []time.Time) string {
	best := time.Duration(-1)
	for _, k := range stops {
		if d := at.Sub(k); d >= -10*time.Second && (best == -1 || abs(d) < abs(best)) {
			best = d
		}
	}
	if best == -1 {
		return "with no stop near"
	}
	return best.Round(time.Millisecond).String() + " after a stop"
}

func abs(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

// TestKilledCache: the cache is SIGKILLed at random moments (and
// restarted) while eight clients pull through the origin, 50 pulls per
// client at most. Clients that retry never fail; the others fail only
// for pulls running when the cache died or started within 1.5 s of it;
// every pull that completed is digest-equal (the clients verify every
// digest they read).
func TestKilledCache(t *testing.T) {
	s := newStack(t, stackOptions{})
	runLoop(t, s, "SIGKILL", func() { s.cache.signal(syscall.SIGKILL) }, func(failed map[int][]pull, stops []time.Time) {
		for i, c := range s.clients {
			for _, p := range failed[i] {
				if c.retries && bodyCut(p.err) && runningAt(p, stops) {
					// skopeo's retry (containers/common pkg/retry) does not
					// take an unexpected EOF for a network error: a blob
					// whose bytes were on the way when the cache died
					// fails the copy. The client's limit, said so.
					t.Logf("%s: a pull running at a kill failed on a cut body, which its retries do not cover: %s", c.name, short(p.err))
					continue
				}
				if c.retries {
					t.Errorf("%s retries, yet a pull failed: %s", c.name, short(p.err))
					continue
				}
				if !nearStop(p, stops) {
					t.Errorf("%s: a pull that started %s failed: %s", c.name, since(p.start, stops), short(p.err))
				}
			}
		}
	})
}

// bodyCut reports whether a pull failed because a response body ended
// early.
func bodyCut(err error) bool {
	return errors.Is(err, io.ErrUnexpectedEOF) || strings.Contains(err.Error(), "unexpected EOF")
}

// runningAt reports whether a pull was running when a stop came.
func runningAt(p pull, stops []time.Time) bool {
	for _, k := range stops {
		if p.start.Before(k) && p.end.After(k) {
			return true
		}
	}
	return false
}

// nearStop reports whether a pull was running when a stop came, or
// started less than lateness after one.
func nearStop(p pull, stops []time.Time) bool {
	for _, k := range stops {
		if p.start.Before(k.Add(lateness)) && p.end.After(k) {
			return true
		}
	}
	return false
}

// TestStoppedCache: the same loop, the cache stopped with SIGTERM (a
// planned restart): no pull of any client fails.
func TestStoppedCache(t *testing.T) {
	s := newStack(t, stackOptions{})
	runLoop(t, s, "SIGTERM", func() { s.cache.signal(syscall.SIGTERM) }, func(failed map[int][]pull, stops []time.Time) {
		for i, c := range s.clients {
			for _, p := range failed[i] {
				t.Errorf("%s: a pull failed across a planned stop (started %s): %s", c.name, since(p.start, stops), short(p.err))
			}
		}
	})
}

func runLoop(t *testing.T, s *stack, what string, stopCache func(), check func(map[int][]pull, []time.Time)) {
	ctx, cancel := context.WithTimeout(context.Background(), loopFor+time.Minute)
	defer cancel()
	s.clients = loopClients(t, s)
	stop := make(chan struct{})
	type disrupted struct {
		at      []time.Time
		windows []time.Duration
	}
	dc := make(chan disrupted, 1)
	go func() {
		at, w := disrupt(t, s, stopCache, stop)
		dc <- disrupted{at, w}
	}()
	timer := time.AfterFunc(loopFor, func() { close(stop) })
	pulls := pullLoop(ctx, s, 50, stop)
	if timer.Stop() {
		close(stop)
	}
	d := <-dc
	failed := report(t, s, what, pulls, d.at, d.windows)
	if len(d.at) == 0 {
		t.Fatal("the loop ended before the cache was stopped once")
	}
	check(failed, d.at)
}

// TestStalledStore: a cache whose HTTP listener answers but whose disk
// hangs (the canary file and every blob file replaced by FIFOs nobody
// writes: opening them blocks in the kernel, as on a stalled disk) is
// marked down by the origin's probe of /readyz, with the store's reason,
// while /healthz still answers; alice's pulls are then served by the
// origin, digest-equal.
func TestStalledStore(t *testing.T) {
	s := newStack(t, stackOptions{})
	dir := filepath.Join(s.dir, "pull-warm")
	if err := skopeoPull(0)(context.Background(), s, dir); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(s.path("cache"), "redirect")
	var fifos []string
	filepath.Walk(filepath.Join(root, "blobs"), func(p string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().IsRegular() {
			fifos = append(fifos, p)
		}
		return nil
	})
	fifos = append(fifos, filepath.Join(root, "canary"))
	start := time.Now()
	for _, p := range fifos {
		os.Remove(p)
		if err := syscall.Mkfifo(p, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	// Whatever hangs is released at the end, so the cache can be killed
	// and its goroutines end.
	t.Cleanup(func() {
		for _, p := range fifos {
			if f, err := os.OpenFile(p, os.O_RDWR|syscall.O_NONBLOCK, 0); err == nil {
				f.Close()
			}
		}
	})
	st := s.waitState("down", 15*time.Second, func(st cacheState) bool { return !st.Healthy })
	t.Logf("down %s after the disk stalled: %s", time.Since(start).Round(time.Millisecond), st.Reason)
	if !strings.Contains(st.Reason, "has not answered a check") {
		t.Errorf("reason %q does not say the store hangs", st.Reason)
	}
	s.waitHTTP("http://" + s.cacheAddr + "/healthz") // the listener still answers
	if s.redirected() {
		t.Fatal("the origin still redirects to a cache whose disk hangs")
	}
	if err := skopeoPull(0)(context.Background(), s, filepath.Join(s.dir, "pull-after")); err != nil {
		t.Fatalf("alice's pull with the cache's disk stalled: %v", err)
	}
}

// TestHeartbeatCache: a cache the origin cannot reach (registered with a
// probe address where nothing listens; the origin is never given the
// cache's listener address to probe) announces itself with heartbeats:
// it is up in heartbeat mode with its version and store use, the origin's
// prefetch hints reach it in the heartbeats' answers (it fills the image
// before alice asks for a blob), alice's blobs are redirected to it; once
// it is killed the origin stops redirecting at once (the held beat's
// connection closes), within two missed beats at most.
func TestHeartbeatCache(t *testing.T) {
	s := newStack(t, stackOptions{
		cacheYAML: "  heartbeat: {interval: 500ms}\n",
		probeHost: "http://" + freeAddrT(t),
	})
	st := s.waitState("up by heartbeats", 15*time.Second, func(st cacheState) bool { return st.Healthy })
	if st.Mode != "heartbeat" || len(st.NodeHealth) != 1 || st.NodeHealth[0].Version == "" {
		t.Fatalf("the caches API: %+v", st)
	}
	// A manifest GET by alice: the hint travels back on a heartbeat and
	// the cache fills every layer before any blob is asked for.
	base := "http://" + s.cacheAddr
	if err := getManifest(s); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for metric(base, `dtrcache_blob_requests_total{mode="prefetch"`) < float64(len(s.layers)) {
		if time.Now().After(deadline) {
			t.Fatalf("the hint did not reach the heartbeating cache: %v prefetches", metric(base, `dtrcache_blob_requests_total{mode="prefetch"`))
		}
		time.Sleep(20 * time.Millisecond)
	}
	before := metric("http://"+s.origin, `dtrcache_origin_redirects_total{cache="asia"}`)
	if err := skopeoPull(0)(context.Background(), s, filepath.Join(s.dir, "pull-hb")); err != nil {
		t.Fatal(err)
	}
	if got := metric("http://"+s.origin, `dtrcache_origin_redirects_total{cache="asia"}`) - before; got < float64(len(s.layers)) {
		t.Fatalf("%v blobs redirected to the heartbeating cache, want %d", got, len(s.layers))
	}
	k := time.Now()
	s.cache.signal(syscall.SIGKILL)
	for s.redirected() {
		if time.Since(k) > 10*time.Second {
			t.Fatal("still redirected to the killed cache 10 s later")
		}
		time.Sleep(5 * time.Millisecond)
	}
	window := time.Since(k)
	t.Logf("heartbeat mode: the origin stopped redirecting %s after the kill (beats every 500ms)", window.Round(time.Millisecond))
	if window > 3*time.Second {
		t.Errorf("failover took %s, want at most about two missed beats (1.1 s) and a probe round", window)
	}
	if err := skopeoPull(0)(context.Background(), s, filepath.Join(s.dir, "pull-hb-down")); err != nil {
		t.Fatalf("alice's pull with the heartbeating cache dead: %v", err)
	}
}

func freeAddrT(t *testing.T) string { return freeAddr(t) }
