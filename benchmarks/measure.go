package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dtrcache/dtrcache/testenv"
)

// pullOnce pulls ref through sys and checks the manifest digest.
func pullOnce(ctx context.Context, sys system, repoTag string, want string) error {
	res, err := testenv.Pull(ctx, sys.host()+"/"+repoTag, sys.remote(), nil)
	if err != nil {
		return err
	}
	if res.Digest.String() != want {
		return fmt.Errorf("pulled %s, want %s", res.Digest, want)
	}
	return nil
}

// timeToFirstByte GETs url with a Range from off and returns the time
// until the first body byte (following redirects, as clients do).
func timeToFirstByte(ctx context.Context, url string, off int64, user, pass string) (time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-", off))
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	start := time.Now()
	resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent && resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("status %s", resp.Status)
	}
	var b [1]byte
	if _, err := io.ReadFull(resp.Body, b[:]); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// rssSampler records the peak summed RSS of some processes.
type rssSampler struct {
	stop chan struct{}
	done chan struct{}
	peak int64 // KiB
}

func sampleRSS(pids func() []int) *rssSampler {
	s := &rssSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(25 * time.Millisecond)
		defer t.Stop()
		for {
			var sum int64
			for _, pid := range pids() {
				sum += procRSS(pid)
			}
			s.peak = max(s.peak, sum)
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// Peak stops sampling and returns the peak RSS in bytes.
func (s *rssSampler) Peak() int64 {
	close(s.stop)
	<-s.done
	return s.peak * 1024
}

func procRSS(pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return n
		}
	}
	return 0
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's CPU times: 100
// on every Linux architecture the harness runs on (the kernel's ABI keeps
// it fixed whatever CONFIG_HZ is).
const clockTicks = 100

// cpuSeconds returns the CPU seconds pids have used so far. A process's
// figure is its time on CPU, all its threads, exited ones included, in
// nanoseconds: its CPU clock (processCPUClock, Linux). Where that clock
// does not answer it is utime + stime from /proc/<pid>/stat
// (statTicks), in 10 ms ticks. A process that exited is left out, so take
// both readings while the system runs.
//
// Why not the per-thread nanoseconds of /proc/<pid>/task/<tid>/schedstat
// (its first field): that is the same scheduler figure, but a thread that
// exits between two readings leaves the task list with its time, and
// making up for it from the ticks of the vanished threads brings back the
// 10 ms error it was meant to remove. The process clock is the kernel's
// sum of that figure over the live threads plus what exited threads left
// to their process: one call per process, no parsing, nothing lost.
func cpuSeconds(pids []int) float64 {
	var ns int64
	for _, pid := range pids {
		if d, ok := processCPUClock(pid); ok {
			ns += d.Nanoseconds()
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		if t, ok := statTicks(b); ok {
			ns += t * (int64(time.Second) / clockTicks)
		}
	}
	return float64(ns) / 1e9
}

// statTicks returns utime + stime (fields 14 and 15, clock ticks, all
// threads) of a /proc/<pid>/stat line; false if it has no such fields.
func statTicks(b []byte) (int64, bool) {
	// The command name (field 2) may hold spaces and parentheses: count
	// from its last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, false
	}
	u, err := strconv.ParseUint(f[11], 10, 63) // utime, field 14
	if err != nil {
		return 0, false
	}
	k, err := strconv.ParseUint(f[12], 10, 63) // stime, field 15
	if err != nil {
		return 0, false
	}
	// cpuSeconds multiplies by 1e7 ns per tick: no overflow there either.
	if u+k > math.MaxInt64/uint64(time.Second/clockTicks) {
		return 0, false
	}
	return int64(u + k), true
}

// loadResult is the outcome of a fixed-duration load test.
type loadResult struct {
	Requests     float64 // per second
	Bytes        float64 // per second
	P50ms, P99ms float64
}

var (
	wrkReqRE   = regexp.MustCompile(`Requests/sec:\s+([\d.]+)`)
	wrkBytesRE = regexp.MustCompile(`Transfer/sec:\s+([\d.]+)([KMG]?B)`)
	wrkLatRE   = regexp.MustCompile(`(?m)^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$`)
	wrkErrRE   = regexp.MustCompile(`Non-2xx or 3xx responses:\s+(\d+)`)
)

// runLoad drives conns connections at url for d with wrk (Debian's wrk),
// falling back to a Go load loop where wrk is missing.
func runLoad(ctx context.Context, url string, conns int, d time.Duration) (loadResult, error) {
	if _, err := exec.LookPath("wrk"); err != nil {
		return goLoad(ctx, url, conns, d)
	}
	out, err := exec.CommandContext(ctx, "wrk", "-t2", fmt.Sprintf("-c%d", conns), fmt.Sprintf("-d%ds", int(d.Seconds())), "--latency", "--timeout", "30s", url).CombinedOutput()
	if err != nil {
		return loadResult{}, fmt.Errorf("wrk: %v\n%s", err, out)
	}
	var r loadResult
	if m := wrkReqRE.FindSubmatch(out); m != nil {
		r.Requests, _ = strconv.ParseFloat(string(m[1]), 64)
	}
	if m := wrkBytesRE.FindSubmatch(out); m != nil {
		v, _ := strconv.ParseFloat(string(m[1]), 64)
		r.Bytes = v * map[string]float64{"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30}[string(m[2])]
	}
	for _, m := range wrkLatRE.FindAllSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(string(m[2]), 64)
		v *= map[string]float64{"us": 0.001, "ms": 1, "s": 1000}[string(m[3])]
		if string(m[1]) == "50" {
			r.P50ms = v
		} else {
			r.P99ms = v
		}
	}
	if r.Requests == 0 {
		return r, fmt.Errorf("wrk output not understood:\n%s", out)
	}
	if m := wrkErrRE.FindSubmatch(out); m != nil {
		return r, fmt.Errorf("wrk: %s non-2xx responses: the numbers would count errors", m[1])
	}
	return r, nil
}

// goLoad is an equivalent closed-loop load generator in Go.
func goLoad(ctx context.Context, url string, conns int, d time.Duration) (loadResult, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	tr := &http.Transport{MaxIdleConnsPerHost: conns}
	var mu sync.Mutex
	var lats []time.Duration
	var bytes, failed int64
	var wg sync.WaitGroup
	for i := 0; i < conns; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 256<<10)
			for ctx.Err() == nil {
				start := time.Now()
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
				resp, err := tr.RoundTrip(req)
				if err != nil {
					return
				}
				if resp.StatusCode != http.StatusOK {
					resp.Body.Close()
					mu.Lock()
					failed++
					mu.Unlock()
					return
				}
				n, err := io.CopyBuffer(io.Discard, resp.Body, buf)
				resp.Body.Close()
				if err != nil {
					return
				}
				mu.Lock()
				lats = append(lats, time.Since(start))
				bytes += n
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if failed > 0 {
		return loadResult{}, fmt.Errorf("%d responses were not 200", failed)
	}
	if len(lats) == 0 {
		return loadResult{}, fmt.Errorf("no request completed")
	}
	sortDurations(lats)
	return loadResult{
		Requests: float64(len(lats)) / d.Seconds(), Bytes: float64(bytes) / d.Seconds(),
		P50ms: ms(lats[len(lats)/2]), P99ms: ms(lats[len(lats)*99/100]),
	}, nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// sha256Bytes is how much one measurement of sha256CPU hashes: 1 GiB,
// 16 passes over a 64 MiB buffer (larger than the caches, as a fill's
// bytes are).
const (
	sha256Bytes  = 1 << 30
	sha256Buffer = 64 << 20
)

// sha256CPU returns the CPU seconds per GiB that crypto/sha256 costs on
// this machine: the median of reps measurements, each hashing
// sha256Bytes already in memory on one locked OS thread and reading that
// thread's user + system time (getrusage RUSAGE_THREAD) before and after,
// so the harness's other goroutines (the WAN emulator) do not count. The
// figures of each measurement are returned too.
func sha256CPU(ctx context.Context, reps int) (median float64, runs []float64, err error) {
	buf := make([]byte, sha256Buffer)
	if _, err := rand.Read(buf); err != nil {
		return 0, nil, fmt.Errorf("sha256 buffer: %w", err)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	for i := 0; i < reps; i++ {
		if err := ctx.Err(); err != nil {
			return 0, nil, err
		}
		t0, err := threadCPU()
		if err != nil {
			return 0, nil, err
		}
		h := sha256.New()
		for n := 0; n < sha256Bytes; n += len(buf) {
			h.Write(buf)
		}
		h.Sum(nil)
		t1, err := threadCPU()
		if err != nil {
			return 0, nil, err
		}
		runs = append(runs, (t1-t0)/(float64(sha256Bytes)/(1<<30)))
	}
	s := slices.Clone(runs)
	slices.Sort(s)
	return s[len(s)/2], runs, nil
}
