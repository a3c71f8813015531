package wan

import (
	"sync"
	"testing"
	"time"
)

const mib = 1 << 20

// TestBandwidthSingleConn checks that one connection gets the configured
// Bandwidth in each direction, at the same time.
func TestBandwidthSingleConn(t *testing.T) {
	const rate = 8_000_000
	addr, uploads := startTransferServer(t)
	l := startLink(t, addr, Config{Bandwidth: rate})

	tr, err := doTransfer(t.Context(), l.Addr(), 8*mib, 8*mib)
	if err != nil {
		t.Fatal(err)
	}
	up := <-uploads
	checkRate(t, "download", tr.down, tr.downDone.Sub(tr.start), rate)
	checkRate(t, "upload", up.bytes, up.done.Sub(tr.start), rate)
}

// TestBandwidthShared checks that four connections share Bandwidth: their
// aggregate rate is the setting, not four times it, and they finish at about
// the same time.
func TestBandwidthShared(t *testing.T) {
	const rate = 8_000_000
	addr, _ := startTransferServer(t)
	l := startLink(t, addr, Config{Bandwidth: rate})
	results := parallelDownloads(t, l.Addr(), 4, 4*mib)

	start, end := results[0].start, results[0].downDone
	for _, r := range results {
		start, end = minTime(start, r.start), maxTime(end, r.downDone)
	}
	total := end.Sub(start)
	checkRate(t, "aggregate", 16*mib, total, rate)
	for i, r := range results {
		if took := r.downDone.Sub(start); took < total*3/4 {
			t.Errorf("connection %d finished after %v of %v: unfair share", i, took, total)
		}
	}
}

// TestPerConnBandwidth checks that PerConnBandwidth caps each connection on
// its own, so four connections get four times the cap.
func TestPerConnBandwidth(t *testing.T) {
	const perConn = 2_000_000
	addr, _ := startTransferServer(t)
	l := startLink(t, addr, Config{PerConnBandwidth: perConn})
	results := parallelDownloads(t, l.Addr(), 4, 2*mib)

	start, end := results[0].start, results[0].downDone
	for i, r := range results {
		start, end = minTime(start, r.start), maxTime(end, r.downDone)
		checkRate(t, "connection "+string(rune('0'+i)), r.down, r.downDone.Sub(r.start), perConn)
	}
	checkRate(t, "aggregate", 8*mib, end.Sub(start), 4*perConn)
}

// TestLatencyKeepsThroughput checks that latency delays bytes without
// lowering the rate: a transfer takes its size over the rate plus one
// latency, not a latency per chunk.
func TestLatencyKeepsThroughput(t *testing.T) {
	const (
		rate    = 8_000_000
		latency = 50 * time.Millisecond
		size    = 4 * mib
	)
	addr, _ := startTransferServer(t)
	l := startLink(t, addr, Config{Bandwidth: rate, Latency: latency})
	tr, err := doTransfer(t.Context(), l.Addr(), 0, size)
	if err != nil {
		t.Fatal(err)
	}
	took := tr.downDone.Sub(tr.start)
	// The request goes up (one latency), the reply comes down (another).
	want := 2*latency + time.Duration(float64(size)/rate*float64(time.Second))
	t.Logf("%d bytes in %v, want about %v", size, took, want)
	if took < want*9/10 || took > want*11/10 {
		t.Errorf("took %v, want %v ± 10%%", took, want)
	}
}

// parallelDownloads runs n downloads of size bytes each at the same time.
func parallelDownloads(t *testing.T, addr string, n int, size int64) []transfer {
	t.Helper()
	results := make([]transfer, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { results[i], errs[i] = doTransfer(t.Context(), addr, 0, size) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("download %d: %v", i, err)
		}
		if results[i].down != size {
			t.Fatalf("download %d: got %d bytes, want %d", i, results[i].down, size)
		}
	}
	return results
}

// checkRate fails the test unless n bytes in d is within 10 % of want
// bytes per second.
func checkRate(t *testing.T, what string, n int64, d time.Duration, want float64) {
	t.Helper()
	got := float64(n) / d.Seconds()
	t.Logf("%s: %d bytes in %v = %.3f MB/s (want %.3f, %+.1f%%)", what, n, d.Round(time.Millisecond), got/1e6, want/1e6, (got/want-1)*100)
	// Faster than the rate is the shaper's fault: 10 % over fails. Slower
	// is also the machine's: under -race, beside the other test packages
	// on 2 cores, a correct shaper measured 13–17 % under the rate in CI,
	// so up to 25 % under passes (a shaper that halves the rate still fails).
	if got < want*0.75 || got > want*1.1 {
		t.Errorf("%s: %.3f MB/s, want %.3f MB/s (−25 %%, +10 %%)", what, got/1e6, want/1e6)
	}
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
